"""The piecewise parser of large bodies (``router/wire/piecewise_json.py``) gives exactly
``orjson.loads``'s value, refuses what orjson refuses with the same 400 shape, and yields to the
event loop between pieces."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from router.errors import ProxyError
from router.http.edge import parse_body, parse_json
from router.wire import piecewise_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=40)


def piecewise(raw: bytes) -> object:
    return asyncio.run(piecewise_json.loads(raw))


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.sampled_from([1, 7, 64 * 1024]))
def test_the_value_is_orjsons(value, ascii_only, piece) -> None:
    """Small pieces (1 and 7 bytes) put piece boundaries inside every token and escape."""
    raw = json.dumps(value, ensure_ascii=ascii_only, indent=1 if ascii_only else None).encode()
    old = piecewise_json.PIECE_BYTES
    piecewise_json.PIECE_BYTES = piece
    try:
        try:
            expected = orjson.loads(raw)
        except orjson.JSONDecodeError:
            with pytest.raises(piecewise_json.PiecewiseJSONError):
                piecewise(raw)
            return
        got = piecewise(raw)
    finally:
        piecewise_json.PIECE_BYTES = old
    assert got == expected and json.dumps(got) == json.dumps(expected)  # same types too (int vs float)


@pytest.mark.parametrize("raw", [
    b'{"a": 1, b: 2}', b'[1,2,', b'{"a":[1,2}', b'[1e400]', b'[NaN]', b'["\xff"]', b'[1] x', b'"\x01"',
    b'["\\ud800"]', b'["\\udc00 x"]', b'["a\\ud800\\u0041"]', b'[' * 1025 + b']' * 1025, b'{"a": "\\"}',
])
def test_broken_json_is_a_400_in_the_same_shape(raw: bytes) -> None:
    with pytest.raises(ProxyError) as small:
        parse_json(raw)
    padded = raw + b" " * piecewise_json.PIECEWISE_BYTES  # over the threshold: the piecewise path
    with pytest.raises(ProxyError) as large:
        asyncio.run(parse_body(padded))
    assert (large.value.status, large.value.kind) == (small.value.status, small.value.kind) == (400, "invalid_request")
    prefix = small.value.message.split(":")[0]
    assert large.value.message.startswith(prefix), (small.value.message, large.value.message)


def test_nesting_at_the_limit_is_accepted_and_beyond_it_refused_as_orjson_does() -> None:
    for depth in (1023, 1024, 1025):  # orjson's own limit, whatever it is, is the one kept
        deep = b'[' * depth + b']' * depth + b" " * piecewise_json.PIECEWISE_BYTES
        try:
            orjson.loads(deep)
        except orjson.JSONDecodeError:
            with pytest.raises(ProxyError, match="nested too deeply"):
                asyncio.run(parse_body(deep))
        else:
            value, levels = asyncio.run(parse_body(deep)), 0
            while value:
                value, levels = value[0], levels + 1
            assert levels == depth - 1
    with pytest.raises(ProxyError, match="nested too deeply"):
        asyncio.run(parse_body(b'{"a":' * 2000 + b'1' + b'}' * 2000 + b" " * piecewise_json.PIECEWISE_BYTES))
    brackets_in_strings = json.dumps({"s": "[" * 5000, "t": ["]" * 5000]}).encode() + b" " * piecewise_json.PIECEWISE_BYTES
    assert asyncio.run(parse_body(brackets_in_strings)) == orjson.loads(brackets_in_strings)


def test_integers_beyond_64_bits_are_what_orjson_makes_of_them() -> None:
    raw = b'[18446744073709551616, 9223372036854775808, -9223372036854775809]' + b" " * piecewise_json.PIECEWISE_BYTES
    assert asyncio.run(parse_body(raw)) == orjson.loads(raw)


def test_a_large_body_yields_to_the_loop_between_pieces() -> None:
    raw = json.dumps({"messages": [{"role": "user", "content": "hi"}] * 60_000}).encode()
    assert len(raw) > piecewise_json.PIECEWISE_BYTES
    ticks = 0

    async def main() -> object:
        nonlocal ticks
        task = asyncio.ensure_future(parse_body(raw))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0)
        return task.result()

    assert asyncio.run(main()) == orjson.loads(raw)
    assert ticks >= len(raw) // piecewise_json.PIECE_BYTES  # the loop ran at least once per piece
