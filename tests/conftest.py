"""Shared test set-up: make the test helpers package ``fakes`` importable.

``tests/`` itself must not go on ``sys.path``: its folders mirror the packages (``tests/dsl``,
``tests/router``) and would shadow them as namespace packages. So ``fakes`` is registered alone.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from hypothesis import settings as _hypothesis_settings

# Property tests check what a function returns, not how fast: no per-example deadline (hypothesis'
# default of 200 ms fails examples at random when the machine is busy).
_hypothesis_settings.register_profile("suite", deadline=None)
_hypothesis_settings.load_profile("suite")

FAKES = Path(__file__).resolve().parent / "fakes"
if "fakes" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("fakes", FAKES / "__init__.py", submodule_search_locations=[str(FAKES)])
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["fakes"] = _module
    _spec.loader.exec_module(_module)


# ---- a suite-wide scan: no credential the tests use may appear in any log line -----------------

import logging  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

# The shapes of every key and token the tests hand out (client, admin, backend keys, OAuth tokens).
TEST_CREDENTIAL = re.compile(r"sk-[A-Za-z0-9_\-]{6,}|sk-ant-[A-Za-z0-9_\-]{4,}|ya29\.[A-Za-z0-9_\-.]{4,}|fake-gemini-key")
PRODUCT_LOGGERS = ("llm_proxy", "router", "backends", "dsl", "uvicorn", "aiohttp")


class _LeakCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not our concern here
            return
        extra = " ".join(str(v) for k, v in record.__dict__.items() if k in ("session", "caller", "detail", "reason"))
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        for found in TEST_CREDENTIAL.findall(text + " " + extra):
            self.leaks.append(f"{record.name}: {found!r} in {text[:200]!r}")


_collector = _LeakCollector()


@pytest.fixture(scope="session", autouse=True)
def _scan_all_logs_for_credentials() -> object:
    """Every log record of the product's loggers during the whole run, scanned for test keys."""
    root = logging.getLogger()
    root.addHandler(_collector)
    saved = {name: logging.getLogger(name).level for name in PRODUCT_LOGGERS}
    for name in PRODUCT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield _collector
    root.removeHandler(_collector)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _collector.leaks:
        print("\nCREDENTIALS FOUND IN LOG OUTPUT:\n  " + "\n  ".join(sorted(set(_collector.leaks))[:20]))
        session.exitstatus = 1
