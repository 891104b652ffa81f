"""The chain: registry ↔ rules language, order, settings precedence, protocol, every wire format,
bounded memory over megabytes."""

from __future__ import annotations

import dataclasses
import json

import pytest

import guards_support as gs
from dsl.ir import PostProcessor
from dsl.registry import POST_PROCESSORS
from router.wire.canonical import ChatResponse, StreamEnd, StreamStart, TextDelta, TextPart, ToolCallDelta
from router.config import LoopDetectionConfig, SessionConfig
from router.guards import GUARDS, ORDER, ToolCallHistory, apply_to_response, resolve_settings
from router.wire import anthropic, gemini, openai

ALL_ON: dict = {}


def test_every_registered_processor_has_a_guard_and_vice_versa() -> None:
    guards = {name for name, spec in POST_PROCESSORS.items() if spec.guard}
    assert set(GUARDS) == guards == set(ORDER)
    for name, cls in GUARDS.items():
        declared = {p.name for p in POST_PROCESSORS[name].params} - {"enabled"}
        assert declared == set(cls.params), name
        assert set(cls.config_defaults(gs.CONFIG)) == declared | {"enabled"}


def test_order_is_repair_then_tool_loop_then_text_loop() -> None:
    assert [g.name for g in gs.chain().guards] == ["tool_call_repair", "tool_call_loop_detection", "loop_detection"]


def test_active_lists_settings() -> None:
    assert gs.chain().active() == [
        "tool_call_repair(buffer_cap_bytes=65536)",
        "tool_call_loop_detection(max_repeats=4, ttl_seconds=120, mode=break)",
        "loop_detection(min_pattern_length=20, max_pattern_length=500, min_repetitions=5)",
    ]


PRECEDENCE = [
    # (id, config change, rule post, session, expected enabled set, expected overrides)
    ("defaults", {}, (), {}, set(ORDER), {}),
    ("config_off", {"loop": False, "repair": False}, (), {}, {"tool_call_loop_detection"}, {}),
    ("rule_turns_on_what_config_disabled", {"loop": False}, (PostProcessor("loop_detection"),), {}, set(ORDER), {}),
    ("rule_enabled_false", {}, (PostProcessor("tool_call_repair", (("enabled", False),)),), {},
     {"tool_call_loop_detection", "loop_detection"}, {}),
    ("rule_args_override_config", {}, (PostProcessor("loop_detection", (("min_repetitions", 3),)),), {}, set(ORDER),
     {("loop_detection", "min_repetitions"): 3, ("loop_detection", "min_pattern_length"): 20}),
    ("later_rule_wins", {}, (PostProcessor("loop_detection", (("min_repetitions", 3),)),
                             PostProcessor("loop_detection", (("min_repetitions", 7),))), {}, set(ORDER),
     {("loop_detection", "min_repetitions"): 7}),
    ("session_off_beats_rule_on", {}, (PostProcessor("loop_detection"),), {"loop_detection": False},
     {"tool_call_repair", "tool_call_loop_detection"}, {}),
    ("session_on_beats_config_off", {"repair": False}, (), {"tool_call_repair": True}, set(ORDER), {}),
    ("session_on_beats_rule_off", {}, (PostProcessor("tool_call_loop_detection", (("enabled", False),)),),
     {"tool_call_loop_detection": True}, set(ORDER), {}),
    ("session_non_bool_ignored", {}, (), {"loop_detection": "maybe"}, set(ORDER), {}),
    ("env_cap_via_config", {"cap": 1024}, (), {}, set(ORDER), {("tool_call_repair", "buffer_cap_bytes"): 1024}),
]


