"""Each codec says which stream-encoder options a request body asks for (``encoder_options``), so
the HTTP edge passes them on without knowing any format's option."""

from __future__ import annotations

from typing import Any

import pytest

from router.wire import anthropic, gemini, openai


@pytest.mark.parametrize("codec", [openai, anthropic, gemini], ids=lambda c: c.__name__)
def test_options_are_accepted_by_the_codec_s_stream_encoder(codec: Any) -> None:
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    codec.StreamEncoder(**codec.encoder_options(body))  # would raise TypeError on an unknown option


@pytest.mark.parametrize(("body", "expected"), [
    ({}, False),
    ({"stream_options": None}, False),
    ({"stream_options": {}}, False),
    ({"stream_options": {"include_usage": False}}, False),
    ({"stream_options": {"include_usage": True}}, True),
])
def test_openai_include_usage(body: dict[str, Any], expected: bool) -> None:
    assert openai.encoder_options(body) == {"include_usage": expected}


def decode_error_type() -> type[BaseException]:
    """What the codec raises for a bad field of a request body (the edge turns it into a 400)."""
    with pytest.raises(Exception) as caught:
        openai.decode_request({"model": "m", "messages": "not a list"})
    return type(caught.value)


@pytest.mark.parametrize("options", [{"include_usage": "yes"}, [], "on", 1])
def test_openai_bad_stream_options_is_a_decode_error_naming_the_field(options: Any) -> None:
    with pytest.raises(Exception) as caught:
        openai.encoder_options({"stream_options": options})
    assert type(caught.value) is decode_error_type()
    assert caught.value.param == "stream_options"  # type: ignore[attr-defined]
    assert caught.value.message == 'stream_options: expected an object like {"include_usage": true}'  # type: ignore[attr-defined]


def test_other_formats_ask_for_nothing() -> None:
    assert anthropic.encoder_options({"stream": True}) == {} == gemini.encoder_options({})
