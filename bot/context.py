"""What every stage and handler shares: opened once at start, closed once at the end.

`Services` holds the dependencies (settings, database, feed client, matcher, metrics) and
`Status` what health checks report; handlers reach them through the typed `NewsContext`
(`context.services`). This module imports the stages it builds (transport, match, schedule) and nothing
that imports it, so imports point one way: app → commands/pipeline → context → stages →
storage.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from telegram.ext import Application, CallbackContext, ContextTypes, ExtBot

from bot.clock import Clock, RealClock
from bot.config import FeedsConfig, Settings, load_feeds_file
from bot.jobs import Jobs
from bot.locks import ChatLocks
from bot.metrics import Metrics
from bot.pipeline.cadence import Delivery, Pacing
from bot.pipeline.enrich import PageCache
from bot.pipeline.flapping import FlapWatch
from bot.pipeline.match import Matcher
from bot.pipeline.schedule import FeedSchedule
from bot.pipeline.transport import make_client
from storage import chats, feeds, subscriptions
from storage.db import Database
from storage.models import Section

log = logging.getLogger(__name__)

RATE_WINDOW = 60.0


@dataclass
class Status:
    """How the running bot is doing, for /healthz and /metrics.

    `phase`: starting (Telegram not reached yet), running, stopping. `updates_ok_at`: when
    getUpdates last answered (monotonic; None in webhook mode or before the first).
    `telegram_down_since`: set while the dispatcher pauses for an outage.
    """

    phase: str = "starting"
    webhook: bool = False
    updates_ok_at: float | None = None
    updates_error: str | None = None
    telegram_down_since: float | None = None  # wall time sending paused for an outage
    telegram_paused_method: str | None = None  # the Bot API method whose failure paused it
    undeliverable: int = 0  # rows our own failures keep from going (a render bug)
    dispatcher_alive: bool = False
    # When messages went out over the last RATE_WINDOW seconds (monotonic), for drain estimates.
    sent_times: deque[float] = field(default_factory=deque)

    def sent(self, now: float) -> None:
        self.sent_times.append(now)
        self.forget_sends(now)

    def forget_sends(self, now: float) -> None:
        while self.sent_times and self.sent_times[0] < now - RATE_WINDOW:
            self.sent_times.popleft()

    def send_rate(self, now: float) -> float:
        """Messages per second over the last minute."""
        self.forget_sends(now)
        return len(self.sent_times) / RATE_WINDOW


@dataclass
class Services:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    matcher: Matcher
    sections: tuple[Section, ...]
    clock: Clock = field(default_factory=RealClock)
    metrics: Metrics = field(default_factory=Metrics)
    status: Status = field(default_factory=Status)
    # Set whenever new rows enter the outbox, so the dispatcher need not poll the table.
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Section slug → the chat id of its channel, where the bot can post (bot.channels).
    channels: dict[str, int] = field(default_factory=dict)
    # Section slug → why the bot cannot post in the section's channel (bot.channels): a
    # message of bot.channels and the error it names.
    channel_trouble: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Held by bot.readers while a chat's change goes to the database and the matcher.
    chat_locks: ChatLocks = field(default_factory=ChatLocks)
    jobs: Jobs = field(init=False)
    flapping: FlapWatch = field(default_factory=FlapWatch)
    # Every feed on its own time (started by the runner; `newsbot ingest` uses its slots).
    feed_schedule: FeedSchedule = field(init=False)
    # Each feed's pace: its cadence, push state and requests in the last hour.
    pacing: Pacing = field(init=False)
    # What article pages said (bot.pipeline.enrich).
    pages: PageCache = field(default_factory=PageCache)
    # WebSub deliveries waiting for their feed's poll, the latest per feed.
    deliveries: dict[int, Delivery] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.jobs = Jobs(self.clock, self.metrics)
        self.feed_schedule = FeedSchedule(self.clock)
        self.pacing = Pacing(self.settings, self.clock)

    @property
    def section_names(self) -> dict[str, str]:
        return {s.slug: s.name for s in self.sections}

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The newsroom's time zone (a reader may choose their own)."""
        return zoneinfo.ZoneInfo(self.settings.timezone)

    def chat_zone(self, name: str | None) -> zoneinfo.ZoneInfo:
        if name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                log.warning("unknown time zone in the database zone=%s", name)
        return self.zone

    async def close(self) -> None:
        await self.feed_schedule.stop()
        await self.jobs.stop()
        await self.http.aclose()
        await self.db.close()


