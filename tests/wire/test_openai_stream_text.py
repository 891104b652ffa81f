"""The OpenAI stream encoder's text-chunk speed trick (``StreamEncoder._text_chunk``: the chunk's
envelope encoded once per stream) must give exactly the bytes of the plain code (``_chunk``, a
dict encoded per event), whatever the stream's id, model, created time and text; and SSE frames
of dicts (one ``data:`` line of compact JSON) must read back as the dict."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire import fastjson, openai
from router.wire.canonical import StreamStart, TextDelta
from router.wire.sse import frame, parse_all

TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(id_=st.text(max_size=12), model=st.text(max_size=12), created=st.integers(0, 2**40), texts=st.lists(TEXT, max_size=4),
       include_usage=st.booleans())
def test_text_chunks_are_the_plain_chunks(id_: str, model: str, created: int, texts: list[str],
                                          include_usage: bool) -> None:
    encoder = openai.StreamEncoder(include_usage=include_usage)
    encoder.encode(StreamStart(id=id_, model=model, created=created))
    for text in texts:
        assert encoder.encode(TextDelta(text)) == encoder._chunk({"content": text})


def test_a_new_stream_start_resets_the_envelope() -> None:
    encoder = openai.StreamEncoder()
    encoder.encode(StreamStart(id="a", model="m1", created=1))
    encoder.encode(TextDelta("x"))
    encoder.encode(StreamStart(id="b", model="m2", created=2))
    assert encoder.encode(TextDelta("y")) == encoder._chunk({"content": "y"})
    assert b'"id":"b"' in encoder.encode(TextDelta("y"))


def test_text_before_any_start_uses_the_defaults() -> None:
    for include_usage in (True, False):
        encoder = openai.StreamEncoder(include_usage=include_usage)
        assert encoder.encode(TextDelta("early")) == encoder._chunk({"content": "early"})


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(max_size=5), st.one_of(TEXT, st.integers(), st.none()), max_size=4),
       event=st.one_of(st.none(), st.sampled_from(["message_start", "content_block_delta"])))
def test_dict_frames_read_back(data: dict, event: str | None) -> None:
    raw = frame(data, event)
    assert raw.count(b"\n") == (3 if event else 2)  # one data line: compact JSON escapes line breaks
    assert parse_all(raw) == [(event, fastjson.dumps_str(data))]
