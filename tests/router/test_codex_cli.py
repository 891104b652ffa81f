"""Codex CLI (``codex exec``, headless) through the proxy to an OpenAI-chat, an Anthropic and a
Gemini backend on the local fake provider: a plain turn, a shell-tool turn (``exec_command``)
whose result goes back to the provider in its own format, and ``apply_patch`` (a freeform tool)
through a non-OpenAI backend.

Codex runs with a temporary ``CODEX_HOME`` and ``HOME``, its provider pointed at the proxy on
127.0.0.1, and every other address behind a proxy that does not exist (``HTTPS_PROXY``), so it
cannot reach the internet. Skipped, saying why, only when the ``codex`` binary is not installed
(``npm install -g @openai/codex``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from fakes.behaviours import reply
from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from agent_support import FAMILY, NO_INTERNET, agent_proxy_app, run_agent
from fakes.provider import FakeProvider
from test_stream_limits import served

CODEX = shutil.which("codex")
pytestmark = pytest.mark.skipif(CODEX is None, reason="codex CLI not installed (npm install -g @openai/codex)")

KEY = "sk-codex-client-key-0123456789"
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi from apply_patch\n*** End Patch\n"


def codex_home(tmp_path: Path, proxy_url: str) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(f'''
model = "gpt-5.5"
model_provider = "proxy"

[model_providers.proxy]
name = "llm-interactive-proxy"
base_url = "{proxy_url}/v2"
env_key = "PROXY_API_KEY"
wire_api = "responses"
''')
    return home


async def run_codex(tmp_path: Path, proxy_url: str, prompt: str) -> tuple[int, str, Path]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    home = codex_home(tmp_path, proxy_url) if not (tmp_path / "codex-home").exists() else tmp_path / "codex-home"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home),
           "PROXY_API_KEY": KEY, **NO_INTERNET, "RUST_LOG": "error"}
    assert CODEX is not None
    code, out = await run_agent([CODEX, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                                 "-C", str(work), prompt], env, work)
    return code, out, work


def proxy_url_app(tmp_path: Path, fake: FakeProvider, backend: str) -> Any:
    return agent_proxy_app(tmp_path, fake, backend, KEY)


def generations(fake: FakeProvider) -> list[Any]:
    return [c for c in fake.generations if c.body]


@pytest.mark.parametrize("backend", ["oai", "ant", "gem"])
async def test_codex_plain_turn(tmp_path: Path, fake_provider: FakeProvider, backend: str) -> None:
    fake_provider.on_model("gpt-5.5", reply("Hello from the fake provider."))
    async with served(proxy_url_app(tmp_path, fake_provider, backend)) as client:
        code, out, _work = await run_codex(tmp_path, str(client.base_url).rstrip("/"), "Say hello")
    assert code == 0, out
    assert "Hello from the fake provider." in out
    sent = generations(fake_provider)[-1]
    assert sent.family == FAMILY[backend]
    assert "Say hello" in json.dumps(sent.body) and "You are Codex" in json.dumps(sent.body)


@pytest.mark.parametrize("backend", ["oai", "ant", "gem"])
async def test_codex_shell_tool_turn(tmp_path: Path, fake_provider: FakeProvider, backend: str) -> None:
    fake_provider.enqueue(reply(tool_calls=[{"id": "call_sh1", "name": "exec_command",
                                             "arguments": {"cmd": "echo hi-from-codex-shell"}}]), model="gpt-5.5")
    fake_provider.on_model("gpt-5.5", reply("The command printed it."))
    async with served(proxy_url_app(tmp_path, fake_provider, backend)) as client:
        code, out, _work = await run_codex(tmp_path, str(client.base_url).rstrip("/"), "Run echo")
    assert code == 0, out
    assert "The command printed it." in out
    follow_up = generations(fake_provider)[1].body
    if backend == "oai":
        result = next(m for m in follow_up["messages"] if m["role"] == "tool")
        assert result["tool_call_id"] == "call_sh1" and "hi-from-codex-shell" in result["content"]
    elif backend == "ant":
        blocks = [b for m in follow_up["messages"] for b in m["content"] if isinstance(m["content"], list)]
        result = next(b for b in blocks if b["type"] == "tool_result")
        assert result["tool_use_id"] == "call_sh1" and "hi-from-codex-shell" in json.dumps(result["content"])
    else:
        parts = [p for c in follow_up["contents"] for p in c["parts"]]
        result = next(p["functionResponse"] for p in parts if "functionResponse" in p)
        assert result["name"] == "exec_command" and "hi-from-codex-shell" in json.dumps(result["response"])


@pytest.mark.parametrize("backend", ["ant", "gem"])
async def test_codex_apply_patch_through_a_non_openai_backend(tmp_path: Path, fake_provider: FakeProvider,
                                                               backend: str) -> None:
    fake_provider.enqueue(reply(tool_calls=[{"id": "call_p1", "name": "apply_patch", "arguments": {"input": PATCH}}]),
                          model="gpt-5.5")
    fake_provider.on_model("gpt-5.5", reply("Patched."))
    async with served(proxy_url_app(tmp_path, fake_provider, backend)) as client:
        code, out, work = await run_codex(tmp_path, str(client.base_url).rstrip("/"), "Create hello.txt")
    assert code == 0, out
    assert (work / "hello.txt").read_text() == "hi from apply_patch\n"
    first = json.dumps(generations(fake_provider)[0].body)
    assert "apply_patch" in first and "begin_patch" in first, "the grammar rides in the description"
    follow_up = generations(fake_provider)[1].body
    if backend == "ant":
        blocks = [b for m in follow_up["messages"] for b in m["content"] if isinstance(m["content"], list)]
        result = next(b for b in blocks if b["type"] == "tool_result")
        assert result["tool_use_id"] == "call_p1" and "hello.txt" in json.dumps(result["content"])
    else:  # Gemini matches results to calls by name
        parts = [p for c in follow_up["contents"] for p in c["parts"]]
        result = next(p["functionResponse"] for p in parts if "functionResponse" in p)
        assert result["name"] == "apply_patch" and "hello.txt" in json.dumps(result["response"])