def find_section(sections: tuple[Section, ...], word: str) -> Section | None:
    """The section a reader or admin means by `word`: its slug or name, any case, `@` or `#`."""
    key = word.casefold().lstrip("@#")
    return next((s for s in sections if key in (s.slug, s.name.casefold())), None)


def read_feeds_config(settings: Settings) -> FeedsConfig | None:
    return load_feeds_file(settings.feeds_path) if settings.feeds_path else None


def feed_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client for feeds: NEWSBOT_FETCH_TIMEOUT for connecting and for each read,
    private addresses refused unless NEWSBOT_FEED_ALLOW_PRIVATE."""
    return make_client(
        connect_timeout=settings.fetch_timeout, read_timeout=settings.fetch_timeout,
        allow_private=settings.feed_allow_private,
    )


async def open_services(settings: Settings, *, clock: Clock | None = None, load_matcher: bool = True) -> Services:
    """Open the database, seed the feeds file, load the matcher's index. `clock` is the one
    clock everything takes its time from (the system's unless given)."""
    clock = clock or RealClock()
    feeds_config = read_feeds_config(settings)
    db = await Database.open(Path(settings.db_path))
    try:
        if feeds_config is not None:
            added = await feeds.seed_feeds(
                db, [(f.url, f.rule, f.kind, f.selector) for f in feeds_config.feeds], now=clock.time()
            )
            if added:
                log.info("feeds seeded count=%d", added)
        repaired = await feeds.repair_schedule(db)
        if repaired:
            log.warning("feeds with an impossible next poll time made due count=%d", repaired)
        matcher = Matcher()
        if load_matcher:
            await load_matcher_index(db, matcher)
    except BaseException:
        await db.close()
        raise
    return Services(
        settings=settings,
        db=db,
        http=feed_client(settings),
        matcher=matcher,
        sections=feeds_config.sections if feeds_config else (),
        clock=clock,
        metrics=Metrics(started_at=clock.monotonic()),
        status=Status(webhook=settings.webhook_url is not None),
    )


async def load_matcher_index(db: Database, matcher: Matcher) -> None:
    # Row by row: a list of a million Subscription objects would double the bot's memory.
    matcher.load((), await chats.inactive_chat_ids(db))
    count = 0
    started = time.perf_counter()
    async for sub in subscriptions.iter_subscriptions(db):
        matcher.add(sub)
        count += 1
    log.info("matcher loaded subscriptions=%d seconds=%.1f", count, time.perf_counter() - started)
    # The index lives as long as the process: frozen, its millions of objects are no longer
    # walked by every full pass of the cyclic collector, which at 200,000 subscriptions took
    # 110-210 ms a pass and stalled the event loop (sends, /healthz) while it ran.
    gc.collect()
    gc.freeze()


class BotState:
    """The application's bot_data: the services, once post_init opened them."""

    def __init__(self) -> None:
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("services are not open yet")
        return self._services

    @services.setter
    def services(self, value: Services) -> None:
        self._services = value

    @property
    def opened(self) -> bool:
        return self._services is not None


class NewsContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotState]):
    """The handlers' context: `context.services` is everything they may touch."""

    @property
    def services(self) -> Services:
        return self.bot_data.services


NewsApp = Application[ExtBot[None], NewsContext, dict[Any, Any], dict[Any, Any], BotState, Any]
CONTEXT_TYPES = ContextTypes(context=NewsContext, bot_data=BotState)
