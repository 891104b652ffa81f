"""Size-proportional work leaves the event loop only for large requests."""

from __future__ import annotations

import threading

from router.wire import offload


async def test_small_requests_run_inline_and_large_ones_in_a_worker_thread() -> None:
    here = threading.current_thread().name
    assert await offload.run_sized(offload.LARGE_BYTES - 1, lambda: threading.current_thread().name) == here
    worker = await offload.run_sized(offload.LARGE_BYTES, lambda: threading.current_thread().name)
    assert worker != here and worker.startswith("large-request")


async def test_errors_of_work_done_off_the_loop_reach_the_caller() -> None:
    def fail() -> None:
        raise ValueError("bad body")

    try:
        await offload.off_loop(fail)
    except ValueError as exc:
        assert str(exc) == "bad body"
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("the error was lost")


def test_the_collector_pause_is_counted_and_restores_what_it_found() -> None:
    """Overlapping large requests: the collector restarts with the last one to end, and only if it
    ran before the first began (``router/wire/offload.py`` ``pause_gc``)."""
    import gc

    from router.wire.offload import pause_gc, resume_gc

    assert gc.isenabled()
    pause_gc()
    pause_gc()
    assert not gc.isenabled()
    resume_gc()
    assert not gc.isenabled()
    resume_gc()
    assert gc.isenabled()
    gc.disable()
    try:
        pause_gc()
        resume_gc()
        assert not gc.isenabled()
    finally:
        gc.enable()
