"""The Responses front end end to end: stored replies and ``previous_response_id``, a reply for
its caller only, Codex's session headers, commands, custom tools and compaction through providers
that only have functions, and provider failures in the shapes Codex acts on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from fakes.behaviours import error, reply, stream_chunks, stream_error
from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider
from proxy_support import reply_model, reply_text, responses_text, sse_data, write_config
from router.app import ProxyApp, create_app
from test_stream_limits import served

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. FREEFORM.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
EXEC = {"type": "function", "name": "exec_command", "description": "Run a command", "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}


def proxy(tmp_path: Path, fake: FakeProvider, **extra: Any) -> ProxyApp:
    config = write_config(tmp_path, backends={
        "oai": {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": fake.key("openai")},
        "ant": {"type": "anthropic", "base_url": fake.url, "api_key": fake.key("anthropic")},
        "gem": {"type": "gemini", "gemini_api_base_url": fake.url, "api_key": fake.key("gemini")},
    }, default_backend="oai", **extra)
    return create_app(config, disable_auth=True)


def completed(text: str) -> dict[str, Any]:
    events = sse_data(text)
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed", events[-1]
    return events[-1]["response"]


async def test_previous_response_id_continues_the_conversation(tmp_path: Path, fake_provider: FakeProvider) -> None:
    async with served(proxy(tmp_path, fake_provider)) as client:
        first = (await client.post("/v2/responses", json={"model": "m", "instructions": "Be brief.",
                                                          "input": "my name is Ada"})).json()
        assert first["object"] == "response" and responses_text(first) == "my name is Ada"
        streamed = await client.post("/v2/responses", json={"model": "m", "input": "and yours?", "stream": True,
                                                             "previous_response_id": first["id"]})
        second = completed(streamed.text)
        third = await client.post("/v2/responses", json={"model": "m", "input": [{"role": "user", "content": "bye"}],
                                                         "previous_response_id": second["id"]})
        assert third.status_code == 200, third.text
    sent = fake_provider.last.body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "my name is Ada"), ("assistant", "my name is Ada"), ("user", "and yours?"),
        ("assistant", "and yours?"), ("user", "bye")], "instructions are not carried over, the rest is"


async def test_a_large_kept_conversation_is_continued_whole_after_the_request_is_let_go(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A request over ``offload.LARGE_BYTES`` is freed a part at a time after its JSON answer; the
    input list of a reply that was kept belongs to the store and must come back whole."""
    turns = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "x" * 40} for n in range(8001)]
    async with served(proxy(tmp_path, fake_provider)) as client:
        first = (await client.post("/v2/responses", json={"model": "m", "input": turns})).json()
        assert responses_text(first) == turns[-1]["content"]
        again = await client.post("/v2/responses", json={"model": "m", "input": "and then?",
                                                          "previous_response_id": first["id"]})
        assert again.status_code == 200, again.text
    sent = fake_provider.last.body["messages"]
    assert len(sent) == 8001 + 2 and sent[0]["content"] == turns[0]["content"]
    assert [m["content"] for m in sent[-3:]] == [turns[-1]["content"], turns[-1]["content"], "and then?"]


async def test_store_false_keeps_nothing_and_unknown_ids_are_400(tmp_path: Path, fake_provider: FakeProvider) -> None:
    async with served(proxy(tmp_path, fake_provider)) as client:
        unstored = (await client.post("/v2/responses", json={"model": "m", "input": "hi", "store": False})).json()
        for rid in (unstored["id"], "resp_never"):
            result = await client.post("/v2/responses", json={"model": "m", "input": "x", "previous_response_id": rid})
            assert result.status_code == 400
            assert result.json()["error"]["code"] == "previous_response_not_found"
            assert result.json()["error"]["param"] == "previous_response_id"
        assert (await client.get(f"/v2/responses/{unstored['id']}")).status_code == 404


def test_a_stored_reply_is_its_callers_only(make_client) -> None:
    keys = ["sk-test-key-one-0123456789", "sk-test-key-two-0123456789"]
    client = make_client(auth={"api_keys": keys})
    one, two = ({"Authorization": f"Bearer {k}"} for k in keys)
    made = client.simulate_post("/v2/responses", json={"model": "gpt-4", "input": "secret plan"}, headers=one)
    rid = made.json["id"]
    assert client.simulate_get(f"/v2/responses/{rid}", headers=one).json == made.json
    assert client.simulate_get(f"/v1/responses/{rid}", headers=one).json == made.json
    assert client.simulate_get(f"/v2/responses/{rid}", headers=two).status_code == 404
    stolen = client.simulate_post("/v2/responses", json={"model": "gpt-4", "input": "and?", "previous_response_id": rid},
                                  headers=two)
    assert stolen.status_code == 400 and stolen.json["error"]["code"] == "previous_response_not_found"
    assert "secret plan" not in stolen.text


