"""Rate limits from the plan: token buckets (rpm, tpm) and in-flight counters (concurrency).

In process by default; :class:`Limiter` is the small interface a shared store (Redis) can implement
later for several instances. Buckets are keyed by (limit kind, amount, scope, scope value), so two
rules with different amounts on the same scope are two independent limits, and every matching rule's
limit applies.

- ``rpm(N)``: N requests per minute, refilled continuously, bursts up to N.
- ``tpm(N)``: a request may start while the bucket is positive; the real token usage is debited
  when the response ends (it may go negative, which then holds later requests back).
- ``concurrency(N)``: at most N requests in flight; released when the response (or stream) ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from dsl import ir

from .idle_lru import IdleLRU

BucketKey = tuple[str, int, str, str]  # (kind, amount, scope, scope value)


@dataclass(slots=True)
class Rejection:
    limit: ir.Limit
    scope_value: str
    retry_after: float

    def describe(self) -> str:
        per = f"per {self.limit.per}" + (f" {self.scope_value}" if self.limit.per in ("backend",) else "")
        return f"rate limit {self.limit.kind}({self.limit.amount}) {per} exceeded"


@dataclass(slots=True)
class Reservation:
    """What one request holds; :meth:`release` once, when its response has ended."""

    limiter: "Limiter"
    keys: list[tuple[BucketKey, ir.Limit]] = field(default_factory=list)
    released: bool = False

    def release(self, tokens: int = 0) -> None:
        if not self.released:
            self.released = True
            self.limiter.release(self, tokens)


class Limiter(Protocol):
    def acquire(self, limits: Iterable[tuple[ir.Limit, str]]) -> Reservation | Rejection: ...

    def release(self, reservation: Reservation, tokens: int) -> None: ...


@dataclass(slots=True)
class _Bucket:
    level: float
    stamp: float


class InProcessLimiter:
    """Buckets in a bounded TTL map: idle scopes (old sessions) are forgotten after ten minutes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 200_000) -> None:
        self.clock = clock
        self._buckets: IdleLRU[BucketKey, _Bucket] = IdleLRU(max_buckets, 600.0, clock)
        self._inflight: dict[BucketKey, int] = {}

    def _bucket(self, key: BucketKey, capacity: float, now: float) -> _Bucket:
        bucket = self._buckets.use(key)  # a use restarts the bucket's ten idle minutes
        if bucket is None:
            bucket = _Bucket(capacity, now)
            self._buckets.put(key, bucket)
        else:
            bucket.level = min(capacity, bucket.level + (now - bucket.stamp) * capacity / 60.0)
            bucket.stamp = now
        return bucket

    def acquire(self, limits: Iterable[tuple[ir.Limit, str]]) -> Reservation | Rejection:
        """All or nothing: either every limit admits the request, or none is charged."""
        now = self.clock()
        wanted = [((lim.kind, lim.amount, lim.per, value), lim, value) for lim, value in limits]
        rpm_buckets: list[_Bucket] = []  # charged once every limit has admitted the request
        for key, lim, value in wanted:
            if lim.kind == "concurrency":
                if self._inflight.get(key, 0) >= lim.amount:
                    return Rejection(lim, value, 1.0)
                continue
            bucket = self._bucket(key, float(lim.amount), now)
            need = 1.0 if lim.kind == "rpm" else 0.0
            if bucket.level < need or (lim.kind == "tpm" and bucket.level <= 0):
                deficit = (need if lim.kind == "rpm" else 1.0) - bucket.level
                return Rejection(lim, value, max(0.05, deficit * 60.0 / lim.amount))
            if lim.kind == "rpm":
                rpm_buckets.append(bucket)
        for bucket in rpm_buckets:
            bucket.level -= 1.0
        reservation = Reservation(self)
        for key, lim, _value in wanted:
            if lim.kind == "concurrency":
                self._inflight[key] = self._inflight.get(key, 0) + 1
            reservation.keys.append((key, lim))
        return reservation

    def release(self, reservation: Reservation, tokens: int) -> None:
        now = self.clock()
        for key, lim in reservation.keys:
            if lim.kind == "concurrency":
                left = self._inflight.get(key, 1) - 1
                if left > 0:
                    self._inflight[key] = left
                else:
                    self._inflight.pop(key, None)
            elif lim.kind == "tpm" and tokens:
                self._bucket(key, float(lim.amount), now).level -= tokens

