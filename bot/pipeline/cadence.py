"""How often each feed is polled: its publishing cadence, its push state, what its server
asks for — and what each feed has cost its site in the last hour.

The rule (`interval`), for a feed not pushed and without NEWSBOT_POLL_SECONDS:

    T = sqrt(2 · w · g), clamped to [NEWSBOT_POLL_MIN, NEWSBOT_POLL_MAX]

where g is the feed's expected gap between stories and w = REQUEST_WORTH the seconds of
readers' waiting one request is worth. A story waits T/2 on average, a feed costs 1/T
requests a second; T above minimises (g⁻¹ · T/2 + w / T), which gives busy feeds short
intervals and quiet ones long ones, and spends requests where they find the most stories
(twice as busy: 1/√2 of the interval, not half). w = 0.15 s is chosen so that a newsroom's
mix of busy and quiet feeds, busier by day than by night, costs no more requests than
polling every feed once a minute (bench/publish.py measures both on the same day): a feed
publishing hourly is polled every 33 s, one publishing every ten minutes every 13 s, one
publishing daily every 2 min 41 s, one publishing weekly every 7 minutes.

g = max(the geometric mean of the feed's last gaps between stories, the time since its last
story): just after a story, the feed's own pace (a geometric mean follows bursts, where one
night's gap would drown an arithmetic mean); the longer it stays quiet, the more rarely it
is asked. Publication times come from each document's stories (and their fetch time for
stories without a date); after a restart, from the stored stories of the last week.

Then: while push works for the feed (a WebSub lease is active, or a publish ping came
within PING_TRUST), T is NEWSBOT_POLL_MAX — polling is the safety net; a poll that finds
a story no push announced ("missed") turns that off until the next push. The answer's
``Cache-Control: max-age`` (less its ``Age``) and a ``Retry-After`` are honoured: the
feed is not asked again sooner (never later than NEWSBOT_POLL_MAX for max-age, a day for
Retry-After). NEWSBOT_POLL_SECONDS, when set, is the interval of every feed instead.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from bot.clock import Clock

log = logging.getLogger(__name__)

REQUEST_WORTH: Final = 0.15
RECENT: Final = 6  # publication times kept per feed: five gaps
PING_TRUST: Final = 24 * 3600.0
HOUR: Final = 3600.0
MAX_RETRY_AFTER: Final = 24 * 3600.0


def cadence_interval(gaps: list[float], since_last: float | None, *, default_gap: float) -> float:
    """T for a feed whose recent gaps between stories are `gaps` and whose last story came
    `since_last` seconds ago (None: never), before the clamp."""
    if gaps:
        typical = math.exp(sum(math.log(max(1.0, g)) for g in gaps) / len(gaps))
    else:
        typical = default_gap
    gap = max(typical, since_last or 0.0)
    return math.sqrt(2 * REQUEST_WORTH * gap)


def max_age(headers: dict[str, str]) -> float | None:
    """Seconds the answer stays fresh (Cache-Control max-age less Age); None without one."""
    for part in headers.get("cache-control", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() == "max-age" and value.strip('" ').isdigit():
            age = headers.get("age", "").strip()
            return max(0.0, float(value.strip('" ')) - (float(age) if age.isdigit() else 0.0))
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A signed WebSub delivery waiting for its feed's poll (bot.stages.websub)."""

    body: bytes
    content_type: str | None


@dataclass
class FeedPace:
    published: list[float] = field(default_factory=list)  # wall times, ascending, at most RECENT
    loaded: bool = False  # the stored stories' times were read (after a start)
    requests: deque[float] = field(default_factory=deque)  # monotonic times, last hour
    interval: float | None = None  # the wait chosen after the last poll
    ping_at: float | None = None  # monotonic time of the last ping
    websub_until: float | None = None  # wall time an active WebSub lease ends
    missed: bool = False  # a poll found a story no push announced, since the last push
    pushes: int = 0


class PollSettings(Protocol):
    """The settings pacing reads (bot.config.Settings has them)."""

    @property
    def poll_fixed(self) -> bool: ...
    @property
    def poll_seconds(self) -> float: ...
    @property
    def poll_min(self) -> float: ...
    @property
    def poll_max(self) -> float: ...


