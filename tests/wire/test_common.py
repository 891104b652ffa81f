"""``lenient_int``, the one reader of upstream counts the three codecs share: a provider's odd
value becomes 0 instead of failing an otherwise good response, in every codec alike."""

from __future__ import annotations

from typing import Any

import pytest

from router.wire import anthropic, gemini, openai
from router.wire.common import lenient_int


@pytest.mark.parametrize("value, expected", [
    (0, 0), (17, 17), (2**40, 2**40), (3.0, 3), (3.9, 3),
    (None, 0), (True, 0), (False, 0), ("5", 0), ([1], 0), ({}, 0),
])
def test_lenient_int(value: Any, expected: int) -> None:
    result = lenient_int(value)
    assert result == expected
    assert type(result) is int


ODD = [None, True, "12", 7.0, 9]


@pytest.mark.parametrize("value", ODD)
def test_every_codec_reads_an_odd_usage_count_the_same_way(value: Any) -> None:
    want = lenient_int(value)
    o = openai.decode_usage({"prompt_tokens": value, "completion_tokens": value,
                             "prompt_tokens_details": {"cached_tokens": value}})
    a = anthropic.decode_usage({"input_tokens": value, "output_tokens": value})
    g = gemini.decode_usage({"promptTokenCount": value, "candidatesTokenCount": value,
                             "cachedContentTokenCount": value})
    for usage in (o, a, g):
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (want, want)
    assert o.cached_tokens == g.cached_tokens == want  # type: ignore[union-attr]
