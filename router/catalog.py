"""The model catalogue: facts about models that the rules may read (today: ``context_window``).

Shipped as data (``router/catalog.json``) for the common models; ``catalog:`` in config.yaml adds
or overrides entries. Prices stay under ``prices``. A name the catalogue does not know exactly is
looked up by its longest known prefix followed by ``-``, ``@`` or ``:`` (``gpt-4o-2024-08-06`` is
``gpt-4o``, ``claude-sonnet-4-5-20250929`` is ``claude-sonnet-4-5``); an unknown model has no facts,
so a rule reading ``context_window`` does not match it (like an absent header).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Mapping

_SEPARATORS = ("-", "@", ":")


@cache
def shipped() -> Mapping[str, Mapping[str, int]]:
    """The catalogue shipped with the proxy, read once."""
    data = json.loads(resources.files("router").joinpath("catalog.json").read_text("utf-8"))
    return {model: dict(facts) for model, facts in data["models"].items()}


class Catalog:
    """Shipped entries overlaid with the config's; lookups are memoised per model name (bounded)."""

    MEMO_SIZE = 4096

    def __init__(self, overrides: Mapping[str, Mapping[str, int]] | None = None) -> None:
        merged = {model: dict(facts) for model, facts in shipped().items()}
        for model, facts in (overrides or {}).items():
            merged.setdefault(model, {}).update(facts)
        self._entries = merged
        # Longest first, so a prefix lookup finds gpt-4o-mini before gpt-4o.
        self._by_length = sorted(merged, key=len, reverse=True)
        self._memo: dict[str, int | None] = {}

    def context_window(self, model: str) -> int | None:
        """Tokens the model accepts, or None when the catalogue does not know the model."""
        memo = self._memo
        if model in memo:
            return memo[model]
        entry = self._entry(model.removeprefix("models/"))
        value = entry.get("context_window") if entry is not None else None
        if len(memo) >= self.MEMO_SIZE:  # model names come from clients: keep the memo bounded
            memo.clear()
        memo[model] = value
        return value

    def _entry(self, model: str) -> Mapping[str, int] | None:
        entry = self._entries.get(model)
        if entry is not None:
            return entry
        for known in self._by_length:
            if model.startswith(known) and model[len(known):len(known) + 1] in _SEPARATORS:
                return self._entries[known]
        return None