class Pacing:
    """Every feed's pace, in memory (rebuilt after a restart from the stored stories)."""

    def __init__(self, settings: PollSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._paces: dict[int, FeedPace] = {}

    def pace(self, feed_id: int) -> FeedPace:
        return self._paces.setdefault(feed_id, FeedPace())

    def forget(self, feed_id: int) -> None:
        self._paces.pop(feed_id, None)

    # -- what happened ---------------------------------------------------------------------

    def request(self, feed_id: int) -> None:
        """One request to the feed's site (the feed, a sitemap it leads to, an article page)."""
        now = self.clock.monotonic()
        requests = self.pace(feed_id).requests
        requests.append(now)
        self._trim(requests, now)

    def requests_last_hour(self, feed_id: int) -> int:
        requests = self.pace(feed_id).requests
        self._trim(requests, self.clock.monotonic())
        return len(requests)

    @staticmethod
    def _trim(requests: deque[float], now: float) -> None:
        while requests and requests[0] <= now - HOUR:
            requests.popleft()

    def saw(self, feed_id: int, published: Iterable[float]) -> None:
        """Publication times of a document's stories (wall time)."""
        pace = self.pace(feed_id)
        pace.loaded = True
        times = sorted(set(pace.published) | {t for t in published if math.isfinite(t)})
        pace.published = times[-RECENT:]

    def pinged(self, feed_id: int) -> None:
        pace = self.pace(feed_id)
        pace.ping_at = self.clock.monotonic()
        self._pushed(pace, feed_id)

    def delivered(self, feed_id: int) -> None:
        """A signed WebSub delivery for the feed."""
        self._pushed(self.pace(feed_id), feed_id)

    def _pushed(self, pace: FeedPace, feed_id: int) -> None:
        pace.pushes += 1
        if pace.missed:
            pace.missed = False
            log.info("push announces the feed again feed_id=%d: polling as the safety net", feed_id)

    def websub(self, feed_id: int, until: float | None) -> None:
        """The feed's WebSub lease ends at `until` (wall time); None: no active lease."""
        self.pace(feed_id).websub_until = until

    def polled(self, feed_id: int, *, pushed: bool, new: int) -> None:
        """A poll found `new` stories; one not announced by a push while push was trusted
        means push misses stories: the feed is polled at its own pace until the next push."""
        pace = self.pace(feed_id)
        if new and not pushed and self.push_works(feed_id) and not pace.missed:
            pace.missed = True
            log.warning(
                "push missed a story feed_id=%d new=%d: polling at the feed's own pace until the next push",
                feed_id, new,
            )

    # -- what follows ----------------------------------------------------------------------

    def push_works(self, feed_id: int) -> bool:
        pace = self._paces.get(feed_id)
        if pace is None or pace.missed:
            return False
        if pace.websub_until is not None and pace.websub_until > self.clock.time():
            return True
        return pace.ping_at is not None and self.clock.monotonic() - pace.ping_at < PING_TRUST

    def push_state(self, feed_id: int) -> tuple[tuple[str, ...], bool]:
        """For /feeds: how the feed is pushed now ("WebSub", "ping"; none: not pushed), and
        whether a push missed a story (then it is polled at its own pace)."""
        pace = self._paces.get(feed_id)
        if pace is None:
            return (), False
        parts = []
        if pace.websub_until is not None and pace.websub_until > self.clock.time():
            parts.append("WebSub")
        if pace.ping_at is not None and self.clock.monotonic() - pace.ping_at < PING_TRUST:
            parts.append("ping")
        return tuple(parts), bool(parts) and pace.missed

    def interval(
        self, feed_id: int, *, fresh_for: float | None = None, retry_after: float | None = None,
        jitter: bool = True,
    ) -> float:
        """Seconds until the feed's next poll, after a successful one."""
        settings = self.settings
        pace = self.pace(feed_id)
        if settings.poll_fixed:
            wait = settings.poll_seconds
        elif self.push_works(feed_id):
            wait = settings.poll_max
        else:
            now = self.clock.time()
            times = pace.published
            gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
            since = max(0.0, now - times[-1]) if times else None
            wait = cadence_interval(gaps, since, default_gap=settings.poll_seconds ** 2 / (2 * REQUEST_WORTH))
            wait = min(settings.poll_max, max(settings.poll_min, wait))
        if jitter:
            # A little jitter keeps feeds added together from being fetched in lock-step; it
            # only shortens the wait, so a story is never found later than the rule says.
            wait *= random.uniform(0.9, 1.0)
        if fresh_for is not None:
            wait = max(wait, min(fresh_for, settings.poll_max))
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        pace.interval = wait
        return wait
