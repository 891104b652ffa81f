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
def test_access_lines_are_log_records_through_our_handler(access_lines, fmt: str) -> None:
    """No side path: a finished request's access line is a LogRecord that our handler emits
    (filters and formatter as for any record), redacted like any other line."""
    from router.record.metrics import Metrics
    from router.record.recorder import Recorder, RequestRecord
    from router.record.usage import SQLiteUsageStore

    out = access_lines(fmt)
    handler = logging.getLogger().handlers[0]
    emitted: list[logging.LogRecord] = []
    handler.emit = lambda record, emit=handler.emit: (emitted.append(record), emit(record))[1]  # type: ignore
    rec = RequestRecord("r-1", "openai", "m", session_id="s-1", caller="sk-never-logged-123456", started=0.0,
                        path="/v2/chat/completions key=sk-never-logged-123456 auth=Bearer abcdefghijklmnop")
    Recorder(SQLiteUsageStore(), Metrics()).finish(rec)
    [line] = _access(out)
    assert [r.name for r in emitted] == ["llm_proxy.access"] and emitted[0].request_id == "r-1"
    assert "sk-never-logged" not in out.getvalue() and "abcdefghijklmnop" not in out.getvalue()
    if fmt == "json":
        assert json.loads(line)["caller"] == "[redacted]" and json.loads(line)["session"] == "s-1"
    else:
        assert line.split(" ")[1][8] == ","  # HH:MM:SS,mmm as logging writes it
        assert "request=r-1 session=s-1" in line


def test_access_lines_reach_other_handlers_the_ordinary_way(caplog) -> None:
    from router.record.metrics import Metrics
    from router.record.recorder import Recorder, RequestRecord
    from router.record.usage import SQLiteUsageStore

    caplog.set_level(logging.INFO)
    recorder = Recorder(SQLiteUsageStore(), Metrics())
    for caller in ("k1", "k2"):
        recorder.finish(RequestRecord(f"r-{caller}", "openai", "m", caller=caller, path="/v2/chat/completions"))
    records = [r for r in caplog.records if r.name == "llm_proxy.access"]
    assert [(r.getMessage().split(" ")[:3], r.caller) for r in records] == [
        (["POST", "/v2/chat/completions", "200"], "k1"), (["POST", "/v2/chat/completions", "200"], "k2")]


def test_an_access_line_carries_the_time_its_request_ended(access_lines) -> None:
    import time

    from router.record.metrics import Metrics
    from router.record.recorder import Recorder, RequestRecord
    from router.record.usage import SQLiteUsageStore

    out = access_lines("json")
    before = time.time()
    Recorder(SQLiteUsageStore(), Metrics()).finish(RequestRecord("r-1", "openai", "m", started=0.0))
    after = time.time()
    [line] = [json.loads(x) for x in _access(out)]
    assert round(before, 3) <= line["ts"] <= round(after, 3) + 0.001


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
    """Our handler writes lines in batches: the text must be exactly what logging's own
    StreamHandler writes line by line with the same filter and formatter, secrets included."""
    out = access_lines(fmt)
    ours = logging.getLogger().handlers[0]
    plain_out = io.StringIO()
    plain = logging.StreamHandler(plain_out)
    plain.setFormatter(ours.formatter)
    for flt in ours.filters:
        plain.addFilter(flt)
    log = logging.getLogger("llm_proxy.access")
    lines = [(f"POST /v2/chat/completions 200 {i}.0ms request=r-{i}", {"n": i}) for i in range(5)]
    lines[2:2] = [("POST /v2/x 401 1.0ms key=sk-never-logged-123456", {"caller": "sk-never-logged-123456"}),
                  ("GET /x auth=Bearer\nabcdefghijklmnop", {})]
    for message, fields in lines:
        record = log.makeRecord(log.name, logging.INFO, "(test)", 0, message, (), None, extra=fields)
        ours.handle(record)
        plain.handle(record)
    batched = _access(out)
    assert batched == [line for line in plain_out.getvalue().splitlines() if "llm_proxy.access" in line]
    assert len(batched) == len(lines) and "request=r-4" in batched[-1]
    assert "sk-never-logged" not in "\n".join(batched) and "abcdefghijklmnop" not in "\n".join(batched)


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
