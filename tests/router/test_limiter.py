"""The in-process limiter on a fake clock: exact waits, the boundaries of admission, and what a
release gives back. Tables of (what happened before, what the next request gets)."""

from __future__ import annotations

import pytest

from dsl import ir
from router.limits import InProcessLimiter, Rejection, Reservation
from router.pipeline.dispatch import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limit(kind: str, amount: int, per: str = "backend") -> ir.Limit:
    return ir.Limit(kind, amount, per)  # type: ignore[arg-type]


def fill(limiter: InProcessLimiter, lim: ir.Limit, n: int, value: str = "b") -> list[Reservation]:
    held = []
    for _ in range(n):
        got = limiter.acquire([(lim, value)])
        assert isinstance(got, Reservation)
        held.append(got)
    return held


@pytest.mark.parametrize(("amount", "elapsed", "wait"), [
    (60, 0.0, 1.0),       # one request a second
    (60, 0.25, 0.75),     # a quarter of it has refilled
    (2, 0.0, 30.0),
    (600, 0.0, 0.1),
    (1200, 0.0, 0.05),
    (6000, 0.0, 0.05),    # never less than 50 ms
    (60_000, 0.0, 0.05),
])
def test_rpm_wait_is_the_time_to_refill_one_request(amount: int, elapsed: float, wait: float) -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("rpm", amount)
    fill(limiter, lim, amount)
    clock.now += elapsed
    rejected = limiter.acquire([(lim, "b")])
    assert isinstance(rejected, Rejection)
    assert rejected.retry_after == pytest.approx(wait)
    clock.now += rejected.retry_after + 1e-6
    assert isinstance(limiter.acquire([(lim, "b")]), Reservation)


@pytest.mark.parametrize(("retry_after", "header"), [
    (0.05, "1"), (0.5, "1"), (1.0, "1"), (1.001, "2"), (1.5, "2"), (2.0, "2"), (29.9995, "30"), (30.0, "30"),
])
def test_the_retry_after_header_rounds_up_to_whole_seconds_and_is_at_least_one(retry_after: float, header: str) -> None:
    error = RateLimited(Rejection(limit("rpm", 2), "b", retry_after))
    assert error.status == 429
    assert error.headers["Retry-After"] == header
    assert f"retry in {header}s" in error.message


@pytest.mark.parametrize(("used", "elapsed", "admitted"), [
    (99, 0.0, True),     # one token left
    (100, 0.0, False),   # exactly zero left: held back
    (150, 0.0, False),   # below zero
    (100, 0.6, True),    # 100 tokens a minute: one token back after 0.6 s
    (100, 0.5, True),    # any positive level admits
    (150, 30.0, False),  # 50 back: still at zero
    (150, 30.6, True),
])
def test_tpm_admits_while_the_bucket_is_above_zero(used: int, elapsed: float, admitted: bool) -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("tpm", 100)
    first = limiter.acquire([(lim, "b")])
    assert isinstance(first, Reservation)
    first.release(used)
    clock.now += elapsed
    assert isinstance(limiter.acquire([(lim, "b")]), Reservation) is admitted


def test_tpm_wait_is_the_time_to_refill_one_token_past_the_deficit() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("tpm", 100)
    fill(limiter, lim, 1)[0].release(100)
    rejected = limiter.acquire([(lim, "b")])
    assert isinstance(rejected, Rejection) and rejected.retry_after == pytest.approx(0.6)
    fill(limiter, limit("tpm", 1000), 1)[0].release(1500)
    rejected = limiter.acquire([(limit("tpm", 1000), "b")])
    assert isinstance(rejected, Rejection) and rejected.retry_after == pytest.approx(501 * 60 / 1000)


def test_tpm_admission_does_not_charge_and_release_without_tokens_charges_nothing() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("tpm", 10)
    for _ in range(50):  # nothing is debited until a release says how many tokens were used
        got = limiter.acquire([(lim, "b")])
        assert isinstance(got, Reservation)
        got.release()
    fill(limiter, lim, 1)[0].release(9)
    assert isinstance(limiter.acquire([(lim, "b")]), Reservation)  # one token left
    fill(limiter, lim, 1)[0].release(1)
    assert isinstance(limiter.acquire([(lim, "b")]), Rejection)


def test_a_release_counts_once() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("tpm", 10)
    held = fill(limiter, lim, 1)[0]
    held.release(5)
    held.release(5)
    assert held.released
    assert isinstance(limiter.acquire([(lim, "b")]), Reservation)


def test_rpm_refills_continuously_up_to_the_amount_and_no_further() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("rpm", 3)
    fill(limiter, lim, 3)
    clock.now += 20  # one request back
    fill(limiter, lim, 1)
    assert isinstance(limiter.acquire([(lim, "b")]), Rejection)
    clock.now += 500  # far more than a minute: back to 3, not more
    fill(limiter, lim, 3)
    assert isinstance(limiter.acquire([(lim, "b")]), Rejection)


def test_rejected_requests_are_not_charged() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("rpm", 60)
    fill(limiter, lim, 60)
    for _ in range(10):
        assert isinstance(limiter.acquire([(lim, "b")]), Rejection)
    clock.now += 1.0
    assert isinstance(limiter.acquire([(lim, "b")]), Reservation)


