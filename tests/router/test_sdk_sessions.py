"""A conversation keeps its session without any header: the official ``openai``, ``anthropic`` and
``google-genai`` SDKs (which send no ``x-session-id``) against the real server, three turns each,
turn 1 a command and the later turns using it; a second conversation stays apart. Plus the order in
which headers name a session (``router/pipeline/session.py``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from proxy_support import API_KEY, LiveServer, chat, reply_model, reply_text


def tag() -> str:
    """A system prompt no other test of the module shares (the live server is per module)."""
    return "be brief, conversation " + uuid.uuid4().hex[:12]


def said_session(text: str) -> str:
    """The session id a command reply names, checked to say how long it lives."""
    assert "kept in memory until 24h without use" in text, text
    return text.split("Session ", 1)[1].split(",", 1)[0]


# ---- OpenAI ---------------------------------------------------------------------------------------

def test_openai_conversation_keeps_its_session(live_server: LiveServer):
    import openai

    client = openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.url}/v2", max_retries=0, timeout=10)
    messages: list[dict[str, Any]] = [{"role": "system", "content": tag()},
                                      {"role": "user", "content": "!/model(echo-large)"}]
    raw = client.chat.completions.with_raw_response.create(model="gpt-4", messages=messages)
    first = raw.parse().choices[0].message.content
    assert "model set to echo-large" in first
    assert said_session(first) == raw.headers["x-session-id"] and first.count("found from this conversation") == 1
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "hello"}]
    second = client.chat.completions.create(model="gpt-4", messages=messages)
    assert second.model == "echo-large" and second.choices[0].message.content == "hello"
    messages += [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "and again"}]
    streamed = list(client.chat.completions.create(model="gpt-4", messages=messages, stream=True))
    assert {c.model for c in streamed} == {"echo-large"}
    # Another chat (another system prompt) of the same caller is another session.
    other = client.chat.completions.with_raw_response.create(
        model="gpt-4", messages=[{"role": "system", "content": tag()}, {"role": "user", "content": "hello"}])
    assert other.parse().model == "gpt-4" and other.headers["x-session-id"] != raw.headers["x-session-id"]


# ---- Anthropic ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_conversation_keeps_its_session(live_server: LiveServer, stream: bool):
    import anthropic

    client = anthropic.Anthropic(api_key=API_KEY, base_url=live_server.url, max_retries=0, timeout=10)
    system = tag()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "!/model(other:special)"}]
    first = client.messages.create(model="claude-x", max_tokens=50, system=system, messages=messages)
    text = first.content[0].text
    assert text.startswith("backend set to other\nmodel set to special\n"), text
    said_session(text)
    for turn, words in enumerate(("hello there", "once more")):
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": words}]
        if stream and turn == 1:
            with client.messages.stream(model="claude-x", max_tokens=50, system=system, messages=messages) as s:
                reply = s.get_final_message()
        else:
            reply = client.messages.create(model="claude-x", max_tokens=50, system=system, messages=messages)
        text = reply.content[0].text
        assert reply.model == "special" and text == words
    # The same opening words under another system prompt: another conversation.
    apart = client.messages.create(model="claude-x", max_tokens=50, system=tag(),
                                   messages=[{"role": "user", "content": "!/hello"}])
    assert "model: as requested by the client" in apart.content[0].text


# ---- google-genai ---------------------------------------------------------------------------------

def test_genai_conversation_keeps_its_session(live_server: LiveServer):
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.url, timeout=10_000))
    config = types.GenerateContentConfig(system_instruction=tag())
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text="!/backend(other)")])]
    first = client.models.generate_content(model="gemini-x", contents=contents, config=config).text
    assert "backend set to other" in first
    said_session(first)
    contents.append(types.Content(role="model", parts=[types.Part(text=first)]))
    contents.append(types.Content(role="user", parts=[types.Part(text="!/hello")]))
    second = client.models.generate_content(model="gemini-x", contents=contents, config=config).text
    assert "backend: other" in second
    contents.append(types.Content(role="model", parts=[types.Part(text=second)]))
    contents.append(types.Content(role="user", parts=[types.Part(text="!/model(echo-large)")]))
    contents.append(types.Content(role="model", parts=[types.Part(text="ok")]))
    contents.append(types.Content(role="user", parts=[types.Part(text="last turn")]))
    third = client.models.generate_content(model="gemini-x", contents=contents, config=config)
    assert third.text == "last turn" and third.model_version == "gemini-x"  # only the latest message's commands run
    apart = client.models.generate_content(model="gemini-x", contents="!/hello",
                                           config=types.GenerateContentConfig(system_instruction=tag())).text
    assert "backend: echo (default)" in apart


# ---- which header names the session -----------------------------------------------------------------

@pytest.mark.parametrize("header", ["x-session-id", "x-claude-code-session-id", "session-id", "thread-id"])
def test_session_headers(client, header: str):
    sid = "hdr-" + uuid.uuid4().hex[:8]
    first = chat(client, "openai", "!/model(echo-large)", headers={header: sid})
    assert first.headers["x-session-id"] == sid
    assert f"Session {sid}, named by your {header} header" in reply_text("openai", first)
    later = chat(client, "openai", "something else entirely", headers={header: sid})
    assert reply_model("openai", later) == "echo-large"


def test_x_session_id_wins_over_agent_headers(client):
    chat(client, "openai", "!/model(echo-large)", headers={"session-id": "codex-1"})
    mixed = chat(client, "openai", "hi", headers={"x-session-id": "mine-1", "session-id": "codex-1",
                                                  "thread-id": "codex-1"})
    assert mixed.headers["x-session-id"] == "mine-1" and reply_model("openai", mixed) == "gpt-4"


def test_bad_agent_header_is_a_400_naming_it(client):
    bad = chat(client, "openai", "hi", headers={"thread-id": "no spaces allowed"})
    assert bad.status_code == 400 and "thread-id" in bad.json["error"]["message"]


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini"])
def test_conversation_without_commands_stores_nothing(make_app, frontend: str):
    import falcon.testing

    app = make_app(disable_auth=True)
    client = falcon.testing.TestClient(app)
    first = chat(client, frontend, [("user", "q1")])
    again = chat(client, frontend, [("user", "q1"), ("assistant", "q1"), ("user", "q2")])
    assert first.headers["x-session-id"] == again.headers["x-session-id"]
    assert first.headers["x-session-id"].startswith("conv-")
    assert len(app.state_ref.state.sessions) == 0  # type: ignore[arg-type]
    elsewhere = chat(client, frontend, [("user", "q1 but another chat")])
    assert elsewhere.headers["x-session-id"] != first.headers["x-session-id"]
