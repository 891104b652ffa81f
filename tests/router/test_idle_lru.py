"""router/idle_lru.py against the plain definition: an entry used at ``t`` lives while
``now < t + ttl``; over ``maxsize`` live entries, the least recently used goes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.idle_lru import IdleLRU


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Plain:
    """The definition, written the slow way: every entry with the time of its last use and the
    order of that use; what lives is found by scanning them all."""

    def __init__(self, maxsize: int, ttl: float, clock: Clock) -> None:
        self.maxsize, self.ttl, self.clock = maxsize, ttl, clock
        self.entries: dict[str, tuple[float, int, int]] = {}  # key -> (last use, use number, value)
        self.uses = 0

    def _live(self) -> dict[str, tuple[float, int, int]]:
        now = self.clock()
        return {k: e for k, e in self.entries.items() if now < e[0] + self.ttl}

    def use(self, key: str) -> int | None:
        live = self._live()
        if key not in live:
            return None
        self.uses += 1
        self.entries[key] = (self.clock(), self.uses, live[key][2])
        return live[key][2]

    def peek(self, key: str) -> int | None:
        entry = self._live().get(key)
        return None if entry is None else entry[2]

    def put(self, key: str, value: int) -> None:
        self.entries = self._live()
        self.uses += 1
        self.entries[key] = (self.clock(), self.uses, value)
        while len(self.entries) > self.maxsize:
            del self.entries[min(self.entries, key=lambda k: self.entries[k][1])]

    def pop(self, key: str) -> int | None:
        value = self.peek(key)
        self.entries.pop(key, None)
        return value

    def __len__(self) -> int:
        return len(self._live())


KEYS = st.sampled_from("abcdef")
OPS = st.one_of(
    st.tuples(st.just("use"), KEYS),
    st.tuples(st.just("peek"), KEYS),
    st.tuples(st.just("put"), KEYS, st.integers(0, 99)),
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("len")),
    # whole seconds land exactly on expiry times (ttl is whole too): the boundary is exercised
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0])),
)


@settings(max_examples=400, deadline=None)
@given(maxsize=st.integers(1, 4), ttl=st.sampled_from([1.0, 3.0, 10.0]), ops=st.lists(OPS, max_size=60))
def test_idle_lru_behaves_as_the_plain_definition(maxsize: int, ttl: float, ops: list[tuple]) -> None:
    clock = Clock()
    fast, plain = IdleLRU[str, int](maxsize, ttl, clock), Plain(maxsize, ttl, clock)
    for op in ops:
        if op[0] == "wait":
            clock.now += op[1]
        elif op[0] == "len":
            assert len(fast) == len(plain)
        elif op[0] == "put":
            fast.put(op[1], op[2])
            plain.put(op[1], op[2])
        else:
            assert getattr(fast, op[0])(op[1]) == getattr(plain, op[0])(op[1]), op
    assert len(fast) == len(plain) <= maxsize


def test_expiry_is_idle_based_and_exact_at_the_boundary() -> None:
    clock = Clock()
    cache = IdleLRU[str, str](10, 10.0, clock)
    cache.put("s", "v")
    clock.now += 9.999
    assert cache.use("s") == "v"  # a use restarts the idle timer
    clock.now += 9.999
    assert cache.peek("s") == "v"  # a peek does not
    clock.now += 0.001
    assert cache.peek("s") is None and cache.use("s") is None  # gone at exactly ttl after its last use
    assert len(cache) == 0


def test_full_map_drops_the_least_recently_used() -> None:
    cache = IdleLRU[str, int](3, 60.0, Clock())
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.use("a") == 0  # "b" is now the least recently used
    cache.put("d", 3)
    assert len(cache) == 3
    assert cache.peek("b") is None
    assert [cache.peek(k) for k in "acd"] == [0, 2, 3]


def test_expired_entries_leave_memory_on_the_next_put() -> None:
    clock = Clock()
    cache = IdleLRU[int, int](1000, 1.0, clock)
    for i in range(500):
        cache.put(i, i)
    clock.now += 1.0
    cache.put(-1, -1)
    assert len(cache._entries) == 1  # not only hidden: removed


def test_maxsize_must_hold_an_entry() -> None:
    with pytest.raises(ValueError):
        IdleLRU(0, 1.0)
