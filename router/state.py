"""The state a request runs on, in one home: what it is, where the current one is kept, how it is built.

:class:`RuntimeState` is everything built from config and rules; it is built whole by
:func:`build_state` and swapped whole on reload (requests in flight keep the one they started
with). :class:`StateRef` holds the current one and the services that outlive a reload (metrics,
the usage recorder, start-up and shutdown hooks). ``reload.py`` and ``app.py`` both import from
here, so neither imports the other's module to build a state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping

from backends.base import Backend
from backends.cooldowns import CooldownStore, InMemoryCooldownStore
from backends.factory import build_backends
from dsl.evaluate import RuleSet
from dsl.loader import LoadedRules, load_rules_dir

from .catalog import Catalog
from .config import AppConfig, connector_settings
from .guards import GuardSettings
from .http.auth import Authenticator, authenticator_for
from .pipeline.dispatch import Dispatcher
from .responses_store import ResponseStore
from .sessions import SessionRepository, make_repository

if TYPE_CHECKING:  # pragma: no cover
    from .record.metrics import Metrics
    from .state_store.shared import SharedStores
    from .record.recorder import Recorder


@dataclass(slots=True)
class RuntimeState:
    config: AppConfig
    rules: LoadedRules
    ruleset: RuleSet
    backends: dict[str, Backend]
    sessions: SessionRepository
    dispatcher: Dispatcher
    auth: Authenticator
    responses: ResponseStore  # Responses replies kept for previous_response_id
    commands_enabled: bool = True
    # Every connector's key cooldowns, per (backend, model, key): carried over by a reload.
    cooldowns: CooldownStore = field(default_factory=InMemoryCooldownStore)
    shared: SharedStores | None = None  # the Redis-backed stores (state.store: redis), kept across reloads
    # The guards' settings per rules' ``post`` for this config (see GuardSettings): built with the state.
    guard_settings: GuardSettings = field(init=False)
    # Facts about models (the rules' ``context_window``): shipped data under the config's ``catalog``.
    catalog: Catalog = field(init=False)

    # Paths that need no client key (``metrics.auth`` / ``health.auth``: none), besides / and /health.
    keyless_paths: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.guard_settings = GuardSettings(self.config)
        self.keyless_paths = frozenset(path for path, level in (("/metrics", self.config.metrics_auth),
                                                                 ("/health/backends", self.config.health_auth))
                                       if level == "none")
        self.catalog = Catalog(self.config.catalog)

    @property
    def backend_names(self) -> tuple[str, ...]:
        return tuple(self.backends)


class StateRef:
    """The current :class:`RuntimeState` (a reload swaps it in one assignment) and the services
    that outlive reloads: metrics, the usage store and its recorder."""

    def __init__(self, state: RuntimeState, recorder: Recorder) -> None:
        self.state = state
        self.generation = 0
        self.recorder = recorder
        self.metrics: Metrics = recorder.metrics
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []


def build_state(config: AppConfig, *, rules: LoadedRules | None = None, backends: Mapping[str, Backend] | None = None,
                disable_auth: bool = False, disable_commands: bool = False, loopback: bool = False,
                previous: RuntimeState | None = None, shared: SharedStores | None = None) -> RuntimeState:
    """Everything a request needs. Raises :class:`dsl.RulesError` when the rules do not compile,
    or when the config has no client keys and ``loopback`` (the server listens on loopback only)
    is False: auth is decided from the config on every build, so a reload turns it on and off.

    With ``previous`` (a reload), sessions and rate-limit counters carry over, and so do the
    connectors of backends whose configuration did not change (their pools stay warm). With
    ``shared`` (``state.store: redis``), sessions and rate limits live in Redis; a reload keeps the
    shared stores it started with (``state:`` changes apply at the next start).
    """
    auth = authenticator_for(config, disable_auth=disable_auth, loopback=loopback)
    if rules is None:
        rules = load_rules_dir(config.routes_dir, known_backends=config.backends.keys())
        rules.raise_for_errors()
    cooldowns: CooldownStore = previous.cooldowns if previous is not None else InMemoryCooldownStore()
    if backends is not None:
        built = dict(backends)
        for backend in built.values():
            backend.share_cooldowns(cooldowns)
    elif previous is not None:
        built = _reuse_backends(config, previous)
    else:
        built = build_backends(connector_settings(config), cooldowns)
    same_sessions = previous is not None and previous.config.session == config.session
    if previous is not None:
        shared = previous.shared
    if same_sessions:
        sessions = previous.sessions  # type: ignore[union-attr]
    else:
        sessions = shared.sessions(config.session) if shared is not None else make_repository(config.session)
    # Stored Responses live where sessions do: in Redis with a shared state store (with the
    # session's TTL), else in this process (or files under session.path).
    if same_sessions:
        responses = previous.responses  # type: ignore[union-attr]
    else:
        responses = shared.responses(config.session) if shared is not None else ResponseStore.from_config(config.session)
    limiter = previous.dispatcher.limiter if previous is not None else (shared.limiter if shared else None)
    if shared is not None:
        shared.share_key_cooldowns(built)
    dispatcher = Dispatcher(built, deadline=config.proxy_timeout, limiter=limiter)
    dispatcher.health = previous.dispatcher.health if previous is not None else None
    if previous is not None:  # what fastest/least_busy observed outlives a reload
        dispatcher.stats = previous.dispatcher.stats
    dispatcher.prices = config.prices
    return RuntimeState(
        config=config, rules=rules, ruleset=RuleSet(rules.rules), backends=built,
        sessions=sessions, dispatcher=dispatcher,
        auth=auth, responses=responses,
        commands_enabled=config.interactive_commands and not disable_commands,
        cooldowns=cooldowns, shared=shared,
    )


def _reuse_backends(config: AppConfig, previous: RuntimeState) -> dict[str, Backend]:
    """The previous connectors of backends whose config (and the proxy timeout) did not change;
    fresh ones for the rest. In the config's order."""
    fresh = {}
    for name, cfg in config.backends.items():
        old_cfg = previous.config.backends.get(name)
        if old_cfg is not None and old_cfg == cfg and previous.config.proxy_timeout == config.proxy_timeout \
                and name in previous.backends:
            fresh[name] = previous.backends[name]
    missing = {n: c for n, c in config.backends.items() if n not in fresh}
    if missing:
        fresh.update(build_backends(connector_settings(dataclasses.replace(config, backends=missing)),
                                    previous.cooldowns))
    return {name: fresh[name] for name in config.backends}


__all__ = ["RuntimeState", "StateRef", "build_state"]
