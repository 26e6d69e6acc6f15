"""Time for the dispatcher: real here, simulated in the news-day benchmark, shortened in the
outage test. Everything that waits or reads the time in delivery goes through a `Clock`."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, seconds: float, *events: asyncio.Event) -> None:
        """Return after `seconds`, or as soon as one of `events` is set."""
        ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, seconds: float, *events: asyncio.Event) -> None:
        if seconds <= 0 or any(e.is_set() for e in events):
            await asyncio.sleep(0)  # a turn for everyone else, whatever the caller decides next
            return
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
