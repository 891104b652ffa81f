"""What the live coding-agent tests share (``test_codex_cli.py``, ``test_agent_clis.py``): the proxy
on the fake provider's three formats, the agent run as a subprocess, and the environment that
keeps it off the internet."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakes.provider import FakeProvider
from proxy_support import write_config
from router.app import ProxyApp, create_app

# Every address but 127.0.0.1 goes to a proxy that is not there: an agent that tried to reach its
# vendor (telemetry, updates, a model list) fails instead of leaving the machine.
NO_INTERNET = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
# Backend names: ``oai`` (OpenAI chat), ``ant`` (Anthropic), ``gem`` (Gemini), and their families.
FAMILY = {"oai": "openai", "ant": "anthropic", "gem": "gemini"}


def agent_proxy_app(tmp_path: Path, fake: FakeProvider, backend: str, key: str) -> ProxyApp:
    """The proxy with one backend per format on ``fake``, ``backend`` the default, ``key`` the client key."""
    backends = {
        "oai": {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": fake.key("openai")},
        "ant": {"type": "anthropic", "base_url": fake.url, "api_key": fake.key("anthropic")},
        "gem": {"type": "gemini", "gemini_api_base_url": fake.url, "api_key": fake.key("gemini")},
    }
    config = write_config(tmp_path / "proxy", backends=backends, default_backend=backend, auth={"api_keys": [key]})
    return create_app(config)


async def run_agent(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> tuple[int, str]:
    """Run an agent headless: its exit code and its output (stdout and stderr together)."""
    proc = await asyncio.create_subprocess_exec(*argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")
