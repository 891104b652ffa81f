"""API-key rotation: round-robin, cooldown after 429 (Retry-After honoured) or 401, the next key
tried at once, and a clear rate_limited error when every key is cooling down."""

from __future__ import annotations

import pytest

from backends.base import BackendError
from backends.keys import KeyChoice, KeyPool, key_label
from fakes.provider import FakeProvider, error

from .conftest import backend_settings, chat, collect

KEYS = {
    "openai": ["sk-key-one-aaaaaaaa", "sk-key-two-bbbbbbbb", "sk-key-three-cccccc"],
    "anthropic": ["sk-ant-one-aaaaaaaa", "sk-ant-two-bbbbbbbb", "sk-ant-three-cccccc"],
    "gemini": ["gem-key-one-aaaaaaaa", "gem-key-two-bbbbbbbb", "gem-key-three-cccccc"],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def pooled(build, fake: FakeProvider, kind: str, clock: Clock | None = None, keys: list[str] | None = None):
    keys = keys or KEYS[kind]
    fake.keys[kind] = set(keys)
    settings = backend_settings(kind, fake, api_keys=keys)
    settings.pop("api_key")
    backend = (await build(b=settings))["b"]
    if clock is not None:
        backend.keys.clock = clock
    return backend


def cool_until(backend, key: str, model: str = "fake-model") -> float:
    """When ``key`` is usable again for ``model`` (0 when it is not cooling down)."""
    cooldown = backend.keys.store.get(backend.name, model, key_label(key))
    return cooldown.until if cooldown is not None else 0.0


def used(fake: FakeProvider) -> list[str | None]:
    return [r.api_key for r in fake.generations]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_round_robin(build, fake: FakeProvider, kind: str, stream: bool) -> None:
    backend = await pooled(build, fake, kind)
    for _ in range(6):
        if stream:
            await collect(backend.stream(chat(stream=True)))
        else:
            await backend.complete(chat())
    assert used(fake) == KEYS[kind] * 2


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_429_cools_key_for_retry_after_and_next_key_used(build, fake: FakeProvider, kind: str) -> None:
    clock = Clock()
    backend = await pooled(build, fake, kind, clock)
    k1, k2, k3 = KEYS[kind]
    fake.enqueue(error(429, retry_after=20))
    response = await backend.complete(chat("x"))  # k1 429 -> k2 answers in the same call
    assert response.text() == "x"
    assert used(fake) == [k1, k2]
    for _ in range(4):
        await backend.complete(chat())
    # k1 sits out while cooling: only k2 and k3 are used
    assert set(used(fake)[2:]) == {k2, k3}
    clock.now += 20.5
    for _ in range(3):
        await backend.complete(chat())
    assert k1 in used(fake)[6:]


async def test_401_moves_to_next_key_and_cools(build, fake: FakeProvider) -> None:
    clock = Clock()
    keys = KEYS["openai"]
    backend = await pooled(build, fake, "openai", clock)
    fake.keys["openai"] = {keys[1], keys[2]}  # the first key was revoked
    await backend.complete(chat())
    assert used(fake) == [keys[0], keys[1]]
    for _ in range(4):
        await backend.complete(chat())
    assert keys[0] not in used(fake)[2:]
    assert cool_until(backend, keys[0]) == pytest.approx(clock.now + 30.0)  # default cooldown, no Retry-After


async def test_gemini_invalid_key_400_rotates(build, fake: FakeProvider) -> None:
    """The Gemini API answers a bad key with 400 API_KEY_INVALID: still a key problem, not the client's."""
    keys = KEYS["gemini"]
    backend = await pooled(build, fake, "gemini")
    fake.keys["gemini"] = {keys[1], keys[2]}
    assert (await backend.complete(chat("g"))).text() == "g"
    assert used(fake) == [keys[0], keys[1]]


async def test_repeated_auth_failures_back_off_longer(build, fake: FakeProvider) -> None:
    clock = Clock()
    keys = KEYS["openai"][:2]
    backend = await pooled(build, fake, "openai", clock, keys)
    fake.keys["openai"] = {keys[1]}
    await backend.complete(chat())
    first = cool_until(backend, keys[0]) - clock.now
    clock.now += first + 1
    await backend.complete(chat())  # k2's turn... then k1 again on the next call
    await backend.complete(chat())
    second = cool_until(backend, keys[0]) - clock.now
    assert second > first


async def test_all_keys_cooling_is_rate_limited_with_retry_after(build, fake: FakeProvider) -> None:
    clock = Clock()
    keys = KEYS["openai"][:2]
    backend = await pooled(build, fake, "openai", clock, keys)
    fake.enqueue(error(429, retry_after=10), error(429, retry_after=25))
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "rate_limited" and info.value.retry_after == 10
    assert len(fake.generations) == 2
    # Now nobody is even asked: every key is cooling
    clock.now += 4
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "rate_limited"
    assert info.value.retry_after == pytest.approx(6.0)
    assert "cooling down" in info.value.message
    assert len(fake.generations) == 2
    clock.now += 6.5
    assert (await backend.complete(chat("back"))).text() == "back"


async def test_single_key_429_is_not_cooled(build, fake: FakeProvider) -> None:
    """With one key there is nothing to rotate to: the 429 goes straight to dispatch, key stays usable."""
    backend = (await build(b=backend_settings("openai", fake)))["b"]
    fake.enqueue(error(429, retry_after=3))
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.retry_after == 3
    assert (await backend.complete(chat("ok"))).text() == "ok"


async def test_500_does_not_rotate_keys(build, fake: FakeProvider) -> None:
    backend = await pooled(build, fake, "openai")
    fake.enqueue(error(500))
    with pytest.raises(BackendError) as info:
        await backend.complete(chat())
    assert info.value.kind == "server"
    assert len(fake.generations) == 1


async def test_keys_from_env_references(tmp_path, fake: FakeProvider) -> None:
    from backends.factory import build_backends
    from router.config import connector_settings, load_config

    path = tmp_path / "config.yaml"
    path.write_text(f"backends:\n  openai:\n    type: openai\n    base_url: {fake.url}/v1\n"
                    "    api_keys: ['${OPENAI_API_KEY_1}', '${OPENAI_API_KEY_2}']\n")
    config = load_config(str(path), env={"OPENAI_API_KEY_1": "sk-env-one-1111", "OPENAI_API_KEY_2": "sk-env-two-2222"})
    fake.keys["openai"] = {"sk-env-one-1111", "sk-env-two-2222"}
    backend = build_backends(connector_settings(config))["openai"]
    try:
        await backend.complete(chat())
        await backend.complete(chat())
    finally:
        await backend.aclose()
    assert used(fake) == ["sk-env-one-1111", "sk-env-two-2222"]


def test_key_label_is_not_the_key() -> None:
    label = key_label("sk-secret-value-123")
    assert label.startswith("bk-") and "secret" not in label and label == key_label("sk-secret-value-123")
    assert key_label("") == "bk-none"


def test_pool_candidates_skip_cooling() -> None:
    clock = Clock()
    pool = KeyPool.of(["a1", "b2", "c3"], clock)
    assert [k.value for k in pool.candidates()] == ["a1", "b2", "c3"]
    assert [k.value for k in pool.candidates()] == ["b2", "c3", "a1"]
    pool.cool_down(pool.keys[2], 5)
    assert [k.value for k in pool.candidates()] == ["a1", "b2"]
    assert pool.retry_after() == 0.0
    pool.cool_down(pool.keys[0], 3)
    pool.cool_down(pool.keys[1], 8)
    assert pool.retry_after() == 3.0
    clock.now += 3
    assert [k.value for k in pool.candidates()] == ["a1"]


# ---- the key choice of one call: passed in, the key used reported back ---------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_key_choice_limits_the_keys_and_reports_the_one_used(build, fake: FakeProvider, kind: str,
                                                                   stream: bool) -> None:
    backend = await pooled(build, fake, kind)
    k1, k2, k3 = KEYS[kind]
    asked: list[str] = []

    def allow(label: str) -> bool:
        asked.append(label)
        return label == key_label(k2)

    for _ in range(3):  # whatever the rotation's turn, only k2 may be used
        keys = KeyChoice(allow)
        if stream:
            await collect(backend.stream(chat(stream=True), keys))
        else:
            await backend.complete(chat(), keys)
        assert keys.used == key_label(k2)
    assert used(fake) == [k2, k2, k2]
    assert set(asked) >= {key_label(k1), key_label(k2)} and k2 not in asked  # labels only, never keys


