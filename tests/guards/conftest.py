"""Registers ``guards_support`` (shared helpers of the guard tests) the way the top conftest
registers ``fakes``: tests/ must not go on sys.path (its folders would shadow the packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent / "guards_support.py"
if "guards_support" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("guards_support", _PATH)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["guards_support"] = _module
    _spec.loader.exec_module(_module)
