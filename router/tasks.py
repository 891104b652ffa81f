"""Background-task plumbing shared by the health monitor, the usage writer and the reloader."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel the tasks and wait until they have run their ``finally`` blocks."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)
