"""Pytest fixture for :class:`fakes.provider.FakeProvider`.

Use it from a conftest with ``pytest_plugins = ["fakes.fixtures"]`` or import it into a test
module or conftest (``from fakes.fixtures import fake_provider``); pytest finds fixtures by name
in the module namespace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from fakes.provider import FakeProvider


@pytest_asyncio.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    """A fresh fake on a random 127.0.0.1 port per test, so scripts and records never leak."""
    async with FakeProvider() as fake:
        yield fake
