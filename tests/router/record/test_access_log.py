"""The access log: exactly one line per request, and for chat requests the fields an operator
needs to find out why a request went where it went (request id, session, rule, backend, model)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import falcon.testing
import pytest

from ops_support import AUTH, build_app, post_chat, rule_file, wait_records
from proxy_support import sse_data
from router.record.logs import setup_logging


@pytest.fixture
def access_lines():
    """Access-log lines as our own handler writes them, in the given format."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def install(fmt: str) -> io.StringIO:
        setup_logging("info", fmt, ["sk-never-logged-123456"])
        out = io.StringIO()
        root.handlers[0].stream = out
        return out

    yield install
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def _access(out: io.StringIO) -> list[str]:
    logging.getLogger().handlers[0].flush()
    return [line for line in out.getvalue().splitlines()
            if "llm_proxy.access" in line and "/v2/usage/recent" not in line]  # wait_records polls that


async def test_one_text_line_per_request_with_rule_backend_and_model(tmp_path: Path, access_lines) -> None:
    out = access_lines("text")
    app = build_app(tmp_path, {"10.yaml": rule_file(("to-other", "model == 'gpt-4'", "other:mirror"))},
                    backends={"echo": {"type": "echo"}, "other": {"type": "echo"}})
    async with falcon.testing.ASGIConductor(app) as client:
        ok = await post_chat(client, text="hello", headers={"x-session-id": "sess-1"})
        assert ok.status_code == 200
        streamed = await post_chat(client, "anthropic", text="streamed", stream=True)
        assert sse_data(streamed.text)[-1]["type"] == "message_stop"
        bad = await client.simulate_post("/v2/chat/completions", headers=AUTH, body=b"{not json")
        assert bad.status_code == 400
        models = await client.simulate_get("/v2/models", headers=AUTH)
        assert models.status_code == 200
        await wait_records(client, 2)
    lines = _access(out)
    assert len(lines) == 4, lines  # one per request: two chats, the bad body, the listing
    chat = next(line for line in lines if ok.headers["x-request-id"] in line)
    assert "POST /v2/chat/completions 200" in chat
    for field in ("session=sess-1", "rule=to-other", "backend=other", "model=mirror"):
        assert field in chat, chat
    assert any(streamed.headers["x-request-id"] in line and "/v2/messages 200" in line for line in lines)
    assert any("POST /v2/chat/completions 400" in line for line in lines)
    assert any("GET /v2/models 200" in line for line in lines)


async def test_one_line_per_responses_request_streamed_kept_or_read_back(tmp_path: Path, access_lines) -> None:
    """POST /v2/responses gets its line from its usage record (no after-hook of its own), the
    GET of a stored reply from the resource, a refused body from the error handler."""
    out = access_lines("text")
    app = build_app(tmp_path, backends={"echo": {"type": "echo"}})
    async with falcon.testing.ASGIConductor(app) as client:
        plain = await client.simulate_post("/v2/responses", headers=AUTH, json={"model": "echo", "input": "hi"})
        assert plain.status_code == 200
        streamed = await client.simulate_post("/v2/responses", headers=AUTH,
                                              json={"model": "echo", "input": "hi", "stream": True})
        assert streamed.status_code == 200
        stored = await client.simulate_get(f"/v2/responses/{plain.json['id']}", headers=AUTH)
        assert stored.status_code == 200
        bad = await client.simulate_post("/v2/responses", headers=AUTH, json={"model": "echo"})
        assert bad.status_code == 400
        await wait_records(client, 2)  # the two answered; the refused body never reached the pipeline
    lines = _access(out)
    assert len(lines) == 4, lines
    assert sum("POST /v2/responses 200" in line for line in lines) == 2
    assert any(f"GET /v2/responses/{plain.json['id']} 200" in line for line in lines)
    assert any("POST /v2/responses 400" in line for line in lines)


async def test_json_lines_carry_the_fields_as_keys(tmp_path: Path, access_lines) -> None:
    out = access_lines("json")
    app = build_app(tmp_path, backends={"echo": {"type": "echo"}})
    async with falcon.testing.ASGIConductor(app) as client:
        ok = await post_chat(client, text="hello", headers={"x-session-id": "sess-2"})
        await wait_records(client, 1)
    [line] = [json.loads(x) for x in _access(out)]
    assert line["request_id"] == ok.headers["x-request-id"]
    assert (line["session"], line["backend"], line["status"]) == ("sess-2", "echo", 200)
    assert line["latency_ms"] >= 0 and line["level"] == "info"


