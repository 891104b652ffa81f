"""The official ``openai``, ``anthropic`` and ``google-genai`` SDKs against the real server (uvicorn on
127.0.0.1, echo backend, client key required): plain and streamed replies, tool-call turns with ids,
token counting, model listing and commands."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from proxy_support import API_KEY, LiveServer, write_config

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def sid() -> str:
    return "sdk-" + uuid.uuid4().hex[:12]


# ---- OpenAI ---------------------------------------------------------------------------------------

@pytest.fixture(params=["v1", "v2"])
def openai_client(request, live_server: LiveServer) -> Any:
    import openai

    return openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.url}/{request.param}", max_retries=0, timeout=10)


def test_openai_create(openai_client):
    completion = openai_client.chat.completions.create(
        model="gpt-4", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello proxy"}])
    assert completion.choices[0].message.content == "hello proxy"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_openai_stream(openai_client):
    text = "one two three four five six seven eight nine ten"
    stream = openai_client.chat.completions.create(model="gpt-4", stream=True,
                                                   messages=[{"role": "user", "content": text}])
    chunks = [c for c in stream]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3 and "".join(deltas) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_stream_helper_and_usage(openai_client):
    with openai_client.chat.completions.stream(model="gpt-4", messages=[{"role": "user", "content": "a b c d"}],
                                               stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "a b c d"
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_call_turn(openai_client, stream):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": 'call get_weather {"city": "Paris"}'}]
    if stream:
        with openai_client.chat.completions.stream(model="gpt-4", messages=messages, tools=tools) as s:
            completion = s.get_final_completion()
    else:
        completion = openai_client.chat.completions.create(model="gpt-4", messages=messages, tools=tools)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
    reply = openai_client.chat.completions.create(model="gpt-4", messages=messages, tools=tools)
    assert reply.choices[0].message.content == "get_weather returned: sunny, 21C"


def test_openai_models_list(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert "echo:echo" in ids and "other:echo" in ids
    assert openai_client.models.retrieve("echo:echo-large").id == "echo:echo-large"


def test_openai_commands_and_session_header(openai_client):
    s = sid()
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4", messages=[{"role": "user", "content": "!/model(echo-large)"}], extra_headers={"x-session-id": s})
    assert raw.headers["x-session-id"] == s
    assert "model set to echo-large" in raw.parse().choices[0].message.content
    reply = openai_client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}],
                                                  extra_headers={"x-session-id": s})
    assert reply.model == "echo-large"
    streamed = openai_client.chat.completions.create(model="gpt-4", stream=True, extra_headers={"x-session-id": s},
                                                     messages=[{"role": "user", "content": "!/hello"}])
    assert "model: echo-large" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    fresh = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert fresh.headers["x-session-id"] and fresh.headers["x-session-id"] != s


def test_openai_errors_parse_in_the_sdk(openai_client, live_server):
    import openai

    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.chat.completions.create(model="gpt-4", messages=[])
    assert "messages" in bad.value.message
    wrong = openai.OpenAI(api_key="sk-wrong", base_url=f"{live_server.url}/v2", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        wrong.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert "sk-wrong" not in str(auth.value)


# ---- Anthropic ------------------------------------------------------------------------------------

@pytest.fixture
def anthropic_client(live_server: LiveServer) -> Any:
    import anthropic

    return anthropic.Anthropic(api_key=API_KEY, base_url=live_server.url, max_retries=0, timeout=10)


def test_anthropic_create(anthropic_client):
    message = anthropic_client.messages.create(model="claude-x", max_tokens=100, system="be brief",
                                               messages=[{"role": "user", "content": "hello claude"}])
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "hello claude"
    assert message.stop_reason == "end_turn" and message.model == "claude-x"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_anthropic_stream(anthropic_client):
    text = "one two three four five six seven eight"
    with anthropic_client.messages.stream(model="claude-x", max_tokens=100,
                                          messages=[{"role": "user", "content": text}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3 and "".join(pieces) == text
    assert final.content[0].text == text and final.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use_turn(anthropic_client, stream):
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": 'call get_weather {"city": "Oslo"}'}]
    if stream:
        with anthropic_client.messages.stream(model="claude-x", max_tokens=100, messages=messages, tools=tools) as s:
            message = s.get_final_message()
    else:
        message = anthropic_client.messages.create(model="claude-x", max_tokens=100, messages=messages, tools=tools)
    assert message.stop_reason == "tool_use"
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.id and block.name == "get_weather" and block.input == {"city": "Oslo"}
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": block.id, "content": "snow, -3C"}]})
    reply = anthropic_client.messages.create(model="claude-x", max_tokens=100, messages=messages, tools=tools)
    assert reply.content[0].text == "get_weather returned: snow, -3C"


def test_anthropic_count_tokens(anthropic_client):
    count = anthropic_client.messages.count_tokens(model="claude-x",
                                                   messages=[{"role": "user", "content": "x" * 400}])
    assert count.input_tokens == 100


def test_anthropic_commands(anthropic_client):
    s = sid()
    headers = {"x-session-id": s}
    first = anthropic_client.messages.create(model="claude-x", max_tokens=50, extra_headers=headers,
                                             messages=[{"role": "user", "content": "!/route-append(claude-x, echo:other)"}])
    assert "route for claude-x: echo:other" in first.content[0].text
    with anthropic_client.messages.stream(model="claude-x", max_tokens=50, extra_headers=headers,
                                          messages=[{"role": "user", "content": "!/route-list"}]) as stream:
        assert "echo:other" in stream.get_final_message().content[0].text
    reply = anthropic_client.messages.create(model="claude-x", max_tokens=50, extra_headers=headers,
                                             messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "other" and reply.content[0].text == "hi"


def test_anthropic_errors_parse_in_the_sdk(anthropic_client, live_server):
    import anthropic

    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=[])
    wrong = anthropic.Anthropic(api_key="sk-wrong", base_url=live_server.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


# ---- google-genai ---------------------------------------------------------------------------------

@pytest.fixture(params=["default", "v1beta", "v2"])
def genai_client(request, live_server: LiveServer) -> Any:
    """The SDK's own default API version (``v1`` in google-genai 1.x+; Gemini CLI uses ``v1beta``), and ours."""
    from google import genai
    from google.genai import types

    options = types.HttpOptions(base_url=live_server.url, timeout=10_000)
    if request.param != "default":
        options = types.HttpOptions(base_url=live_server.url, api_version=request.param, timeout=10_000)
    return genai.Client(api_key=API_KEY, http_options=options)


