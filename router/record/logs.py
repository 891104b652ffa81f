"""Logging set-up: readable text by default, JSON lines with ``--log-format json``, and a
redaction filter on every handler so no API key or OAuth token reaches a log, whoever logs it.

The redaction is :mod:`backends.redaction`'s, the same that connectors apply to provider text.
Log lines are also made unforgeable: a control character in a message (``%0a`` in a path, an
escape sequence in a model name) is written escaped, so one record is always one line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Callable, Iterable

from backends.redaction import Redactor

from ..wire import fastjson

# Characters that would break a line or hide text on a terminal: C0 and C1 controls, DEL, the
# Unicode line and paragraph separators, and the bidirectional overrides.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """``text`` on one line: control and line-breaking characters written as ``\\n``, ``\\x1b``, ``\\u2028``."""
    if text.isprintable():  # the common case, one fast C-level scan
        return text
    return _UNSAFE.sub(_escape, text)


def _json_safe(line: str) -> str:
    """A JSON line with the characters JSON may leave raw but line readers split on escaped."""
    if line.isprintable():
        return line
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Extra fields never written: uvicorn's ``color_message`` is its message again with ANSI colour
# escapes, for its own terminal formatter; in a JSON line it only repeated the message with noise.
_NOT_WRITTEN = _STANDARD | {"color_message"}


class RedactingFilter(logging.Filter):
    """Replaces known secrets and credential-shaped strings in the final message (and extras)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)
        self.secrets = self.redactor.secrets
        # Every log line passes through: "is anything secret-shaped here at all" is one cheap test.
        self.suspects: Callable[[str], bool] = self.redactor.suspects
        self.scrub: Callable[[str], str] = self.redactor

    def scrub_line(self, message: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A message and its string fields: one scan over all of them, the per-field work only
        when something looks secret."""
        texts = [v for v in fields.values() if isinstance(v, str)]
        if not self.suspects("\n".join([message, *texts])):
            return message, fields
        return self.scrub(message), {k: self.scrub(v) if isinstance(v, str) else v for k, v in fields.items()}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        attributes = record.__dict__
        for key in attributes.keys() - _STANDARD:  # the ``extra`` fields
            value = attributes[key]
            if isinstance(value, str):
                attributes[key] = self.scrub(value)
        return True


def _continuation(text: str) -> str:
    """A traceback under its line: each of its lines marked as a continuation and kept on one line,
    so text in an exception message cannot pass for a log line of its own."""
    return "\n".join(["  | " + escape_controls(line) for line in text.split("\n")])


class TextFormatter(logging.Formatter):
    """``time level logger: message``; the time text is made once per second, not once per line.
    The message is escaped (:func:`escape_controls`), a traceback follows as continuation lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._time(record.created)

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._stamp},{int((created - second) * 1000):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = self.line(record.created, record.levelname, record.name, record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + _continuation(record.exc_text)
        if record.stack_info:
            text += "\n" + _continuation(self.formatStack(record.stack_info))
        return text

    def line(self, created: float, levelname: str, name: str, message: str) -> str:
        """What :meth:`format` makes of a record without exception."""
        return f"{self._time(created)} {levelname} {name}: {escape_controls(message)}"

    def lines(self, levelname: str, name: str, messages: list[str], created: list[float], end: str) -> str:
        """The lines of several records at once, as :meth:`line` writes each (the access log's
        batches): one printability test for the batch, the per-line escaping only when it fails."""
        if not all(map(str.isprintable, messages)):
            messages = list(map(escape_controls, messages))
        time_of = self._time
        return "".join([f"{time_of(when)} {levelname} {name}: {message}{end}" for message, when in zip(messages, created)])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        attributes = record.__dict__
        fields = {key: attributes[key] for key in attributes.keys() - _NOT_WRITTEN if not key.startswith("_")}
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields, record.exc_text)

    def line(self, created: float, levelname: str, name: str, message: str, fields: dict[str, Any],
             exc_text: str | None = None) -> str:
        out = {"ts": round(created, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)),
               "level": levelname.lower(), "logger": name, "message": message, **fields}
        if exc_text:
            out["exception"] = exc_text
        return _json_safe(fastjson.dumps_str(out, default=str))


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes lines in batches, not one write system call per request.

    ``sys.stderr`` is line-buffered even when redirected (Python >= 3.9), so writing to it line by
    line costs a system call per line; the lines are kept here instead and written together when
    ``max_lines`` are pending, at once for WARNING and above, at most ``interval`` seconds later by
    a small daemon thread, and at exit (``logging.shutdown`` flushes every handler).
    """

    def __init__(self, stream: Any = None, interval: float = 0.5, max_lines: int = 256) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._max_lines = max_lines
        self._wake = threading.Event()
        thread = threading.Thread(target=self._flusher, args=(interval,), name="log-flusher", daemon=True)
        thread.start()

    def _flusher(self, interval: float) -> None:
        while not self._wake.wait(interval):
            try:
                self.flush()
            except (OSError, ValueError):  # stream closed at shutdown
                return

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
            super().flush()

    def _write_pending(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self.stream.write(text)

    def setStream(self, stream: Any) -> Any:  # noqa: N802 - logging's name
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        return super().setStream(stream)

    def write_lines(self, levelname: str, name: str,
                    lines: list[tuple[str, Callable[[], dict[str, Any]], float | None]]) -> bool:
        """Format and queue (message, fields, created) lines without LogRecords, as :meth:`format`
        would write them, under one lock; False when this handler is set up in a way the short
        path does not know (other filters or formatter): then log normally. Text lines get one
        redaction scan over the whole batch (the per-line scrub only when it finds something);
        ``fields`` is only called when the format prints them (JSON)."""
        formatter, filters = self.formatter, self.filters
        if any(type(f) is not RedactingFilter for f in filters):
            return False
        end, now = self.terminator, time.time()
        if type(formatter) is TextFormatter:
            # Redaction first, on the text as logged (escaping would hide ``Bearer\n<token>``).
            messages = [message for message, _fields, _created in lines]
            if any(redactor.suspects("\n".join(messages)) for redactor in filters):  # type: ignore[attr-defined]
                for redactor in filters:
                    messages = list(map(redactor.scrub, messages))  # type: ignore[attr-defined]
            chunk = formatter.lines(levelname, name, messages, [created or now for _m, _f, created in lines], end)
        elif type(formatter) is JsonFormatter:
            chunk = "".join([formatter.line(created or now, levelname, name, *self._redacted(message, fields())) + end
                             for message, fields, created in lines])
        else:
            return False
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            pending.append(chunk)
            if len(pending) + len(lines) > self._max_lines:
                self._write_pending()
        return True

    def _redacted(self, message: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        for redactor in self.filters:
            message, fields = redactor.scrub_line(message, fields)  # type: ignore[union-attr]
        return message, fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            pending = self._pending
            pending.append(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING or len(pending) >= self._max_lines:
                self._write_pending()
                if record.levelno >= logging.WARNING:
                    self.stream.flush()
        except RecursionError:  # pragma: no cover - as logging.StreamHandler does
            raise
        except Exception:  # noqa: BLE001
            self.handleError(record)


class AccessLog:
    """The one info line per request, without the cost of a LogRecord when it can.

    At a few thousand requests a second the logging machinery (record, filters, handler lock,
    formatter) was ~8% of the proxy's CPU. When the line would end up only in our own handler (the
    logger and its parents have no other handlers or filters), it is formatted and queued there
    directly, redacted and formatted exactly as a record would be; otherwise (tests capturing
    logs, an operator's own logging set-up) it is logged the ordinary way.
    """

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def info(self, message: str, fields: Callable[[], dict[str, Any]], created: float | None = None) -> None:
        """``fields`` makes the ``extra`` fields; text lines do not print them, so it may not be called.
        ``created``: when it happened, if that was earlier than now (lines written in batches)."""
        self.info_many([(message, fields, created)])

    def info_many(self, lines: list[tuple[str, Callable[[], dict[str, Any]], float | None]]) -> None:
        """Several lines of (message, fields, created) at once (the recorder's batches): one handler
        lookup, one redaction scan and one lock for all of them when only our handler listens."""
        logger = self.logger
        if not lines or not logger.isEnabledFor(logging.INFO):
            return
        handler = _sole_handler(logger)
        if handler is not None and handler.write_lines("INFO", logger.name, lines):
            return
        for message, fields, created in lines:
            record = logger.makeRecord(logger.name, logging.INFO, "(access)", 0, message, (), None, extra=fields())
            if created is not None:
                record.created, record.msecs = created, (created - int(created)) * 1000
            logger.handle(record)


def _sole_handler(logger: logging.Logger) -> BufferedStreamHandler | None:
    """Our handler when it is the only place an info record of ``logger`` would go, else None."""
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        if current.handlers:
            if found is not None or len(current.handlers) != 1:
                return None
            found = current.handlers[0]
        if not current.propagate:
            break
        current = current.parent
    if type(found) is not BufferedStreamHandler or found.level > logging.INFO:
        return None
    return found


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger once: one stderr handler, the chosen format, redaction on."""
    handler = BufferedStreamHandler()
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    # A record per request: skip what our formats never print (caller frame, thread, process).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # let uvicorn's records reach our handler
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our access line per request is the one (router.recording); uvicorn's would be a second. The
    # single process got this from uvicorn (``access_log=False``), which runs after us there but
    # before us in a worker, where turning propagation on here doubled every access line.
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
    return redactor


def flush_logs() -> None:
    """Write what the root handlers still hold. At shutdown: uvicorn re-raises the SIGTERM it
    handled once the server has stopped, which ends the process without ``atexit`` (where
    ``logging.shutdown`` would flush), so the last batch of access lines was lost."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except (OSError, ValueError):  # a closed stream: nothing left to save
            pass


def configure_logging(config: Any, level: str | None = None, fmt: str | None = None) -> RedactingFilter:
    """Logging for a serving process from its config (``level``/``fmt`` from the command line
    win): the single process and every ``--workers`` process run exactly this, so each has the
    same handler, format and redaction, and its access lines are written."""
    return setup_logging((level or config.logging.level).upper(), fmt or config.logging.format, config_secrets(config))


def remember_secrets(secrets: Iterable[str]) -> None:
    """Add secrets (a reloaded config's keys) to the redaction of the handlers set up here. The
    old ones are kept: lines about requests that started before the reload may still quote them."""
    for handler in logging.getLogger().handlers:
        for index, flt in enumerate(handler.filters):
            if type(flt) is RedactingFilter:
                handler.filters[index] = RedactingFilter([*flt.secrets, *secrets])


def config_secrets(config: object) -> list[str]:
    """Every secret the config holds: client and admin keys, and each backend's (see
    :meth:`~router.config.BackendConfig.secrets`)."""
    keys = list(getattr(config, "auth_keys", ())) + list(getattr(config, "admin_keys", ()))
    for backend in getattr(config, "backends", {}).values():
        keys += list(backend.secrets())
    return keys
