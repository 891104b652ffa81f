"""Operator endpoints: usage stats and records, audit log, metrics, backend health, reload.

With ``auth.admin_keys`` configured, only those keys may use them (403 for other valid keys);
without, any client key may, but the usage endpoints then show a client key only its own
records (another caller's prompts' sizes, models and session ids are not its business). Query
parameters are checked and a bad one is a 400 naming it.

Each resource is given what it uses: the :class:`AdminGate` (who may call it, decided by the
current state's auth, which a reload swaps) and the one service it serves (the usage store, the
metrics, the health report, the reloader). The usage and metrics resources are also given the
recorder's ``drain``: finished requests are accounted in batches, and a reader drains first so
that it sees every request that has finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from typing import TYPE_CHECKING, Any, Callable, Iterator

import falcon
import falcon.asgi

from ..errors import ProxyError
from .edge import logged
from ..record.metrics import CONTENT_TYPE_LATEST
from ..state import StateRef
from ..record.usage import AUDIT_TYPES, GROUPS, UsageStore, UsageStoreUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from ..record.metrics import Metrics
    from ..reload import Reloader

MAX_PAGE = 1000


def _time(req: falcon.asgi.Request, name: str) -> float | None:
    """Unix seconds or ISO 8601 (``2026-11-25`` or ``2026-11-25T10:00:00Z``). ``nan`` and
    ``inf`` parse as floats but are no time (and NaN would end up in the stats JSON)."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise _not_a_time(name, raw)
        return seconds
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _not_a_time(name, raw) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _not_a_time(name: str, raw: str) -> ProxyError:
    return ProxyError(400, f"{name}: {raw!r} is not a time; use unix seconds or ISO 8601 like 2026-11-25T10:00:00Z",
                      "invalid_request", param=name)


def _int(req: falcon.asgi.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProxyError(400, f"{name}: {raw!r} is not an integer", "invalid_request", param=name) from None
    if not low <= value <= high:
        raise ProxyError(400, f"{name}: must be between {low} and {high}, got {value}", "invalid_request", param=name)
    return value


def _choice(req: falcon.asgi.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ProxyError(400, f"{name}: {raw!r} is not one of {', '.join(choices)}", "invalid_request", param=name)
    return raw


def _unknown_params(req: falcon.asgi.Request, allowed: set[str]) -> None:
    extra = sorted(set(req.params) - allowed - {"key"})
    if extra:
        raise ProxyError(400, f"{extra[0]}: unknown query parameter (allowed: {', '.join(sorted(allowed))})",
                         "invalid_request", param=extra[0])


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """A usage store whose database is down answers 503, saying so (not a 500)."""
    try:
        yield
    except UsageStoreUnavailable as exc:
        raise ProxyError(503, str(exc), "overloaded") from None


class AdminGate:
    """The admin-key check shared by every operator endpoint. It reads the auth of the current
    state on each call, so a reload that changes ``auth.admin_keys`` applies at once."""

    def __init__(self, ref: StateRef) -> None:
        self.ref = ref

    def authorize(self, req: falcon.asgi.Request, setting: str | None = None) -> None:
        """Admin keys only (when configured). ``setting``: the config field (``metrics_auth``,
        ``health_auth``) that may relax that to any client key (``client``) or none (``none``,
        the middleware asked for no key)."""
        state = self.ref.state
        if setting is not None and getattr(state.config, setting) != "admin":
            return
        if not state.auth.enabled or not state.config.admin_keys:
            return
        if getattr(req.context, "caller", None) not in state.auth.admin_ids:
            raise ProxyError(403, "this endpoint is for operators: use a key listed in auth.admin_keys", "permission")

    def own_records(self, req: falcon.asgi.Request) -> str | None:
        """Whose usage records and audit rows the caller may read (issue 12 "a session belongs to
        its caller": without admin keys, every client key passes :meth:`authorize`): None (everyone's) for an admin key or when
        auth is off (local mode, ``--disable-auth``); otherwise the caller's own key id."""
        auth = self.ref.state.auth
        caller = getattr(req.context, "caller", None)
        if not auth.enabled or caller in auth.admin_ids:
            return None
        return caller


@logged
class UsageStatsResource:
    def __init__(self, gate: AdminGate, store: UsageStore, drain: Callable[[], None]) -> None:
        self.gate, self.store, self.drain = gate, store, drain

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req)
        _unknown_params(req, {"since", "until", "group_by"})
        group_by = _choice(req, "group_by", tuple(GROUPS))
        self.drain()
        with _store_errors():
            resp.media = await self.store.stats(_time(req, "since"), _time(req, "until"), group_by,
                                                caller=self.gate.own_records(req))


@logged
class UsageRecentResource:
    def __init__(self, gate: AdminGate, store: UsageStore, drain: Callable[[], None]) -> None:
        self.gate, self.store, self.drain = gate, store, drain

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req)
        _unknown_params(req, {"limit", "cursor"})
        limit = _int(req, "limit", 50, 1, MAX_PAGE) or 50
        self.drain()
        with _store_errors():
            items, cursor = await self.store.recent(limit, _int(req, "cursor", None, 1, 2**62),
                                                    caller=self.gate.own_records(req))
        resp.media = {"data": items, "next_cursor": cursor}


