"""Shared state for several instances: the Redis-backed stores behind the interfaces the
in-process ones implement (sessions, rate limits, response cache, circuit and key-cooldown
events, reload broadcast).

``state.store: memory`` (the default) uses none of this. With ``redis`` every store is given
one :class:`~.client.RedisState`: the connection, the per-call timeout, the ``on_unavailable``
policy and the up/down bookkeeping that ``/health`` and ``/metrics`` report.
"""

from .client import RedisState, StateStoreUnavailable

__all__ = ["RedisState", "StateStoreUnavailable"]
