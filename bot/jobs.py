"""Repeating jobs on the one clock: briefings, retention, the progress of each broadcast.

Each job is a task that runs its function, then waits its interval on the monotonic clock
(counted from the start of the run, so a slow run shortens the wait, and runs never overlap);
a function that returns True is done. A failure is logged with the job's name and counted,
and the job goes on. python-telegram-bot's JobQueue is not used: its scheduler reads the
wall clock, so a clock step would hold every job (and it warns when a run overlaps the next).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.clock import Clock
from bot.metrics import Metrics

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[bool | None]]


class Jobs:
    def __init__(self, clock: Clock, metrics: Metrics) -> None:
        self.clock = clock
        self.metrics = metrics
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._data: dict[str, Any] = {}

    def every(self, name: str, seconds: float, job: Job, *, first: float = 0.0, data: Any = None) -> bool:
        """Run `job` every `seconds` from `first` seconds on; False if `name` already runs."""
        if self.running(name):
            return False
        self._data[name] = data
        task = asyncio.create_task(self._repeat(name, seconds, job, first), name=f"job-{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda _: self._forget(name, task))
        return True

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def data(self, name: str) -> Any:
        """What the job was started with (None when it is not running)."""
        return self._data.get(name) if self.running(name) else None

    def names(self) -> list[str]:
        return sorted(name for name in self._tasks if self.running(name))

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a deadline for shutdown
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
            self._data.pop(name, None)

    async def _repeat(self, name: str, seconds: float, job: Job, first: float) -> None:
        clock = self.clock
        await clock.sleep(first)
        while True:
            started = clock.monotonic()
            done = False
            try:
                done = bool(await job())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.inc("newsbot_errors_total", stage="job")
                log.exception("job failed job=%s", name)
            if done:
                return
            await clock.sleep_until(started + seconds)
