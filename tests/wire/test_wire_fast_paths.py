"""The OpenAI decoders' fast paths for the common shapes must agree exactly with the general
decoders: same ChatRequest/ChatResponse, or both refusing with the same error."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire.codec import CodecError
from router.wire import openai

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=3))
ROLES = st.sampled_from(["user", "assistant", "system", "developer", "tool", "robot", 3])
CONTENT = st.one_of(st.text(max_size=8), st.none(), st.integers(), st.just([{"type": "text", "text": "x"}]))


@st.composite
def messages(draw: Any) -> list[Any]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        message: dict[str, Any] = {"role": draw(ROLES), "content": draw(CONTENT)}
        if draw(st.integers(0, 9)) == 0:
            message["name"] = "n"
        if draw(st.integers(0, 19)) == 0:
            del message["content"]
        out.append(message if draw(st.integers(0, 19)) else "not an object")
    return out


@st.composite
def bodies(draw: Any) -> Any:
    body: dict[str, Any] = {"model": draw(st.one_of(st.just("gpt-4"), st.just(""), st.none(), st.integers())),
                            "messages": draw(messages())}
    for key in ("stream", "temperature", "top_p", "max_tokens", "stream_options", "stop", "n"):
        if draw(st.booleans()):
            body[key] = draw(SCALARS)
    if draw(st.integers(0, 9)) == 0:
        del body["messages"]
    return body if draw(st.integers(0, 29)) else ["not", "an", "object"]


def _outcome(decode: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return ("ok", decode(*args, **kwargs))
    except CodecError as err:
        return ("error", err.message, err.param)


@st.composite
def simple_bodies(draw: Any) -> dict[str, Any]:
    """Mostly what the fast path takes, now and then one field off."""
    body: dict[str, Any] = {"model": "gpt-4", "messages": [
        {"role": draw(st.sampled_from(["user", "assistant", "system", "developer"])),
         "content": draw(st.sampled_from(["", "hi", "two words"]))} for _ in range(draw(st.integers(1, 4)))]}
    for key, values in (("stream", st.booleans()), ("temperature", st.floats(0, 2)), ("top_p", st.integers(0, 1)),
                        ("max_tokens", st.integers(0, 5)), ("stream_options", st.just({"include_usage": True}))):
        if draw(st.booleans()):
            body[key] = draw(values)
    if draw(st.integers(0, 4)) == 0:
        body[draw(st.sampled_from(["stream", "temperature", "max_tokens", "model"]))] = draw(SCALARS)
    return body


@settings(max_examples=600, deadline=None)
@given(body=st.one_of(bodies(), simple_bodies()), path_model=st.sampled_from([None, "from-path"]),
       stream=st.sampled_from([None, True, False]))
def test_request_fast_path_equals_general_path(body: Any, path_model: str | None, stream: bool | None) -> None:
    fast = _outcome(openai.decode_request, body, model=path_model, stream=stream)
    general = _outcome(openai._decode_general, body, path_model, stream)
    assert fast == general


def test_fast_path_is_taken_for_the_common_shape() -> None:
    body = {"model": "m", "stream": True, "temperature": 0.2, "max_tokens": 10,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                         {"role": "assistant", "content": ""}, {"role": "user", "content": "again"}]}
    fast = openai._decode_simple(body, None, None)
    assert fast is not None and fast == openai._decode_general(body, None, None)
    assert openai._decode_simple({**body, "tools": []}, None, None) is None


ODD = st.one_of(st.none(), st.booleans(), st.integers(-1, 2), st.floats(0, 2), st.text(max_size=4),
                st.just([]), st.just({}), st.just([{"id": "c1", "type": "function",
                                                    "function": {"name": "f", "arguments": "{}"}}]))


@st.composite
def replies(draw: Any) -> Any:
    """Mostly plain text replies as providers send them, with any one field now and then odd."""
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.sampled_from(["", "Hello.", None]))}
    for key in ("refusal", "reasoning_content", "reasoning", "tool_calls", "annotations"):
        if draw(st.integers(0, 3)) == 0:
            message[key] = draw(ODD)
    choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None,
                              "finish_reason": draw(st.sampled_from(["stop", "length", "tool_calls", None, 7]))}
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
                            "model": "gpt-4o", "choices": [choice], "system_fingerprint": "fp",
                            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                                      "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, 4))}}}
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from(["body", "choice", "message"]))
        target = {"body": body, "choice": choice, "message": message}[where]
        key = draw(st.sampled_from({"body": ["id", "model", "created", "choices", "usage"],
                                    "choice": ["message", "finish_reason"],
                                    "message": ["content", "tool_calls", "refusal"]}[where]))
        if draw(st.booleans()):
            target[key] = draw(ODD)
        else:
            target.pop(key, None)
    return body if draw(st.integers(0, 29)) else "not an object"


@settings(max_examples=800, deadline=None)
@given(body=replies())
def test_response_fast_path_equals_general_path(body: Any) -> None:
    assert _outcome(openai.decode_response, body) == _outcome(openai._decode_general_response, body)


def test_response_fast_path_is_taken_for_a_plain_reply() -> None:
    body = {"id": "x", "model": "m", "created": 1, "choices": [{"message": {"role": "assistant", "content": "hi",
            "refusal": None, "tool_calls": []}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}}
    fast = openai._decode_simple_response(body)
    assert fast is not None and fast == openai._decode_general_response(body)


# --- encoders: the one-text-part shortcuts agree with the general encoding ----------------------

from router.wire.canonical import (  # noqa: E402
    ChatResponse, ImagePart, Message, TextPart, ThinkingPart, ToolCallPart, ToolResultPart, Usage,
)

TEXTS = st.sampled_from(["", "hi", "two words"])
PARTS = st.one_of(
    st.builds(TextPart, TEXTS), st.builds(ThinkingPart, TEXTS),
    st.builds(ImagePart, url=st.just("https://example.invalid/a.png")),
    st.builds(ToolCallPart, id=st.just("call-1"), name=st.just("f"), arguments=st.just('{"a": 1}')),
    st.builds(ToolResultPart, tool_call_id=st.just("call-1"), content=st.lists(st.builds(TextPart, TEXTS), max_size=2)),
)


@settings(max_examples=300)
@given(st.sampled_from(["user", "assistant"]), st.lists(PARTS, max_size=3))
def test_message_encoding_shortcut_matches_the_general_encoding(role: str, parts: list) -> None:
    message = Message(role, parts)  # type: ignore[arg-type]
    assert openai._encode_message(message) == openai._encode_message_general(message)


@settings(max_examples=200)
@given(st.lists(PARTS, max_size=3), st.sampled_from(["stop", "length", "tool_calls", "loop"]))
def test_response_encoding_shortcut_matches_the_general_encoding(parts: list, finish: str) -> None:
    response = ChatResponse(id="r-1", model="m", parts=parts, finish_reason=finish,  # type: ignore[arg-type]
                            usage=Usage(3, 4), created=1)
    text, calls = response.text(), [openai._encode_tool_call(p) for p in response.tool_calls()]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None,
                               "refusal": None}
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingPart))
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        message["tool_calls"] = calls
    body = openai.encode_response(response)
    assert body["choices"][0]["message"] == message
    assert body["usage"] == openai.encode_usage(Usage(3, 4)) and body["id"] == "r-1"