def test_genai_generate_content(genai_client):
    from google.genai import types

    response = genai_client.models.generate_content(
        model="gemini-x", contents="hello gemini",
        config=types.GenerateContentConfig(system_instruction="be brief", temperature=0.2))
    assert response.text == "hello gemini"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count > 0


def test_genai_stream(genai_client):
    text = "one two three four five six seven eight"
    chunks = list(genai_client.models.generate_content_stream(model="gemini-x", contents=text))
    assert len(chunks) >= 3
    assert "".join(c.text or "" for c in chunks) == text


@pytest.mark.parametrize("stream", [False, True])
def test_genai_function_call_turn(genai_client, stream):
    from google.genai import types

    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather", parameters_json_schema=WEATHER)])
    config = types.GenerateContentConfig(tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(
        disable=True))
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text='call get_weather {"city": "Rome"}')])]
    if stream:
        chunks = list(genai_client.models.generate_content_stream(model="gemini-x", contents=contents, config=config))
        calls = [c for chunk in chunks for c in (chunk.function_calls or [])]
        model_content = types.Content(role="model", parts=[types.Part(function_call=c) for c in calls])
    else:
        response = genai_client.models.generate_content(model="gemini-x", contents=contents, config=config)
        calls = response.function_calls
        model_content = response.candidates[0].content
    [call] = calls
    assert call.name == "get_weather" and call.args == {"city": "Rome"}
    contents.append(model_content)
    contents.append(types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        name="get_weather", id=call.id, response={"result": "warm"}))]))
    reply = genai_client.models.generate_content(model="gemini-x", contents=contents, config=config)
    assert reply.text.startswith("get_weather returned:") and "warm" in reply.text


