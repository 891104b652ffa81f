"""Hostile JSON: decoders may only raise CodecError (never KeyError/TypeError/...), stream decoders
never raise, and whatever decodes must encode into every format without crashing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire.codec import CodecError
from wire_support import FORMATS, encode_stream

CASES = [json.loads(p.read_text()) for p in sorted((Path(__file__).parent / "cases").glob("*.json"))]
SEEDS = {kind: [(c["format"], c["input"], c.get("path")) for c in CASES if c["kind"] == kind]
         for kind in ("request", "response", "stream")}

FIELD_NAMES = ["model", "messages", "role", "content", "type", "text", "tool_calls", "function", "name",
               "arguments", "id", "tool_call_id", "image_url", "url", "source", "data", "media_type",
               "tool_use_id", "input", "thinking", "signature", "system", "tools", "tool_choice",
               "max_tokens", "stream", "contents", "parts", "functionCall", "functionResponse", "args",
               "response", "inlineData", "fileData", "mimeType", "thought", "thoughtSignature",
               "generationConfig", "thinkingConfig", "toolConfig", "functionCallingConfig", "mode",
               "systemInstruction", "functionDeclarations", "parameters", "choices", "delta", "candidates",
               "usage", "usageMetadata", "index", "content_block", "stop", "temperature", "budget_tokens"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**9), st.floats(allow_nan=False),
                    st.sampled_from(["", "user", "assistant", "model", "tool", "text", "image", "tool_use",
                                     "tool_result", "function", "auto", "ANY", "STOP", "enabled"]), st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), c, max_size=5),
                    max_leaves=25)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, kind: str) -> tuple[str, Any, dict | None]:
    """A golden input with a few random sub-trees replaced or deleted."""
    fmt, value, path = draw(st.sampled_from(SEEDS[kind]))
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(value)
        target = draw(st.sampled_from(paths))
        if not target:
            value = draw(JSON)
            continue
        parent = value
        for key in target[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[target[-1]] = draw(JSON)
        elif isinstance(parent, dict):
            del parent[target[-1]]
        else:
            parent.pop(target[-1])
    return fmt, value, path


def _check_request(fmt: str, body: Any, path: dict | None) -> None:
    try:
        req = FORMATS[fmt].decode_request(body, **(path or ({"model": "g"} if fmt == "gemini" else {})))
    except CodecError as err:  # no status: the HTTP edge makes it a 400 (tests/router/test_codec_errors.py)
        assert err.param and err.message.startswith(err.param)
        return
    for module in FORMATS.values():
        try:
            json.dumps(module.encode_request(req))
        except CodecError as err:  # a part this format cannot carry: dispatch makes it a 400 naming the backend
            assert err.param and err.message.startswith(err.param + ":")


@settings(max_examples=600, deadline=None)
@given(mutated("request"))
def test_decode_request_mutated(case: tuple[str, Any, dict | None]) -> None:
    _check_request(*case)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(FORMATS)), JSON)
def test_decode_request_random(fmt: str, body: Any) -> None:
    _check_request(fmt, body, None)


@settings(max_examples=300, deadline=None)
@given(mutated("response"))
def test_decode_response_mutated(case: tuple[str, Any, dict | None]) -> None:
    fmt, body, _ = case
    try:
        resp = FORMATS[fmt].decode_response(body)
    except CodecError as err:  # a connector makes it the provider's failure (tests/backends/test_errors.py)
        assert err.message.startswith("backend returned a malformed ")
        return
    for module in FORMATS.values():
        json.dumps(module.encode_response(resp))


@settings(max_examples=300, deadline=None)
@given(mutated("stream"))
def test_stream_decoder_mutated(case: tuple[str, Any, dict | None]) -> None:
    fmt, items, _ = case
    decoder = FORMATS[fmt].StreamDecoder()
    events = []
    for item in items if isinstance(items, list) else [items]:
        events += decoder.finish() if item == "[DONE]" else decoder.feed(item)
    events += decoder.finish()
    # A stream starts, or fails before it starts (a provider's first event may be its error,
    # which dispatch then fails over from); either way it ends exactly once.
    if type(events[0]).__name__ == "StreamError":
        assert len(events) == 1
    else:
        assert type(events[0]).__name__ == "StreamStart"
    assert type(events[-1]).__name__ in ("StreamEnd", "StreamError")
    for name in FORMATS:
        encode_stream(name, events)
