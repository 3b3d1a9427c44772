"""Time and chance as the client sees them. Tests pass a fake; nothing else reads either.

:class:`Clock` gives the monotonic time (latency, time to first token, the
``total`` deadline of a sync attempt), the waits between retries, and the
random numbers of backoff jitter. A test that subclasses it with a recording
``sleep`` and a seeded ``rng`` makes every run of a retry plan identical, in
the async and the sync driver alike.
"""

from __future__ import annotations

import random
import time

__all__ = ["Clock"]


class Clock:
    """The real clock; override ``sleep``/``asleep`` and ``rng`` in tests."""

    rng: random.Random = random.Random()  # shared unless an instance sets its own

    def __init__(self, rng: random.Random | None = None) -> None:
        if rng is not None:
            self.rng = rng

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        import asyncio  # here, not at the top: a sync client never loads asyncio

        await asyncio.sleep(seconds)
