"""``--workers N``: the parent process that runs N uvicorn workers on one listening socket.

Not uvicorn's own supervisor, because of what it does with signals: on SIGTERM its workers drained
and then re-raised the signal to its default action (status -15, and the log handler's last lines
lost), and on SIGHUP it replaced every worker instead of reloading the config. Here:

- SIGTERM (or SIGINT) to the parent: every worker gets SIGTERM, stops accepting, lets its requests
  and streams finish for ``--drain-timeout`` seconds, runs the lifespan shutdown (usage flushed,
  connectors closed) and exits 0; the parent waits for them (the drain plus ``SHUTDOWN_GRACE``,
  then kills what is left) and exits 0 (1 when a worker did not stop cleanly).
- SIGHUP to the parent: passed to every worker, which reloads its files as a single process does
  (:mod:`router.reload`): validated and compiled first, the last good config kept when the new
  one is invalid, the worker's generation raised when it is not.
- A worker that dies is replaced (uvicorn's health ping finds it); one that cannot start at all
  stops the parent with status 3, as uvicorn does.
- A stop that comes while a worker is starting reaches it once it can handle it: a worker
  stopped while starting exits 0 too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from types import FrameType
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Process

from .signals import Stop

log = logging.getLogger("llm_proxy.workers")

SHUTDOWN_GRACE = 30.0  # seconds a worker gets beyond the drain for its lifespan shutdown
HEALTH_EVERY = 1.0  # seconds between health pings of the workers
START_WAIT = 30.0  # seconds a stop waits for a worker that is still starting its interpreter
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Worker(Process):
    """uvicorn's worker process, with its signals set up before its server exists."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover - runs in the child
        """In the child, first: SIGTERM/SIGINT stop the server (also before it runs) and absorb
        the signal uvicorn re-raises after its drain, so the worker exits 0; SIGHUP is ignored
        until the reloader takes it. Then uvicorn's own target (health pong thread, ``Server.run``)."""
        stop = Stop()
        stop.serve_with(self.server)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        super().target(sockets)  # answers the parent's health pings from here on


class Supervisor:
    """Starts the workers, passes SIGHUP on, replaces dead ones, stops them all on SIGTERM."""

    def __init__(self, config: Config, workers: int, drain_timeout: float, early: Stop) -> None:
        self.config = config
        self.count = workers
        self.drain_timeout = drain_timeout
        self.early = early  # SIGTERM before this supervisor took the signals over
        self.workers: list[Worker] = []
        self._signals: list[int] = []
        self._failed = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # only this: the loop below acts on it (no locks in a handler)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0: every worker stopped cleanly)."""
        for signum in _HANDLED:
            signal.signal(signum, self._on_signal)
        if self.early.requested:
            log.info("stop requested before the workers started: exiting")
            return 0
        sock = self.config.bind_socket()
        try:
            self.workers = [self._spawn(sock) for _ in range(self.count)]
            log.info("parent process %d: %d workers (%s)", os.getpid(), self.count,
                     ", ".join(str(w.pid) for w in self.workers))
            next_check = time.monotonic() + HEALTH_EVERY
            while not self._failed:
                if self._handle_signals():
                    break
                if time.monotonic() >= next_check:
                    self._keep_alive(sock)
                    next_check = time.monotonic() + HEALTH_EVERY
                time.sleep(0.1)
            status = self._stop_all()
        finally:
            sock.close()
        return STARTUP_FAILURE if self._failed else status

    def _spawn(self, sock: socket.socket) -> Worker:
        worker = Worker(self.config, [sock])
        worker.start()
        return worker

    def _handle_signals(self) -> bool:
        """Act on the signals received since the last look; True when asked to stop."""
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("%s: stopping the workers (drain up to %g s)", signal.Signals(signum).name,
                         self.drain_timeout)
                return True
            if signum == signal.SIGHUP:
                log.info("SIGHUP: every worker reloads its configuration")
                for worker in self.workers:
                    # One that does not answer yet is still starting its interpreter (SIGHUP would
                    # end it there); it reads the files when it gets that far.
                    if worker.pid is not None and worker.exitcode is None and worker.ping(timeout=1.0):
                        os.kill(worker.pid, signal.SIGHUP)
        return False

    def _keep_alive(self, sock: socket.socket) -> None:
        for index, worker in enumerate(self.workers):
            if worker.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            worker.kill()  # hung, or gone
            worker.join()
            if worker.exitcode == STARTUP_FAILURE:
                log.error("worker %s could not start; stopping", worker.pid)
                self._failed = True
                return
            log.warning("worker %s died (status %s); starting another", worker.pid, worker.exitcode)
            self.workers[index] = self._spawn(sock)

    def _stop_all(self) -> int:
        """SIGTERM to every worker; wait for their drain and shutdown; kill what outlives it.

        A worker still starting its interpreter gets the signal once it answers a health ping:
        its handlers are in place before it answers (``Worker.target``), and before they are
        SIGTERM's default action would end it with -15. (Blocking the signals across the spawn
        does not help: a spawned interpreter starts with none blocked.)"""
        started_by = time.monotonic() + START_WAIT
        for worker in self.workers:
            while worker.exitcode is None and time.monotonic() < started_by and not worker.ping(timeout=0.5):
                pass
            if worker.exitcode is None and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_timeout + SHUTDOWN_GRACE
        status = 0
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.exitcode is None:
                log.error("worker %s still running %g s after SIGTERM: killed", worker.pid,
                          self.drain_timeout + SHUTDOWN_GRACE)
                worker.kill()
                worker.join()
                status = 1
            elif worker.exitcode != 0 and not self._failed:
                log.error("worker %s exited with status %s", worker.pid, worker.exitcode)
                status = 1
        log.info("parent process %d: every worker stopped (exit status %s)", os.getpid(),
                 ", ".join(str(worker.exitcode) for worker in self.workers))
        return status


def serve_workers(config: Config, workers: int, drain_timeout: float, early: Stop) -> int:
    """Run ``workers`` processes of ``config``'s app (an import string) until stopped."""
    return Supervisor(config, workers, drain_timeout, early).run()
