"""The group strategies as pure orderings over routing stats (router/pipeline/strategies.py) and
the in-process stats service (router/routing_stats.py)."""

from __future__ import annotations

import random

import pytest

from dsl import ir
from router.pipeline.strategies import EXPLORATION, estimated_cost, order_group
from router.routing_stats import InProcessRoutingStats

A, B, C = ir.Target("a", "m1"), ir.Target("b", "m2"), ir.Target("c", "m3")


def group(strategy: str) -> ir.Group:
    return ir.Group((ir.Member(A), ir.Member(B), ir.Member(C)), strategy=strategy)


def test_fastest_explores_at_most_five_percent() -> None:
    stats = InProcessRoutingStats()
    for target, seconds in ((A, 0.5), (B, 0.1), (C, 0.3)):
        stats.observe_ttfb(str(target), seconds)
    rng = random.Random(5)
    runs = [order_group(group("fastest"), stats, {}, 0, 0, rng) for _ in range(4000)]
    explored = sum(1 for _, e in runs if e)
    assert 0 < explored <= 4000 * EXPLORATION * 1.2  # 5%, with room for chance
    assert all(order == [B, C, A] for order, e in runs if not e)  # the rest in the strategy's order
    assert all(order[0] != B and sorted(map(str, order)) == sorted(map(str, (A, B, C))) for order, e in runs if e)


def test_fastest_measures_unmeasured_members_first() -> None:
    stats = InProcessRoutingStats()
    stats.observe_ttfb(str(A), 0.01)
    order, _ = order_group(group("fastest"), stats, {}, 0, 0, random.Random(1))
    assert order[-1] == A


def test_ewma_follows_recent_measurements() -> None:
    stats = InProcessRoutingStats(alpha=0.5)
    stats.observe_ttfb("t", 1.0)
    stats.observe_ttfb("t", 0.0)
    assert stats.ttfb("t") == 0.5


def test_observed_targets_are_bounded_oldest_first() -> None:
    """Clients name models, so every unique name is a target observed: the stats keep the newest
    1,024 (by default) and forget the oldest first; what is kept is still averaged."""
    stats = InProcessRoutingStats()
    for i in range(1030):
        stats.observe_ttfb(f"oai:unique-{i}", 0.1)
    assert len(stats._ttfb) == 1024
    assert stats.ttfb("oai:unique-5") is None and stats.ttfb("oai:unique-6") == 0.1
    stats.observe_ttfb("oai:unique-1029", 0.3)
    assert stats.ttfb("oai:unique-1029") == pytest.approx(0.1 + 0.3 * 0.2)


def test_least_busy_by_requests_in_flight() -> None:
    stats = InProcessRoutingStats()
    for _ in range(2):
        stats.started(str(A))
    stats.started(str(B))
    order, _ = order_group(group("least_busy"), stats, {}, 0, 0, random.Random(1))
    assert order == [C, B, A]
    stats.finished(str(A)), stats.finished(str(A)), stats.finished(str(A))  # never below zero
    assert stats.in_flight(str(A)) == 0


def test_cheapest_uses_estimated_tokens_and_unpriced_is_dearest() -> None:
    prices = {"m1": {"input": 1.0, "output": 100.0}, "m2": {"input": 5.0, "output": 5.0}}
    # A long prompt and a short answer: m1 (cheap input) wins; a long answer: m2 wins.
    order, _ = order_group(group("cheapest"), InProcessRoutingStats(), prices, 100_000, 10, random.Random(1))
    assert order == [A, B, C]
    order, _ = order_group(group("cheapest"), InProcessRoutingStats(), prices, 10, 100_000, random.Random(1))
    assert order == [B, A, C]
    assert estimated_cost(None, 1, 1) > estimated_cost({"input": 1e9, "output": 1e9}, 10**9, 10**9)


def test_the_stats_stay_bounded() -> None:
    stats = InProcessRoutingStats(max_targets=3)
    for i in range(10):
        stats.observe_ttfb(f"t{i}", 0.1)
    assert len(stats._ttfb) == 3 and stats.ttfb("t9") == 0.1