@pytest.mark.parametrize("cid,cfg,post,session,enabled,overrides", PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_precedence(cid, cfg, post, session, enabled, overrides) -> None:
    config = gs.CONFIG
    if "loop" in cfg:
        config = dataclasses.replace(config, loop_detection=LoopDetectionConfig(enabled=cfg["loop"]))
    if "repair" in cfg or "cap" in cfg:
        config = dataclasses.replace(config, session=SessionConfig(
            tool_call_repair_enabled=cfg.get("repair", True), tool_call_repair_buffer_cap_bytes=cfg.get("cap", 65536)))
    settings = resolve_settings(post, config, session)
    assert {n for n, s in settings.items() if s["enabled"]} == enabled
    for (name, key), value in overrides.items():
        assert settings[name][key] == value
    for _ in range(2):  # the second chain comes from the settings kept per (config, post, switches)
        chain = gs.chain(post=post, session=session, config=config)
        assert [g.name for g in chain.guards] == [n for n in ORDER if n in enabled]
        assert [g.settings for g in chain.guards] == [settings[n] for n in ORDER if n in enabled]


def test_no_guards_is_a_pass_through() -> None:
    chain = gs.chain(session={n: False for n in ORDER})
    events = gs.text_stream(["a", "b"])
    assert gs.run(chain, events) == events and chain.active() == []
    resp = ChatResponse(id="x", model="m", parts=[TextPart("hi")])
    assert apply_to_response(chain, resp) is resp


def test_finish_flushes_held_text_when_upstream_ends_without_stream_end() -> None:
    chain = gs.chain()
    chain.feed(StreamStart("r", "m"))
    assert chain.feed(TextDelta("Look: <tool_c")) == [TextDelta("Look:")]
    assert chain.finish() == [TextDelta(" <tool_c")]
    assert chain.finish() == []


def test_repaired_call_feeds_the_tool_loop_detector() -> None:
    """Order matters: a textual call that loops is repaired, counted, then stopped."""
    history = ToolCallHistory()
    outs = []
    for _ in range(5):
        chain = gs.chain(history=history)
        outs.append(gs.normalize(gs.run(chain, gs.text_stream(['{"name": "list_files"}']))))
    assert all(o[1][0] == "call" for o in outs[:4])
    assert outs[4][1][0] == "text" and "tool call loop stopped" in outs[4][1][1] and outs[4][-1] == ("end", "stop")


TEXT_CALL = 'Checking.\n<tool_call>{"name": "read_file", "arguments": {"path": "a.py"}}</tool_call>'


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "gemini"])
def test_repaired_call_in_every_wire_format_streaming(fmt: str) -> None:
    encoder = {"openai": openai, "anthropic": anthropic, "gemini": gemini}[fmt].StreamEncoder()
    events = gs.run(gs.chain(), gs.text_stream([TEXT_CALL[i:i + 5] for i in range(0, len(TEXT_CALL), 5)]))
    wire = b"".join(encoder.encode(e) for e in events).decode()
    frames = [json.loads(line[6:]) for line in wire.splitlines() if line.startswith("data: {")]
    if fmt == "openai":
        calls = [c for f in frames for ch in f.get("choices", []) for c in ch["delta"].get("tool_calls", [])]
        assert calls[0]["function"]["name"] == "read_file" and calls[0]["id"].startswith("call_")
        assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"path": "a.py"}
        assert [ch["finish_reason"] for f in frames for ch in f.get("choices", []) if ch["finish_reason"]] == ["tool_calls"]
    elif fmt == "anthropic":
        blocks = [f["content_block"] for f in frames if f.get("type") == "content_block_start"]
        assert [b["type"] for b in blocks] == ["text", "tool_use"] and blocks[1]["name"] == "read_file"
        assert json.loads("".join(f["delta"]["partial_json"] for f in frames
                                  if f.get("type") == "content_block_delta" and "partial_json" in f["delta"])) == {"path": "a.py"}
        assert [f["delta"]["stop_reason"] for f in frames if f.get("type") == "message_delta"] == ["tool_use"]
    else:
        parts = [p for f in frames for c in f.get("candidates", []) for p in c.get("content", {}).get("parts", [])]
        calls = [p["functionCall"] for p in parts if "functionCall" in p]
        assert [(c["name"], c["args"]) for c in calls] == [("read_file", {"path": "a.py"})]


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "gemini"])
def test_repaired_call_in_every_wire_format_non_streaming(fmt: str) -> None:
    codec = {"openai": openai, "anthropic": anthropic, "gemini": gemini}[fmt]
    resp = apply_to_response(gs.chain(), ChatResponse(id="r", model="m", parts=[TextPart(TEXT_CALL)]))
    body = codec.encode_response(resp)
    if fmt == "openai":
        msg = body["choices"][0]["message"]
        assert body["choices"][0]["finish_reason"] == "tool_calls" and msg["tool_calls"][0]["function"]["name"] == "read_file"
    elif fmt == "anthropic":
        assert body["stop_reason"] == "tool_use" and body["content"][1]["type"] == "tool_use"
        assert body["content"][1]["input"] == {"path": "a.py"}
    else:
        parts = body["candidates"][0]["content"]["parts"]
        assert {"name": "read_file", "args": {"path": "a.py"}}.items() <= parts[-1]["functionCall"].items()


