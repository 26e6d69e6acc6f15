"""Simulated time: an event loop whose clock jumps ahead as soon as everything waits.

Every async test runs on a `SimLoop` (tests/conftest.py). It keeps real time until a test
asks for the `clock` fixture, which switches it to simulated time and returns a `SimClock`
(the bot's `Clock`) to hand to the bot. From then on:

* `loop.time()` is simulated: `asyncio.sleep`, timeouts and every timer run on it, the
  bot's and the fake servers' alike (they run on this same loop: `FakeTelegram.start_here`).
* When no callback is ready, no socket has data and no thread is working for the loop
  (a query on an aiosqlite connection, a call in the executor), the clock jumps straight to
  the next timer. An hour of back-off, a ten-minute outage or a one-minute flood window
  therefore take as long as the work done in them, not as long as they last (Trio's
  `MockClock(autojump_threshold=0)` does the same).
* Work handed to threads is waited for in real time: its answer wakes the loop through the
  self-pipe, so the clock never jumps past a query that is still running.

Loopback sockets deliver in the sender's system call, so "no socket has data" is known at
once with a zero-timeout select; a server in another thread or process is not, and must not
be used with the simulated clock (its answers would come "late", after a jump).
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
from collections.abc import Callable
from typing import Any

from bot.clock import RealClock

# Longest real wait for a thread's answer before looking at the loop again.
_THREAD_POLL = 0.05


class _Selector:
    """The loop's selector, deciding when the simulated clock jumps (see the module text)."""

    def __init__(self, loop: SimLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if not loop.simulating or timeout == 0:
            return self._real.select(timeout)
        events = self._real.select(0)
        if events:
            return events
        if loop.threads_working:
            return self._real.select(_THREAD_POLL if timeout is None else min(timeout, _THREAD_POLL))
        if timeout is None:
            # Nothing scheduled at all: only the outside world can wake the loop.
            return self._real.select(None)
        loop.jump(timeout)
        return []


class SimLoop(asyncio.SelectorEventLoop):
    """An event loop on real time until `simulate()`, then on simulated time."""

    def __init__(self) -> None:
        super().__init__()
        self._selector: Any = _Selector(self, self._selector)
        self.simulating = False
        self._now = 0.0
        self._threads: set[asyncio.Future[Any]] = set()
        self.jumps = 0

    def simulate(self) -> None:
        if not self.simulating:
            self._now = time.monotonic()
            self.simulating = True

    def time(self) -> float:
        return self._now if self.simulating else time.monotonic()

    def jump(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        self.jumps += 1

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.TimerHandle:
        if not self.simulating:
            return super().call_at(when, callback, *args, context=context)
        return super().call_at(when, self._timer, when, callback, *args, context=context)

    def _timer(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        # asyncio runs a timer up to its clock resolution (1 ns) early, without a select that
        # would let the clock jump: on real time the clock has moved on by then, here it has
        # not, and a task waiting "until deadline" would find it still ahead and wait a
        # nanosecond again, for ever. A timer's callback therefore sees its own time.
        if self._now < when:
            self._now = when
        callback(*args)

    @property
    def threads_working(self) -> bool:
        return bool(self._threads)

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)

    def create_future(self) -> asyncio.Future[Any]:
        future = super().create_future()
        # aiosqlite hands every call to its connection's own thread with a future it makes
        # here; until that future is done, a query is running.
        if self.simulating and sys._getframe(1).f_globals.get("__name__", "").startswith("aiosqlite"):
            self._track(future)
        return future

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        if self.simulating:
            self._track(future)
        return future


class SimClock(RealClock):
    """The bot's clock on a simulated loop.

    `monotonic()` is the loop's time. Wall time starts at `start` (default: now) and moves
    with it; `step(seconds)` moves wall time alone, as when the system clock is set.
    """

    def __init__(self, start: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, SimLoop):
            raise RuntimeError("SimClock needs the SimLoop (tests/conftest.py installs it)")
        loop.simulate()
        self.loop = loop
        self._mono0 = loop.time()
        self._wall0 = time.time() if start is None else start
        self._step = 0.0

    def monotonic(self) -> float:
        return self.loop.time()

    def time(self) -> float:
        return self._wall0 + (self.loop.time() - self._mono0) + self._step

    def step(self, seconds: float) -> None:
        """The system clock is set `seconds` forward (or back, when negative)."""
        self._step += seconds

    async def run_for(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass, everything else running meanwhile."""
        await asyncio.sleep(seconds)

    async def run_until(self, wall: float) -> None:
        """Let simulated time pass until the wall clock shows `wall`."""
        await asyncio.sleep(max(0.0, wall - self.time()))
