"""The poll: fetch → read (any kind of source) → store what is new → match → enqueue, one
function per stage.

Each feed is polled on its own time (bot.pipeline.schedule) and finished on its own: its
alerts are queued as soon as its stories are stored, whatever any other feed is doing. Only
the fetch is bounded by the feed's fetch budget (3 × NEWSBOT_FETCH_TIMEOUT, waiting for a
fetch slot included); parsing runs in a thread, and storing is never cut short. How long
until the next poll is bot.pipeline.cadence's rule; a WebSub delivery's document is stored
through the same path as a fetched one (bot.stages.websub).

A failing feed is tried again after its back-off (`backoff_seconds`: the poll interval,
doubling, at most NEWSBOT_FEED_BACKOFF_MAX) or when its server's Retry-After says, whichever
is later. The log says when a feed starts failing and when it recovers, one line each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from bot.context import Services
from bot.pipeline.cadence import Delivery, max_age
from bot.pipeline.enrich import enrich_entries
from bot.pipeline.fetch import FetchError, FetchResult, fetch_feed
from bot.pipeline.parse import ParsedFeed, ParseError
from bot.pipeline.schedule import backoff_seconds
from bot.pipeline.sources import read_document
from bot.pipeline.urls import redact_url
from bot.stages import websub
from storage import articles, feeds, outbox
from storage.articles import Stored
from storage.db import StorageError
from storage.models import Article, Feed
from storage.outbox import Enqueued, Match

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    feed: Feed
    result: str  # "new", "not_modified", "primed", "error"
    items: int = 0
    new: tuple[Article, ...] = ()
    queued: int = 0
    not_alerted: int = 0  # new stories stored without alerts (cap, age, future date)
    error: str | None = None
    next_in: float = 0.0  # seconds from the end of this poll to the feed's next one
    interval: float | None = None  # seconds from the start of this poll to the next, as stored
    parsed: ParsedFeed | None = field(default=None, repr=False)  # the document read, if any


@dataclass
class PollSummary:
    outcomes: list[PollOutcome] = field(default_factory=list)

    @property
    def new_articles(self) -> int:
        return sum(len(o.new) for o in self.outcomes)

    @property
    def queued(self) -> int:
        return sum(o.queued for o in self.outcomes)


def fetch_budget(services: Services) -> float:
    """The most one fetch may take, waiting for a fetch slot included."""
    return services.settings.fetch_timeout * 3


async def fetch_for_poll(services: Services, feed: Feed) -> FetchResult:
    """The feed's document, within its fetch budget: waiting for a fetch slot counts, so
    feeds that hang can hold a slot for their budget at most, and the feed waiting is told
    so rather than waiting without end."""
    settings = services.settings
    clock = services.clock
    budget = fetch_budget(services)
    started = clock.monotonic()
    try:
        async with asyncio.timeout(budget):
            await services.feed_schedule.slots.acquire()
    except TimeoutError:
        raise FetchError(
            "timeout", f"no free fetch slot within {budget:g} s (other feeds are slow)",
            url=redact_url(feed.url, settings.url_safe_params),
        ) from None
    services.pacing.request(feed.id)
    try:
        return await fetch_feed(
            services.http, feed.url, etag=feed.etag, last_modified=feed.last_modified,
            max_bytes=settings.fetch_max_bytes,
            total_timeout=max(0.001, budget - (clock.monotonic() - started)),
            safe_params=settings.url_safe_params,
        )
    finally:
        services.feed_schedule.slots.release()


async def poll_feed(
    services: Services, feed: Feed, *, pushed: bool = False, delivery: Delivery | None = None
) -> PollOutcome:
    """Fetch one feed (or take the document a WebSub delivery brought), store what is new and
    queue its alerts; failures are recorded, never raised. The outcome says when the feed
    is due again. `pushed`: a push asked for this poll."""
    started = services.clock.time()
    began = services.clock.monotonic()
    outcome: PollOutcome | None = None
    fetched: FetchResult | None = None
    if delivery is not None:
        outcome = await _store_delivery(services, feed, delivery, now=started)
    if outcome is None:
        try:
            fetched = await fetch_for_poll(services, feed)
        except FetchError as exc:
            # The back-off counts from now: a fetch that took its whole budget is not retried at once.
            return await _record_failure(services, feed, str(exc), services.clock.time(), retry_after=exc.retry_after)
        try:
            if fetched.not_modified:
                unchanged = _next_interval(services, feed, fetched)
                await feeds.record_not_modified(services.db, feed.id, now=started, next_poll_at=started + unchanged)
                outcome = PollOutcome(feed, "not_modified", interval=unchanged)
            else:
                outcome = await store_document(services, feed, fetched, now=started)
        except StorageError as exc:
            # The database is the problem, not the feed: nothing to record, try again later.
            services.metrics.inc("newsbot_errors_total", stage="storage")
            log.error("feed not stored feed_id=%d error=%s", feed.id, exc)
            return PollOutcome(feed, "error", error=str(exc), next_in=services.settings.poll_seconds)
        except FetchError as exc:  # a sitemap an index leads to
            return await _record_failure(services, feed, str(exc), services.clock.time(), retry_after=exc.retry_after)
        except ParseError as exc:
            return await _record_failure(services, feed, str(exc), services.clock.time())
    trusted = services.pacing.push_works(feed.id)
    services.pacing.polled(feed.id, pushed=pushed, new=len(outcome.new) if outcome.result == "new" else 0)
    # The interval counts from the start of this poll: a slow fetch or store does not
    # stretch it. It is the one stored, unless push just turned out to miss stories.
    stored = outcome.interval
    interval = (
        stored if stored is not None and trusted == services.pacing.push_works(feed.id)
        else _next_interval(services, feed, fetched)
    )
    parsed = outcome.parsed
    hub, topic = (None, None)
    if parsed is not None and fetched is not None:
        hub, topic = websub.hub_and_topic(fetched.headers, parsed.hubs, parsed.self_url, feed.url)
    lease_due = None
    if services.feed_schedule.running:  # not from `newsbot ingest`: nobody would answer the hub
        try:
            lease_due = await websub.maintain(services, feed, hub, topic)
        except StorageError as exc:
            log.error("websub state not kept feed_id=%d error=%s", feed.id, exc)
    if lease_due is not None:
        interval = min(interval, lease_due)
    outcome = dataclasses.replace(outcome, next_in=max(0.0, began + interval - services.clock.monotonic()))
    if feed.error_count:
        log.info(
            "feed recovered feed_id=%d url=%s errors=%d failing_for=%.0fs",
            feed.id, redact_url(feed.url, services.settings.url_safe_params), feed.error_count,
            started - (feed.failing_since or started),
        )
    return outcome


def _next_interval(services: Services, feed: Feed, fetched: FetchResult | None) -> float:
    """Seconds from a poll's start to the feed's next poll (bot.pipeline.cadence)."""
    if fetched is None:
        return services.pacing.interval(feed.id)
    return services.pacing.interval(
        feed.id, fresh_for=max_age(fetched.headers), retry_after=fetched.retry_after,
    )


async def _store_delivery(services: Services, feed: Feed, delivery: Delivery, *, now: float) -> PollOutcome | None:
    """A WebSub delivery's body stored as the feed's document; None when it is not one
    with stories (a "thin" ping, an empty body): the feed is fetched instead."""
    headers = {"content-type": delivery.content_type} if delivery.content_type else {}
    document = FetchResult(
        url=feed.url, status=200, not_modified=False, body=delivery.body, headers=headers,
        # The site's validators still describe what it last sent us.
        etag=feed.etag, last_modified=feed.last_modified, elapsed=0.0, store_url=feed.url,
    )
    try:
        outcome = await store_document(services, feed, document, now=now, need_items=True)
    except (ParseError, FetchError) as exc:
        log.info("websub delivery is not the feed's document feed_id=%d (%s): fetching it", feed.id, exc)
        return None
    except StorageError as exc:
        services.metrics.inc("newsbot_errors_total", stage="storage")
        log.error("feed not stored feed_id=%d error=%s", feed.id, exc)
        return None
    return outcome


async def read_for_store(services: Services, feed: Feed, fetched: FetchResult, *, now: float) -> ParsedFeed:
    """The fetched document read as the feed's kind, sitemap and listing items completed
    from their article pages (not on a feed's first poll, which only marks what it holds)."""
    settings = services.settings

    async def known(urls: list[str]) -> set[str]:
        return await articles.known_urls(services.db, urls)

    async def enrich(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not feed.primed:
            return entries
        return await enrich_entries(
            entries, client=services.http, cache=services.pages, known=known, max_bytes=settings.fetch_max_bytes,
            page_timeout=settings.fetch_timeout, safe_params=settings.url_safe_params,
            count_request=lambda: services.pacing.request(feed.id),
        )

    parsed = await read_document(
        services.http, fetched, kind=feed.kind, selector=feed.selector, rule=feed.rule, fetched_at=now,
        feed_id=feed.id, sections=services.section_names, max_bytes=settings.fetch_max_bytes,
        total_timeout=fetch_budget(services), safe_params=settings.url_safe_params,
        count_request=lambda: services.pacing.request(feed.id), enrich=enrich,
    )
    if parsed.note:
        services.metrics.inc("newsbot_source_bounds_total", kind=parsed.kind)
        log.warning("feed=%d %s read within bounds: %s", feed.id, parsed.kind, parsed.note)
    services.pacing.saw(feed.id, [a.published_at for a in parsed.articles if a.id not in parsed.dated_ahead])
    return parsed


async def store_document(
    services: Services, feed: Feed, fetched: FetchResult, *, now: float, next_poll_at: float | None = None,
    need_items: bool = False,
) -> PollOutcome:
    """Read a fetched document, store its stories (with the feed's status, in one
    transaction) and queue the alerts of the new ones: the poller's whole path after the
    fetch, which `newsbot check-feed` and /addfeed share up to the store. `next_poll_at`:
    when the feed is due again (wall time; default: the feed's interval from `now`).
    `need_items`: a document without stories is a ParseError (a pushed body)."""
    await _load_pace(services, feed, now)
    parsed = await read_for_store(services, feed, fetched, now=now)
    if need_items and not parsed.articles:
        raise ParseError("parse: no stories in the document")
    interval = _next_interval(services, feed, fetched) if next_poll_at is None else next_poll_at - now
    next_poll_at = now + interval
    priming = not feed.primed
    async with services.db.write() as conn:
        stored = await articles.store_articles(conn, parsed.articles, now=now, seen=priming)
        quiet = [] if priming else _not_alerted(services, parsed, stored, now)
        await articles.mark_matched(conn, [a.id for a in quiet])
        await feeds.record_success(
            conn, feed.id, now=now, next_poll_at=next_poll_at,
            etag=fetched.etag, last_modified=fetched.last_modified, title=parsed.title,
            # A first poll that finds nothing primes nothing: the first one with stories
            # holds the backlog, which is history, not news.
            primed=bool(parsed.articles), capped=len(quiet), found_kind=parsed.kind,
        )
    if priming:
        result = "primed" if parsed.articles else "new"
        return PollOutcome(feed, result, items=len(parsed.articles), parsed=parsed, interval=interval)
    quiet_ids = {a.id for a in quiet}
    alerting = [a for a in stored.new if a.id not in quiet_ids] + stored.gained + [
        c.article for c in stored.corrected
    ]
    for correction in stored.corrected:
        if services.flapping.changed(correction.article.id, correction.article.title, services.clock.monotonic()):
            services.metrics.inc("newsbot_stories_flapping_total")
    enqueued = await enqueue_alerts(services, alerting, now=now)
    services.metrics.inc("newsbot_articles_new_total", len(stored.new))
    _count_items(services, feed, stored)
    if stored.new or enqueued.queued or enqueued.edits:
        log.info(
            "feed=%d new=%d alerts_queued=%d held=%d not_alerted=%d corrections=%d",
            feed.id, len(stored.new), enqueued.queued, enqueued.held, len(quiet), enqueued.edits,
        )
    return PollOutcome(
        feed, "new", items=len(parsed.articles), new=tuple(stored.new),
        queued=enqueued.queued + enqueued.held, not_alerted=len(quiet), parsed=parsed, interval=interval,
    )


async def _load_pace(services: Services, feed: Feed, now: float) -> None:
    """After a start, a feed's cadence from its stored stories of the last week."""
    pace = services.pacing.pace(feed.id)
    if not pace.loaded:
        services.pacing.saw(feed.id, await articles.recent_publication_times(services.db, feed.id, since=now - 7 * 86400))


def _not_alerted(services: Services, parsed: ParsedFeed, stored: Stored, now: float) -> list[Article]:
    """New stories stored but not alerted: dated in the future, older than
    NEWSBOT_ALERT_MAX_AGE, or beyond the per-poll cap (NEWSBOT_ALERTS_PER_POLL, the newest
    go): a feed that dumps its archive or lies about its dates cannot flood readers."""
    settings = services.settings
    oldest = now - settings.alert_max_age
    ahead = {stored.renamed.get(i, i) for i in parsed.dated_ahead}
    quiet = [a for a in stored.new if a.id in ahead or a.published_at < oldest]
    held_back = {a.id for a in quiet}
    rest = sorted((a for a in stored.new if a.id not in held_back), key=lambda a: a.published_at, reverse=True)
    for why, count in (("date", len(quiet)), ("cap", max(0, len(rest) - settings.alerts_per_poll))):
        services.metrics.inc("newsbot_alerts_capped_total", count, why=why)
    return quiet + rest[settings.alerts_per_poll :]


def _count_items(services: Services, feed: Feed, stored: Stored) -> None:
    """Items a document repeated (one story twice) and new stories that could not be stored
    (their id taken within the document) are counted; the second never happens by the rule,
    so it is logged as an error."""
    services.metrics.inc("newsbot_feed_items_repeated_total", stored.repeated)
    services.metrics.inc("newsbot_stories_scoped_total", len(stored.renamed))
    if stored.renamed:
        log.info("feed=%d guid of another feed's story, stored as a story of its own=%d",
                 feed.id, len(stored.renamed))
    if stored.refused:
        services.metrics.inc("newsbot_errors_total", stage="store")
        log.error("feed=%d new stories not stored (id taken)=%d", feed.id, stored.refused)


async def _record_failure(
    services: Services, feed: Feed, message: str, now: float, *, retry_after: float | None = None
) -> PollOutcome:
    """Count the failure, say so in the log if it is the feed's first, and schedule the next
    try: after the back-off, or later if the server asked for that (Retry-After)."""
    settings = services.settings
    errors = feed.error_count + 1
    delay = backoff_seconds(errors, base=settings.poll_seconds, cap=settings.feed_backoff_max)
    if retry_after is not None:
        # The server said when to come back (429/503 Retry-After): not sooner, and it may
        # ask for longer than our own cap (up to a day: bot.pipeline.fetch).
        delay = max(delay, retry_after)
    services.metrics.inc("newsbot_errors_total", stage="poll")
    shown = redact_url(feed.url, settings.url_safe_params)
    if feed.error_count == 0:
        log.warning("feed failing feed_id=%d url=%s retry_in=%.0fs error=%s", feed.id, shown, delay, message)
    else:
        log.debug("feed still failing feed_id=%d errors=%d retry_in=%.0fs error=%s", feed.id, errors, delay, message)
    try:
        await feeds.record_failure(services.db, feed.id, message, now=now, next_poll_at=now + delay)
    except StorageError as exc:
        log.error("feed failure not recorded feed_id=%d error=%s", feed.id, exc)
    return PollOutcome(feed, "error", error=message, next_in=delay)


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


async def _poll_guarded(
    services: Services, feed: Feed, *, pushed: bool = False, delivery: Delivery | None = None
) -> PollOutcome:
    """`poll_feed`, with a bug for one feed recorded as that feed's failure."""
    try:
        outcome = await poll_feed(services, feed, pushed=pushed, delivery=delivery)
    except Exception as exc:  # a bug for one feed must not cost the others anything
        services.metrics.inc("newsbot_errors_total", stage="poll")
        log.exception("feed poll failed unexpectedly feed_id=%d", feed.id)
        outcome = await _record_failure(
            services, feed, f"poll: internal error: {type(exc).__name__}", services.clock.time()
        )
    services.metrics.inc("newsbot_polls_total", result=outcome.result)
    if outcome.result != "error":
        services.metrics.last_poll_success = services.clock.monotonic()
    return outcome


async def poll_scheduled(services: Services, feed_id: int, pushed: bool = False) -> float | None:
    """The schedule's poll of one feed (bot.pipeline.schedule.PollFeed): its row read afresh
    (validators, errors, whether it is still enabled), polled, and the seconds until its
    next poll returned; None once the feed is removed."""
    try:
        feed = await feeds.get_feed(services.db, feed_id)
    except StorageError as exc:
        log.error("feed not read feed_id=%d error=%s", feed_id, exc)
        return services.settings.poll_seconds
    if feed is None or not feed.enabled:
        services.deliveries.pop(feed_id, None)
        return None
    delivery = services.deliveries.pop(feed_id, None)
    return (await _poll_guarded(services, feed, pushed=pushed, delivery=delivery)).next_in


def start_schedule(services: Services, polled: list[Feed]) -> None:
    """Every enabled feed on its own time, from its stored next poll time. A feed backing
    off is tried within NEWSBOT_FEED_BACKOFF_MAX of the start at the latest (a stored time
    may come from an older rule, or from a Retry-After a restart forgets)."""
    settings = services.settings
    now = services.clock.time()
    longest = max(settings.feed_backoff_max, settings.poll_seconds)
    services.feed_schedule.start(
        lambda feed_id, pushed: poll_scheduled(services, feed_id, pushed),
        [(f.id, min(longest, max(0.0, f.next_poll_at - now))) for f in polled],
        retry=settings.poll_seconds,
    )


async def poll_due_feeds(services: Services, *, all_feeds: bool = False) -> PollSummary:
    """Every due feed (or every feed) polled once, side by side, each finished on its own;
    returns when all are done (`newsbot ingest`). Fetches share the schedule's slots."""
    now = services.clock.time()
    due = [f for f in await feeds.list_feeds(services.db) if all_feeds or f.next_poll_at <= now]
    return PollSummary(outcomes=list(await asyncio.gather(*(_poll_guarded(services, f) for f in due))))


async def catch_up_alerts(services: Services) -> None:
    """The repeating job beside the schedule: stories stored whose alerts were not queued
    (the outbox write failed) get them now, without waiting for a restart."""
    try:
        await enqueue_unmatched(services)
    except StorageError as exc:
        services.metrics.inc("newsbot_errors_total", stage="storage")
        log.error("alerts not queued, retried next tick error=%s", exc)
