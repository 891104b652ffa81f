"""router/pipeline/session.py: the session id derived from a conversation."""

from __future__ import annotations

import hashlib

from hypothesis import given, strategies as st

from router.pipeline.session import CONVERSATION_PREFIX, conversation_key
from router.wire.canonical import ChatRequest, ImagePart, Message, TextPart

texts = st.text(max_size=40)


def piecewise_key(caller: str | None, frontend: str, system: list[str], first_parts: list[str] | None) -> str:
    """The definition, fed piece by piece: each UTF-8 piece after its length in 8 bytes."""
    digest = hashlib.sha256()
    first = "" if first_parts is None else "\n".join(first_parts)
    for piece in (caller or "", frontend, "\n".join(system), first):
        data = piece.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return CONVERSATION_PREFIX + digest.hexdigest()[:32]


@given(caller=st.none() | texts, frontend=st.sampled_from(["openai", "anthropic", "gemini", "responses"]),
       system=st.lists(texts, max_size=3), first=st.none() | st.lists(texts, min_size=1, max_size=3),
       before=st.lists(texts, max_size=2))
def test_the_key_is_the_digest_of_the_pieces_fed_one_by_one(caller: str | None, frontend: str, system: list[str],
                                                            first: list[str] | None, before: list[str]) -> None:
    """Ids derived before the key was hashed in one call stay the same (stored sessions keep them)."""
    messages = [Message("assistant", [TextPart(t)]) for t in before]
    if first is not None:
        messages.append(Message("user", [TextPart(t) for t in first]))
        messages.append(Message("user", [TextPart("a later turn")]))
    request = ChatRequest(model="m", messages=messages, system=[TextPart(t) for t in system])
    assert conversation_key(caller, frontend, request) == piecewise_key(caller, frontend, system, first)


def test_a_known_key_does_not_change() -> None:
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("hi"), ImagePart(url="https://x/y.png")])],
                          system=[TextPart("be brief")])
    assert conversation_key("key-abc", "openai", request) == piecewise_key("key-abc", "openai", ["be brief"],
                                                                            ["hi", "[image]"])
    assert conversation_key(None, "gemini", ChatRequest(model="m", messages=[])) == \
        "conv-" + hashlib.sha256(bytes(8) + b"\0" * 7 + b"\6gemini" + bytes(16)).hexdigest()[:32]
