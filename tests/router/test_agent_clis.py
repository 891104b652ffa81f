"""Claude Code (``claude -p``) and Gemini CLI (``gemini -p``), headless, through the proxy to the
local fake provider: a plain turn, and a tool turn (the fake asks for a file to be read, the agent
reads it and sends the result back, the fake answers with text), each on the agent's own format's
backend and on an OpenAI-chat backend (translated both ways).

Each agent runs with a temporary ``HOME``, its base URL pointed at the proxy on 127.0.0.1, its
telemetry, update checks and other non-essential traffic switched off, and every other address
behind a proxy that does not exist (``HTTPS_PROXY``), so it cannot reach the internet. Skipped,
saying why, only when the agent's binary is not installed (``npm install -g
@anthropic-ai/claude-code @google/gemini-cli``), as ``test_codex_cli.py`` does for Codex.
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

CLAUDE = shutil.which("claude")
GEMINI = shutil.which("gemini")
KEY = "sk-agent-client-key-0123456789"
SECRET = "contents-only-the-agent-can-read-7f3a"  # in the file the tool turn reads
CLAUDE_MODEL = "claude-sonnet-4-5"
GEMINI_MODEL = "gemini-2.5-pro"


def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "notes.txt").write_text(f"The secret is {SECRET}.\n")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return work


def base_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home"), "TERM": "dumb",
            **NO_INTERNET}


async def run_claude(tmp_path: Path, proxy_url: str, prompt: str) -> tuple[int, str]:
    work = workdir(tmp_path)
    env = {**base_env(tmp_path), "ANTHROPIC_BASE_URL": proxy_url, "ANTHROPIC_API_KEY": KEY,
           "IS_SANDBOX": "1",  # --dangerously-skip-permissions as root (containers)
           "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
           "DISABLE_BUG_COMMAND": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    assert CLAUDE is not None
    return await run_agent([CLAUDE, "-p", prompt, "--model", CLAUDE_MODEL, "--output-format", "text",
                            "--dangerously-skip-permissions"], env, work)


async def run_gemini(tmp_path: Path, proxy_url: str, prompt: str) -> tuple[int, str]:
    work = workdir(tmp_path)
    settings = tmp_path / "home" / ".gemini"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True}}))
    env = {**base_env(tmp_path), "GOOGLE_GEMINI_BASE_URL": proxy_url, "GEMINI_API_KEY": KEY,
           "GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true"}
    assert GEMINI is not None
    return await run_agent([GEMINI, "-p", prompt, "-m", GEMINI_MODEL, "--yolo", "--output-format", "text"], env, work)


def tool_result_text(backend: str, body: dict[str, Any]) -> str:
    """The tool results in a request the proxy sent to the fake, in the backend's own format."""
    if backend == "oai":
        return json.dumps([m for m in body["messages"] if m["role"] == "tool"])
    if backend == "ant":
        return json.dumps([b for m in body["messages"] if isinstance(m["content"], list)
                           for b in m["content"] if b.get("type") == "tool_result"])
    return json.dumps([p["functionResponse"] for c in body["contents"] for p in c["parts"] if "functionResponse" in p])


# (agent, its model, the file-reading tool it offers: name and path argument, the call id the fake gives)
AGENTS = {
    "claude": (run_claude, CLAUDE_MODEL, "Read", "file_path", "toolu_read1"),
    "gemini": (run_gemini, GEMINI_MODEL, "read_file", "file_path", "call_read1"),
}
needs_claude = pytest.mark.skipif(CLAUDE is None, reason="Claude Code not installed "
                                                         "(npm install -g @anthropic-ai/claude-code)")
needs_gemini = pytest.mark.skipif(GEMINI is None, reason="Gemini CLI not installed (npm install -g @google/gemini-cli)")
# Each agent on its own format's backend and on an OpenAI-chat one.
AGENT_BACKENDS = [pytest.param("claude", "ant", marks=needs_claude), pytest.param("claude", "oai", marks=needs_claude),
                  pytest.param("gemini", "gem", marks=needs_gemini), pytest.param("gemini", "oai", marks=needs_gemini)]


@pytest.mark.parametrize(("agent", "backend"), AGENT_BACKENDS)
async def test_plain_turn(tmp_path: Path, fake_provider: FakeProvider, agent: str, backend: str) -> None:
    run, model, *_ = AGENTS[agent]
    fake_provider.on_model(model, reply("Hello from the fake provider."))
    async with served(agent_proxy_app(tmp_path, fake_provider, backend, KEY)) as client:
        code, out = await run(tmp_path, str(client.base_url).rstrip("/"), "Say hello")
    assert code == 0, out
    assert "Hello from the fake provider." in out
    sent = [c for c in fake_provider.generations if c.body and "Say hello" in json.dumps(c.body)]
    assert sent and sent[-1].family == FAMILY[backend]


@pytest.mark.parametrize(("agent", "backend"), AGENT_BACKENDS)
async def test_tool_turn(tmp_path: Path, fake_provider: FakeProvider, agent: str, backend: str) -> None:
    run, model, tool, argument, call_id = AGENTS[agent]
    target = str(tmp_path / "work" / "notes.txt")
    fake_provider.enqueue(reply(tool_calls=[{"id": call_id, "name": tool, "arguments": {argument: target}}]), model=model)
    fake_provider.on_model(model, reply("I read the notes."))
    async with served(agent_proxy_app(tmp_path, fake_provider, backend, KEY)) as client:
        code, out = await run(tmp_path, str(client.base_url).rstrip("/"), "Read notes.txt")
    assert code == 0, out
    assert "I read the notes." in out
    follow_ups = [c.body for c in fake_provider.generations if c.body and SECRET in tool_result_text(backend, c.body)]
    assert follow_ups, "the file's contents never reached the provider as a tool result"
    results = json.loads(tool_result_text(backend, follow_ups[0]))
    if backend == "gem":  # Gemini matches results to calls by name
        assert [r["name"] for r in results] == [tool]
    else:  # the id the provider gave the call, carried through the agent's format and back
        assert [r["tool_use_id" if backend == "ant" else "tool_call_id"] for r in results] == [call_id]
