"""Rules-language speed: evaluation p50/p99 at 10 / 1,000 / 10,000 rules, command parse time, and
what a group strategy adds to a request over a plain equal group (target: at most 5 µs).

Run: python benchmarks/dsl_bench.py   (prints a table; targets from the rules issue alongside)
Each figure is the distribution of per-call times over many calls, measured with perf_counter_ns
in batches to keep timer overhead out; the machine is shared, so look at p50 first.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsl import Facts, RuleSet, evaluate, load_rules_text, parse_message  # noqa: E402
from dsl.parser import parse  # noqa: E402

BACKENDS = ["openai", "anthropic", "gemini", "openrouter", "azure"]


def rules_yaml(n: int) -> str:
    """n model-keyed rules plus five unkeyed rules (globs, headers, tokens) every request visits."""
    lines = ["rules:"]
    lines += [
        '  - name: guards\n    post: tool_call_repair, loop_detection(min_repetitions=5)',
        '  - name: team-limit\n    when: header("x-team") == "free"\n    limits: rpm(10, per=caller)',
        '  - name: long\n    when: tokens > 100k and not stream\n    route: gemini:gemini-1.5-pro',
        '  - name: gpt4-family\n    when: model ~ "gpt-4*" and header("x-team") != "free"\n    limits: tpm(200k)',
        '  - name: weekend\n    when: weekday in ["sat", "sun"]\n    set: temperature=0.2',
    ]
    for i in range(n):
        b1, b2 = BACKENDS[i % 5], BACKENDS[(i + 1) % 5]
        lines.append(f'  - name: m{i}\n    when: model == "model-{i}"\n    route: {b1}:model-{i} -> {b2}:model-{i}\n    limits: rpm({60 + i % 7})')
    return "\n".join(lines) + "\n"


def timed(fn, calls: int, batch: int = 50) -> list[float]:
    """Per-call microseconds, measured per batch of ``batch`` calls."""
    out = []
    for _ in range(calls // batch):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        out.append((time.perf_counter_ns() - t0) / batch / 1000)
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_eval(n: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    loaded = load_rules_text(rules_yaml(n), "bench.yaml", BACKENDS)
    loaded.raise_for_errors()
    ruleset = RuleSet(loaded.rules)
    compile_s = time.perf_counter() - t0
    rng = random.Random(1)
    facts = [Facts.build(f"model-{rng.randrange(max(n, 1))}", headers={"x-team": rng.choice(["free", "pro"])},
                         tokens=rng.randrange(200_000), stream=rng.random() < 0.5) for _ in range(512)]
    idx = [0]

    def one() -> None:
        idx[0] = (idx[0] + 1) & 511
        evaluate(facts[idx[0]], ruleset)

    samples = timed(one, 40_000)
    return pct(samples, 0.5), pct(samples, 0.99), compile_s


def main() -> None:
    print(f"{'rules':>7} {'eval p50 µs':>12} {'eval p99 µs':>12} {'compile s':>10}   target p50")
    for n, target in ((10, "<= 5 µs"), (1_000, ""), (10_000, "<= 20 µs")):
        p50, p99, compile_s = bench_eval(n)
        print(f"{n:>7} {p50:>12.2f} {p99:>12.2f} {compile_s:>10.2f}   {target}")
    print()
    cases = {
        "parse command route-append(...)": lambda: parse("route-append(gpt-4, anthropic:claude-3)", "command"),
        "parse command set(project=\"x y\")": lambda: parse('set(project="x y", temperature=0.5)', "command"),
        "message with 1 command (scan+parse+compile)": lambda: parse_message("!/oneoff(openai:gpt-4o) hi", known_backends=BACKENDS),
        "message without commands (scan only)": lambda: parse_message("please refactor this function " * 20),
        "parse condition": lambda: parse('model ~ "gpt-4*" and header("x-team") != "free"', "condition"),
    }
    print(f"{'operation':<46} {'p50 µs':>8} {'p99 µs':>8}   target")
    for name, fn in cases.items():
        samples = timed(fn, 10_000, batch=20)
        target = "<= 50 µs" if name.startswith("parse command") else ""
        print(f"{name:<46} {pct(samples, 0.5):>8.1f} {pct(samples, 0.99):>8.1f}   {target}")


def bench_strategies() -> None:
    """Ordering a two-member group per request: the equal group's shuffle, then each strategy
    (its Picker, the stats reads, the sort), with the stats warm as in a running proxy."""
    from router.pipeline.dispatch import Picker, ordered_targets
    from router.routing_stats import InProcessRoutingStats
    from router.wire.canonical import ChatRequest, Message, TextPart

    a, b = ir_target("openai", "gpt-4o"), ir_target("azure", "gpt-4o")
    stats = InProcessRoutingStats()
    for target, seconds in ((a, 0.4), (b, 0.2)):
        stats.observe_ttfb(str(target), seconds)
        stats.started(str(target))
    prices = {"gpt-4o": {"input": 2.5, "output": 10.0}}
    request = ChatRequest(model="gpt-4o", messages=[Message("user", [TextPart("hello there " * 50)])], stream=False)
    rng = random.Random(1)
    from dsl import ir

    plain = (ir.Group((ir.Member(a), ir.Member(b))),)
    base = pct(timed(lambda: ordered_targets(plain, rng), 40_000), 0.5)
    print(f"{'group ordering per request':<46} {'p50 µs':>8} {'added µs':>9}   target")
    print(f"{'(a | b) equal':<46} {base:>8.2f} {'':>9}")
    for name in ("fastest", "least_busy", "cheapest"):
        chain = (ir.Group((ir.Member(a), ir.Member(b)), strategy=name),)

        def one(chain: tuple = chain) -> None:
            ordered_targets(chain, rng, Picker(stats, prices, request, {}))

        p50 = pct(timed(one, 40_000), 0.5)
        print(f"{name + '(a | b)':<46} {p50:>8.2f} {p50 - base:>9.2f}   <= 5 µs added")


def ir_target(backend: str, model: str):  # type: ignore[no-untyped-def]
    from dsl import ir

    return ir.Target(backend, model)


if __name__ == "__main__":
    main()
    print()
    bench_strategies()