@pytest.mark.parametrize("amount", [1, 2, 3])
def test_concurrency_admits_exactly_the_amount_and_a_release_frees_one(amount: int) -> None:
    limiter = InProcessLimiter(Clock())
    lim = limit("concurrency", amount)
    held = fill(limiter, lim, amount)
    rejected = limiter.acquire([(lim, "b")])
    assert isinstance(rejected, Rejection) and rejected.retry_after == 1.0
    assert (rejected.limit, rejected.scope_value) == (lim, "b")
    held[0].release()
    again = fill(limiter, lim, 1)
    assert isinstance(limiter.acquire([(lim, "b")]), Rejection)
    for r in held[1:] + again:
        r.release()
    fill(limiter, lim, amount)  # all free again


def test_scopes_and_amounts_are_separate_buckets() -> None:
    limiter = InProcessLimiter(Clock())
    fill(limiter, limit("rpm", 1), 1, "a")
    fill(limiter, limit("rpm", 1), 1, "b")
    fill(limiter, limit("rpm", 2), 2, "a")
    fill(limiter, limit("rpm", 1, "caller"), 1, "a")
    assert isinstance(limiter.acquire([(limit("rpm", 1), "a")]), Rejection)


def test_idle_buckets_are_forgotten_after_ten_minutes() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    lim = limit("tpm", 10)
    fill(limiter, lim, 1)[0].release(1000)  # deep below zero: 100 minutes of refill
    clock.now += 599
    assert isinstance(limiter.acquire([(lim, "b")]), Rejection)
    clock.now += 600.5  # nothing touched it for ten minutes: a fresh bucket
    assert isinstance(limiter.acquire([(lim, "b")]), Reservation)


@pytest.mark.parametrize(("lim", "value", "text"), [
    (limit("rpm", 2), "good", "rate limit rpm(2) per backend good exceeded"),
    (limit("tpm", 100, "caller"), "k1", "rate limit tpm(100) per caller exceeded"),
    (limit("concurrency", 1, "session"), "s", "rate limit concurrency(1) per session exceeded"),
])
def test_a_rejection_names_its_limit_but_not_a_caller_or_session(lim: ir.Limit, value: str, text: str) -> None:
    assert Rejection(lim, value, 1.0).describe() == text


def test_tokens_reported_at_release_count_against_tpm_only() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    rpm, tpm, conc = limit("rpm", 2), limit("tpm", 100), limit("concurrency", 1)
    held = limiter.acquire([(rpm, "b"), (tpm, "b"), (conc, "b")])
    assert isinstance(held, Reservation)
    held.release(60)
    # rpm: one of two used, not 60; concurrency: free again; tpm: 40 left
    second = limiter.acquire([(rpm, "b"), (tpm, "b"), (conc, "b")])
    assert isinstance(second, Reservation)
    second.release(40)
    rejected = limiter.acquire([(rpm, "b")])
    assert isinstance(rejected, Rejection) and rejected.limit == rpm
    rejected = limiter.acquire([(tpm, "b")])
    assert isinstance(rejected, Rejection) and rejected.limit == tpm
    assert isinstance(limiter.acquire([(conc, "b")]), Reservation)


def test_every_limit_is_checked_whatever_comes_before_it() -> None:
    limiter = InProcessLimiter(Clock())
    conc, rpm = limit("concurrency", 5), limit("rpm", 1)
    fill(limiter, rpm, 1)
    rejected = limiter.acquire([(conc, "b"), (rpm, "b")])
    assert isinstance(rejected, Rejection) and rejected.limit == rpm
    held = limiter.acquire([(conc, "c"), (limit("concurrency", 1), "c")])
    assert isinstance(held, Reservation)
    rejected = limiter.acquire([(conc, "c"), (limit("concurrency", 1), "c")])
    assert isinstance(rejected, Rejection) and rejected.limit == limit("concurrency", 1)


def test_past_max_buckets_the_least_recently_used_scope_is_forgotten() -> None:
    # the bound on remembered scopes (hostile session ids cannot grow it): with room for three,
    # a fourth scope evicts the one used longest ago, which then starts with a full bucket again
    limiter = InProcessLimiter(Clock(), max_buckets=3)
    lim = limit("rpm", 1, "session")
    for scope in ("s1", "s2", "s3"):
        fill(limiter, lim, 1, scope)
    assert isinstance(limiter.acquire([(lim, "s1")]), Rejection)  # s1 is now the most recently used
    fill(limiter, lim, 1, "s4")  # evicts s2
    assert isinstance(limiter.acquire([(lim, "s2")]), Reservation)
    assert isinstance(limiter.acquire([(lim, "s1")]), Rejection)


def test_ended_requests_leave_no_concurrency_counter_behind() -> None:
    # 20,000 sessions that each came and went: what the limiter holds does not grow with them
    import tracemalloc

    limiter = InProcessLimiter(Clock())
    lim = limit("concurrency", 1, "session")

    def session(i: int) -> None:
        held = limiter.acquire([(lim, f"session-{i}")])
        assert isinstance(held, Reservation)
        held.release()

    for i in range(100):
        session(i)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(100, 20_100):
            session(i)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename")
                    if s.traceback[0].filename.replace("\\", "/").endswith("/router/limits.py"))
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024  # a counter kept per ended session would be megabytes
