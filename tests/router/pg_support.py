"""The real PostgreSQL for the usage-store tests: a schema of its own per test, and a stoppable
TCP relay in front of the server to play an outage without touching the machine's PostgreSQL.

``LLM_PROXY_TEST_PG_URL`` points the tests at another server (default: the local one CI starts).
Schemas are named ``lip_test_<run>_<n>``: unique per test run, so runs in parallel (other sessions
run the suite at the same time) never see each other's rows; each is dropped after its test, and
whatever a killed run left of this run's schemas at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid

import psycopg

PG_URL = os.environ.get("LLM_PROXY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RUN = uuid.uuid4().hex[:10]
_numbers = itertools.count(1)


def new_schema() -> str:
    return f"lip_test_{RUN}_{next(_numbers)}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drop_run_schemas() -> None:
    """Every schema of this run (a test that died before its teardown leaves one)."""
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        names = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                                            (f"lip_test_{RUN}_%",)).fetchall()]
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def url_through(port: int) -> str:
    """``PG_URL`` with its host and port replaced by 127.0.0.1:``port`` (the relay)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(PG_URL)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{user}127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


class Relay:
    """A TCP relay on an ephemeral 127.0.0.1 port to the test PostgreSQL. ``stop()`` closes the
    listener and every relayed connection (PostgreSQL "goes down" for whoever uses the relay);
    ``start()`` listens again on the same port (it "comes back")."""

    def __init__(self) -> None:
        from urllib.parse import urlsplit

        target = urlsplit(PG_URL)
        self.target = (target.hostname or "127.0.0.1", target.port or 5432)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return url_through(self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
