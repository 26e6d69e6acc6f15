"""What admins change and read: feeds (add, remove) and the newsroom's figures.

Handlers in bot.commands.admin call these; each returns what happened for the reply.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from bot import charts
from bot.context import Services
from bot.pipeline.discover import Offer, find_source
from bot.pipeline.lanes import WEIGHTS
from bot.pipeline.sources import read_document
from bot.pipeline.urls import redact_url
from storage import audit, feeds, stats, websub
from storage.models import Feed, SectionRule

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AddedFeed:
    feed: Feed
    items: int
    existed: bool  # the URL was known: a removed feed added back (it primes again)
    already: bool = False  # the feed is polled already: nothing was changed
    kind: str = "rss"  # what the source turned out to be (rss, json, sitemap, html)
    offers: tuple[Offer, ...] = ()  # what else the page offered


async def add_checked_feed(services: Services, admin_id: int, url: str, section: str) -> AddedFeed:
    """Fetch and read before storing: a page URL leads to what it offers (its feed, its
    site's sitemap, or the page itself as a listing page). Raises FetchError or ParseError,
    and then nothing is stored. The URL is stored as given (with
    any user:password in it, which the fetch uses and no reply or log ever shows). The
    feed's first poll marks its present items as seen, so adding one never floods readers.
    A feed polled already is left as it is: adding it again would make its next poll a
    priming one, storing its next stories as seen instead of alerting them."""
    settings = services.settings
    rule = SectionRule(kind="fixed", section=section)
    known = await feeds.get_feed_by_url(services.db, url)
    if known is not None and known.enabled:
        return AddedFeed(known, 0, existed=True, already=True)
    found = await find_source(
        services.http, url, max_bytes=settings.fetch_max_bytes, total_timeout=settings.fetch_timeout * 3,
        safe_params=settings.url_safe_params,
    )
    fetched = found.fetched
    known = await feeds.get_feed_by_url(services.db, fetched.store_url)
    if known is not None and known.enabled:
        return AddedFeed(known, 0, existed=True, already=True, offers=found.offers)
    parsed = await read_document(
        services.http, fetched, rule=rule, fetched_at=services.clock.time(), sections=services.section_names,
        max_bytes=settings.fetch_max_bytes, total_timeout=settings.fetch_timeout * 3,
        safe_params=settings.url_safe_params,
    )
    # A listing page is kept as one, so a later answer is never taken for something else.
    kind = "html" if parsed.kind == "html" else "auto"
    feed = await feeds.add_feed(services.db, fetched.store_url, rule, now=services.clock.time(), title=parsed.title,
                                kind=kind)
    services.feed_schedule.add(feed.id)
    shown = redact_url(feed.url, settings.url_safe_params)
    log.info("feed added by command feed_id=%d url=%s kind=%s items=%d", feed.id, shown, parsed.kind,
             len(parsed.articles))
    await audit.record(services.db, admin_id, "addfeed", f"#{feed.id} {shown} {section}", now=services.clock.time())
    return AddedFeed(feed, len(parsed.articles), known is not None, kind=parsed.kind, offers=found.offers)


@dataclass(frozen=True, slots=True)
class FeedState:
    feed: Feed
    next_in: float | None  # seconds until its next fetch (0: under way); None when not polled
    interval: float | None = None  # the wait its last poll chose (adaptive polling)
    push_via: tuple[str, ...] = ()  # how push works for it now: WebSub, ping (bot.pipeline.cadence)
    push_missed: bool = False  # a push missed a story: it is polled at its own pace
    websub: websub.Subscription | None = None
    requests: int = 0  # requests to its site in the last hour


async def list_feeds(services: Services) -> list[FeedState]:
    """Every feed, removed ones included, with when the schedule fetches it next, its pace
    and push state, for /feeds."""
    schedule = services.feed_schedule
    pacing = services.pacing
    now = services.clock.time()
    subscriptions = {s.feed_id: s for s in await websub.all_subscriptions(services.db)}
    found = []
    for feed in await feeds.list_feeds(services.db, enabled_only=False):
        next_in = schedule.due_in(feed.id) if schedule.running else max(0.0, feed.next_poll_at - now)
        via, missed = pacing.push_state(feed.id)
        found.append(FeedState(
            feed, next_in if feed.enabled else None, interval=pacing.pace(feed.id).interval,
            push_via=via, push_missed=missed, websub=subscriptions.get(feed.id),
            requests=pacing.requests_last_hour(feed.id),
        ))
    return found


async def remove_feed(services: Services, admin_id: int, feed_id: int) -> tuple[Feed | None, bool]:
    """Disable a feed, and stop polling it at once; it stays disabled across restarts even if
    the feeds file lists it."""
    feed = await feeds.get_feed(services.db, feed_id)
    if feed is None:
        return None, False
    removed = await feeds.disable_feed(services.db, feed_id)
    services.feed_schedule.remove(feed_id)
    if removed:
        shown = redact_url(feed.url, services.settings.url_safe_params)
        log.info("feed removed by command feed_id=%d url=%s", feed_id, shown)
        await audit.record(services.db, admin_id, "removefeed", f"#{feed_id} {shown}", now=services.clock.time())
    return feed, removed


class TryNow(Enum):
    STARTED = "started"
    BUSY = "busy"  # being fetched right now
    NOT_POLLED = "not_polled"  # removed, unknown, or the bot is not polling


def try_feed_now(services: Services, admin_id: int, feed_id: int) -> TryNow:
    """Fetch a feed at once instead of at the end of its back-off (the admins' Try now)."""
    schedule = services.feed_schedule
    if schedule.due_in(feed_id) is None:
        return TryNow.NOT_POLLED
    if not schedule.try_now(feed_id):
        return TryNow.BUSY
    log.info("feed fetched now by admin feed_id=%d admin_id=%d", feed_id, admin_id)
    return TryNow.STARTED


@dataclass(frozen=True, slots=True)
class Figures:
    stats: stats.NewsroomStats
    sections: dict[str, int]  # slug → readers following it
    top_keywords: list[tuple[str, int]]
    send_rate: float  # messages per second over the last minute
    drain: dict[int, float | None]  # lane → seconds to send its backlog at that rate


def drain_times(backlog: dict[int, int], rate: float) -> dict[int, float | None]:
    """Seconds each lane needs to empty at `rate`, sharing it by the lanes' weights among
    the lanes that have something waiting (bot.pipeline.lanes)."""
    busy = {lane: n for lane, n in backlog.items() if n}
    total = sum(WEIGHTS[lane] for lane in busy)
    return {
        lane: (n / (rate * WEIGHTS[lane] / total) if rate > 0 else None) for lane, n in busy.items()
    }


async def figures(services: Services) -> Figures:
    """Everything /stats shows: counters and indexes from the database (its reports
    connection), subscriptions from the matcher's memory."""
    collected = await stats.collect(services.db, services.clock.time())
    rate = services.status.send_rate(services.clock.monotonic())
    return Figures(
        stats=collected,
        sections=services.matcher.section_counts(),
        top_keywords=services.matcher.top_keywords(10),
        send_rate=rate,
        drain=drain_times(collected.backlog.pending, rate),
    )


async def stats_chart(
    services: Services, collected: stats.NewsroomStats, zone: ZoneInfo, labels: charts.ChartLabels
) -> bytes | None:
    """The /stats chart as a PNG (bot.charts), drawn in a worker thread with `labels` as
    given (already in the admin's language); None when it could not be drawn (matplotlib
    missing, a bad font…): logged and counted, the text goes alone."""
    series = charts.hourly_series(collected.hourly, services.clock.time())
    try:
        return await asyncio.to_thread(
            charts.draw_png, series, labels=labels, zone=zone,
            font=services.settings.chart_font,
        )
    except Exception as exc:
        services.metrics.inc("newsbot_errors_total", stage="chart")
        log.warning("stats chart not drawn, figures sent as text error=%s: %s", type(exc).__name__, exc)
        return None
