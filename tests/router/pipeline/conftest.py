"""Pipeline stage tests that call real connectors against the fake provider (dispatch)."""

from __future__ import annotations

from fakes.connectors import build, fake, fake_provider  # noqa: F401  (fixtures)
