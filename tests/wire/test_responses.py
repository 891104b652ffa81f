"""The Responses codec's own promises: the event sequence clients need, the error codes Codex acts
on, reasoning kept opaque or carried through ``encrypted_content``, custom tools both ways."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire import anthropic, gemini, openai, responses
from router.wire.canonical import (
    ChatResponse, CustomFormat, Message, OpaquePart, StreamEnd, StreamError, StreamStart, TextDelta, TextPart,
    ThinkingDelta, ThinkingPart, Tool, ToolCallDelta, ToolCallPart, ToolCallStart, Usage, ChatRequest,
)
from router.wire.codec import CodecError
from router.wire.custom_tools import StreamRestorer, custom_names, restore_response
from router.wire.sse import parse_all


def _events(*events) -> list[dict]:
    encoder = responses.StreamEncoder()
    payload = b"".join(encoder.encode(e) for e in events)
    return [json.loads(data) for _event, data in parse_all(payload)]


def test_stream_starts_with_created_and_numbers_every_event() -> None:
    out = _events(StreamStart("resp_1", "m"), ThinkingDelta("hm", "sig"), TextDelta("Hel"), TextDelta("lo"),
                  ToolCallStart(0, "call_1", "f"), ToolCallDelta(0, '{"a":'), ToolCallDelta(0, "1}"),
                  StreamEnd("tool_calls", Usage(3, 4)))
    kinds = [e["type"] for e in out]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "message", "function_call"]
    assert done[1]["content"][0]["text"] == "Hello" and done[2]["arguments"] == '{"a":1}'
    final = out[-1]["response"]
    assert final["output"] == done and final["usage"]["total_tokens"] == 7
    added = [e["item"]["id"] for e in out if e["type"] == "response.output_item.added"]
    assert added == [i["id"] for i in done], "an item keeps its id from added to done"


def test_custom_call_streams_input_events() -> None:
    out = _events(StreamStart("r", "m"), ToolCallStart(0, "call_p", "apply_patch", custom=True),
                  ToolCallDelta(0, "*** Begin"), ToolCallDelta(0, " Patch"), StreamEnd("tool_calls"))
    kinds = [e["type"] for e in out]
    assert "response.custom_tool_call_input.delta" in kinds
    done = next(e for e in out if e["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == "*** Begin Patch"
    item = next(e["item"] for e in out if e["type"] == "response.output_item.done")
    assert item["type"] == "custom_tool_call" and item["input"] == "*** Begin Patch"


def test_failure_after_first_byte_is_response_failed_with_codex_codes() -> None:
    cases = {("invalid_request", "prompt is too long: 300000 tokens > 200000 maximum"): "context_length_exceeded",
             ("rate_limit", "insufficient_quota: check your plan"): "insufficient_quota",
             ("rate_limit", "slow down"): "rate_limit_exceeded",
             ("api_error", "upstream broke"): "server_error"}
    for (kind, message), code in cases.items():
        out = _events(StreamStart("r", "m"), TextDelta("par"), StreamError(message, kind))
        assert out[-1]["type"] == "response.failed", out[-1]
        assert out[-1]["response"]["error"] == {"code": code, "message": message}
        assert not any(e["type"] == "error" for e in out)


def test_signed_thinking_survives_a_trip_through_a_responses_client() -> None:
    """An Anthropic signature rides in encrypted_content and comes back as the same thinking."""
    body = responses.encode_response(ChatResponse("msg_1", "claude", [ThinkingPart("plan", "SIG=="),
                                                                      ToolCallPart("c1", "f", "{}")], "tool_calls"))
    follow_up = {"model": "m", "input": [{"role": "user", "content": "go"}, *body["output"],
                                         {"type": "function_call_output", "call_id": "c1", "output": "ok"}]}
    request = responses.decode_request(follow_up)
    assistant = request.messages[1]
    assert assistant.parts[0] == ThinkingPart("plan", "SIG==")
    sent = anthropic.encode_request(request)["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": "plan", "signature": "SIG=="}


def test_reasoning_of_openai_stays_opaque_and_reaches_only_a_responses_backend() -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}
    request = responses.decode_request({"model": "m", "input": [{"role": "user", "content": "a"}, item,
                                                                {"role": "user", "content": "b"}]})
    assert request.messages[1].parts == [OpaquePart("responses", item)]
    assert item in responses.encode_request(request)["input"]
    for codec in (openai, anthropic, gemini):
        assert "gAAA" not in json.dumps(codec.encode_request(request)), codec.FORMAT


def test_summarised_reasoning_is_thinking_elsewhere_and_the_same_item_for_a_responses_backend() -> None:
    item = {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "Plan."}],
            "encrypted_content": "gAAA"}
    request = responses.decode_request({"model": "m", "input": [{"role": "user", "content": "a"}, item,
                                                                {"role": "user", "content": "b"}]})
    assert request.messages[1].parts == [ThinkingPart("Plan.", source=OpaquePart("responses", item))]
    assert responses.encode_request(request)["input"][1] == item
    for codec in (openai, anthropic, gemini):  # towards providers: neither the item nor unsigned thinking
        assert "gAAA" not in json.dumps(codec.encode_request(request)), codec.FORMAT


def test_an_item_reference_without_its_type_is_read_as_one() -> None:
    """OpenAI's description lets ``item_reference`` leave out ``type`` (found by schemathesis)."""
    request = responses.decode_request({"model": "m", "input": [{"role": "user", "content": "a"}, {"id": "msg_1"}]})
    assert request.messages[1].parts == [OpaquePart("responses", {"id": "msg_1"})]
    assert responses.encode_request(request)["input"][1] == {"id": "msg_1"}


