"""How much one chat message may ask of the command language: the bounds in one place.

Commands arrive from clients, so every quantity a message controls has a ceiling here. Scanning and
parsing are linear in the message's length (``dsl/commands.py``); these bounds keep what a message can
store in its session small, so re-reading a session's routes on every request stays cheap.
"""

from __future__ import annotations

MAX_COMMANDS_PER_MESSAGE = 16
"""Commands in one message; more is refused as a whole (nothing is applied)."""

MAX_COMMAND_CHARS = 4096
"""Characters of one command, prefix and arguments included (a long path fits easily)."""

MAX_CHAIN_LINKS = 16
"""Targets (or groups) in one session route after an append or prepend."""

MAX_SESSION_ROUTES = 32
"""Models with a session route (``!/route-append``/``-prepend``) in one session."""
