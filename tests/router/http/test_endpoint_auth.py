"""``metrics.auth`` and ``health.auth``: who may read ``/metrics`` and ``/health/backends``
(``admin`` by default, ``client``, or ``none`` for a Prometheus scrape); the schema (so ``check``)
knows the keys."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from dsl.errors import RulesError
from ops_support import ADMIN, ADMIN_KEY, AUTH, CLIENT_KEY, build_app, write_tree
from router.cli import main
from router.config import load_config

KEYS = {"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]}
EXPECTED = {  # level -> status without a key, with a client key, with an admin key
    None: (401, 403, 200),
    "admin": (401, 403, 200),
    "client": (401, 200, 200),
    "none": (200, 200, 200),
}


@pytest.mark.parametrize("path,section", [("/metrics", "metrics"), ("/health/backends", "health")])
@pytest.mark.parametrize("level", list(EXPECTED))
async def test_who_may_read(tmp_path: Path, path: str, section: str, level: str | None) -> None:
    overrides = {section: {"auth": level}} if level else {}
    app = build_app(tmp_path, auth=KEYS, **overrides)
    async with falcon.testing.ASGIConductor(app) as client:
        got = tuple([(await client.simulate_get(path, headers=h)).status_code for h in ({}, AUTH, ADMIN)])
        assert got == EXPECTED[level]
        # the other operator endpoints keep needing an admin key
        assert (await client.simulate_get("/v2/usage/stats", headers=AUTH)).status_code == 403
        assert (await client.simulate_get("/v2/audit/logs")).status_code == 401


async def test_none_keeps_local_modes_browser_guard(tmp_path: Path) -> None:
    from router.app import create_app

    path = write_tree(tmp_path, metrics={"auth": "none"})
    text = path.read_text().replace("api_keys:\n  - " + CLIENT_KEY, "api_keys: []")
    path.write_text(text)
    app = create_app(load_config(str(path), env={}), loopback=True)
    async with falcon.testing.ASGIConductor(app) as client:
        assert (await client.simulate_get("/metrics", host="localhost")).status_code == 200
        assert (await client.simulate_get("/metrics", host="evil.example")).status_code == 403


def test_schema_and_check_know_the_keys(tmp_path: Path, capsys) -> None:
    path = write_tree(tmp_path, metrics={"auth": "public"})
    with pytest.raises(RulesError) as info:
        load_config(str(path), env={})
    assert "metrics/auth: 'public' is not allowed (expected one of admin, client, none)" in str(info.value)
    assert main(["check", "--config", str(path)]) == 1
    assert "public" in capsys.readouterr().err
    path = write_tree(tmp_path, metrics={"auth": "none"}, health={"auth": "client"})
    assert main(["check", "--config", str(path)]) == 0
    config = load_config(str(path), env={})
    assert (config.metrics_auth, config.health_auth) == ("none", "client")
