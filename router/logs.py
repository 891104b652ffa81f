"""Logging set-up: readable text by default, JSON lines with ``--log-format json``, and a
redaction filter on every handler so no API key or OAuth token reaches a log, whoever logs it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Iterable

import orjson

# Shapes of credentials, redacted even when we do not know the exact value.
_CREDENTIAL = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|ya29\.[0-9A-Za-z_\-.]+"
                         r"|(?i:bearer)\s+[A-Za-z0-9._\-~+/=]{8,}|(?i:(?:x-api-key|x-goog-api-key|authorization)"
                         r"['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{6,})")
# Substrings every credential shape above contains; the full regex only runs when one is present.
_TRIGGERS = ("sk-", "AIza", "ya29.", "earer", "EARER", "api-key", "API-KEY", "uthorization", "UTHORIZATION")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Replaces known secrets and credential-shaped strings in the final message (and extras)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, self.secrets))) if self.secrets else None
        # One scan for "is anything secret-shaped here at all": every log line passes through it.
        self._suspect = re.compile("|".join(map(re.escape, [*self.secrets, *_TRIGGERS]))).search

    def scrub(self, text: str) -> str:
        """Runs on every log line, so the common case (nothing secret-shaped) is one regex scan."""
        if not self._suspect(text):
            return text
        if self._known is not None and self._known.search(text):
            text = self._known.sub("[redacted]", text)
        if any(t in text for t in _TRIGGERS):
            text = _CREDENTIAL.sub("[redacted]", text)
        return text

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


class TextFormatter(logging.Formatter):
    """``time level logger: message``; the time text is made once per second, not once per line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        attributes = record.__dict__
        for key in attributes.keys() - _STANDARD:
            if not key.startswith("_"):
                out[key] = attributes[key]
        if record.exc_text:
            out["exception"] = record.exc_text
        try:
            return orjson.dumps(out, default=str).decode("utf-8")
        except TypeError:  # what orjson cannot encode (integers wider than 64 bits)
            return json.dumps(out, default=str)


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
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # let uvicorn's records reach our handler
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return redactor


def config_secrets(config: object) -> list[str]:
    """Every key the config holds: client, admin and backend keys."""
    keys = list(getattr(config, "auth_keys", ())) + list(getattr(config, "admin_keys", ()))
    for backend in getattr(config, "backends", {}).values():
        keys += list(backend.api_keys)
    return keys
