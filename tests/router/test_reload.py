"""Hot reload: good, bad and partial changes through the API, the reloader and the file watcher;
under concurrent load with zero failed requests; sessions and generations across reloads."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import falcon.testing
import httpx

from ops_support import (
    ADMIN, ADMIN_KEY, AUTH, CLIENT_KEY, build_app, parse_metrics, post_chat, rule_file, samples, wait_for, wait_records,
)
from proxy_support import LiveServer, chat_body, reply_model

X_TO_OTHER = rule_file(("x-to-other", 'model == "x"', "other:from-x"))
Y_TO_OTHER = rule_file(("y-to-other", 'model == "y"', "other:from-y"))
BAD_SYNTAX = 'rules:\n  - name: broken\n    when: model === "x"\n    route: other\n'


def touch(path: Path, text: str) -> None:
    """Write ``text`` and move the mtime forward, so a watcher sees a change even on coarse clocks."""
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def model_of(client, model: str) -> str:
    result = await post_chat(client, model=model)
    assert result.status_code == 200, result.text
    return reply_model("openai", result)


def quiet(app):  # no file watcher: these tests decide when to reload
    app.reloader.watch = False
    return app


async def test_good_reload_via_api_and_reloader(tmp_path: Path) -> None:
    app = quiet(build_app(tmp_path, auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]}))
    routes = tmp_path / "routes.d"
    async with falcon.testing.ASGIConductor(app) as client:
        assert await model_of(client, "x") == "x"
        (routes / "10-x.yaml").write_text(X_TO_OTHER)
        assert await model_of(client, "x") == "x"  # nothing changes until a reload
        assert (await client.simulate_post("/v2/admin/reload", headers=AUTH)).status_code == 403
        assert app.state_ref.generation == 0
        result = await client.simulate_post("/v2/admin/reload", headers=ADMIN)
        assert result.status_code == 200, result.text
        assert result.json["status"] == "reloaded" and result.json["generation"] == 1
        assert "1 rule(s)" in result.json["detail"]
        assert await model_of(client, "x") == "from-x"

        (routes / "20-y.yaml").write_text(Y_TO_OTHER)
        ok, message = await app.reloader.reload(actor="test")
        assert ok and "generation 2" in message and app.state_ref.generation == 2
        assert await model_of(client, "y") == "from-y" and await model_of(client, "x") == "from-x"
        (routes / "10-x.yaml").unlink()
        assert (await app.reloader.reload())[0]
        assert await model_of(client, "x") == "x" and await model_of(client, "y") == "from-y"


async def test_bad_file_is_rejected_with_compiler_error_and_old_rules_keep_serving(tmp_path: Path) -> None:
    app = quiet(build_app(tmp_path, {"10-x.yaml": X_TO_OTHER}))
    routes = tmp_path / "routes.d"
    async with falcon.testing.ASGIConductor(app) as client:
        assert await model_of(client, "x") == "from-x"
        (routes / "10-x.yaml").write_text(BAD_SYNTAX)
        result = await client.simulate_post("/v2/admin/reload", headers=AUTH)
        assert result.status_code == 400
        message = result.json["error"]["message"]
        lines = message.splitlines()
        assert lines[0].startswith(f"{routes / '10-x.yaml'}:3:19: error:"), message
        assert lines[1].strip() == 'when: model === "x"' and lines[2].strip() == "^", message
        assert lines[2].index("^") == lines[1].index("=") + 2  # the caret under the third '='
        assert app.state_ref.generation == 0
        assert await model_of(client, "x") == "from-x"  # the last good rules still serve

        # a broken config.yaml is rejected the same way
        (routes / "10-x.yaml").write_text(X_TO_OTHER)
        config = tmp_path / "config.yaml"
        good_config = config.read_text()
        config.write_text(good_config + "proxy_timeout: -1\n")
        result = await client.simulate_post("/v2/admin/reload", headers=AUTH)
        assert result.status_code == 400 and f"{config}:" in result.json["error"]["message"]
        config.write_text(good_config)

        async def audited() -> list[dict]:
            body = (await client.simulate_get("/v2/audit/logs", headers=AUTH,
                                              params={"type": "config_reload"})).json["data"]
            return body if len(body) >= 2 else []

        entries = await wait_for(audited)
        assert [e["outcome"] for e in entries] == ["rejected", "rejected"]
        assert "10-x.yaml:3:19" in entries[1]["detail"]["errors"] and entries[1]["detail"]["reason"] == "api"
        assert (await app.reloader.reload())[0] and app.state_ref.generation == 1


async def test_one_bad_file_among_good_ones_rejects_the_whole_reload(tmp_path: Path) -> None:
    app = quiet(build_app(tmp_path, {"10-x.yaml": X_TO_OTHER}))
    routes = tmp_path / "routes.d"
    async with falcon.testing.ASGIConductor(app) as client:
        before = app.state_ref.state
        (routes / "20-y.yaml").write_text(Y_TO_OTHER)  # good
        (routes / "10-x.yaml").write_text(X_TO_OTHER.replace("from-x", "changed-x"))  # good
        (routes / "30-bad.yaml").write_text(rule_file(("z", 'model == "z"', "nosuch")))  # bad: unknown backend
        ok, message = await app.reloader.reload()
        assert not ok and "30-bad.yaml:4:12: error: unknown backend 'nosuch'" in message
        assert app.state_ref.state is before and app.state_ref.generation == 0
        assert await model_of(client, "x") == "from-x"  # not the half-applied "changed-x"
        assert await model_of(client, "y") == "y"  # the good new file was not applied either
        (routes / "30-bad.yaml").unlink()
        assert (await app.reloader.reload())[0]
        assert await model_of(client, "x") == "changed-x" and await model_of(client, "y") == "from-y"


async def test_sessions_survive_a_reload(tmp_path: Path) -> None:
    app = quiet(build_app(tmp_path))
    async with falcon.testing.ASGIConductor(app) as client:
        session = {"x-session-id": "sticky-1"}
        assert (await post_chat(client, text="!/backend(other)", headers=session)).status_code == 200
        before = await post_chat(client, text="before", headers=session)
        (tmp_path / "routes.d" / "10-x.yaml").write_text(X_TO_OTHER)
        assert (await app.reloader.reload())[0]
        after = await post_chat(client, text="after", headers=session)
        plain = await post_chat(client, text="no session")
        records = {r["request_id"]: r for r in await wait_records(client, 4)}
        assert records[before.headers["x-request-id"]]["backend"] == "other"
        assert records[after.headers["x-request-id"]]["backend"] == "other"
        assert records[plain.headers["x-request-id"]]["backend"] == "echo"
        assert after.headers["x-session-id"] == "sticky-1"


async def test_generation_and_metric_follow_reloads(tmp_path: Path) -> None:
    app = quiet(build_app(tmp_path))
    routes = tmp_path / "routes.d"

    async def generation_metric(client) -> float:
        metrics = parse_metrics((await client.simulate_get("/metrics", headers=AUTH)).text)
        return samples(metrics, "llm_proxy_config_generation")[0].value

    async with falcon.testing.ASGIConductor(app) as client:
        assert await generation_metric(client) == 0
        expected = 0
        for i, text in enumerate([X_TO_OTHER, BAD_SYNTAX, Y_TO_OTHER, BAD_SYNTAX, X_TO_OTHER]):
            (routes / "10-r.yaml").write_text(text)
            ok, _ = await app.reloader.reload()
            assert ok == (text is not BAD_SYNTAX)
            expected += ok
            assert app.state_ref.generation == expected
            assert app.state_ref.metrics.config_generation._value.get() == expected
            assert await generation_metric(client) == expected
        assert expected == 3


async def test_file_watcher_applies_a_change_on_a_live_server(tmp_path: Path) -> None:
    app = build_app(tmp_path, auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN_KEY]})  # admins read every actor's audit rows
    app.reloader.poll_interval, app.reloader.debounce = 0.05, 0.05
    server = LiveServer(app).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
            async def model(name: str) -> str:
                result = await client.post("/v2/chat/completions", json=chat_body("openai", "hi", model=name))
                assert result.status_code == 200, result.text
                return result.json()["model"]

            assert await model("x") == "x"
            started = time.monotonic()
            touch(tmp_path / "routes.d" / "10-x.yaml", X_TO_OTHER)

            async def applied() -> bool:
                return await model("x") == "from-x"

            await wait_for(applied, timeout=4)
            assert time.monotonic() - started < 4 and app.state_ref.generation == 1
            # a bad edit is rejected by the watcher too; the good rules keep serving
            touch(tmp_path / "routes.d" / "10-x.yaml", BAD_SYNTAX)

            async def rejected() -> bool:
                logs = (await client.get("/v2/audit/logs", params={"type": "config_reload"}, headers=ADMIN)).json()["data"]
                return any(e["outcome"] == "rejected" and e["actor"] == "file-watcher" for e in logs)

            await wait_for(rejected, timeout=4)
            assert await model("x") == "from-x" and app.state_ref.generation == 1
            touch(tmp_path / "routes.d" / "10-x.yaml", Y_TO_OTHER)
            await wait_for(lambda: _is(model("y"), "from-y"), timeout=4)
            assert await model("x") == "x" and app.state_ref.generation == 2
    finally:
        await asyncio.to_thread(server.stop)


async def _is(value, expected) -> bool:
    return (await value) == expected


async def test_reloads_under_concurrent_load_drop_no_request(tmp_path: Path) -> None:
    app = build_app(tmp_path, {"10-x.yaml": X_TO_OTHER})
    app.reloader.watch = False
    routes = tmp_path / "routes.d"
    server = LiveServer(app).start()
    failures: list[str] = []
    done = 0
    try:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, limits=limits, timeout=10) as client:
            async def worker(n: int) -> None:
                nonlocal done
                for i in range(100):
                    model = ("x", "y", "gpt-4")[i % 3]
                    stream = i % 4 == 0
                    text = f"w{n} r{i}"
                    try:
                        result = await client.post("/v2/chat/completions",
                                                   json=chat_body("openai", text, model=model, stream=stream))
                        if result.status_code != 200 or text not in result.text:
                            failures.append(f"{result.status_code} {result.text[:200]}")
                    except Exception as exc:  # noqa: BLE001
                        failures.append(repr(exc))
                    done += 1

            configs = [Y_TO_OTHER, BAD_SYNTAX, X_TO_OTHER, rule_file(("bad", "model == 'q'", "nowhere")),
                       Y_TO_OTHER + "  - name: extra\n    when: model == \"x\"\n    route: echo:x-again\n",
                       BAD_SYNTAX, X_TO_OTHER]
            progress: list[int] = []

            async def reloader() -> list[int]:
                """Cycle through good and bad configs for as long as the load runs (7 reloads at least)."""
                statuses = []
                while len(statuses) < len(configs) or done < 400:
                    text = configs[len(statuses) % len(configs)]
                    await asyncio.sleep(0.02)
                    (routes / "10-x.yaml").write_text(text)
                    (routes / "20-more.yaml").write_text(Y_TO_OTHER if text is X_TO_OTHER else "rules: []\n")
                    progress.append(done)
                    result = await client.post("/v2/admin/reload")
                    statuses.append(result.status_code)
                return statuses

            results = await asyncio.gather(*(worker(n) for n in range(4)), reloader())
        statuses = results[-1]
        expected = [400 if configs[i % len(configs)] is BAD_SYNTAX or i % len(configs) == 3 else 200
                    for i in range(len(statuses))]
        assert statuses == expected, statuses
        assert sum(1 for d in progress if 0 < d < 400) >= 3, progress  # the reloads overlapped the load
        assert done == 400 and failures == [], failures[:5]
        assert app.state_ref.generation == expected.count(200)
    finally:
        await asyncio.to_thread(server.stop)


async def test_connectors_retired_by_a_reload_are_closed_at_shutdown(tmp_path: Path) -> None:
    app = quiet(build_app(tmp_path))
    async with falcon.testing.ASGIConductor(app):
        old_other = app.state_ref.state.backends["other"]
        closed: list[str] = []
        original = old_other.aclose

        async def aclose() -> None:
            closed.append("other")
            await original()

        old_other.aclose = aclose
        config = tmp_path / "config.yaml"
        config.write_text(config.read_text().replace("other:\n    type: echo", "other:\n    type: echo\n    models: [o2]"))
        assert (await app.reloader.reload())[0]
        assert app.state_ref.state.backends["other"] is not old_other and closed == []  # in-flight requests may use it
    assert closed == ["other"]  # closed at shutdown, not leaked


async def test_keys_added_by_a_reload_are_redacted_in_logs(tmp_path: Path) -> None:
    """The log redaction learns a reloaded config's keys (it knew only those of the start)."""
    import io
    import logging

    import yaml

    from router.record.logs import setup_logging

    new_key = "opaque-reloaded-key-0123456789"  # no credential shape: only its value finds it
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging("info", "text", [CLIENT_KEY])
    out = io.StringIO()
    root.handlers[0].stream = out
    try:
        app = quiet(build_app(tmp_path))
        config = tmp_path / "config.yaml"
        data = yaml.safe_load(config.read_text())
        data["backends"]["up"] = {"type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": new_key}
        config.write_text(yaml.safe_dump(data))
        ok, message = await app.reloader.reload(actor="test")
        assert ok, message
        logging.getLogger("backends.up").warning("upstream echoed %s and %s", new_key, CLIENT_KEY)
        root.handlers[0].flush()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert "upstream echoed [redacted] and [redacted]" in out.getvalue(), out.getvalue()


