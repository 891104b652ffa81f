"""Every codec module is a :class:`Codec`: the names and call shapes front ends and connectors use.

A new wire format is one module in ``router/wire/``; this is the check that it fits.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from router.frontends import FRONTENDS
from router.wire import anthropic, gemini, openai, responses
from router.wire.canonical import ChatRequest, Message, StreamEnd, StreamStart, TextPart
from router.wire.codec import Codec, CodecError, WireError

CODECS = [openai, anthropic, gemini, responses]


@pytest.mark.parametrize("codec", CODECS, ids=lambda m: m.__name__)
def test_each_codec_module_is_a_codec(codec: ModuleType) -> None:
    assert isinstance(codec, Codec)
    assert codec.FORMAT == codec.__name__.rsplit(".", 1)[1]
    params = inspect.signature(codec.decode_request).parameters
    assert list(params)[0] == "body" and {"model", "stream"} <= set(params)
    assert params["model"].kind is inspect.Parameter.KEYWORD_ONLY and params["model"].default is None
    for name in ("encode_request", "decode_response", "encode_response", "encode_error"):
        assert len(inspect.signature(getattr(codec, name)).parameters) == 1, name


@pytest.mark.parametrize("codec", CODECS, ids=lambda m: m.__name__)
def test_each_codec_works_through_the_protocol(codec: Codec) -> None:
    """Round trip of a request and a stream using only the protocol's names."""
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])], max_tokens=10)
    body = codec.encode_request(request)
    path = {"model": "m", "stream": False} if codec.FORMAT == "gemini" else {}
    assert codec.decode_request(body, **path).last_user_message().text() == "hi"  # type: ignore[union-attr]
    frames = codec.StreamEncoder().encode(StreamStart(id="x", model="m")) + codec.StreamEncoder().encode(StreamEnd())
    assert isinstance(frames, bytes)
    assert isinstance(codec.StreamDecoder().finish(), list)
    error = codec.encode_error(WireError(429, "slow down", "rate_limit"))
    assert "slow down" in str(error)


def test_front_ends_hold_codecs() -> None:
    for frontend in FRONTENDS.values():
        assert isinstance(frontend.codec, Codec) and frontend.codec.FORMAT == frontend.name


@pytest.mark.parametrize("codec", CODECS, ids=lambda m: m.__name__)
def test_codec_errors_carry_no_http_status(codec: Codec) -> None:
    """A client's bad field and a provider's bad reply are both CodecErrors; what they mean (400 or
    the provider's failure) is the caller's to say."""
    path = {"model": "m"} if codec.FORMAT == "gemini" else {}
    with pytest.raises(CodecError) as request_error:
        codec.decode_request(["not", "an", "object"], **path)
    with pytest.raises(CodecError) as reply_error:
        codec.decode_response({"choices": 5, "content": 5, "candidates": 5})
    for err in (request_error.value, reply_error.value):
        assert not hasattr(err, "status")
        assert err.message and (err.param is None or err.param in err.message)
    assert reply_error.value.message.startswith("backend returned a malformed ")
