"""Session state and its repositories: expiry, bounds, persistence, corrupt files, hostile ids."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from router.config import SessionConfig
from router.sessions import (
    FileSessionRepository,
    InMemorySessionRepository,
    InvalidSessionId,
    Session,
    make_repository,
    new_session_id,
    valid_session_id,
)


class Clock:
    """A hand-driven clock for TTL tests."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def full_session(session_id: str = "s1") -> Session:
    return Session(
        id=session_id, backend="openai", model="gpt-4o", project="demo", project_dir="/src/demo",
        temperature=0.7, interactive=True, params={"k": "v", "n": 3, "nested": {"a": [1, 2]}},
        route_edits=[{"when": "model == 'gpt-4'", "route": ["anthropic:claude-3"]}],
        oneoff="gemini:gemini-1.5-pro", history=[{"role": "user", "content": "hi"}],
    )


# --------------------------------------------------------------------------- ids and the dataclass


def test_new_session_id_is_valid_and_unique() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100 and all(valid_session_id(i) for i in ids)


@pytest.mark.parametrize("good", ["a", "abc-123", "user:42.session_1", "x" * 128,
                                  "0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_valid_ids(good: str) -> None:
    assert valid_session_id(good)


@pytest.mark.parametrize("bad", ["", "x" * 129, "../../etc/passwd", "a/b", "a b", "a\nb", "ünï", "a\\b",
                                 "a\x00b", None, 42, b"abc"])
def test_invalid_ids(bad: object) -> None:
    assert not valid_session_id(bad)


def test_json_round_trip() -> None:
    session = full_session()
    data = session.to_json()
    assert json.loads(json.dumps(data)) == data
    assert Session.from_json(data) == session
    assert Session.from_json(json.dumps(data)) == session


def test_from_json_ignores_unknown_keys_and_fills_defaults() -> None:
    session = Session.from_json({"id": "s", "future_field": 1})
    assert session.id == "s" and session.interactive is False and session.params == {} and session.history == []


@pytest.mark.parametrize("data", [[], {"id": "../x"}, {"id": "s", "temperature": "hot"},
                                  {"id": "s", "interactive": "yes"}, {"id": "s", "history": [1]},
                                  {"id": "s", "temperature": True}])
def test_from_json_rejects_bad_shapes(data: object) -> None:
    with pytest.raises(ValueError):
        Session.from_json(data)  # type: ignore[arg-type]


def test_history_keeps_newest() -> None:
    session = Session(id="s")
    for i in range(10):
        session.add_history({"i": i}, max_history=3)
    assert [h["i"] for h in session.history] == [7, 8, 9]
    session.add_history({"i": 10}, max_history=0)
    assert session.history == []


def test_take_oneoff_consumes() -> None:
    session = Session(id="s", oneoff="openai:gpt-4o")
    assert session.take_oneoff() == "openai:gpt-4o"
    assert session.take_oneoff() is None


# --------------------------------------------------------------------------- in memory


async def test_in_memory_get_or_create_and_save() -> None:
    repo = InMemorySessionRepository(ttl_seconds=60, max_sessions=10)
    assert await repo.get("s1") is None
    session = await repo.get_or_create("s1")
    session.model = "gpt-4o"
    await repo.save(session)
    again = await repo.get_or_create("s1")
    assert again.model == "gpt-4o"
    await repo.delete("s1")
    await repo.delete("s1")  # unknown id is fine
    assert await repo.get("s1") is None
    await repo.aclose()


async def test_in_memory_ttl_expiry_is_idle_based() -> None:
    clock = Clock()
    repo = InMemorySessionRepository(ttl_seconds=10, max_sessions=10, clock=clock)
    await repo.get_or_create("s1")
    clock.now += 8
    assert await repo.get("s1") is not None  # reading restarts the idle timer
    clock.now += 8
    assert await repo.get("s1") is not None
    clock.now += 11
    assert await repo.get("s1") is None
    assert len(repo) == 0


async def test_in_memory_lru_bound() -> None:
    repo = InMemorySessionRepository(ttl_seconds=60, max_sessions=3)
    for sid in ("a", "b", "c"):
        await repo.get_or_create(sid)
    await repo.get("a")  # "b" is now the least recently used
    await repo.get_or_create("d")
    assert len(repo) == 3
    assert await repo.get("b") is None
    assert all([await repo.get("a"), await repo.get("c"), await repo.get("d")])


async def test_in_memory_save_bounds_history() -> None:
    repo = InMemorySessionRepository(ttl_seconds=60, max_sessions=3, max_history=2)
    session = await repo.get_or_create("s")
    session.history.extend({"i": i} for i in range(5))
    await repo.save(session)
    assert [h["i"] for h in (await repo.get("s")).history] == [3, 4]  # type: ignore[union-attr]


@pytest.mark.parametrize("repo_kind", ["memory", "file"])
async def test_bad_ids_rejected(tmp_path: Path, repo_kind: str) -> None:
    repo = (InMemorySessionRepository() if repo_kind == "memory" else FileSessionRepository(str(tmp_path)))
    for bad in ("../../etc/passwd", "", "a b", "x" * 200):
        with pytest.raises(InvalidSessionId):
            await repo.get_or_create(bad)
        with pytest.raises(InvalidSessionId):
            await repo.get(bad)
        with pytest.raises(InvalidSessionId):
            await repo.delete(bad)
        with pytest.raises(InvalidSessionId):
            await repo.save(Session(id=bad))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- files


async def test_file_round_trip_across_instances(tmp_path: Path) -> None:
    repo = FileSessionRepository(str(tmp_path / "sessions"), ttl_seconds=3600)
    session = await repo.get_or_create("client:42")
    original = full_session("client:42")
    original.created_at = session.created_at
    for name in ("backend", "model", "project", "project_dir", "temperature", "interactive", "params",
                 "route_edits", "oneoff", "history"):
        setattr(session, name, getattr(original, name))
    await repo.save(session)
    await repo.aclose()

    reopened = FileSessionRepository(str(tmp_path / "sessions"), ttl_seconds=3600)
    loaded = await reopened.get("client:42")
    assert loaded == session
    assert await reopened.get("other") is None


async def test_file_names_are_hashed(tmp_path: Path) -> None:
    repo = FileSessionRepository(str(tmp_path))
    await repo.get_or_create("..:..")
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].endswith(".json") and ".." not in names[0]
    assert os.path.dirname(repo.file_for("..:..")) == str(tmp_path)


async def test_file_delete(tmp_path: Path) -> None:
    repo = FileSessionRepository(str(tmp_path))
    await repo.get_or_create("s")
    await repo.delete("s")
    await repo.delete("s")
    assert await repo.get("s") is None and list(tmp_path.iterdir()) == []


async def test_file_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = FileSessionRepository(str(tmp_path))
    session = await repo.get_or_create("s")
    session.model = "first"
    await repo.save(session)

    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        replaced.append((src, dst))
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    session.model = "second"
    with pytest.raises(OSError, match="disk on fire"):
        await repo.save(session)
    monkeypatch.setattr(os, "replace", real_replace)

    src, dst = replaced[0]
    assert os.path.dirname(src) == str(tmp_path) and dst == repo.file_for("s")  # temp file, same directory
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(dst)]  # temp file cleaned up
    assert (await repo.get("s")).model == "first"  # type: ignore[union-attr]  # old content intact


