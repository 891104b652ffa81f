"""The serving process's SIGTERM and SIGHUP from its first line to its last.

uvicorn installs its own SIGTERM handler only once it runs, a second or more after the process
started (imports, config and rules compiled, the app built). Before that, SIGTERM's default action
ended the process with status 143 (and SIGHUP's with 129): a supervisor that stops a proxy it has
just started saw a failure. So ``serve`` calls :func:`install` before anything else:

- SIGTERM sets :data:`STOP`: a stop asked before the server runs ends the process with status 0
  without serving; once the server exists, the stop is passed to it. While uvicorn serves, its
  own handler replaces this one (drain, lifespan shutdown); afterwards uvicorn re-raises the
  signal to this handler, which absorbs it, so the process exits 0 through the ordinary path
  (``atexit`` runs and the log handler writes its last lines).
- SIGHUP is ignored until the reloader installs its handler (a reload asked while starting is
  served anyway: the files are read at start).

A signal that arrives before the interpreter has run the proxy's first line (a few hundredths of
a second after exec) still meets the operating system's default action: nothing in the process
can catch it yet.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class Stop:
    """Whether SIGTERM came, and the uvicorn server to pass it to once there is one."""

    def __init__(self) -> None:
        self.requested = False
        self.server: Any = None  # a uvicorn.Server (``should_exit`` is how its own handler stops it)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def serve_with(self, server: Any) -> bool:
        """Hand the stop to ``server`` from now on; False when a stop already came (do not run it)."""
        self.server = server
        return not self.requested


STOP = Stop()


def install() -> None:
    """SIGTERM to :data:`STOP`, SIGHUP ignored: before anything slow runs (see the module doc)."""
    signal.signal(signal.SIGTERM, STOP)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
