"""The poll job: fetch → parse → store what is new → match → enqueue, one function per stage."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from bot.pipeline.fetch import FetchError, backoff_seconds, fetch_feed
from bot.pipeline.parse import ParseError, parse_feed_async
from bot.services import Services
from storage import articles, feeds, outbox
from storage.db import StorageError
from storage.models import Article, Feed

log = logging.getLogger(__name__)

POLL_CONCURRENCY = 8
# Root elements of XML feeds and their closing tags: a polled document that opens one and never
# closes it was cut short, and its partial items must not be stored.
_ROOTS = ((b"<rss", b"</rss>"), (b"<feed", b"</feed>"), (b"<rdf:RDF", b"</rdf:RDF>"))


def check_complete(body: bytes) -> None:
    """Raise ParseError for an XML feed cut off before its closing root tag."""
    head, tail = body[:4096], body[-4096:]
    for opening, closing in _ROOTS:
        if opening in head and closing not in tail:
            raise ParseError(f"parse: truncated document (no {closing.decode()} at the end)")


@dataclass(frozen=True)
class PollOutcome:
    feed: Feed
    result: str  # "new", "not_modified", "primed", "error"
    items: int = 0
    new: tuple[Article, ...] = ()
    error: str | None = None


@dataclass
class PollSummary:
    outcomes: list[PollOutcome] = field(default_factory=list)
    queued: int = 0

    @property
    def new_articles(self) -> int:
        return sum(len(o.new) for o in self.outcomes)


def _next_poll(services: Services, round_at: float) -> float:
    """When the feed is due again, counted from the start of the round that polled it.

    Rounds start on a fixed tick (at most the interval), and a feed is due in a round whose
    start is at or after this time. The jitter that spreads feeds over the ticks therefore only
    shortens the interval, and by enough (≥ 10 %) that a round starting a little late or a feed
    fetched late in its round still finds the feed due at the next tick: a story is picked up
    within one interval, never two.
    """
    interval = services.settings.poll_seconds
    return round_at + interval * random.uniform(0.75, 0.9)


async def poll_feed(services: Services, feed: Feed, *, round_at: float | None = None) -> PollOutcome:
    """Fetch one feed and store its new articles; failures are recorded, never raised.

    `round_at` is when the round polling it started (default: now); the next poll is
    scheduled from it.
    """
    settings = services.settings
    started = time.time()
    round_at = started if round_at is None else round_at
    try:
        async with asyncio.timeout(settings.fetch_timeout * 3 + 30):
            fetched = await fetch_feed(
                services.http,
                feed.url,
                etag=feed.etag,
                last_modified=feed.last_modified,
                max_bytes=settings.fetch_max_bytes,
                total_timeout=settings.fetch_timeout * 3,
            )
            if fetched.not_modified:
                await feeds.record_not_modified(
                    services.db, feed.id, now=started, next_poll_at=_next_poll(services, round_at)
                )
                return PollOutcome(feed, "not_modified")
            check_complete(fetched.body)
            parsed = await parse_feed_async(
                fetched.body,
                url=fetched.url,
                rule=feed.rule,
                fetched_at=started,
                headers=fetched.headers,
                feed_id=feed.id,
                sections=services.section_names,
            )
            async with services.db.write() as conn:
                new = await articles.insert_new_articles(conn, parsed.articles, seen=not feed.primed)
                await feeds.record_success(
                    conn,
                    feed.id,
                    now=started,
                    next_poll_at=_next_poll(services, round_at),
                    etag=fetched.etag,
                    last_modified=fetched.last_modified,
                    title=parsed.title,
                )
    except StorageError as exc:
        # The database is the problem, not the feed: nothing to record, retry next round.
        services.metrics.inc("newsbot_errors_total", stage="storage")
        log.error("feed not stored feed_id=%d error=%s", feed.id, exc)
        return PollOutcome(feed, "error", error=str(exc))
    except (FetchError, ParseError, TimeoutError) as exc:
        message = str(exc) if not isinstance(exc, TimeoutError) else "poll: timed out"
        await _record_failure(services, feed, message, started)
        return PollOutcome(feed, "error", error=message)
    if not feed.primed:
        # A new feed's present items are history, not news: stored as seen, never pushed.
        return PollOutcome(feed, "primed", items=len(parsed.articles), new=())
    return PollOutcome(feed, "new", items=len(parsed.articles), new=tuple(new))


async def _record_failure(services: Services, feed: Feed, message: str, now: float) -> None:
    errors = feed.error_count + 1
    delay = backoff_seconds(errors, base=services.settings.poll_seconds)
    services.metrics.inc("newsbot_errors_total", stage="poll")
    log.warning("feed failed feed_id=%d errors=%d retry_in=%.0fs error=%s", feed.id, errors, delay, message)
    try:
        await feeds.record_failure(services.db, feed.id, message, now=now, next_poll_at=now + delay)
    except StorageError as exc:
        log.error("feed failure not recorded feed_id=%d error=%s", feed.id, exc)


async def enqueue_alerts(services: Services, new: list[Article]) -> int:
    """Match new articles against every subscription and queue the alerts durably."""
    if not new:
        return 0
    matches = {a.id: services.matcher.match(a) for a in new}
    queued = await outbox.enqueue_matches(services.db, [a.id for a in new], matches)
    if queued:
        services.metrics.inc("newsbot_alerts_queued_total", queued)
        services.outbox_wake.set()
    return queued


async def enqueue_unmatched(services: Services) -> int:
    """Articles stored before a crash whose alerts were never queued get them now."""
    total = 0
    while batch := await articles.unmatched_articles(services.db):
        total += await enqueue_alerts(services, batch)
    return total


async def poll_due_feeds(services: Services, *, all_feeds: bool = False) -> PollSummary:
    """One round: every due feed (or every feed) fetched side by side, then new ones alerted."""
    now = time.time()
    due = [
        f for f in await feeds.list_feeds(services.db) if all_feeds or f.next_poll_at <= now
    ]
    limit = asyncio.Semaphore(POLL_CONCURRENCY)

    async def bounded(feed: Feed) -> PollOutcome:
        async with limit:
            return await poll_feed(services, feed, round_at=now)

    summary = PollSummary(outcomes=list(await asyncio.gather(*(bounded(f) for f in due))))
    for outcome in summary.outcomes:
        services.metrics.inc("newsbot_polls_total", result=outcome.result)
        if outcome.result != "error":
            services.metrics.last_poll_success = time.time()
    new = [a for o in summary.outcomes for a in o.new]
    services.metrics.inc("newsbot_articles_new_total", len(new))
    summary.queued = await enqueue_alerts(services, new)
    return summary
