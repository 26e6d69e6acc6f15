"""What admins change and read: feeds (add, remove) and the newsroom's figures.

Handlers in bot.commands.admin call these; each returns what happened for the reply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.context import Services
from bot.pipeline.discover import find_feed
from bot.pipeline.fetch import FetchError, redact_url
from bot.pipeline.lanes import WEIGHTS
from bot.pipeline.parse import parse_feed_async
from storage import audit, feeds, stats
from storage.models import Feed, SectionRule

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AddedFeed:
    feed: Feed
    items: int
    existed: bool


async def add_checked_feed(services: Services, admin_id: int, url: str, section: str) -> AddedFeed:
    """Fetch and parse before storing: a page URL leads to the feed it advertises. Raises
    FetchError or ParseError, and then nothing is stored. The URL is stored as given (with
    any user:password in it, which the fetch uses and no reply or log ever shows). The
    feed's first poll marks its present items as seen, so adding one never floods readers."""
    settings = services.settings
    rule = SectionRule(kind="fixed", section=section)
    try:
        fetched = await find_feed(
            services.http, url, max_bytes=settings.fetch_max_bytes, total_timeout=settings.fetch_timeout * 3
        )
    except TimeoutError:
        raise FetchError("timeout", f"timed out fetching {redact_url(url)}", url=redact_url(url)) from None
    parsed = await parse_feed_async(
        fetched.body, url=fetched.url, rule=rule, fetched_at=services.clock.time(), headers=fetched.headers,
        sections=services.section_names,
    )
    known = await feeds.get_feed_by_url(services.db, fetched.store_url)
    feed = await feeds.add_feed(services.db, fetched.store_url, rule, now=services.clock.time(), title=parsed.title)
    log.info("feed added by command feed_id=%d url=%s items=%d", feed.id, redact_url(feed.url), len(parsed.articles))
    await audit.record(
        services.db, admin_id, "addfeed", f"#{feed.id} {redact_url(feed.url)} {section}", now=services.clock.time()
    )
    return AddedFeed(feed, len(parsed.articles), known is not None and known.enabled)


async def list_feeds(services: Services) -> list[Feed]:
    """Every feed, removed ones included (marked), for /feeds."""
    return await feeds.list_feeds(services.db, enabled_only=False)


async def remove_feed(services: Services, admin_id: int, feed_id: int) -> tuple[Feed | None, bool]:
    """Disable a feed; it stays disabled across restarts even if the feeds file lists it."""
    feed = await feeds.get_feed(services.db, feed_id)
    if feed is None:
        return None, False
    removed = await feeds.disable_feed(services.db, feed_id)
    if removed:
        log.info("feed removed by command feed_id=%d url=%s", feed_id, redact_url(feed.url))
        await audit.record(
            services.db, admin_id, "removefeed", f"#{feed_id} {redact_url(feed.url)}", now=services.clock.time()
        )
    return feed, removed


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