def test_buffered_handler_batches_lines_and_writes_warnings_at_once() -> None:
    from router.record.logs import BufferedStreamHandler

    class CountingStream(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    stream = CountingStream()
    handler = BufferedStreamHandler(stream, interval=60, max_lines=50)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("test.buffered")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    try:
        for i in range(120):
            log.info("line %d", i)
        assert stream.writes == 2  # two batches of 50; 20 lines still pending
        log.warning("careful")
        assert stream.writes == 3 and stream.getvalue().splitlines()[-1] == "careful"
        assert stream.getvalue().splitlines() == [f"line {i}" for i in range(120)] + ["careful"]
    finally:
        log.removeHandler(handler)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_short_path_writes_what_a_log_record_would(access_lines, fmt: str) -> None:
    """AccessLog skips the LogRecord when only our handler listens: same line, same redaction."""
    from router.record.logs import AccessLog

    out = access_lines(fmt)
    fields = {"request_id": "r-1", "session": "s-1", "caller": "sk-never-logged-123456", "status": 200,
              "rules": ["a", "b"], "backend": None, "latency_ms": 1.5}
    message = "POST /v2/chat/completions 200 1.5ms key=sk-never-logged-123456 auth=Bearer abcdefghijklmnop"
    AccessLog("llm_proxy.access").info(message, lambda: fields)   # the short path
    logging.getLogger("llm_proxy.access").info(message, extra=fields)  # the ordinary path
    short, ordinary = _access(out)
    assert "sk-never-logged" not in out.getvalue() and "abcdefghijklmnop" not in out.getvalue()
    if fmt == "json":
        short_obj, ordinary_obj = json.loads(short), json.loads(ordinary)
        for obj in (short_obj, ordinary_obj):
            obj.pop("ts"), obj.pop("time")
        assert short_obj == ordinary_obj and short_obj["caller"] == "[redacted]"
    else:
        assert short.split(" ", 2)[2] == ordinary.split(" ", 2)[2]  # all but date and time
        assert short.split(" ")[1][8] == ","  # HH:MM:SS,mmm as logging writes it


def test_access_lines_reach_other_handlers_the_ordinary_way(caplog) -> None:
    from router.record.logs import AccessLog

    caplog.set_level(logging.INFO)
    AccessLog("llm_proxy.access").info("GET /x 200 1.0ms", lambda: {"caller": "k1"})
    [record] = [r for r in caplog.records if r.name == "llm_proxy.access"]
    assert record.getMessage() == "GET /x 200 1.0ms" and record.caller == "k1"


def test_lines_written_later_keep_the_time_the_request_ended(access_lines) -> None:
    """Access lines are written in batches (with the usage rows): each keeps its own time."""
    import time

    from router.record.logs import AccessLog

    ended = time.time() - 3600
    out = access_lines("json")
    AccessLog("llm_proxy.access").info("POST /x 200 1.0ms", lambda: {}, ended)
    [line] = [json.loads(x) for x in _access(out)]
    assert line["ts"] == round(ended, 3)

    class Collect(logging.Handler):  # another handler listening: the ordinary path keeps it too
        records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    collect = Collect()
    logging.getLogger("llm_proxy.access").addHandler(collect)
    try:
        AccessLog("llm_proxy.access").info("POST /y 200 1.0ms", lambda: {}, ended)
    finally:
        logging.getLogger("llm_proxy.access").removeHandler(collect)
    [record] = collect.records
    assert record.getMessage() == "POST /y 200 1.0ms" and record.created == ended


async def test_v1_paths_carry_deprecation_headers_on_success_and_error(tmp_path: Path) -> None:
    app = build_app(tmp_path, backends={"echo": {"type": "echo"}})
    async with falcon.testing.ASGIConductor(app) as client:
        ok = await client.simulate_get("/v1/models", headers=AUTH)
        denied = await client.simulate_get("/v1/models")  # no key: 401, still marked
        bad = await client.simulate_post("/v1/chat/completions", headers=AUTH, body=b"{")
        current = await client.simulate_get("/v2/models", headers=AUTH)
    for reply, status in ((ok, 200), (denied, 401), (bad, 400)):
        assert reply.status_code == status
        assert reply.headers["deprecation"] == "true"
        assert reply.headers["link"].startswith("</v2/") and 'rel="successor-version"' in reply.headers["link"]
    assert "deprecation" not in current.headers


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_batch_of_lines_is_what_the_lines_one_by_one_are(access_lines, fmt: str) -> None:
    """The recorder writes its batches with ``info_many``: the same lines as ``info`` one at a
    time, redacted line by line when anything in the batch looks secret."""
    from router.record.logs import AccessLog

    out = access_lines(fmt)
    log = AccessLog("llm_proxy.access")
    clean = [(f"POST /v2/chat/completions 200 {i}.0ms request=r-{i}", (lambda i=i: {"n": i}), 1_700_000_000.0 + i)
             for i in range(5)]
    secret = [("POST /v2/x 401 1.0ms key=sk-never-logged-123456", lambda: {"caller": "sk-never-logged-123456"},
               1_700_000_010.0),
              ("GET /x auth=Bearer\nabcdefghijklmnop", lambda: {}, 1_700_000_011.0)]
    for batch in (clean, clean[:2] + secret + clean[2:]):
        log.info_many(batch)
        many = _access(out)
        out.seek(0), out.truncate()
        for message, fields, created in batch:
            log.info(message, fields, created)
        one_by_one = _access(out)
        out.seek(0), out.truncate()
        assert many == one_by_one and len(many) >= len(batch)
        assert "sk-never-logged" not in "\n".join(many) and "abcdefghijklmnop" not in "\n".join(many)
    assert "request=r-4" in many[-1]


def test_a_batch_reaches_other_handlers_the_ordinary_way(caplog) -> None:
    from router.record.logs import AccessLog

    caplog.set_level(logging.INFO)
    AccessLog("llm_proxy.access").info_many([("GET /a 200 1.0ms", lambda: {"caller": "k1"}, 1.0),
                                             ("GET /b 200 1.0ms", lambda: {"caller": "k2"}, 2.0)])
    records = [r for r in caplog.records if r.name == "llm_proxy.access"]
    assert [(r.getMessage(), r.caller, r.created) for r in records] == [("GET /a 200 1.0ms", "k1", 1.0),
                                                                        ("GET /b 200 1.0ms", "k2", 2.0)]


FORGED = "2026-01-01 00:00:00,000 INFO llm_proxy.access: POST /v2/chat/completions 200 forged"


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_control_characters_cannot_forge_a_line(tmp_path: Path, access_lines, fmt: str) -> None:
    """A model name or a path with a line break (``%0a``), a carriage return, an escape sequence or
    a Unicode line separator is written escaped: every record stays one line, nothing forged."""
    out = access_lines(fmt)
    app = build_app(tmp_path, backends={"echo": {"type": "echo"}})
    nasty = ["\n" + FORGED, "\r" + FORGED, "\x1b[2K\r" + FORGED, "\u2028" + FORGED, "\x85" + FORGED]
    async with falcon.testing.ASGIConductor(app) as client:
        for tail in nasty:
            assert (await post_chat(client, model="echo:m" + tail)).status_code == 200
        assert (await client.simulate_get("/v2/models%0a" + FORGED.replace(" ", "%20"), headers=AUTH)).status_code == 404
        await wait_records(client, len(nasty))
    logging.getLogger().handlers[0].flush()
    text = out.getvalue()
    lines = text.splitlines()  # splits on \r, \x85 and \u2028 too, as many log readers do
    assert not any(line.startswith("2026-01-01") or line.startswith("INFO") for line in lines), text
    assert all(line.startswith("{") for line in lines) if fmt == "json" else all(line[:2] == "20" for line in lines)
    [path_line] = [line for line in lines if "GET /v2/models" in line]
    chats = [line for line in lines if "POST /v2/chat/completions" in line and line != path_line]
    assert len(chats) == len(nasty), chats
    if fmt == "text":
        assert "GET /v2/models\\n2026-01-01" in path_line, path_line
        for escaped in ("model=m\\n2026-01-01", "model=m\\r2026", "model=m\\x1b[2K\\r2026", "model=m\\u2028", "\\x85"):
            assert any(escaped in line for line in chats), (escaped, chats)
    else:
        assert json.loads(path_line)["message"].startswith("GET /v2/models\n2026-01-01")
        assert sorted(json.loads(line)["model"] for line in chats) == sorted("m" + tail for tail in nasty)


def test_a_traceback_stays_under_its_line(access_lines) -> None:
    """Tracebacks are several lines by nature: each is marked as a continuation, so an exception
    message cannot start a line that looks like a record of its own."""
    out = access_lines("text")
    try:
        raise ValueError("bad input\n" + FORGED)
    except ValueError:
        logging.getLogger("llm_proxy.test").exception("failed on %s", "x\ny")
    logging.getLogger().handlers[0].flush()
    head, *rest = out.getvalue().splitlines()
    assert head.endswith("llm_proxy.test: failed on x\\ny")
    assert rest and all(line.startswith("  | ") for line in rest), rest
    assert any(FORGED in line for line in rest)
