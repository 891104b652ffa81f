"""``state:`` in config.yaml: the names of the contract, their defaults, located errors, and
``check`` validating them without contacting Redis."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from dsl.errors import RulesError
from router.cli import main
from router.config import DEFAULT_REDIS_URL, StateConfig, load_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text("backends: {echo: {type: echo}}\n" + text, encoding="utf-8")
    return str(path)


def test_memory_is_the_default(tmp_path):
    cfg = load_config(write(tmp_path, ""), env={})
    assert cfg.state == StateConfig() and cfg.state.store == "memory" and not cfg.state.shared
    assert cfg.state.url == DEFAULT_REDIS_URL and cfg.state.prefix == "lip"
    assert cfg.state.on_unavailable == "fail_open" and cfg.state.timeout_ms == 50


def test_every_name_of_the_contract_is_read(tmp_path):
    cfg = load_config(write(tmp_path, "state:\n  store: redis\n  url: redis://10.0.0.1:6380/2\n  prefix: team-a\n"
                                      "  on_unavailable: fail_closed\n  timeout_ms: 75\n"), env={})
    assert cfg.state == StateConfig("redis", "redis://10.0.0.1:6380/2", "team-a", "fail_closed", 75)


def test_url_from_the_environment(tmp_path):
    in_file = load_config(write(tmp_path, "state:\n  store: redis\n  url: ${REDIS_URL}\n"),
                          env={"REDIS_URL": "redis://127.0.0.1:7000/1"})
    assert in_file.state.url == "redis://127.0.0.1:7000/1"
    absent = load_config(write(tmp_path, "state:\n  store: redis\n"), env={"REDIS_URL": "rediss://cache:6380/0"})
    assert absent.state.url == "rediss://cache:6380/0"


@pytest.mark.parametrize("text, where, says", [
    ("state:\n  store: redix\n", ":3:10:", "redix"),
    ("state:\n  store: redis\n  url: http://127.0.0.1:6379\n", ":4:8:", "is not a Redis URL"),
    ("state:\n  on_unavailable: maybe\n", ":3:19:", "maybe"),
    ("state:\n  timeout_ms: 0\n", ":3:15:", "timeout_ms"),
    ("state:\n  prefix: 'has space'\n", ":3:11:", "prefix"),
    ("state:\n  host: x\n", "", "host"),
])
def test_bad_values_are_located(tmp_path, text, where, says):
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_config(path, env={})
    rendered = info.value.render() if not hasattr(info.value, "errors") else "\n".join(e.render() for e in info.value.errors)
    assert says in rendered and f"{path}{where}" in rendered


def test_a_password_in_the_url_is_never_shown(tmp_path):
    cfg = load_config(write(tmp_path, "state:\n  store: redis\n  url: redis://:s3cret-pw@127.0.0.1:6379/0\n"), env={})
    assert "s3cret-pw" not in cfg.state.describe() and "s3cret-pw" not in repr(cfg)
    assert "127.0.0.1:6379" in cfg.state.describe()


def test_check_validates_without_connecting(tmp_path, capsys):
    """A listening socket that never accepts: a client that connected would hang there; ``check``
    must answer at once and say which store the config names."""
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(0)
        port = trap.getsockname()[1]
        path = write(tmp_path, f"state:\n  store: redis\n  url: redis://127.0.0.1:{port}/0\n  prefix: chk\n")
        started = time.monotonic()
        assert main(["check", "--config", path]) == 0
        assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert f"state store: redis redis://127.0.0.1:{port}/0 prefix 'chk'" in err


def test_check_rejects_a_bad_state_section(tmp_path, capsys):
    assert main(["check", "--config", write(tmp_path, "state:\n  store: redis\n  url: mysql://x\n")]) == 1
    assert "is not a Redis URL" in capsys.readouterr().err
