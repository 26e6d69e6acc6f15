"""Where the fake servers read the time.

A fake running in its own thread reads the system's clocks (`SystemTime`). A fake serving
on the test's own event loop (``start_here``) reads the clock it is given, normally the
test's `SimClock` (tests/simtime.py), so that everything it times (delays, hangs, fault
windows, flood windows, long polls, dates) runs on the same simulated time as the bot.
Given no clock, it reads `LoopTime`: the loop's own timer, which is the system's monotonic
clock on an ordinary loop and still agrees with the loop's timers on a simulated one.

Any object with ``monotonic()`` and ``time()`` will do (``bot.clock.Clock`` has both); its
``monotonic()`` must move with the loop's time, as SimClock's and RealClock's do, because
the fakes wait with the loop's timers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["LoopTime", "SystemTime", "TimeSource"]


class TimeSource(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward: what waits are measured on."""
        ...

    def time(self) -> float:
        """Wall time, epoch seconds: dates and Last-Modified stamps."""
        ...


class SystemTime:
    """The system's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class LoopTime:
    """The loop's timer for monotonic time, the system's clock for wall time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def monotonic(self) -> float:
        return self._loop.time()

    def time(self) -> float:
        return time.time()
