"""Background loops that outlive their failures, but not a stop.

A loop that logs a failure and goes on (the worker's upkeep, the bus sampling, the scheduler) must
still end when it is cancelled, however the cancellation reaches it. It may reach it as another
error: work done on the way out (letting a lease go, waiting for a statement under way) that fails
raises its own error in place of the CancelledError. Caught as a failure, that error kept the loop
going, and whoever awaited the loop (a worker stopping) waited for ever: on a full disk, ``cwi run``
hung at its first receive and ignored SIGTERM.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError when the current task has been asked to stop (call it where a loop has
    just caught a failure): the failure may be what its cancellation turned into."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
