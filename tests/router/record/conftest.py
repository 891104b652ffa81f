"""Tests of the record package (usage store, recorder rows, metrics, access log, redaction of what
is recorded): the app with its usage store and metrics running.

Helpers live in ``tests/router/ops_support.py`` (shared with the http and reload/shutdown tests)
and reuse ``proxy_support``; both are on ``sys.path`` through tests/router/conftest.py. This folder
goes on it too, for support modules kept next to these tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fakes.fixtures import fake_provider  # noqa: E402,F401  (fixture)
