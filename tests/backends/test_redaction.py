"""backends/redaction.py: the one redaction every outgoing text goes through.

Credential shapes of every provider (and of the fields that carry them), known secrets without a
shape, URL userinfo; the cheap pre-test never misses what the full scan would redact; the log
filter and the connectors give the same result because they are the same function.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.redaction import REDACTED, Redactor, _SHAPES, redact, redact_url
from router.record.logs import RedactingFilter

ROOT = Path(__file__).resolve().parents[2]

# (text, the secret part that must go, what must stay readable)
SHAPES = [
    ("key sk-proj-AbCdEf0123456789 rejected", "AbCdEf0123456789", "key "),
    ("anthropic sk-ant-api03-Zz9Yy8Xx7Ww6 bad", "Zz9Yy8Xx7Ww6", "anthropic "),
    ("openrouter sk-or-v1-0a1b2c3d4e5f", "0a1b2c3d4e5f", "openrouter "),
    ("AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStU", "SyA1b2C3d4E5f6G7h8I9j0Kl", ""),
    ("token ya29.a0AfH6SMBx-secret.part", "a0AfH6SMBx-secret", "token "),
    ("refresh 1//0gAbCdEfGhIjKlMnOpQrStUvWx", "gAbCdEfGhIjKlMnOpQrStUvWx", "refresh "),
    ("client GOCSPX-AbCdEfGhIjKl", "AbCdEfGhIjKl", "client "),
    ("got Authorization: Bearer opaque-token-12345", "opaque-token-12345", "Authorization: Bearer [redacted]"),
    ("send 'Bearer opaque-token-12345' please", "opaque-token-12345", "send 'Bearer [redacted]' please"),
    ("AUTHORIZATION: bearer OPAQUEUPPERCASE", "OPAQUEUPPERCASE", "AUTHORIZATION: bearer [redacted]"),
    ("AUTHORIZATION=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "AUTHORIZATION="),
    ("x-api-key: foreign-secret-1234", "foreign-secret-1234", "x-api-key: "),
    ("X-Goog-Api-Key: opaque9876543", "opaque9876543", "X-Goog-Api-Key: "),
    ('{"api_key": "opaque-value-42", "n": 1}', "opaque-value-42", '{"api_key": "'),
    ("access_token=opaque-bearer-1&x=1", "opaque-bearer-1", "&x=1"),
    ("client_secret: hunter2hunter2", "hunter2hunter2", "client_secret: "),
    ("password = correct-horse", "correct-horse", "password = "),
    ("GET /v1beta/models?key=opaqueGoogleKey&alt=sse", "opaqueGoogleKey", "&alt=sse"),
    ("cannot connect to http://alice:s3cret@proxy.local:3128/v1", "alice:s3cret", "proxy.local:3128/v1"),
    ("https://tok:p@ss@host/x", "tok:p@ss", "@host/x"),
    ("https://ghp_usertoken0123@host/x", "ghp_usertoken0123", "@host/x"),
]


@pytest.mark.parametrize("text,secret,kept", SHAPES, ids=[s[0][:24] for s in SHAPES])
def test_credential_shapes(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out and REDACTED in out, out
    assert kept in out, out


@pytest.mark.parametrize("text", [
    "max_tokens: 100000 is more than the model allows",
    "POST /v2/chat/completions 200 12.3ms request=4f1c session=s1 rule=default backend=openai model=gpt-4o",
    "mail git@github.com about it", "see https://example.org/a@b for details", "a short sk-x",
    "Bearer tokens go in a header",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_known_secrets_without_a_shape() -> None:
    out = redact("the key local-llama-key-77 and again local-llama-key-77; short abc", ["local-llama-key-77", "abc"])
    assert "local-llama-key-77" not in out and out.count(REDACTED) == 2
    assert "short abc" in out  # too short to search for: it would hide ordinary words everywhere


def test_many_known_secrets() -> None:
    secrets = [f"opaque-secret-{i:03d}" for i in range(40)]  # past the literal scans: one regex
    redactor = Redactor(secrets)
    text = " ".join(f"opaque-secret-{i:03d}" for i in range(0, 40, 7))
    assert redactor.suspects(text) and "opaque-secret" not in redactor(text)
    assert redactor("nothing here") == "nothing here"


_PIECES = [s[0] for s in SHAPES] + ["plain words ", "Bearer", "KEY", "://", "@", "=", ": ", "'", '"', "\n", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=6), st.lists(st.booleans(), max_size=200))
def test_pretest_never_misses(pieces: list[str], flips: list[bool]) -> None:
    """Every line is first tested with cheap substring checks; whatever the full scan would
    redact, in any letter case, must make that test say yes."""
    text = "".join(pieces)
    text = "".join(c.swapcase() if i < len(flips) and flips[i] else c for i, c in enumerate(text))
    if _SHAPES.search(text):
        assert Redactor().suspects(text), text


def test_redact_url() -> None:
    assert redact_url("https://user:pa@ss@api.example.com:8443/v1?alt=sse") == "https://api.example.com:8443/v1?alt=sse"
    assert redact_url("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434/v1"
    assert "opaqueGoogleKey" not in redact_url("https://g.example.com/v1beta?key=opaqueGoogleKey")


@pytest.mark.parametrize("text", [s[0] for s in SHAPES] + ["my local-llama-key-77 here"])
def test_logs_and_connectors_redact_alike(text: str) -> None:
    """One function: the log filter and connector-side redaction cannot disagree (they did on
    ``sk-ant-``, ``x-api-key`` and ``Authorization: Bearer``)."""
    assert RedactingFilter(["local-llama-key-77"]).scrub(text) == redact(text, ["local-llama-key-77"])


def test_one_list_of_credential_shapes() -> None:
    """No second pattern list anywhere in the product: a shape added to backends/redaction.py
    then protects every path."""
    shape = re.compile(r"""sk-\[|AIza\[|ya29\\\\?\.|\(\?i:bearer\)|Bearer\\s""")
    owners = sorted(str(p.relative_to(ROOT)) for folder in ("backends", "router", "dsl")
                    for p in (ROOT / folder).rglob("*.py") if shape.search(p.read_text(encoding="utf-8")))
    assert owners == ["backends/redaction.py"]