def test_codex_session_headers_and_prompt_cache_key_name_the_session(client) -> None:
    for how in ("session-id", "thread-id", "prompt_cache_key"):
        sid = f"{how}-{uuid.uuid4().hex[:8]}"
        headers = {} if how == "prompt_cache_key" else {how: sid}
        body = {"model": "gpt-4", "input": "!/model(echo-large)"}
        if how == "prompt_cache_key":
            body["prompt_cache_key"] = sid
        answer = client.simulate_post("/v2/responses", json=body, headers=headers)
        assert "model set to echo-large" in reply_text("responses", answer), answer.text
        assert answer.json["object"] == "response" and answer.headers["x-session-id"] == sid
        body["input"] = "hi"
        assert reply_model("responses", client.simulate_post("/v2/responses", json=body, headers=headers)) == "echo-large"


async def test_custom_tool_through_anthropic_comes_back_custom(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """Codex's apply_patch: a function with one string argument for Anthropic, a custom_tool_call
    for Codex, and its output back to Anthropic as a tool_result of that call."""
    codex_turn = {"model": "ant:claude-test", "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Create hello.txt"}]}],
        "tools": [EXEC, APPLY_PATCH, {"type": "web_search"}], "store": False}
    call = {"id": "toolu_1", "name": "apply_patch", "arguments": {"input": PATCH}}
    async with served(proxy(tmp_path, fake_provider)) as client:
        for stream in (False, True):
            fake_provider.enqueue(reply(tool_calls=[call]))
            result = await client.post("/v2/responses", json={**codex_turn, "stream": stream})
            output = completed(result.text)["output"] if stream else result.json()["output"]
            assert output == [{"type": "custom_tool_call", "id": "ctc_toolu_1", "status": "completed",
                               "call_id": "toolu_1", "name": "apply_patch", "input": PATCH}]
            if stream:
                deltas = [e for e in sse_data(result.text) if e["type"] == "response.custom_tool_call_input.delta"]
                assert "".join(e["delta"] for e in deltas) == PATCH
        sent = fake_provider.last.body
        assert sent["system"] == [{"type": "text", "text": "You are Codex."}]
        tools = {t["name"]: t for t in sent["tools"]}
        assert set(tools) == {"exec_command", "apply_patch"}, "web_search is hosted: not for Anthropic"
        assert tools["apply_patch"]["input_schema"]["properties"] == {"input": {"type": "string"}}
        follow = {**codex_turn, "input": codex_turn["input"] + output + [
            {"type": "custom_tool_call_output", "call_id": "toolu_1", "output": "Success. A hello.txt"}]}
        fake_provider.enqueue(reply("Created."))
        assert responses_text((await client.post("/v2/responses", json=follow)).json()) == "Created."
    messages = fake_provider.last.body["messages"]
    assert messages[1]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "apply_patch",
                                       "input": {"input": PATCH}}]
    assert messages[2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1",
                                         "content": "Success. A hello.txt"}


async def test_compaction_without_tools_turns_history_into_text_for_anthropic(
        tmp_path: Path, fake_provider: FakeProvider) -> None:
    compaction = {"model": "ant:claude-test", "tools": [], "parallel_tool_calls": False, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run echo hi"}]},
        {"type": "function_call", "name": "exec_command", "arguments": "{\"cmd\": \"echo hi\"}", "call_id": "c1"},
        {"type": "function_call_output", "call_id": "c1", "output": "hi\n"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "You are performing a "
                                                                                       "CONTEXT CHECKPOINT COMPACTION."}]}]}
    async with served(proxy(tmp_path, fake_provider)) as client:
        fake_provider.enqueue(reply("Summary: ran echo hi."))
        result = await client.post("/v2/responses", json=compaction)
        assert result.status_code == 200 and responses_text(result.json()) == "Summary: ran echo hi."
    sent = fake_provider.last.body
    assert "tools" not in sent
    blocks = [b for m in sent["messages"] for b in m["content"]]
    assert {b["type"] for b in blocks} == {"text"}
    assert any("exec_command" in b["text"] and "echo hi" in b["text"] for b in blocks)


