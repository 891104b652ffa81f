"""Fixtures for the shared-state tests: a fake provider, the real Redis under a prefix per run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from redis_support import REDIS_URL, unique_prefix  # noqa: E402

from router.state_store.client import drop_prefix  # noqa: E402


@pytest.fixture
def prefix():
    value = unique_prefix()
    yield value
    drop_prefix(REDIS_URL, value)


@pytest.fixture
async def provider():
    from fakes.provider import FakeProvider

    async with FakeProvider() as fake:
        yield fake