def test_genai_count_tokens(genai_client):
    assert genai_client.models.count_tokens(model="gemini-x", contents="x" * 400).total_tokens == 100


def test_genai_commands(live_server):
    from google import genai
    from google.genai import types

    s = sid()
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.url,
                                                                          headers={"x-session-id": s}))
    assert "the next request goes to other:special" in client.models.generate_content(
        model="gemini-x", contents="!/oneoff(other:special)").text
    assert client.models.generate_content(model="gemini-x", contents="hi").model_version == "special"
    assert client.models.generate_content(model="gemini-x", contents="hi").model_version == "gemini-x"
    streamed = "".join(c.text or "" for c in client.models.generate_content_stream(model="gemini-x",
                                                                                   contents="!/hello"))
    assert f"session: {s}" in streamed


def test_genai_models_list(genai_client):
    names = [m.name for m in genai_client.models.list()]
    assert names == ["models/echo:echo", "models/echo:echo-large", "models/other:echo"]
    model = genai_client.models.get(model="echo:echo-large")
    assert model.name == "models/echo:echo-large" and "generateContent" in model.supported_actions


def test_genai_errors_parse_in_the_sdk(live_server):
    from google import genai
    from google.genai import errors, types

    wrong = genai.Client(api_key="sk-wrong", http_options=types.HttpOptions(base_url=live_server.url))
    with pytest.raises(errors.ClientError) as exc:
        wrong.models.generate_content(model="gemini-x", contents="hi")
    assert exc.value.code == 401 and "sk-wrong" not in str(exc.value)


# ---- raw HTTP against the live server -------------------------------------------------------------

def test_live_health_and_unknown_path(live_server):
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get("/health").json() == {"status": "ok"}
        missing = http.get("/nope", headers={"Authorization": f"Bearer {API_KEY}"})
        assert missing.status_code == 404 and missing.json()["error"]["message"]
        auth = {"Authorization": f"Bearer {API_KEY}"}
        deep = http.post("/v2/chat/completions", headers=auth, content=b"[" * 200_000)
        assert deep.status_code == 400 and "nested" in deep.json()["error"]["message"]
        assert http.head("/").status_code == 200
        wrong = http.get("/v2/chat/completions", headers=auth)
        assert wrong.status_code == 405 and wrong.json()["error"]["message"]
        # the same connection still serves after an error answered before the body was read
        ok = http.post("/v2/chat/completions", headers=auth,
                       json={"model": "m", "messages": [{"role": "user", "content": "still here"}]})
        assert ok.json()["choices"][0]["message"]["content"] == "still here"


def test_live_oversized_body(tmp_path):
    from router.app import create_app

    server = LiveServer(create_app(write_config(tmp_path, max_body_bytes=2048), disable_auth=True)).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            body = {"model": "m", "messages": [{"role": "user", "content": "x" * 100_000}]}
            big = http.post("/v2/chat/completions", json=body)
            assert big.status_code == 413 and "2048" in big.json()["error"]["message"]
            chunked = http.post("/v1/messages", content=iter([b"x" * 1000] * 50))
            assert chunked.status_code == 413 and chunked.json()["type"] == "error"
            small = {"model": "m", "messages": [{"role": "user", "content": "fits"}]}
            assert http.post("/v2/chat/completions", json=small).json()["choices"][0]["message"]["content"] == "fits"
    finally:
        server.stop()


def test_live_file_sessions_oneoff_race(tmp_path):
    """File sessions are re-read on every request: the consumed one-off must be on disk before the reply."""
    config = write_config(tmp_path, session={"repository": "file", "path": str(tmp_path / "sessions")})
    from router.app import create_app

    server = LiveServer(create_app(config, disable_auth=True)).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            def model(text: str, s: str) -> str:
                body = {"model": "gpt-4", "messages": [{"role": "user", "content": text}]}
                return http.post("/v2/chat/completions", json=body, headers={"x-session-id": s}).json()["model"]

            for i in range(30):
                s = f"race-{i}"
                model("!/oneoff(other:special)", s)
                assert (model("a", s), model("b", s)) == ("special", "gpt-4")
    finally:
        server.stop()