async def test_file_ttl_expiry_and_sweep(tmp_path: Path) -> None:
    clock = Clock()
    repo = FileSessionRepository(str(tmp_path), ttl_seconds=10, clock=clock)
    await repo.get_or_create("a")
    await repo.get_or_create("b")
    clock.now += 8
    assert await repo.get("a") is not None  # reading restarts the idle timer
    clock.now += 8
    assert await repo.get("b") is None  # idle for 16 s: expired and removed
    assert not os.path.exists(repo.file_for("b"))
    assert await repo.get("a") is not None
    clock.now += 20
    (tmp_path / ".tmp-stale.json").write_text("{}")
    os.utime(tmp_path / ".tmp-stale.json", (clock.now - 100, clock.now - 100))
    assert repo.sweep() == 2  # session "a" and the stale temp file
    assert list(tmp_path.iterdir()) == []


async def test_file_save_sweeps_periodically(tmp_path: Path) -> None:
    clock = Clock()
    repo = FileSessionRepository(str(tmp_path), ttl_seconds=10, clock=clock, sweep_interval=5)
    await repo.save(Session(id="old"))  # first save sweeps (nothing to do) and schedules the next
    clock.now += 30
    await repo.save(Session(id="new"))
    assert not os.path.exists(repo.file_for("old")) and os.path.exists(repo.file_for("new"))


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"id": "someone-else"}',
                                     b'{"id": "s", "history": "nope"}'])
