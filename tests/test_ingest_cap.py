"""Feeds that flood or lie, through the poller and the loopback feed server: a real SQLite
file, real HTTP, the poller's own functions (`poll_due_feeds`, `catch_up_alerts`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.context import Services, load_matcher_index, open_services
from bot.pipeline.parse import FUTURE_TOLERANCE
from bot.stages.poll import catch_up_alerts, poll_due_feeds
from storage import articles, chats, feeds, subscriptions
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock

READER = 42
CAP = 5
HOUR = 3600.0


def item(n: int, published: float | None, *, guid: str | None = None, title: str | None = None) -> str:
    date = "" if published is None else (
        f"<pubDate>{format_datetime(datetime.fromtimestamp(published, UTC))}</pubDate>"
    )
    return (
        f"<item><title>{title or f'Story number {n} about harbour{n}'}</title>"
        f"<link>https://news.example/article/{n}</link>"
        f'<guid isPermaLink="false">{guid or f"s-{n}"}</guid>'
        f'<category domain="section">World</category>{date}<description>Text {n}</description></item>'
    )


def rss(items: Sequence[str]) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Test feed</title>'
        + "".join(items) + "</channel></rss>"
    ).encode()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def settings_for(tmp_path: Path, urls: list[str], **extra: str) -> dict[str, str]:
    return {
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, urls)),
        "NEWSBOT_DB": str(tmp_path / "newsbot.db"),
        "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
        "NEWSBOT_POLL_SECONDS": "60",
        "NEWSBOT_ALERTS_PER_POLL": str(CAP),
        "NEWSBOT_ALERT_MAX_AGE": "24h",
        **extra,
    }


async def open_with_reader(env: dict[str, str]) -> Services:
    """Services with one reader following the World section."""
    services = await open_services(load_settings(env, env_file=None))
    await chats.join(services.db, READER, "private", now=time.time())
    await subscriptions.add_subscription(services.db, READER, "section", "world", "World", limit=50, now=time.time())
    await load_matcher_index(services.db, services.matcher)
    return services


@pytest.fixture
async def one_feed(tmp_path: Path, server: FeedServer) -> AsyncIterator[Services]:
    services = await open_with_reader(settings_for(tmp_path, [server.url_for("/feed.xml")]))
    yield services
    await services.close()


async def alerted(services: Services) -> list[str]:
    rows = await services.db.fetchall(
        "SELECT article_id FROM outbox WHERE chat_id = ? AND kind = 'alert' ORDER BY article_id", (READER,)
    )
    return sorted(r[0] for r in rows)


async def prime(services: Services, server: FeedServer, items: Sequence[str]) -> None:
    server.serve("/feed.xml", rss(items))
    [outcome] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert outcome.result == "primed", outcome


async def test_a_flood_of_new_stories_alerts_only_the_newest(one_feed: Services, server: FeedServer) -> None:
    """12 new stories in one poll with a cap of 5: the 5 newest are alerted, all 12 stored
    and searchable, and the feed records how many went without alerts."""
    services = one_feed
    now = time.time()
    await prime(services, server, [item(0, now - HOUR)])
    fresh = [item(n, now - 600 + n * 10) for n in range(1, 13)]  # s-12 is the newest
    server.serve("/feed.xml", rss([item(0, now - HOUR), *fresh]))
    [outcome] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert len(outcome.new) == 12 and outcome.not_alerted == 12 - CAP
    assert await alerted(services) == sorted(f"s-{n}" for n in range(8, 13))
    assert await articles.count_articles(services.db) == 13
    [found] = await articles.search(services.db, "harbour2")  # capped, still searchable
    assert found.id == "s-2"
    [feed] = await feeds.list_feeds(services.db)
    assert feed.capped == 12 - CAP
    assert services.metrics.value("newsbot_alerts_capped_total", why="cap") == 12 - CAP


async def test_stories_too_old_or_dated_ahead_are_stored_not_alerted(one_feed: Services, server: FeedServer) -> None:
    services = one_feed
    now = time.time()
    await prime(services, server, [item(0, now - HOUR)])
    server.serve("/feed.xml", rss([
        item(0, now - HOUR),
        item(1, now - 25 * HOUR),  # older than NEWSBOT_ALERT_MAX_AGE
        item(2, now + FUTURE_TOLERANCE + 3 * HOUR),  # dated in the future beyond the skew
        item(3, now - 60),  # news
    ]))
    [outcome] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert len(outcome.new) == 3 and outcome.not_alerted == 2
    assert await alerted(services) == ["s-3"]
    assert await articles.count_articles(services.db) == 4
    assert services.metrics.value("newsbot_alerts_capped_total", why="date") == 2


async def test_a_feed_rotating_its_guids_realerts_nothing(one_feed: Services, server: FeedServer) -> None:
    """Every poll the same stories under new ids: recognised by their links, nothing new."""
    services = one_feed
    now = time.time()
    stories = [(n, now - n * 60) for n in range(1, 6)]
    await prime(services, server, [item(n, t, guid=f"rot-a-{n}") for n, t in stories])
    for rotation in ("b", "c", "d"):
        server.serve("/feed.xml", rss([item(n, t, guid=f"rot-{rotation}-{n}") for n, t in stories]))
        [outcome] = (await poll_due_feeds(services, all_feeds=True)).outcomes
        assert outcome.result == "new" and outcome.new == (), outcome
    assert await alerted(services) == []
    assert await articles.count_articles(services.db) == 5


async def test_an_empty_first_poll_does_not_prime(one_feed: Services, server: FeedServer) -> None:
    """A feed empty at first: its first poll with stories holds history (stored as seen, no
    alerts); only what comes after is news."""
    services = one_feed
    now = time.time()
    server.serve("/feed.xml", rss([]))
    [empty] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert empty.result == "new" and empty.items == 0
    [feed] = await feeds.list_feeds(services.db)
    assert not feed.primed

    backlog = [item(n, now - n * 60) for n in range(1, 8)]
    server.serve("/feed.xml", rss(backlog))
    [first] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert first.result == "primed" and first.items == 7
    assert await alerted(services) == []
    assert await articles.count_articles(services.db) == 7

    server.serve("/feed.xml", rss([item(99, now), *backlog]))
    await poll_due_feeds(services, all_feeds=True)
    assert await alerted(services) == ["s-99"]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(one_feed: Services, server: FeedServer, status: int) -> None:
    services = one_feed
    server.status("/feed.xml", status, headers={"Retry-After": "7200"})
    before = time.time()
    [outcome] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert outcome.result == "error"
    [feed] = await feeds.list_feeds(services.db)
    assert feed.next_poll_at >= before + 7200
    # Rounds that come meanwhile leave it alone.
    for _ in range(3):
        assert (await poll_due_feeds(services)).outcomes == []
    assert len(server.requests("/feed.xml")) == 1


async def test_one_feed_failing_unexpectedly_costs_the_others_nothing(tmp_path: Path, server: FeedServer) -> None:
    """A feed whose stored row trips the poller (a validator that is not text) fails alone:
    the other feeds of the round are polled and their stories stored and alerted."""
    paths = ["/odd.xml", "/a.xml", "/b.xml"]
    services = await open_with_reader(settings_for(tmp_path, [server.url_for(p) for p in paths]))
    try:
        now = time.time()
        for n, path in enumerate(paths):
            server.serve(path, rss([item(n, now - HOUR)]))
        await poll_due_feeds(services, all_feeds=True)
        with sqlite3.connect(tmp_path / "newsbot.db") as conn:
            conn.execute("UPDATE feeds SET etag = X'FF00' WHERE url LIKE '%/odd.xml'")
        for n, path in enumerate(paths):
            server.serve(path, rss([item(n, now - HOUR), item(10 + n, now - 30)]))
        summary = await poll_due_feeds(services, all_feeds=True)
        by_path = {o.feed.url.rsplit("/", 1)[1]: o for o in summary.outcomes}
        assert by_path["odd.xml"].result == "error"
        assert "internal error" in (by_path["odd.xml"].error or "")
        assert by_path["a.xml"].result == by_path["b.xml"].result == "new"
        assert await alerted(services) == ["s-11", "s-12"]
        odd = next(f for f in await feeds.list_feeds(services.db) if f.url.endswith("/odd.xml"))
        assert odd.error_count == 1 and odd.next_poll_at > now
    finally:
        await services.close()


async def test_alerts_not_queued_are_queued_at_the_next_tick(one_feed: Services, server: FeedServer, tmp_path: Path) -> None:
    """The story is stored but queuing its alerts fails (the database refuses the outbox
    write): the next tick queues them, without a restart."""
    services = one_feed
    now = time.time()
    await prime(services, server, [item(0, now - HOUR)])
    with sqlite3.connect(tmp_path / "newsbot.db") as conn:
        conn.execute(
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
            "BEGIN SELECT RAISE(ABORT, 'database is locked'); END"
        )
    server.serve("/feed.xml", rss([item(0, now - HOUR), item(1, now - 30)]))
    [outcome] = (await poll_due_feeds(services, all_feeds=True)).outcomes
    assert outcome.result == "error" and "database is locked" in (outcome.error or "")
    assert await articles.get_article(services.db, "s-1") is not None
    assert await alerted(services) == []
    with sqlite3.connect(tmp_path / "newsbot.db") as conn:
        conn.execute("DROP TRIGGER refuse_outbox")
    await catch_up_alerts(services)
    assert await alerted(services) == ["s-1"]


async def test_feeds_command_says_stories_went_without_alerts(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """The running bot polls a feed that dumps 9 new stories with a cap of 5: the reader
    gets 5 alerts, and an admin's /feeds says 4 were stored without alerts."""
    tg, server = sim_tg, sim_feeds
    now = clock.time()
    server.serve("/feed.xml", rss([item(0, now - HOUR)]))
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [server.url_for("/feed.xml")])),
        NEWSBOT_POLL_SECONDS="1", NEWSBOT_ALERTS_PER_POLL=str(CAP),
    )
    sent_sql = "SELECT article_id FROM outbox WHERE chat_id = ? AND state = 'sent'"
    async with running_bot(settings, clock=clock) as rt:
        db = rt.services.db
        await tg.await_for(lambda: server.requests("/feed.xml"), timeout=30, interval=0.05)
        await ask(tg, READER, "/start")
        await subscriptions.add_subscription(db, READER, "section", "world", "World", limit=50, now=clock.time())
        await load_matcher_index(db, rt.services.matcher)
        server.serve("/feed.xml", rss([item(0, now - HOUR), *(item(n, now - 600 + n) for n in range(1, 10))]))
        [_, alerts] = await tg.await_messages(READER, 2, timeout=60)  # combined into one
        # Telegram has the message a moment before the bot has recorded its rows as sent.
        with sqlite3.connect(tmp_path / "newsbot.db") as conn:
            await tg.await_for(
                lambda: len(conn.execute(sent_sql, (READER,)).fetchall()) >= CAP, timeout=30, interval=0.05
            )
        reply = await ask(tg, 9001, "/feeds")
        sent = await db.fetchall(sent_sql, (READER,))
    assert "last poll: 4 new stories stored without alerts" in str(reply["text"]), reply["text"]
    assert sorted(r[0] for r in sent) == [f"s-{n}" for n in range(5, 10)]
    assert [f"harbour{n}" in str(alerts["text"]) for n in range(1, 10)] == [False] * 4 + [True] * 5
