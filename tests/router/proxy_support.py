"""Helpers for the router tests: configs written to disk, a live uvicorn server, requests in each
client wire format and readers for the replies (JSON or SSE).

``chat(client, "anthropic", "hi !/hello", stream=True)`` sends a chat in that front end's own shape
through a Falcon test client and returns the response; ``reply_text`` pulls the assistant text out
of it whatever the format. Keeping all wire shapes here lets every test be table-driven over
``FRONTENDS``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import falcon.testing
import yaml

from router.app import ProxyApp
from router.config import AppConfig, load_config
from router.http.connections import protocol_for

API_KEY = "sk-test-client-key-0123456789"

# Two echo backends: ``echo`` (default) and ``other``; both report the model they were asked for.
BASE_CONFIG: dict[str, Any] = {
    "backends": {"echo": {"type": "echo", "models": ["echo", "echo-large"]}, "other": {"type": "echo"}},
    "default_backend": "echo",
}


def write_config(directory: Path, **overrides: Any) -> AppConfig:
    """``BASE_CONFIG`` updated with ``overrides`` (top-level keys), written and loaded like the CLI does."""
    data = {**BASE_CONFIG, **overrides}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(str(path), env={})


class LoopbackClient(falcon.testing.TestClient):
    """A test client whose requests say ``Host: localhost`` (Falcon's default is falconframework.org),
    as a local program's would: local mode (no client keys) refuses other names."""

    def simulate_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("host", "localhost")
        return super().simulate_request(*args, **kwargs)


class LiveServer:
    """uvicorn serving an app on a socket bound to 127.0.0.1:<free port>, in a daemon thread."""

    def __init__(self, app: ProxyApp) -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Served the way ``llm-interactive-proxy`` serves it (router/server.py).
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", ws="none",
                                http=protocol_for(app.state_ref))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self.server.serve(sockets=[self.sock])
        from uvicorn._compat import asyncio_run  # how Server.run runs it (uvloop when installed)

        asyncio_run(serve(), loop_factory=self.server.config.get_loop_factory())

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop serving (for a test that runs its own coroutine beside the proxy's)."""
        assert self._loop is not None
        return self._loop

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


FRONTENDS = ("openai", "anthropic", "gemini", "responses")
Turn = tuple[str, str]  # (role, text) with roles "user" / "assistant"


def chat_path(frontend: str, model: str = "gpt-4", stream: bool = False, version: str = "v2") -> str:
    if frontend == "openai":
        return f"/{version}/chat/completions"
    if frontend == "anthropic":
        return f"/{version}/messages"
    if frontend == "responses":
        return f"/{version}/responses"
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/{'v1beta' if version == 'v1' else version}/models/{model}:{action}"


def chat_body(frontend: str, turns: Iterable[Turn] | str, model: str = "gpt-4", stream: bool = False,
              **extra: Any) -> dict[str, Any]:
    if isinstance(turns, str):
        turns = [("user", turns)]
    turns = list(turns)
    if frontend == "openai":
        body: dict[str, Any] = {"model": model, "messages": [{"role": r, "content": t} for r, t in turns]}
    elif frontend == "anthropic":
        body = {"model": model, "max_tokens": 256, "messages": [{"role": r, "content": t} for r, t in turns]}
    elif frontend == "responses":
        body = {"model": model, "input": [{"role": r, "content": t} for r, t in turns]}
    else:
        body = {"contents": [{"role": "model" if r == "assistant" else r, "parts": [{"text": t}]} for r, t in turns]}
    if stream and frontend != "gemini":
        body["stream"] = True
    body.update(extra)
    return body


def chat(client: Any, frontend: str, turns: Iterable[Turn] | str, *, session: str | None = None,
         stream: bool = False, model: str = "gpt-4", version: str = "v2", headers: dict[str, str] | None = None,
         **extra: Any) -> Any:
    """POST one chat through a ``falcon.testing.TestClient``; returns the ``Result``."""
    all_headers = dict(headers or {})
    if session is not None:
        all_headers["x-session-id"] = session
    path = chat_path(frontend, model, stream, version)
    path, _, query = path.partition("?")
    return client.simulate_post(path, query_string=query or None, headers=all_headers,
                                json=chat_body(frontend, turns, model, stream, **extra))


def sse_data(text: str) -> list[Any]:
    """The JSON ``data:`` payloads of an SSE body (``[DONE]`` kept as the string)."""
    out: list[Any] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            payload = "\n".join(data)
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def is_sse(result: Any) -> bool:
    return (result.headers.get("content-type") or "").startswith("text/event-stream")


def reply_text(frontend: str, result: Any) -> str:
    """The assistant text of a reply in ``frontend``'s format, JSON or streamed."""
    assert result.status_code == 200, result.text
    if is_sse(result):
        return stream_text(frontend, sse_data(result.text))
    body = result.json
    if frontend == "openai":
        return body["choices"][0]["message"]["content"] or ""
    if frontend == "anthropic":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    if frontend == "responses":
        return responses_text(body)
    return "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"])


def responses_text(response: dict[str, Any]) -> str:
    """The text of a Responses reply object (what the SDK's ``output_text`` gives)."""
    return "".join(c["text"] for item in response["output"] if item["type"] == "message"
                   for c in item["content"] if c["type"] == "output_text")


def stream_text(frontend: str, events: list[Any]) -> str:
    if frontend == "openai":
        assert events[-1] == "[DONE]", events[-1]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"])
    if frontend == "responses":
        assert events[0]["type"] == "response.created", events[0]
        assert events[-1]["type"] in ("response.completed", "response.incomplete"), events[-1]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        done = "".join(c["text"] for e in events if e["type"] == "response.output_item.done"
                       and e["item"]["type"] == "message" for c in e["item"]["content"])
        assert text == done == responses_text(events[-1]["response"]), (text, done)
        return text
    if frontend == "anthropic":
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop", events
        return "".join(e["delta"]["text"] for e in events
                       if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta")
    return "".join(p.get("text", "") for e in events for c in e.get("candidates", [])
                   for p in c.get("content", {}).get("parts", []))


def reply_model(frontend: str, result: Any) -> str:
    """The model a (non-streamed) reply says answered: the echo backend reports the one it was asked for."""
    body = result.json
    return body["modelVersion"] if frontend == "gemini" else body["model"]


def error_message(frontend: str, body: Any) -> str:
    """The message of an error body, asserting it has ``frontend``'s error shape."""
    assert isinstance(body, dict), body
    if frontend == "anthropic":
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    elif frontend == "gemini":
        assert set(body["error"]) >= {"code", "message", "status"}, body
        assert isinstance(body["error"]["code"], int) and body["error"]["status"].isupper(), body
    else:
        assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message, body
    return message