async def test_corrupt_file_gives_fresh_session(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                content: bytes) -> None:
    repo = FileSessionRepository(str(tmp_path))
    Path(repo.file_for("s")).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="router.sessions"):
        session = await repo.get_or_create("s")
    assert session.id == "s" and session.model is None and session.history == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "corrupt" in warnings[0].getMessage()
    caplog.clear()
    assert await repo.get("s") == session  # the fresh session replaced the corrupt one, no new warning
    assert not caplog.records
    assert os.path.exists(repo.file_for("s") + ".corrupt")  # kept for inspection


async def test_file_save_bounds_history(tmp_path: Path) -> None:
    repo = FileSessionRepository(str(tmp_path), max_history=2)
    session = Session(id="s")
    for i in range(4):
        session.add_history({"i": i}, max_history=100)
    await repo.save(session)
    reopened = FileSessionRepository(str(tmp_path))
    assert [h["i"] for h in (await reopened.get("s")).history] == [2, 3]  # type: ignore[union-attr]


def test_make_repository(tmp_path: Path) -> None:
    assert isinstance(make_repository(SessionConfig()), InMemorySessionRepository)
    repo = make_repository(SessionConfig(repository="file", path=str(tmp_path / "s"), ttl_seconds=5))
    assert isinstance(repo, FileSessionRepository) and repo.ttl_seconds == 5 and (tmp_path / "s").is_dir()
    with pytest.raises(ValueError):
        make_repository(SessionConfig(repository="redis"))


# --------------------------------------------------------------------------- file repository bounds


async def test_file_repository_keeps_at_most_max_sessions_least_recently_used_first(tmp_path: Path) -> None:
    clock = Clock()
    repo = FileSessionRepository(str(tmp_path), ttl_seconds=3600, clock=clock, max_sessions=3)
    for name in ("a", "b", "c"):
        clock.now += 1
        await repo.get_or_create(name)
    clock.now += 1
    assert await repo.get("a") is not None  # "a" used again: "b" is now the least recently used
    clock.now += 1
    await repo.get_or_create("d")
    assert len(list(tmp_path.iterdir())) == 3 and len(repo) == 3
    assert await repo.get("b") is None
    assert all([await repo.get(n) for n in ("a", "c", "d")])
    for i in range(20):  # the repro: every new id used to add a file
        clock.now += 1
        await repo.save(Session(id=f"flood-{i}"))
    assert len(list(tmp_path.iterdir())) == 3
    assert await repo.get("flood-19") is not None


async def test_file_repository_bound_counts_files_of_an_earlier_run(tmp_path: Path) -> None:
    clock = Clock()
    first = FileSessionRepository(str(tmp_path), ttl_seconds=3600, clock=clock)
    for name in ("old", "mid", "new"):
        clock.now += 1
        await first.get_or_create(name)
    second = FileSessionRepository(str(tmp_path), ttl_seconds=3600, clock=clock, max_sessions=2)
    assert len(second) == 2
    assert await second.get("old") is None and await second.get("new") is not None


