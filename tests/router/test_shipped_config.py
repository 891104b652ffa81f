"""The shipped ``config.yaml`` and ``routes.d/`` do what README says: the documented switches of the
config (tool-call repair, loop detection, and their environment variables) are not overridden by a
shipped rule."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from proxy_support import LoopbackClient, chat, reply_text
from router.app import create_app
from router.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def shipped(tmp_path: Path, edit: str | None = None) -> Path:
    """A copy of the shipped config.yaml and routes.d/ (``edit``: a (old, new) replacement in config.yaml)."""
    shutil.copytree(ROOT / "routes.d", tmp_path / "routes.d")
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    if edit is not None:
        old, new = edit
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "config.yaml"


def active_guards(config_path: Path, env: dict[str, str]) -> set[str]:
    """The guard names ``!/hello`` lists as active."""
    app = create_app(load_config(str(config_path), env=env), loopback=True)
    hello = reply_text("openai", chat(LoopbackClient(app), "openai", "!/hello"))
    line = next(line for line in hello.splitlines() if line.startswith("active guards:"))
    return set(re.findall(r"\b(tool_call_repair|tool_call_loop_detection|loop_detection)\b(?:\(|,|$)", line))


def test_shipped_setup_runs_every_guard(tmp_path: Path) -> None:
    assert active_guards(shipped(tmp_path), {}) == {"tool_call_repair", "loop_detection", "tool_call_loop_detection"}


def test_tool_call_repair_env_switch_holds_in_the_shipped_setup(tmp_path: Path) -> None:
    assert active_guards(shipped(tmp_path), {"TOOL_CALL_REPAIR_ENABLED": "false"}) == {
        "loop_detection", "tool_call_loop_detection"}


@pytest.mark.parametrize("edit,gone", [
    (("  tool_call_repair_enabled: true", "  tool_call_repair_enabled: false"), "tool_call_repair"),
    (("\nloop_detection:\n  enabled: true", "\nloop_detection:\n  enabled: false"), "loop_detection"),
    (("\ntool_call_loop_detection:\n  enabled: true", "\ntool_call_loop_detection:\n  enabled: false"),
     "tool_call_loop_detection"),
])
def test_config_switches_hold_in_the_shipped_setup(tmp_path: Path, edit: tuple[str, str], gone: str) -> None:
    active = active_guards(shipped(tmp_path, edit), {})
    assert gone not in active and len(active) == 2, active
