"""The connector tests' set-up lives in ``fakes/connectors.py`` (the dispatch tests in
tests/router/pipeline use it too): its fixtures are made visible here, and test modules import
its helpers from here or from there."""

from __future__ import annotations

from fakes.connectors import (  # noqa: F401  (fixtures and helpers, re-exported)
    ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, BuildFn, backend_settings, build, chat, collect, fake, fake_provider, fold,
    make_config, write_creds,
)