@logged
class AuditLogsResource:
    def __init__(self, gate: AdminGate, store: UsageStore) -> None:
        self.gate, self.store = gate, store

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req)
        _unknown_params(req, {"since", "type", "limit", "cursor"})
        limit = _int(req, "limit", 50, 1, MAX_PAGE) or 50
        since, type_, cursor = _time(req, "since"), _choice(req, "type", AUDIT_TYPES), _int(req, "cursor", None, 1, 2**62)
        with _store_errors():
            items, cursor = await self.store.audit_logs(since, type_, limit, cursor, actor=self.gate.own_records(req))
        resp.media = {"data": items, "next_cursor": cursor}


@logged
class MetricsResource:
    """The Prometheus exposition. The config generation gauge is set by the reloader when it swaps
    the state (0, its initial value, until the first reload)."""

    def __init__(self, gate: AdminGate, metrics: Metrics, drain: Callable[[], None],
                 setting: str = "metrics_auth") -> None:
        self.gate, self.metrics, self.drain, self.setting = gate, metrics, drain, setting

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req, self.setting)
        self.drain()
        resp.data = self.metrics.render()
        resp.content_type = CONTENT_TYPE_LATEST


@logged
class BackendHealthResource:
    """Each backend's health, and the config ``generation`` this instance serves (raised by every
    successful reload: instances sharing a state store show whether a reload reached them)."""

    def __init__(self, gate: AdminGate, report: Callable[[], dict[str, Any]], setting: str = "health_auth",
                 generation: Callable[[], int] = lambda: 0) -> None:
        self.gate, self.report, self.setting, self.generation = gate, report, setting, generation

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req, self.setting)
        resp.media = {"generation": self.generation(), "backends": self.report()}


@logged
class ReloadResource:
    def __init__(self, gate: AdminGate, reloader: Reloader) -> None:
        self.gate, self.reloader = gate, reloader

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.gate.authorize(req)
        ok, message = await self.reloader.reload(actor=getattr(req.context, "caller", None) or req.remote_addr,
                                                 reason="api")
        if not ok:
            raise ProxyError(400, message, "invalid_request")
        resp.media = {"status": "reloaded", "generation": self.reloader.generation, "detail": message}


@logged
class ExplainResource:
    """``POST /v2/admin/explain``: which rules decide a described request, as ``explain --json``."""

    def __init__(self, gate: AdminGate, ref: StateRef) -> None:
        self.gate, self.ref = gate, ref

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        from ..explain import explain_body, explain_request
        from .edge import read_json

        self.gate.authorize(req)
        state = self.ref.state
        args = explain_body(await read_json(req, state.config.max_body_bytes))
        model = args.pop("model")
        resp.media = explain_request(state.config, state.ruleset, state.catalog, model, **args).as_json()
