"""One try of one target, as the record keeps it.

Dispatch makes these (``router.pipeline.dispatch``) and the recorder writes them; they live here,
below both, so the record package imports nothing of the pipeline (the pipeline imports the
record: an import the other way made a cycle whenever the recorder was imported first).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Attempt:
    """One try of one target, for usage records and logs (a key id, never the key)."""

    backend: str
    model: str
    status: str  # "ok" or an error kind
    latency_ms: float
    key_id: str | None = None
    error: str | None = None
    picked_by: str | None = None  # the group strategy that put this target first ("fastest", ...)
    on_error: str | None = None  # the ``on:`` error class whose fallback this attempt belongs to
