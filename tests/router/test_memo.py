"""IdentityMemo: values by an object's identity, never another object's, and bounded."""

from __future__ import annotations

from router.memo import IdentityMemo


def test_values_belong_to_their_owner_only() -> None:
    memo: IdentityMemo[str] = IdentityMemo(limit=4)
    owner = ("a", "b")
    assert memo.get(id(owner), owner) is None
    assert memo.put(id(owner), owner, "ab") == "ab"
    assert memo.get(id(owner), owner) == "ab"
    equal_but_other = tuple(["a", "b"])
    assert memo.get(id(owner), equal_but_other) is None  # same key, different object: a miss


def test_bounded_and_owners_kept_alive() -> None:
    memo: IdentityMemo[int] = IdentityMemo(limit=3)
    owners = [object() for _ in range(10)]
    for i, owner in enumerate(owners):
        memo.put(id(owner), owner, i)
        assert len(memo._entries) <= 3
    assert memo.get(id(owners[-1]), owners[-1]) == 9
