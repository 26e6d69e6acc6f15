"""Every feed on its own time: one task per feed, waiting on the monotonic clock.

A feed's task sleeps until the feed is due, polls it (bot.stages.poll), and sleeps again
for as long as the poll says: the poll interval after a success, the back-off after a
failure. No feed waits for another: there are no rounds, so a feed that hangs, trickles or
sends megabytes holds up its own task and one fetch slot, nothing else.

Fetches share `slots` (FETCH_CONCURRENCY at a time, so a hundred feeds due together do not
open a hundred connections); a feed waits for a slot within its own fetch budget, so feeds
that hang can delay a slot, never take it for longer than their budget.

/addfeed and /removefeed add and remove a feed's task at once; an admin's "Try now" makes a
feed due now, and so does a push (a WebSub delivery, a publish ping: `push`), at most once a
second per feed (PUSH_SPACING): pushes that come faster are merged into one poll, and one
that comes while the feed is being fetched makes it fetched once more right after (the
change it announces may be newer than the fetch under way). The database keeps each feed's
next poll time as wall time, for a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from bot.clock import Clock

log = logging.getLogger(__name__)

FETCH_CONCURRENCY = 8
PUSH_SPACING = 1.0

PollFeed = Callable[[int, bool], Awaitable[float | None]]
"""Poll the feed with this id (the flag: a push asked for this poll); return the seconds
until its next poll, or None when it is no longer polled (removed). It records its outcome
itself and should not raise."""


def backoff_seconds(error_count: int, base: float, cap: float) -> float:
    """Delay before trying a failing feed again: ``base`` (the poll interval) after the first
    error, doubling with each further one, never above ``cap`` (NEWSBOT_FEED_BACKOFF_MAX)
    nor below ``base``."""
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if error_count <= 0:
        return 0.0
    try:
        delay = math.ldexp(base, error_count - 1)
    except OverflowError:  # a feed that has failed thousands of times
        delay = math.inf
    return max(base, min(cap, delay))


@dataclass
class _Entry:
    feed_id: int
    due: float  # monotonic
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: bool = False
    removed: bool = False
    task: asyncio.Task[None] | None = None
    last_start: float = -math.inf  # monotonic time the last poll began
    pushed: bool = False  # a push is waiting for the next poll


class FeedSchedule:
    """The feeds' tasks. `start` once with the poll function; `stop` at the end."""

    def __init__(self, clock: Clock, *, concurrency: int = FETCH_CONCURRENCY) -> None:
        self.clock = clock
        self.slots = asyncio.Semaphore(concurrency)
        self._poll: PollFeed | None = None
        self._retry: float = 60.0
        self._entries: dict[int, _Entry] = {}
        # Tasks of removed feeds still finishing a poll: a feed added back waits for its own.
        self._leaving: dict[int, asyncio.Task[None]] = {}

    @property
    def running(self) -> bool:
        return self._poll is not None

    def start(self, poll: PollFeed, feeds: Iterable[tuple[int, float]], *, retry: float) -> None:
        """Poll each feed `(id, seconds until due)` with `poll` from now on. `retry`: when to
        try again after the poll function itself failed (a bug, not the feed)."""
        self._poll = poll
        self._retry = retry
        for feed_id, delay in feeds:
            self.add(feed_id, delay)

    def add(self, feed_id: int, delay: float = 0.0) -> None:
        """Poll this feed in `delay` seconds (a new feed, or one added back); a feed already
        scheduled keeps its own time."""
        if self._poll is None:
            return
        entry = self._entries.get(feed_id)
        if entry is not None and not entry.removed:
            return
        entry = _Entry(feed_id, self.clock.monotonic() + max(0.0, delay))
        previous = self._leaving.pop(feed_id, None)
        entry.task = asyncio.create_task(self._run(entry, previous), name=f"feed-{feed_id}")
        self._entries[feed_id] = entry

    def remove(self, feed_id: int) -> None:
        """Stop polling the feed: its task ends now, or as soon as a poll under way ends."""
        entry = self._entries.pop(feed_id, None)
        if entry is not None:
            entry.removed = True
            entry.wake.set()
            if entry.task is not None and not entry.task.done():
                self._leaving[feed_id] = entry.task

    def try_now(self, feed_id: int) -> bool:
        """Make the feed due now; False when it is not scheduled or is being fetched."""
        entry = self._entries.get(feed_id)
        if entry is None or entry.fetching:
            return False
        entry.due = self.clock.monotonic()
        entry.wake.set()
        return True

    def push(self, feed_id: int) -> bool:
        """A push says the feed changed: poll it now, or PUSH_SPACING after its last poll
        began, whichever is later; False when it is not scheduled."""
        entry = self._entries.get(feed_id)
        if entry is None:
            return False
        entry.pushed = True
        if not entry.fetching:
            self._push_due(entry)
        return True

    def _push_due(self, entry: _Entry) -> None:
        due = max(self.clock.monotonic(), entry.last_start + PUSH_SPACING)
        if due < entry.due:
            entry.due = due
            entry.wake.set()

    def due_in(self, feed_id: int) -> float | None:
        """Seconds until the feed's next poll (0 while it is being fetched); None when it is
        not scheduled."""
        entry = self._entries.get(feed_id)
        if entry is None:
            return None
        return 0.0 if entry.fetching else max(0.0, entry.due - self.clock.monotonic())

    def scheduled(self) -> list[int]:
        return sorted(self._entries)

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a deadline for shutdown
        self._poll = None
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        tasks += self._leaving.values()
        self._entries.clear()
        self._leaving.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _run(self, entry: _Entry, previous: asyncio.Task[None] | None) -> None:
        clock = self.clock
        if previous is not None:
            await asyncio.wait([previous])  # never two polls of one feed at once
        while True:
            await clock.wait(entry.due - clock.monotonic(), entry.wake)
            entry.wake.clear()
            if entry.removed or self._poll is None:
                return
            if clock.monotonic() < entry.due:
                continue  # woken early (a Try now of another time, a spurious wake)
            entry.fetching = True
            entry.last_start = clock.monotonic()
            pushed, entry.pushed = entry.pushed, False
            try:
                delay = await self._poll(entry.feed_id, pushed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feed poll failed unexpectedly feed_id=%d", entry.feed_id)
                delay = self._retry
            finally:
                entry.fetching = False
            if delay is None:
                if self._entries.get(entry.feed_id) is entry:
                    del self._entries[entry.feed_id]
                return
            entry.due = clock.monotonic() + max(0.0, delay)
            if entry.pushed:  # pushed while it was being fetched: once more, right after
                self._push_due(entry)
