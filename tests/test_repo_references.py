"""Paths to scripts named in docs and docstrings exist: a benchmark cited as the reason for a
design choice (``backends/http.py`` cites the outbound-client comparison) must be one a reader can run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = re.compile(r"\b((?:benchmarks|tests|schemas)/[A-Za-z0-9_/.\-]+\.(?:py|json))\b")


def sources() -> list[Path]:
    files = [ROOT / "README.md"]
    for package in ("router", "dsl", "backends", "benchmarks"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_every_named_script_exists() -> None:
    cited = {(path.relative_to(ROOT).as_posix(), ref)
             for path in sources() for ref in SCRIPT.findall(path.read_text(encoding="utf-8"))}
    assert cited, "the pattern finds nothing: the test would pass vacuously"
    missing = sorted((where, ref) for where, ref in cited if not (ROOT / ref).exists())
    assert missing == []