async def test_key_choice_reports_the_key_of_a_failed_call(build, fake: FakeProvider) -> None:
    backend = await pooled(build, fake, "openai")
    fake.enqueue(error(500))
    keys = KeyChoice()
    with pytest.raises(BackendError):
        await backend.complete(chat(), keys)
    assert keys.used == key_label(KEYS["openai"][0])


async def test_key_choice_allowing_no_key_sends_nothing(build, fake: FakeProvider) -> None:
    backend = await pooled(build, fake, "openai")
    keys = KeyChoice(lambda label: False)
    with pytest.raises(BackendError) as info:
        await backend.complete(chat(), keys)
    assert info.value.kind == "rate_limited" and "per-key rate limits" in info.value.message
    assert keys.used is None and fake.generations == []


async def test_concurrent_calls_keep_their_own_key_choice(build, fake: FakeProvider) -> None:
    """Each call's choice travels with the call: two at once neither see nor overwrite the other's."""
    import asyncio

    backend = await pooled(build, fake, "openai")
    k1, k2, _ = KEYS["openai"]
    only = [KeyChoice(lambda label, k=k: label == key_label(k)) for k in (k1, k2, k1, k2)]
    await asyncio.gather(*(backend.complete(chat(), keys) for keys in only))
    assert [keys.used for keys in only] == [key_label(k) for k in (k1, k2, k1, k2)]
    assert sorted(used(fake)) == sorted([k1, k2, k1, k2])


async def test_a_429_cools_the_key_for_that_model_only(build, fake: FakeProvider) -> None:
    """One model's 429 (Retry-After: 7) keeps the key from that model for 7 s; the backend's other
    models keep rotating over every key."""
    clock = Clock()
    keys = KEYS["openai"][:2]
    backend = await pooled(build, fake, "openai", clock, keys)
    fake.enqueue(error(429, retry_after=7))
    assert (await backend.complete(chat("a", model="model-a"))).text() == "a"
    assert used(fake) == [keys[0], keys[1]]
    for _ in range(4):
        await backend.complete(chat(model="model-b"))
    assert set(used(fake)[2:]) == set(keys)  # model-b still uses the key model-a cools
    for _ in range(3):
        await backend.complete(chat(model="model-a"))
    assert set(used(fake)[6:]) == {keys[1]}
    assert cool_until(backend, keys[0], "model-a") == pytest.approx(1007.0)
    assert cool_until(backend, keys[0], "model-b") == 0.0
    clock.now += 7.5
    for _ in range(2):
        await backend.complete(chat(model="model-a"))
    assert keys[0] in used(fake)[9:]