async def test_a_rejected_reload_quotes_no_key_of_the_file(tmp_path: Path) -> None:
    """A bad line that holds a key (a literal one, or one the running config knows) is quoted in
    the reload's errors: the reply and the audit row show it redacted. Before, the reply to the
    (client) key that asked for the reload and the stored audit row carried the key."""
    app = quiet(build_app(tmp_path, auth={"api_keys": [CLIENT_KEY]}))
    config = tmp_path / "config.yaml"
    known = "opaque-known-key-0123456789"  # no credential shape: only its value finds it
    good = config.read_text()
    async with falcon.testing.ASGIConductor(app) as client:
        config.write_text(good.replace("backends:\n", "backends:\n  up: {type: openai-compatible, "
                                       f"base_url: 'http://127.0.0.1:9/v1', api_key: {known}}}\n", 1))
        assert (await client.simulate_post("/v2/admin/reload", headers=AUTH)).status_code == 200
        config.write_text(good.replace("backends:\n", "backends:\n  up: {type: openai, api_key: "
                                       "sk-live-literal0123456789abcdef, timeout: soon}\n"
                                       f"  up2: {{type: openai, headers: {{x-team: {known}}}, timeout: soon}}\n", 1))
        result = await client.simulate_post("/v2/admin/reload", headers=AUTH)
        assert result.status_code == 400 and "'soon' has the wrong type" in result.json["error"]["message"]
        assert "sk-live-literal" not in result.text and known not in result.text, result.text

        async def rejected() -> list[dict]:
            body = (await client.simulate_get("/v2/audit/logs", headers=AUTH,
                                              params={"type": "config_reload"})).json["data"]
            return [e for e in body if e["outcome"] == "rejected"]

        entry = (await wait_for(rejected))[0]
        assert "[redacted]" in entry["detail"]["errors"]
        assert "sk-live-literal" not in entry["detail"]["errors"] and known not in entry["detail"]["errors"]