async def test_file_sweep_touches_only_its_own_files(tmp_path: Path) -> None:
    """The issue's repro: a ``config.yaml`` placed in the session directory was deleted by the sweep."""
    clock = Clock()
    repo = FileSessionRepository(str(tmp_path), ttl_seconds=10, clock=clock)
    await repo.get_or_create("s")
    Path(repo.file_for("gone") + ".corrupt").write_text("{}")
    foreign = {"config.yaml": "backends: {}\n", "notes.json": "{}", "README": "mine",
               "0" * 64 + ".json.bak": "{}", ".tmp-x.json.keep": "{}"}
    for name, text in foreign.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "sub").mkdir()
    clock.now += 100
    for path in tmp_path.iterdir():
        os.utime(path, (clock.now - 50, clock.now - 50))
    (tmp_path / ".tmp-stale.json").write_text("{}")
    os.utime(tmp_path / ".tmp-stale.json", (clock.now - 50, clock.now - 50))
    assert repo.sweep() == 3  # the session, the corrupt copy, the stale temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*foreign, "sub"])
    assert all((tmp_path / name).read_text() == text for name, text in foreign.items())


async def test_file_bound_never_evicts_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("keep me")
    repo = FileSessionRepository(str(tmp_path), ttl_seconds=3600, max_sessions=1)
    await repo.get_or_create("a")
    await repo.get_or_create("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["config.yaml", os.path.basename(repo.file_for("b"))])


def test_make_repository_passes_max_sessions_to_files(tmp_path: Path) -> None:
    repo = make_repository(SessionConfig(repository="file", path=str(tmp_path / "s"), max_sessions=7))
    assert isinstance(repo, FileSessionRepository) and repo.max_sessions == 7


# --------------------------------------------------------------------------- owners


@pytest.mark.parametrize("repo_kind", ["memory", "file"])
async def test_the_same_id_of_another_owner_is_another_session(tmp_path: Path, repo_kind: str) -> None:
    def repo() -> InMemorySessionRepository | FileSessionRepository:
        return InMemorySessionRepository() if repo_kind == "memory" else FileSessionRepository(str(tmp_path))

    store = repo()
    mine = await store.get_or_create("s1", owner="key-a")
    mine.project_dir = "/home/a"
    await store.save(mine)
    theirs = await store.get_or_create("s1", owner="key-b")
    assert theirs.project_dir is None and theirs.owner == "key-b"
    theirs.project_dir = "/home/b"
    await store.save(theirs)
    assert await store.get("s1") is None  # no owner (auth off) is an owner of its own
    if repo_kind == "file":
        store = repo()  # a restart reads each back under its owner
        assert len(list(tmp_path.glob("*.json"))) == 2
    assert (await store.get("s1", owner="key-a")).project_dir == "/home/a"  # type: ignore[union-attr]
    assert (await store.get("s1", owner="key-b")).project_dir == "/home/b"  # type: ignore[union-attr]
    await store.delete("s1", owner="key-b")
    assert await store.get("s1", owner="key-b") is None and await store.get("s1", owner="key-a") is not None


async def test_a_file_of_another_owner_is_not_read(tmp_path: Path) -> None:
    """A file moved to another owner's name (or a hash collision) is not handed to that owner."""
    store = FileSessionRepository(str(tmp_path))
    await store.save(Session(id="s1", owner="key-a", project="a"))
    os.replace(store.file_for("s1", "key-a"), store.file_for("s1", "key-b"))
    assert await store.get("s1", owner="key-b") is None


def test_owner_round_trips_through_json() -> None:
    session = Session(id="s", owner="key-a")
    assert Session.from_json(session.to_json()).owner == "key-a"
    with pytest.raises(ValueError):
        Session.from_json({"id": "s", "owner": 5})


async def test_a_miss_and_a_hit_answer_as_the_cache_does() -> None:
    clock = Clock(0.0)
    repo = InMemorySessionRepository(ttl_seconds=10, max_sessions=2, clock=clock)
    assert await repo.get("absent", "key-1") is None
    await repo.save(Session(id="s1", owner="key-1"))
    assert (await repo.get("s1", "key-1")).id == "s1"  # type: ignore[union-attr]
    assert await repo.get("s1", "key-2") is None  # another caller's id is another session
    clock.now = 11
    assert await repo.get("s1", "key-1") is None  # idle past the TTL: gone