def test_custom_tool_becomes_a_function_and_its_call_comes_back_custom() -> None:
    tool = Tool("apply_patch", "Edit files.", custom=CustomFormat("lark", "start: x"))
    request = ChatRequest("m", [Message("user", [TextPart("hi")])], tools=[tool])
    sent = openai.encode_request(request)["tools"][0]["function"]
    assert sent["parameters"]["required"] == ["input"] and "start: x" in sent["description"]
    names = custom_names([tool])
    reply = ChatResponse("r", "m", [ToolCallPart("c", "apply_patch", json.dumps({"input": "*** Begin Patch"}))])
    restored = restore_response(reply, names).parts[0]
    assert restored == ToolCallPart("c", "apply_patch", "*** Begin Patch", custom=True)
    restorer = StreamRestorer(names)
    events = []
    for event in (ToolCallStart(0, "c", "apply_patch"), ToolCallDelta(0, '{"input": "*** '), ToolCallDelta(0, 'B"}'),
                  StreamEnd("tool_calls")):
        events.extend(restorer.feed(event))
    assert events == [ToolCallStart(0, "c", "apply_patch", custom=True), ToolCallDelta(0, "*** B"),
                      StreamEnd("tool_calls")]


def test_hosted_tools_go_to_a_responses_backend_only() -> None:
    hosted = {"type": "web_search", "external_web_access": False}
    request = responses.decode_request({"model": "m", "input": "x", "tools": [hosted]})
    assert request.tools == [] and responses.encode_request(request)["tools"] == [hosted]
    for codec in (openai, anthropic, gemini):
        assert "web_search" not in json.dumps(codec.encode_request(request)), codec.FORMAT


_items = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["message", "function_call", "function_call_output", "custom_tool_call",
                             "custom_tool_call_output", "reasoning", "item_reference", "bogus"]),
    "role": st.sampled_from(["user", "assistant", "developer", "system", "tool"]),
    "content": st.one_of(st.text(max_size=5), st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["input_text", "output_text", "input_file", "x"]), "text": st.text(max_size=5)}),
        max_size=2)),
    "call_id": st.text(max_size=4), "name": st.text(max_size=4), "arguments": st.text(max_size=4),
    "input": st.text(max_size=4), "output": st.text(max_size=4),
}), max_size=6)


@settings(max_examples=200, deadline=None)
@given(_items)
def test_decoder_reads_any_item_list_or_names_the_field(items: list) -> None:
    """Whatever the mix of items, decoding gives a request every codec can encode, or a CodecError."""
    try:
        request = responses.decode_request({"model": "m", "input": items})
    except CodecError as err:
        assert err.param and err.param.startswith("input")
        return
    for codec in (openai, anthropic, gemini, responses):
        codec.encode_request(request)
