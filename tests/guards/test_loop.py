"""Text loop detection over the fixture corpus (precision/recall), streaming = non-streaming, the
cut itself, thinking loops, and settings."""

from __future__ import annotations

import random

import pytest

import guards_support as gs
from dsl.ir import PostProcessor
from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire.canonical import ChatResponse, StreamEnd, StreamStart, TextDelta, TextPart, ThinkingDelta, ThinkingPart
from router.guards import apply_to_response
from router.guards.loop import RepetitionDetector

LEGIT = sorted((gs.CORPUS / "legit").iterdir())
LOOPS = sorted((gs.CORPUS / "loops").iterdir())
ONLY_LOOP = {"tool_call_repair": False, "tool_call_loop_detection": False}


def chunks(text: str, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 12)
        out.append(text[i:i + n])
        i += n
    return out


def detect(text: str, pieces: list[str] | None = None) -> list[tuple]:
    return gs.normalize(gs.run(gs.chain(session=ONLY_LOOP), gs.text_stream(pieces or [text])))


def corpus_scores() -> tuple[int, int, int, int]:
    tp = sum(detect(p.read_text())[-1] == ("end", "loop") for p in LOOPS)
    fp = sum(detect(p.read_text())[-1] == ("end", "loop") for p in LEGIT)
    return tp, fp, len(LOOPS) - tp, len(LEGIT) - fp


@pytest.mark.parametrize("path", LEGIT, ids=[p.name for p in LEGIT])
def test_legit_repetitive_output_is_not_cut(path) -> None:
    text = path.read_text()
    assert detect(text, chunks(text)) == [("start",), ("text", text), ("end", "stop")]


@pytest.mark.parametrize("path", LOOPS, ids=[p.name for p in LOOPS])
def test_real_loop_is_cut(path) -> None:
    text = path.read_text()
    out = detect(text, chunks(text))
    assert out[-1] == ("end", "loop")
    emitted = out[1][1]
    note_at = emitted.index("\n\n[llm-interactive-proxy: response cut off")
    assert text.startswith(emitted[:note_at])  # what was sent stays, nothing is invented
    assert note_at < len(text)  # cut before the end


def test_corpus_precision_and_recall_are_one() -> None:
    tp, fp, fn, tn = corpus_scores()
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"\nloop corpus: {len(LOOPS)} loops, {len(LEGIT)} legit; precision={precision:.2f} recall={recall:.2f}")
    assert (precision, recall) == (1.0, 1.0)
    assert len(LEGIT) >= 20 and len(LOOPS) >= 10


@pytest.mark.parametrize("path", LOOPS, ids=[p.name for p in LOOPS])
def test_cut_point_does_not_depend_on_chunking(path) -> None:
    text = path.read_text()
    whole = detect(text)
    for seed in range(5):
        assert detect(text, chunks(text, seed)) == whole


def test_cut_stops_upstream_and_ignores_the_rest() -> None:
    ch = gs.chain(session=ONLY_LOOP)
    ch.feed(StreamStart("r", "m"))
    sent = []
    for piece in chunks("Intro. " + "I keep saying the very same thing. " * 100):
        sent += ch.feed(TextDelta(piece))
        if ch.stop_upstream:
            break
    assert ch.stop_upstream and isinstance(sent[-1], StreamEnd) and sent[-1].finish_reason == "loop"
    assert "repeated the same text 5 times" in sent[-2].text
    assert ch.feed(TextDelta("more")) == [] and ch.feed(StreamEnd()) == [] and ch.finish() == []
    assert [e.kind for e in ch.events] == ["loop_cut"]


def test_thinking_loop_is_cut_too() -> None:
    ch = gs.chain(session=ONLY_LOOP)
    out = gs.run(ch, [StreamStart("r", "m"), *(ThinkingDelta(p) for p in chunks("Wait, let me reconsider this. " * 40)),
                      StreamEnd()])
    kinds = gs.normalize(out)
    assert kinds[1][0] == "thinking" and kinds[2][0] == "text" and kinds[-1] == ("end", "loop")


def test_non_streaming_gets_truncated_text_plus_note() -> None:
    text = "Answer: " + "The value is computed from the cached table. " * 30
    resp = ChatResponse(id="r", model="m", parts=[TextPart(text)])
    result = apply_to_response(gs.chain(session=ONLY_LOOP), resp)
    assert result.finish_reason == "loop" and result.id == "r"
    streamed = detect(text, chunks(text))[1][1]
    assert result.text() == streamed and len(result.text()) < len(text)


@pytest.mark.parametrize("reps,cut", [(5, True), (4, False)])
def test_min_repetitions_threshold(reps: int, cut: bool) -> None:
    unit = "This sentence is the unit, 32ch."
    assert len(unit) == 32  # checks run every 16 characters: one falls right after the last copy
    out = detect(unit * reps + "Different ending that goes on for a while.")
    assert (out[-1] == ("end", "loop")) is cut


def test_rule_arguments_tune_the_detector() -> None:
    text = "ab-ab-ab-" + "Go on. " * 20 + "end of the text here."
    assert detect(text)[-1] == ("end", "stop")
    post = (PostProcessor("loop_detection", (("min_pattern_length", 5), ("min_repetitions", 10))),)
    out = gs.normalize(gs.run(gs.chain(session=ONLY_LOOP, post=post), gs.text_stream([text])))
    assert out[-1] == ("end", "loop")


def test_detector_memory_is_a_window() -> None:
    d = RepetitionDetector(20, 500, 5)
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]
    for _ in range(100_000):
        assert d.feed(" ".join(rng.choice(words) for _ in range(3)) + " ") is None
        assert d.buffered <= d.window + 40


@settings(max_examples=300, deadline=None)
@given(unit=st.text(alphabet="ab c.", min_size=1, max_size=30), reps=st.integers(1, 60),
       min_len=st.integers(2, 30), min_reps=st.integers(2, 6), thinking=st.booleans())
def test_short_replies_skip_the_replay_only_when_no_loop_could_be_cut(unit: str, reps: int, min_len: int,
                                                                      min_reps: int, thinking: bool) -> None:
    """``leaves_unchanged`` lets a non-streamed reply skip the guards; it must never skip a cut."""
    text = unit * reps
    post = (PostProcessor("loop_detection", (("min_pattern_length", min_len), ("min_repetitions", min_reps))),)
    [guard] = gs.chain(post=post, session=ONLY_LOOP).guards
    parts = [ThinkingPart(text), TextPart("ok")] if thinking else [TextPart(text)]
    stream = [StreamStart("resp", "m"), *((ThinkingDelta(text), TextDelta("ok")) if thinking else (TextDelta(text),)),
              StreamEnd("stop")]
    replayed = gs.normalize(gs.run(gs.chain(post=post, session=ONLY_LOOP), stream))
    if guard.leaves_unchanged(ChatResponse(id="r", model="m", parts=parts)):
        assert replayed[-1] == ("end", "stop")
    assert guard.leaves_unchanged(ChatResponse(id="r", model="m", parts=[TextPart("x" * (min_len * min_reps - 1))]))
