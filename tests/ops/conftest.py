"""Operations tests: the app with its usage store, metrics, health monitor and reloader running.

Helpers live in ``ops_support`` (next to this file) and reuse the router tests' ``proxy_support``
(config writing, wire shapes, the live uvicorn server).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "router"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from fakes.fixtures import fake_provider  # noqa: E402,F401  (fixture)
