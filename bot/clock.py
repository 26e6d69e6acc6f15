"""The one clock: every part of newsbot that reads the time or waits takes it from here.

One `Clock` is made at start (`RealClock`) and handed to everything that schedules: the
poller, the dispatcher and its limits, the flood guard, retention, briefings, quiet hours,
edit intervals, outage back-off, health. Waits and intervals are measured on `monotonic()`,
which a change of the system clock does not move; `time()` (wall time) is for what readers
see and for the times kept in the database. The tests hand in a simulated clock instead, so
an hour of back-off runs in milliseconds (tests/simtime.py).

`WallMark` turns stored wall times into waits that a clock step cannot stretch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward, at the pace of real time."""
        ...

    def time(self) -> float:
        """Wall time, UTC epoch seconds: what readers see and the database keeps."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `monotonic()` has reached `deadline`."""
        ...

    async def wait(self, seconds: float, *events: asyncio.Event) -> None:
        """Return after `seconds`, or as soon as one of `events` is set."""
        ...


class RealClock:
    """The system's clocks; waits on the event loop's own (monotonic) timer."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        await self.sleep(deadline - self.monotonic())

    async def wait(self, seconds: float, *events: asyncio.Event) -> None:
        if seconds <= 0 or any(e.is_set() for e in events):
            await asyncio.sleep(0)  # a turn for everyone else, whatever the caller decides next
            return
        if not events:
            await asyncio.sleep(seconds)
            return
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


class WallMark:
    """Wall time that a step of the system clock cannot send back.

    The database keeps when a row is due as wall time (it must outlive the process). Compared
    with `time()` itself, a clock stepped back an hour would hold every row an hour. The mark
    is the latest wall time seen, carried forward on the monotonic clock: a step back leaves
    it where it was (rows stay due), a step forward moves it on (rows come due early, never
    late; waits still run on the monotonic clock).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._offset = clock.time() - clock.monotonic()

    def now(self) -> float:
        # The largest offset seen between the two clocks, not a sum carried forward: rounding
        # cannot pile up over a long run (a sum of a million steps drifts by a tenth of a second).
        mono = self._clock.monotonic()
        self._offset = max(self._offset, self._clock.time() - mono)
        return mono + self._offset
