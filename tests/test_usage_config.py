"""``usage``: SQLite (``path``) or PostgreSQL (``url``, ``schema``), checked by ``check`` and at
load without connecting to anything; the URL's password never shows in the redacted config."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl.errors import RulesError
from router.cli import main
from router.config import load_config, safe_url


def write(tmp_path: Path, usage: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text("backends: {echo: {type: echo}}\n" + usage, encoding="utf-8")
    return str(path)


def test_a_postgres_url_and_schema_load_from_the_environment_without_connecting(tmp_path: Path) -> None:
    # A closed port and an unknown host name: loading never connects.
    path = write(tmp_path, "usage: {url: '${PG}', schema: '${PG_SCHEMA}', retention_days: 7}\n")
    config = load_config(path, env={"PG": "postgresql://proxy:s3cret-pw@db.invalid:1/usage", "PG_SCHEMA": "team_a"})
    assert (config.usage.url, config.usage.schema, config.usage.path) == (
        "postgresql://proxy:s3cret-pw@db.invalid:1/usage", "team_a", None)
    assert config.usage.describe() == "PostgreSQL postgresql://proxy:***@db.invalid:1/usage, schema team_a"
    assert "s3cret-pw" not in repr(config) and "***" in repr(config)


def test_check_accepts_a_postgres_url_it_cannot_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "usage: {url: 'postgresql://postgres@127.0.0.1:1/test'}\n")
    assert main(["check", "--config", path]) == 0
    assert load_config(path, env={}).usage.describe() == "PostgreSQL postgresql://postgres@127.0.0.1:1/test, schema public"


@pytest.mark.parametrize("usage, words", [
    ("usage: {url: 'mysql://root@127.0.0.1/usage'}\n", ["usage.url", "postgresql://"]),
    ("usage: {url: 'postgresql://p@h/db', schema: 'team-a'}\n", ["usage.schema", "'team-a'", "letters, digits"]),
    ("usage: {url: 'postgresql://p@h/db', schema: '1st'}\n", ["usage.schema", "letters, digits"]),
    ("usage: {url: 42}\n", ["usage/url", "wrong type (expected string)"]),
    ("usage: {url: 'postgresql://p@h/db', path: usage.db}\n", ["either path (SQLite) or url (PostgreSQL)"]),
    ("usage: {schema: team_a}\n", ["usage.schema", "needs usage.url"]),
    ("usage: {queue_size: 0}\n", ["usage/queue_size", "less than the minimum of 1"]),
    ("usage: {queue_size: 5000000}\n", ["usage/queue_size", "maximum of 1000000"]),
    ("usage: {queue_size: lots}\n", ["usage/queue_size", "wrong type (expected integer)"]),
])
def test_bad_usage_settings_are_located_errors(tmp_path: Path, usage: str, words: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, usage)
    with pytest.raises(RulesError) as info:
        load_config(path, env={})
    text = info.value.render()
    assert f"{path}:2:" in text and all(w in text for w in words), text
    assert main(["check", "--config", path]) == 1
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_sqlite_is_described_too(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}).usage.describe() == "SQLite in memory"
    assert load_config(write(tmp_path, "usage: {path: u.db}\n"), env={}).usage.describe() == f"SQLite {tmp_path / 'u.db'}"


def test_safe_url_hides_only_the_password() -> None:
    assert safe_url("postgresql://u:p%40ss@h:5432/d?sslmode=require") == "postgresql://u:***@h:5432/d?sslmode=require"
    assert safe_url("postgresql://u@h/d") == "postgresql://u@h/d"
    assert safe_url("postgresql://h/d") == "postgresql://h/d"


def test_queue_size_is_read_and_its_default_is_the_stores_default(tmp_path: Path) -> None:
    import json

    from router.record.usage import QUEUE_SIZE, SQLiteUsageStore

    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "config.schema.json").read_text())
    default = schema["properties"]["usage"]["properties"]["queue_size"]["default"]
    assert default == QUEUE_SIZE == load_config(write(tmp_path, ""), env={}).usage.queue_size
    assert SQLiteUsageStore()._queue_size == QUEUE_SIZE
    assert load_config(write(tmp_path, "usage: {queue_size: 500, url: 'postgresql://p@h/db'}\n"),
                       env={}).usage.queue_size == 500
