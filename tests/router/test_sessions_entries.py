"""The in-memory session store's fast miss (router/sessions.py ``_entries_of``) against the cache's own answer."""

from __future__ import annotations

from cachetools import TTLCache

from router.sessions import InMemorySessionRepository, Session, _entries_of


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_key_the_cache_holds_is_in_its_entries() -> None:
    """The drift test: a key the TTLCache holds (or held, until dropped) is in the dict the fast miss reads."""
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(maxsize=3, ttl=10, timer=clock)
    entries = _entries_of(cache)
    for i in range(5):  # past maxsize: the least recently used go from both
        cache[f"k{i}"] = i
        assert all(key in entries for key in cache) and set(entries) == set(cache)
    assert "k0" not in entries and cache.get("k0") is None
    clock.now = 20  # expired: the cache no longer answers with it, whatever its dict still holds
    assert cache.get("k4") is None


async def test_a_miss_and_a_hit_answer_as_the_cache_does() -> None:
    clock = Clock()
    repo = InMemorySessionRepository(ttl_seconds=10, max_sessions=2, clock=clock)
    assert await repo.get("absent", "key-1") is None
    await repo.save(Session(id="s1", owner="key-1"))
    assert (await repo.get("s1", "key-1")).id == "s1"  # type: ignore[union-attr]
    assert await repo.get("s1", "key-2") is None  # another caller's id is another session
    clock.now = 11
    assert await repo.get("s1", "key-1") is None  # expired: in the dict until dropped, still a miss