def test_loop_cut_in_every_wire_format_ends_normally() -> None:
    events = gs.run(gs.chain(), gs.text_stream(["Once more I try the same approach here. "] * 40))
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "loop"
    assert b'"finish_reason":"stop"' in openai.StreamEncoder().encode(events[-1])
    assert b"end_turn" in anthropic.StreamEncoder().encode(StreamStart("r", "m")) + b"".join(
        anthropic.StreamEncoder().encode(e) for e in events)
    enc = gemini.StreamEncoder()
    assert b"STOP" in b"".join(enc.encode(e) for e in events)


def test_memory_stays_bounded_over_megabytes() -> None:
    """Adversarial text for every guard: call-like prefixes that never close, huge JSON, loops
    broken just before they count, thinking — buffers stay under the caps."""
    cap = 4096
    post = (PostProcessor("tool_call_repair", (("buffer_cap_bytes", cap),)),)
    patterns = [
        '<tool_call>{"name": "search", "arguments": {"query": "' + "q" * 50,
        '\n{"name": "list_files", "arguments": {"x": [' + "1," * 30,
        "\n```json\n" + '{"name": [' * 20,
        "\nplain words that vary %d and go on\n",
        "\n[TOOL_CALLS] [" + "{" * 10,
    ]
    for pattern in patterns:
        chain = gs.chain(post=post)
        chain.feed(StreamStart("r", "m"))
        fed, i, peak = 0, 0, {}
        while fed < 2_000_000:
            piece = pattern % i if "%d" in pattern else pattern
            i += 1
            fed += len(piece)
            chain.feed(TextDelta(piece))
            for name, size in chain.buffered().items():
                peak[name] = max(peak.get(name, 0), size)
            if chain.stop_upstream:
                break
        assert peak["tool_call_repair"] <= cap + 200, (pattern[:20], peak)
        assert peak["loop_detection"] <= 2 * 500 * 5 + 200, (pattern[:20], peak)
        assert peak["tool_call_loop_detection"] == 0


def test_without_declared_tools_no_guard_touches_the_history() -> None:
    """Tool-less requests get no tool guards (``skip_idle``), so the history they are handed stays
    untouched (the pipeline gives them a fresh one, not the session's)."""
    from router.guards import build_chain
    from router.guards.chain import TOOL_GUARDS

    history = ToolCallHistory()
    chain = build_chain(request=gs.request(tools=[]), rule_post=(), config=gs.CONFIG, session_params={},
                        history=history, skip_idle=True)
    assert [g.name for g in chain.guards] == ["loop_detection"]
    with_tools = build_chain(request=gs.request(), rule_post=(), config=gs.CONFIG, session_params={},
                             history=ToolCallHistory(), skip_idle=True)
    assert {g.name for g in with_tools.guards} >= TOOL_GUARDS
    assert len(history) == 0


def test_guard_settings_match_resolving_afresh() -> None:
    """GuardSettings keeps what resolve_settings makes per (post, switches): a kept answer must be
    the one worked out from scratch, for every combination, also on the second lookup."""
    from dsl.ir import PostProcessor
    from router.guards import GuardSettings, resolve_settings
    from router.guards.chain import ORDER

    kept = GuardSettings(gs.CONFIG)
    posts = [(), (PostProcessor("loop_detection", (("enabled", False),)),),
             (PostProcessor("tool_call_repair", (("buffer_cap_bytes", 4096),)),)]
    switches = [(), (("loop_detection", False),), (("tool_call_loop_detection", True),)]
    for _ in range(2):
        for post in posts:
            for switch in switches:
                fresh = resolve_settings(post, gs.CONFIG, dict(switch))
                expected = [(name, fresh[name]) for name in ORDER if fresh[name].get("enabled")]
                assert [(name, settings) for name, _cls, settings in kept.enabled(post, switch)] == expected


@pytest.mark.parametrize("text, stops", [
    ("I keep saying the very same thing. " * 100, True),
    ("A reply that says something different every time: %d. ", False),
])
def test_stop_upstream_flag_matches_asking_each_guard(text: str, stops: bool) -> None:
    """``stop_upstream`` is a flag set when the chain's stream ends, not a walk over the guards per
    event: after every ``feed`` it must say what asking each guard says."""
    chain = gs.chain(post=(), session=ALL_ON)
    events = [StreamStart("r", "m"), *(TextDelta(text % i if "%d" in text else text[i:i + 7])
                                       for i in range(0, 400, 7)), StreamEnd()]
    for event in events:
        chain.feed(event)
        assert chain.stop_upstream == any(guard.stop for guard in chain.guards)
    assert chain.stop_upstream is stops
