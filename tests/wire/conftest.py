"""Make ``router`` and ``wire_support`` importable (pytest runs with --import-mode=importlib); pin time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (HERE.parents[1], HERE):  # the project root, and this folder for ``wire_support``
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAI needs ``created``; formats without one would otherwise make goldens time-dependent."""
    monkeypatch.setattr("router.wire.openai._now", lambda: 1_700_000_000)
    monkeypatch.setattr("router.wire.responses._now", lambda: 1_700_000_000)
    monkeypatch.setattr("router.wire.responses._new_response_id", lambda: "resp_new")