@pytest.mark.parametrize("model, calls_of", [
    ("oai:gpt-4o", lambda body: [(m["tool_calls"][0]["function"]["name"], m["tool_calls"][0]["id"])
                                 for m in body["messages"] if m.get("tool_calls")]),
    ("gem:gemini-test", lambda body: [(p["functionCall"]["name"], None) for c in body["contents"]
                                      for p in c["parts"] if "functionCall" in p]),
], ids=["openai-chat", "gemini"])
async def test_compaction_without_tools_keeps_tool_history_structured_where_the_provider_takes_it(
        tmp_path: Path, fake_provider: FakeProvider, model: str, calls_of: Any) -> None:
    """OpenAI chat and Gemini accept tool calls and results in a request that declares no tools
    (OpenAI's function-calling guide sends its follow-up so; Gemini CLI's own compression request
    does), so Codex's compaction reaches them as it was: calls and results, no tools declared."""
    compaction = {"model": model, "tools": [], "parallel_tool_calls": False, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run echo hi"}]},
        {"type": "function_call", "name": "exec_command", "arguments": "{\"cmd\": \"echo hi\"}", "call_id": "c1"},
        {"type": "function_call_output", "call_id": "c1", "output": "hi\n"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summarize."}]}]}
    async with served(proxy(tmp_path, fake_provider)) as client:
        fake_provider.enqueue(reply("Summary: ran echo hi."))
        result = await client.post("/v2/responses", json=compaction)
        assert result.status_code == 200 and responses_text(result.json()) == "Summary: ran echo hi.", result.text
    sent = fake_provider.last.body
    assert not sent.get("tools")
    assert calls_of(sent) == [("exec_command", "c1" if model.startswith("oai:") else None)]
    assert "[called tool" not in json.dumps(sent), "not written as text"


async def test_provider_failures_are_never_a_500(tmp_path: Path, fake_provider: FakeProvider) -> None:
    async with served(proxy(tmp_path, fake_provider)) as client:
        fake_provider.on_model("m", error(500))
        before = await client.post("/v2/responses", json={"model": "m", "input": "hi", "stream": True})
        assert before.status_code == 502 and before.json()["error"]["type"] == "server_error"
        fake_provider.on_model("m", None)
        fake_provider.enqueue(stream_error(1, "prompt is too long: 210000 tokens > 200000 maximum", "invalid_request"))
        after = await client.post("/v2/responses", json={"model": "m", "input": "hi", "stream": True})
        assert after.status_code == 200
        last = sse_data(after.text)[-1]
        assert last["type"] == "response.failed" and last["response"]["error"]["code"] == "context_length_exceeded"


async def test_gemini_backend_gets_developer_prompt_and_tools(tmp_path: Path, fake_provider: FakeProvider) -> None:
    async with served(proxy(tmp_path, fake_provider)) as client:
        fake_provider.enqueue(reply(tool_calls=[{"name": "exec_command", "arguments": {"cmd": "ls"}}]))
        result = await client.post("/v2/responses", json={
            "model": "gem:gemini-test", "tools": [EXEC, APPLY_PATCH], "stream": True,
            "input": [{"role": "developer", "content": "You are Codex."}, {"role": "user", "content": "list"}]})
        calls = [e["item"] for e in sse_data(result.text) if e["type"] == "response.output_item.done"]
        assert [(c["type"], c["name"], c["arguments"]) for c in calls] == [("function_call", "exec_command",
                                                                            '{"cmd":"ls"}')]
    sent = fake_provider.last.body
    assert sent["systemInstruction"] == {"parts": [{"text": "You are Codex."}]}
    names = [d["name"] for d in sent["tools"][0]["functionDeclarations"]]
    assert names == ["exec_command", "apply_patch"]


async def _frames_with_store_checks(app: ProxyApp, body: dict[str, Any]) -> list[tuple[bytes, list[str]]]:
    """Each body frame sent for ``body`` on /v2/responses, with the ids of the stored replies
    (of the ``response.completed`` events in it) that were already in the store when it went out."""
    import json as _json

    payload = _json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v2/responses", "raw_path": b"/v2/responses", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode())],
             "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000)}
    received = False
    frames: list[tuple[bytes, list[str]]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body" or not message.get("body"):
            return
        ids = [e["response"]["id"] for e in sse_data(message["body"].decode()) if e["type"] == "response.completed"]
        found = [rid for rid in ids if await app.state_ref.state.responses.get(rid, None) is not None]
        frames.append((message["body"], found))

    await app(scope, receive, send)
    return frames


async def test_a_streamed_reply_is_kept_before_the_frame_with_its_id_goes_out(
        tmp_path: Path, fake_provider: FakeProvider) -> None:  # noqa: F811
    """A client may continue from the id in ``response.completed`` as soon as it reads it."""
    app = proxy(tmp_path, fake_provider)
    try:
        await _kept_before_its_frame(app, fake_provider)
    finally:
        for backend in app.state_ref.state.backends.values():
            await backend.aclose()


async def _kept_before_its_frame(app: ProxyApp, fake_provider: FakeProvider) -> None:  # noqa: F811
    fake_provider.enqueue(stream_chunks(["kept ", "in ", "time"]))
    frames = await _frames_with_store_checks(app, {"model": "m", "input": "hi", "stream": True})
    last = [found for body, found in frames if b"response.completed" in body]
    assert len(last) == 1 and len(last[0]) == 1  # the completed frame's reply was in the store already
    kept = await app.state_ref.state.responses.get(last[0][0], None)
    assert kept is not None and kept["response"]["output"][0]["content"][0]["text"] == "kept in time"
    fake_provider.enqueue(stream_chunks(["not ", "kept"]))
    frames = await _frames_with_store_checks(app, {"model": "m", "input": "hi", "stream": True, "store": False})
    completed_ids = [e["response"]["id"] for body, _ in frames for e in sse_data(body.decode())
                     if e["type"] == "response.completed"]
    assert len(completed_ids) == 1 and await app.state_ref.state.responses.get(completed_ids[0], None) is None
