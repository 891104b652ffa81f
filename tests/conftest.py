"""Shared test set-up: make the test helpers package ``fakes`` importable.

``tests/`` itself must not go on ``sys.path``: its folders mirror the packages (``tests/dsl``,
``tests/router``) and would shadow them as namespace packages. So ``fakes`` is registered alone.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent / "fakes"
if "fakes" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("fakes", FAKES / "__init__.py", submodule_search_locations=[str(FAKES)])
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["fakes"] = _module
    _spec.loader.exec_module(_module)
