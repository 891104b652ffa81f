"""What Claude Code and Gemini CLI really send on their first turn (../shared/captures), replayed.

The captures are the agents' own first requests (prompts shortened). Each is sent as captured,
then with the user's text replaced by a tool-call request and by a command, so the turns an agent
makes when pointed at the proxy are exercised without the agents themselves.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from proxy_support import sse_data

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "captures"
if not CAPTURES.is_dir():  # the repository carries a copy for CI
    CAPTURES = Path(__file__).resolve().parent / "captures"


# The captures shorten long strings to "<text, N chars>"; in the user's message those parts are
# the agents' injected context, which is what they look like for real.
INJECTED = {"claude-code": "<system-reminder>\nAs you answer, use the context.\n</system-reminder>",
            "gemini-cli": "<session_context>\nThis is the Gemini CLI.\n</session_context>"}


def load(name: str) -> dict[str, Any]:
    capture = json.loads((CAPTURES / f"{name}.request.json").read_text())
    body = capture["body"]
    users = [m for m in body.get("messages", body.get("contents", [])) if m.get("role") == "user"]
    for message in users:
        parts = message.get("content") if isinstance(message.get("content"), list) else message.get("parts", [])
        for part in parts:
            if isinstance(part, dict) and str(part.get("text", "")).startswith("<text, "):
                part["text"] = INJECTED[name]
    return capture


def send(client: Any, capture: dict[str, Any], body: dict[str, Any]) -> Any:
    headers = {k: v for k, v in capture["headers"].items() if k not in ("content-length", "accept-encoding", "connection")}
    query = "&".join(f"{k}={v}" for k, v in capture["query"].items())
    return client.simulate_post(capture["path"], query_string=query or None, headers=headers, json=body)


def typed_part(message: dict[str, Any]) -> dict[str, Any]:
    """The part holding what the person typed: the last text part that is not injected context."""
    parts = message.get("content") if "content" in message and isinstance(message["content"], list) else message["parts"]
    return [p for p in parts if isinstance(p, dict) and "text" in p and not p["text"].lstrip().startswith("<")][-1]


def claude_last_user(body: dict[str, Any]) -> dict[str, Any]:
    return [m for m in body["messages"] if m["role"] == "user"][-1]


def anthropic_events(result: Any) -> list[dict[str, Any]]:
    assert result.status_code == 200, result.text
    return sse_data(result.text)


def test_claude_code_first_turn_streams_a_well_formed_reply(client: Any) -> None:
    capture = load("claude-code")
    result = send(client, capture, capture["body"])
    events = anthropic_events(result)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert any(e["type"] == "content_block_delta" for e in events)
    # Claude Code's own session header names the proxy session.
    assert result.headers["x-session-id"] == capture["headers"]["x-claude-code-session-id"]


def test_claude_code_tool_turn_and_tool_result(client: Any) -> None:
    capture = load("claude-code")
    body = copy.deepcopy(capture["body"])
    tool = body["tools"][0]["name"]
    typed_part(claude_last_user(body))["text"] = f'call {tool} {{"x": 1}}'
    events = anthropic_events(send(client, capture, body))
    starts = [e for e in events if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"]
    assert starts and starts[0]["content_block"]["name"] == tool
    stop = [e for e in events if e["type"] == "message_delta"][-1]
    assert stop["delta"]["stop_reason"] == "tool_use"
    call_id = starts[0]["content_block"]["id"]
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": tool, "input": {"x": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "done"}]},
    ]
    events = anthropic_events(send(client, capture, body))
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta")
    assert text == f"{tool} returned: done"


def test_claude_code_command_is_answered_by_the_proxy(client: Any) -> None:
    capture = load("claude-code")
    body = copy.deepcopy(capture["body"])
    typed_part(claude_last_user(body))["text"] = "!/hello"
    events = anthropic_events(send(client, capture, body))
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta")
    assert text.startswith("Welcome to llm-interactive-proxy.")


def test_claude_code_mid_conversation_system_message_is_accepted(client: Any) -> None:
    capture = load("claude-code")
    body = copy.deepcopy(capture["body"])
    body["messages"].insert(1, {"role": "system", "content": "Available agent types: general"})
    body["messages"].insert(2, {"role": "user", "content": "hello"})
    assert send(client, capture, body).status_code == 200


@pytest.mark.parametrize("typed", ["hello from gemini cli", "!/hello"])
def test_gemini_cli_first_turn_and_command(client: Any, typed: str) -> None:
    capture = load("gemini-cli")
    body = copy.deepcopy(capture["body"])
    user = [c for c in body["contents"] if c.get("role") == "user"][-1]
    typed_part(user)["text"] = typed
    result = send(client, capture, body)
    assert result.status_code == 200 and result.headers["content-type"].startswith("text/event-stream")
    frames = sse_data(result.text)
    text = "".join(p.get("text", "") for f in frames for c in f.get("candidates", [])
                   for p in c.get("content", {}).get("parts", []))
    assert text.startswith("Welcome to llm-interactive-proxy.") if typed.startswith("!/") else text == typed
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_cli_function_call_turn(client: Any) -> None:
    capture = load("gemini-cli")
    body = copy.deepcopy(capture["body"])
    name = body["tools"][0]["functionDeclarations"][0]["name"]
    user = [c for c in body["contents"] if c.get("role") == "user"][-1]
    typed_part(user)["text"] = f'call {name} {{"file_path": "README.md"}}'
    frames = sse_data(send(client, capture, body).text)
    calls = [p["functionCall"] for f in frames for c in f.get("candidates", []) for p in c.get("content", {}).get("parts", [])
             if "functionCall" in p]
    assert calls and calls[0]["name"] == name and calls[0]["args"] == {"file_path": "README.md"}
