"""Hot reload of config.yaml and routes.d: on SIGHUP, on file change, on ``POST /v2/admin/reload``.

The new config is loaded, validated and compiled completely before it replaces the old state in
one assignment; requests in flight keep the state they started with. A bad file is rejected with
the same compiler-style errors as ``check``, logged and audited, and the last good config keeps
serving. Sessions, rate-limit counters, metrics and usage survive a reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Callable

from backends.redaction import redact
from dsl.errors import RulesError, RulesErrors

from .config import load_config
from .record.logs import config_secrets, remember_secrets
from .state import RuntimeState, StateRef, build_state
from .tasks import cancel_and_wait


log = logging.getLogger("llm_proxy.reload")
FILE_CHANGE, SIGHUP = "file change", "SIGHUP"  # the reasons whose repeats are folded into one


def _render(exc: RulesError) -> str:
    errors = exc.errors if isinstance(exc, RulesErrors) else [exc]
    return "\n".join(e.render() for e in errors)


class Reloader:
    def __init__(self, ref: StateRef, config_path: str | None, *, build_kwargs: dict[str, Any] | None = None,
                 poll_interval: float = 1.0, debounce: float = 0.5, watch: bool = True) -> None:
        self.ref = ref
        self.config_path = config_path
        # The operator's start-up choices, kept across reloads (auth itself follows the config).
        kept = ("disable_auth", "disable_commands", "loopback")
        self.build_kwargs = {k: v for k, v in (build_kwargs or {}).items() if k in kept}
        self.poll_interval = poll_interval
        self.debounce = debounce
        self.watch = watch and config_path is not None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[Any]] = set()
        self._signal_loop: asyncio.AbstractEventLoop | None = None
        self._sighup_before: Any = signal.SIG_DFL
        # Tells the other instances sharing a state store to reload too (set by the app with Redis).
        self.broadcast: Callable[[], None] | None = None
        # The files as they were at the last load or reload attempt: an edit followed by a SIGHUP
        # fired both the signal and the watcher, and the same files were loaded twice.
        self._attempted: dict[str, float] | None = None

    @property
    def generation(self) -> int:
        """How many reloads have succeeded since start (0: the config the server started with)."""
        return self.ref.generation

    def _snapshot(self) -> dict[str, float]:
        """Modification times of the config file and every rule file."""
        paths = [self.config_path] if self.config_path else []
        routes = self.ref.state.config.routes_dir
        if os.path.isdir(routes):
            paths += [os.path.join(routes, n) for n in sorted(os.listdir(routes)) if n.endswith((".yaml", ".yml"))]
        out = {}
        for path in paths:
            try:
                out[path] = os.stat(path).st_mtime_ns
            except OSError:
                out[path] = -1
        return out

    async def reload(self, *, actor: str | None = None, reason: str = "api") -> tuple[bool, str]:
        """Build a complete new state, then swap. Returns (ok, message).

        A file change or SIGHUP that finds the files as the last attempt loaded them does nothing
        (the other of the two already did it); ``POST /v2/admin/reload`` always reloads."""
        async with self._lock:
            snapshot = await asyncio.to_thread(self._snapshot)
            if reason in (FILE_CHANGE, SIGHUP) and snapshot == self._attempted:
                message = f"no file changed since the last load; still serving generation {self.ref.generation}"
                log.info("reload (%s): %s", reason, message)
                return True, message
            self._attempted = snapshot
            old = self.ref.state
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
                new = await asyncio.to_thread(build_state, config, previous=old, **self.build_kwargs)
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new config, keep the old one
                text = _render(exc) if isinstance(exc, RulesError) else f"error: {type(exc).__name__}: {exc}"
                # The errors quote the rejected files' lines, which may hold keys: the reply, the
                # audit row and the log get them redacted (the keys we know, and credential shapes).
                text = redact(text, config_secrets(old.config))
                log.error("reload (%s) rejected; still serving generation %d:\n%s", reason, self.ref.generation, text)
                self.ref.recorder.audit("config_reload", actor, "rejected", reason=reason, errors=text)
                return False, text
            self.ref.state = new
            remember_secrets(config_secrets(config))
            self.ref.generation += 1
            self.ref.metrics.config_generation.set(self.ref.generation)
            changed = sorted(set(old.backends) ^ set(new.backends))
            message = (f"generation {self.ref.generation}: {len(new.backends)} backend(s), "
                       f"{len(new.rules.rules)} rule(s)" + (f"; backends added/removed: {', '.join(changed)}" if changed else ""))
            if new.auth.mode != old.auth.mode:
                message += f"; auth: {new.auth.mode}"
                log.warning("reload (%s) switched auth from %s to %s", reason, old.auth.mode, new.auth.mode)
            log.info("reloaded (%s): %s", reason, message)
            self.ref.recorder.audit("config_reload", actor, "ok", reason=reason, generation=self.ref.generation,
                                    rules=len(new.rules.rules), backends=sorted(new.backends))
            self._retire(old, new, config.proxy_timeout)
            if self.broadcast is not None and reason in ("api", "SIGHUP"):
                self.broadcast()
            return True, message

    def _retire(self, old: RuntimeState, new: RuntimeState, grace: float) -> None:
        """Close the old connectors once requests that started on them can have finished."""
        stale = [b for name, b in old.backends.items() if new.backends.get(name) is not b]
        if not stale:
            return

        async def close_later() -> None:
            try:
                await asyncio.sleep(grace + 5)
            finally:  # also at shutdown (cancelled): never leave the old connectors' pools open
                for backend in stale:
                    try:
                        await backend.aclose()
                    except Exception:  # noqa: BLE001
                        log.exception("closing a retired backend failed")

        task = asyncio.get_running_loop().create_task(close_later())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _watch(self) -> None:
        seen = await asyncio.to_thread(self._snapshot)
        while True:
            await asyncio.sleep(self.poll_interval)
            now = await asyncio.to_thread(self._snapshot)
            if now == seen:
                continue
            await asyncio.sleep(self.debounce)  # editors write in several steps; wait for quiet
            settled = await asyncio.to_thread(self._snapshot)
            if settled != now:
                continue
            seen = settled
            try:
                await self.reload(actor="file-watcher", reason=FILE_CHANGE)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one reload
                log.exception("reload after a file change failed")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._attempted is None:  # the files the server started with
            self._attempted = await asyncio.to_thread(self._snapshot)
        try:
            self._sighup_before = signal.getsignal(signal.SIGHUP)  # put back at stop (serve ignores it)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._signal_loop = loop
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread, no SIGHUP
            pass
        if self.watch and self._task is None:
            self._task = loop.create_task(self._watch())

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(actor="SIGHUP", reason=SIGHUP))
        self._retired.add(task)  # keep a reference until it is done (the loop holds tasks weakly)
        task.add_done_callback(self._retired.discard)

    async def stop(self) -> None:
        if self._signal_loop is not None:
            try:
                self._signal_loop.remove_signal_handler(signal.SIGHUP)  # (that leaves SIG_DFL: terminate)
                signal.signal(signal.SIGHUP, self._sighup_before)
            except (NotImplementedError, RuntimeError, ValueError, TypeError):
                pass
            self._signal_loop = None
        tasks = [self._task, *self._retired]
        self._task = None
        # Waited for: retired connectors close in their ``finally`` before the loop goes away.
        await cancel_and_wait(*tasks)
