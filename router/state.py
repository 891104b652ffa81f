"""Everything a request needs, built once from config and swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass, field

from backends.base import Backend
from dsl.evaluate import RuleSet
from dsl.loader import LoadedRules

from .http.auth import Authenticator
from .config import AppConfig
from .guards import GuardSettings
from .pipeline.dispatch import Dispatcher
from .sessions import SessionRepository


@dataclass(slots=True)
class RuntimeState:
    config: AppConfig
    rules: LoadedRules
    ruleset: RuleSet
    backends: dict[str, Backend]
    sessions: SessionRepository
    dispatcher: Dispatcher
    auth: Authenticator
    commands_enabled: bool = True
    # The guards' settings per rules' ``post`` for this config (see GuardSettings): built with the state.
    guard_settings: GuardSettings = field(init=False)

    def __post_init__(self) -> None:
        self.guard_settings = GuardSettings(self.config)

    @property
    def backend_names(self) -> tuple[str, ...]:
        return tuple(self.backends)
