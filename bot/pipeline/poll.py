"""The poll job: fetch → parse → store what is new → match → enqueue, one function per stage.

Each feed is finished on its own: its alerts are queued as soon as its stories are stored,
whatever the other feeds of the round are doing, and one feed's failure (or bug) never costs
the others their round.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

from bot.context import Services
from bot.pipeline.fetch import FetchError, FetchResult, backoff_seconds, fetch_feed, redact_url
from bot.pipeline.parse import ParsedFeed, ParseError, parse_feed_async
from storage import articles, feeds, outbox
from storage.articles import Stored
from storage.db import StorageError
from storage.models import Article, Feed
from storage.outbox import Enqueued, Match

log = logging.getLogger(__name__)

POLL_CONCURRENCY = 8
# Alerts for stories dated this far after the fetch are not sent (clocks disagree a little).
FUTURE_SKEW = 600.0


@dataclass(frozen=True)
class PollOutcome:
    feed: Feed
    result: str  # "new", "not_modified", "primed", "error"
    items: int = 0
    new: tuple[Article, ...] = ()
    queued: int = 0
    not_alerted: int = 0  # new stories stored without alerts (cap, age, future date)
    error: str | None = None


@dataclass
class PollSummary:
    outcomes: list[PollOutcome] = field(default_factory=list)

    @property
    def new_articles(self) -> int:
        return sum(len(o.new) for o in self.outcomes)

    @property
    def queued(self) -> int:
        return sum(o.queued for o in self.outcomes)


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
    """Fetch one feed, store what is new and queue its alerts; failures are recorded, never
    raised. `round_at` is when the round polling it started (default: now)."""
    settings = services.settings
    started = services.clock.time()
    round_at = started if round_at is None else round_at
    try:
        async with asyncio.timeout(settings.fetch_timeout * 3 + 30):
            fetched = await fetch_feed(
                services.http, feed.url, etag=feed.etag, last_modified=feed.last_modified,
                max_bytes=settings.fetch_max_bytes, total_timeout=settings.fetch_timeout * 3,
            )
            if fetched.not_modified:
                await feeds.record_not_modified(
                    services.db, feed.id, now=started, next_poll_at=_next_poll(services, round_at)
                )
                return PollOutcome(feed, "not_modified")
            return await store_document(services, feed, fetched, now=started, round_at=round_at)
    except StorageError as exc:
        # The database is the problem, not the feed: nothing to record, retry next round.
        services.metrics.inc("newsbot_errors_total", stage="storage")
        log.error("feed not stored feed_id=%d error=%s", feed.id, exc)
        return PollOutcome(feed, "error", error=str(exc))
    except FetchError as exc:
        await _record_failure(services, feed, str(exc), started, retry_after=exc.retry_after)
        return PollOutcome(feed, "error", error=str(exc))
    except (ParseError, TimeoutError) as exc:
        message = str(exc) if not isinstance(exc, TimeoutError) else "poll: timed out"
        await _record_failure(services, feed, message, started)
        return PollOutcome(feed, "error", error=message)


async def store_document(
    services: Services, feed: Feed, fetched: FetchResult, *, now: float, round_at: float
) -> PollOutcome:
    """Parse a fetched document, store its stories (with the feed's status, in one
    transaction) and queue the alerts of the new ones: the poller's whole path after the
    fetch, which `newsbot check-feed` and /addfeed share up to the store."""
    parsed = await parse_feed_async(
        fetched.body, url=fetched.url, rule=feed.rule, fetched_at=now, headers=fetched.headers,
        feed_id=feed.id, sections=services.section_names,
    )
    priming = not feed.primed
    async with services.db.write() as conn:
        stored = await articles.store_articles(conn, parsed.articles, now=now, seen=priming)
        quiet = [] if priming else _not_alerted(services, parsed, stored, now)
        await articles.mark_matched(conn, [a.id for a in quiet])
        await feeds.record_success(
            conn, feed.id, now=now, next_poll_at=_next_poll(services, round_at),
            etag=fetched.etag, last_modified=fetched.last_modified, title=parsed.title,
            # A first poll that finds nothing primes nothing: the first one with stories
            # holds the backlog, which is history, not news.
            primed=bool(parsed.articles), capped=len(quiet),
        )
    if priming:
        result = "primed" if parsed.articles else "new"
        return PollOutcome(feed, result, items=len(parsed.articles))
    quiet_ids = {a.id for a in quiet}
    alerting = [a for a in stored.new if a.id not in quiet_ids] + stored.gained + [
        c.article for c in stored.corrected
    ]
    for correction in stored.corrected:
        if services.flapping.changed(correction.article.id, correction.article.title, services.clock.monotonic()):
            services.metrics.inc("newsbot_stories_flapping_total")
    enqueued = await enqueue_alerts(services, alerting, now=now)
    services.metrics.inc("newsbot_articles_new_total", len(stored.new))
    if stored.new or enqueued.queued or enqueued.edits:
        log.info(
            "feed=%d new=%d alerts_queued=%d held=%d not_alerted=%d corrections=%d",
            feed.id, len(stored.new), enqueued.queued, enqueued.held, len(quiet), enqueued.edits,
        )
    return PollOutcome(
        feed, "new", items=len(parsed.articles), new=tuple(stored.new),
        queued=enqueued.queued + enqueued.held, not_alerted=len(quiet),
    )


def _not_alerted(services: Services, parsed: ParsedFeed, stored: Stored, now: float) -> list[Article]:
    """New stories stored but not alerted: dated in the future, older than
    NEWSBOT_ALERT_MAX_AGE, or beyond the per-poll cap (NEWSBOT_ALERTS_PER_POLL, the newest
    go): a feed that dumps its archive or lies about its dates cannot flood readers."""
    settings = services.settings
    oldest = now - settings.alert_max_age
    quiet = [a for a in stored.new if a.id in parsed.dated_ahead or a.published_at < oldest]
    held_back = {a.id for a in quiet}
    rest = sorted((a for a in stored.new if a.id not in held_back), key=lambda a: a.published_at, reverse=True)
    for why, count in (("date", len(quiet)), ("cap", max(0, len(rest) - settings.alerts_per_poll))):
        services.metrics.inc("newsbot_alerts_capped_total", count, why=why)
    return quiet + rest[settings.alerts_per_poll :]


async def _record_failure(
    services: Services, feed: Feed, message: str, now: float, *, retry_after: float | None = None
) -> None:
    errors = feed.error_count + 1
    delay = backoff_seconds(errors, base=services.settings.poll_seconds)
    if retry_after is not None:
        # The server said when to come back (429/503 Retry-After): not sooner.
        delay = max(delay, retry_after)
    services.metrics.inc("newsbot_errors_total", stage="poll")
    log.warning(
        "feed failed feed_id=%d url=%s errors=%d retry_in=%.0fs error=%s",
        feed.id, redact_url(feed.url), errors, delay, message,
    )
    try:
        await feeds.record_failure(services.db, feed.id, message, now=now, next_poll_at=now + delay)
    except StorageError as exc:
        log.error("feed failure not recorded feed_id=%d error=%s", feed.id, exc)


async def enqueue_alerts(services: Services, stories: list[Article], *, now: float | None = None) -> Enqueued:
    """Match stories against every subscription and queue their alerts (and channel posts)
    durably; stories already alerted get edits where what their readers saw changed."""
    if not stories:
        return Enqueued()
    matcher = services.matcher
    matches: dict[str, dict[int, Match]] = {}
    channels: dict[str, list[int]] = {}
    for article in stories:
        matches[article.id] = {
            chat_id: Match(reasons, matcher.thread_for(chat_id, reasons))
            for chat_id, reasons in matcher.match(article).items()
        }
        channels[article.id] = [
            services.channels[s] for s in article.all_sections if s in services.channels
        ]
    result = await outbox.enqueue_alerts(
        services.db, stories, matches, channels=channels, now=services.clock.time() if now is None else now,
        edit_interval=services.settings.edit_interval,
    )
    services.metrics.inc("newsbot_alerts_queued_total", result.queued + result.held)
    if result.queued or result.edits:
        services.outbox_wake.set()
    return result


async def enqueue_unmatched(services: Services) -> int:
    """Stories stored whose alerts were not queued (a failed enqueue, a crash, a new section
    or a correction) get them now."""
    total = 0
    while batch := await articles.unmatched_articles(services.db):
        total += (await enqueue_alerts(services, batch)).queued
    return total


async def poll_due_feeds(services: Services, *, all_feeds: bool = False) -> PollSummary:
    """One round: every due feed (or every feed) fetched side by side, each finished alone."""
    now = services.clock.time()
    due = [f for f in await feeds.list_feeds(services.db) if all_feeds or f.next_poll_at <= now]
    limit = asyncio.Semaphore(POLL_CONCURRENCY)

    async def bounded(feed: Feed) -> PollOutcome:
        async with limit:
            try:
                outcome = await poll_feed(services, feed, round_at=now)
            except Exception as exc:  # a bug for one feed must not cost the others their round
                services.metrics.inc("newsbot_errors_total", stage="poll")
                log.exception("feed poll failed unexpectedly feed_id=%d", feed.id)
                await _record_failure(services, feed, f"poll: internal error: {type(exc).__name__}", now)
                outcome = PollOutcome(feed, "error", error=f"internal error: {type(exc).__name__}")
        services.metrics.inc("newsbot_polls_total", result=outcome.result)
        if outcome.result != "error":
            services.metrics.last_poll_success = services.clock.monotonic()
        return outcome

    return PollSummary(outcomes=list(await asyncio.gather(*(bounded(f) for f in due))))


async def poll_tick(services: Services) -> PollSummary:
    """The repeating job: first any stories whose alerts are still to queue, then the round."""
    try:
        await enqueue_unmatched(services)
    except StorageError as exc:
        services.metrics.inc("newsbot_errors_total", stage="storage")
        log.error("alerts not queued, retried next tick error=%s", exc)
    return await poll_due_feeds(services)
