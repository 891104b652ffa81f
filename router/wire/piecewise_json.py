"""A large request body parsed as JSON in bounded pieces, letting the event loop run between them.

Why: ``orjson.loads`` is one C call that holds the GIL. On a 9 MB body of ~200,000 small messages
it held it for 270-340 ms (measured under load), so ``GET /health`` on the same process waited that
long; a worker thread cannot help, because the loop needs the GIL the C call holds. Issue 12's
target is under 100 ms for any single body up to ``max_body_bytes``.

How: bodies of at least :data:`PIECEWISE_BYTES` are fed to ijson's C (yajl2) push parser in
:data:`PIECE_BYTES` pieces, with ``await asyncio.sleep(0)`` after each piece (a piece took at most
35 ms under load). Smaller bodies, i.e. nearly every request, keep the single orjson call: at
1 MiB it takes under 40 ms and is faster than any alternative.

The result equals ``orjson.loads``; where yajl and orjson differ, this module decides as orjson:
- depth: orjson refuses nesting beyond 1024; yajl has no limit (200,000 levels ran out of 2 GB),
  so the nesting is measured first, on the bytes, without building anything (:func:`too_deep`);
- lone UTF-16 surrogate escapes: orjson refuses them, yajl would turn them into ``?``;
- integers beyond 64 bits: yajl refuses them, orjson makes a float; such a body falls back to
  one ``orjson.loads`` (the only case that still holds the loop for the whole parse).
Malformed JSON is a 400 in the same shape as :func:`router.http.edge.parse_json`'s (same status,
kind and message prefix); the reason is yajl's, with the byte range of the piece that failed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import ijson
from ijson.utils import sendable_list

from . import fastjson

PIECEWISE_BYTES = 1024 * 1024
"""From this body size on, the body is parsed in pieces (below it, one ``orjson.loads``)."""

PIECE_BYTES = 64 * 1024
"""Bytes fed to the parser between two returns to the event loop."""

MAX_DEPTH = 1024
"""orjson's nesting limit, kept for the piecewise path."""

_KEEP = b'[]{}"'
_DROP_ALL_BUT_STRUCTURE = bytes(b for b in range(256) if b not in _KEEP)
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]")


class PiecewiseJSONError(ValueError):
    """The body is not JSON that orjson would accept; ``reason`` says why, for a 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _structure(unescaped: bytes) -> bytes:
    """The brackets of ``unescaped`` that are outside strings, in order.

    ``unescaped`` is the body with its ``\\\\`` and ``\\"`` escapes removed, so every remaining
    quote opens or closes a string. Done in :data:`PIECE_BYTES` windows with the loop running
    between them: one regular-expression pass over the 9 MB "many small messages" body held the
    loop for 210 ms."""
    skeleton = unescaped.translate(None, _DROP_ALL_BUT_STRUCTURE)  # one C pass, ~8 ms for 10 MB
    out: list[bytes] = []
    in_string = False
    for start in range(0, len(skeleton), PIECE_BYTES):
        parts = skeleton[start:start + PIECE_BYTES].split(b'"')
        out.append(b"".join(parts[1 if in_string else 0::2]))
        if len(parts) % 2 == 0:  # an odd number of quotes in this window
            in_string = not in_string
        await asyncio.sleep(0)
    return b"".join(out)


async def too_deep(unescaped: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the brackets outside strings nest deeper than ``limit`` (``unescaped``: see
    :func:`_structure`). Each round removes the innermost ``[]``/``{}`` pairs (one C call), so
    rounds = depth; the loop runs between rounds."""
    brackets = await _structure(unescaped)
    if len(brackets) <= 2 * limit:
        return False
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):  # unbalanced or mismatched: the parser will say so
            return False
        brackets = shorter
        if not brackets:
            return False
        await asyncio.sleep(0)
    return True


async def _has_lone_surrogate(unescaped: bytes) -> bool:
    """Whether a ``\\uD800``-``\\uDFFF`` escape lacks its partner. Searched in windows of
    :data:`PIECE_BYTES`, the loop running between windows (one search of 10 MB held the loop for
    186 ms). A window is searched 12 bytes (an escape pair) further than it counts matches, so the
    look-ahead always sees a pair whole; the look-behind sees before ``pos`` by itself."""
    if b"\\ud" not in unescaped and b"\\uD" not in unescaped:  # memchr-fast; nearly every body
        return False
    for start in range(0, len(unescaped), PIECE_BYTES):
        found = _LONE_SURROGATE.search(unescaped, start, start + PIECE_BYTES + 12)
        if found and found.start() < start + PIECE_BYTES:
            return True
        await asyncio.sleep(0)
    return False


async def loads(raw: bytes) -> Any:
    """``raw`` as JSON, exactly as ``orjson.loads(raw)`` would give it, without holding the event
    loop for more than one :data:`PIECE_BYTES` piece at a time (see module doc).

    Raises :class:`PiecewiseJSONError` for what orjson would refuse."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    await asyncio.sleep(0)
    if await _has_lone_surrogate(unescaped):
        raise PiecewiseJSONError("a \\u escape is a lone UTF-16 surrogate")
    if await too_deep(unescaped):
        raise PiecewiseJSONError(f"nested deeper than {MAX_DEPTH} levels (depth limit)")
    del unescaped
    values = sendable_list()
    parser = ijson.items_coro(values, "", use_float=True)
    view = memoryview(raw)
    start = 0
    try:
        for start in range(0, len(raw), PIECE_BYTES):
            parser.send(bytes(view[start:start + PIECE_BYTES]))
            await asyncio.sleep(0)
        parser.close()
    except ijson.JSONError as exc:
        reason = str(exc).split("\n", 1)[0]
        if "integer overflow" in reason:  # orjson makes a float of an integer beyond 64 bits
            return fastjson.loads(raw)
        raise PiecewiseJSONError(f"{reason} (in bytes {start}-{min(start + PIECE_BYTES, len(raw))})") from None
    except UnicodeDecodeError:
        raise PiecewiseJSONError(f"invalid UTF-8 (in bytes {start}-{min(start + PIECE_BYTES, len(raw))})") from None
    return values[0]
