"""One story, one identity, end to end: the real bot reads feeds from the loopback feed server
and its alerts arrive at the fake Bot API, both on the test's loop and simulated clock. Each
poll is the poll job's own round (`poll_due_feeds`), run by the test when the feeds have
changed; retention is the maintenance job's own `maintenance.prune`. Days pass as the wall
clock is set forward (`SimClock.step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.context import Services, open_services
from bot.runner import Runtime, running
from bot.stages.poll import poll_due_feeds
from storage import articles, identity, maintenance
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram, RecordedCall
from tests.harness import bot_settings, write_feeds_file
from tests.simtime import SimClock
from tests.test_corrections import first_line, follow
from tests.test_delivery import FeedItem, backlog, query, rss

DAY = 24 * 3600.0
WORLD_READER, SPORTS_READER = 71_001, 71_002


@pytest.fixture
def tg(sim_tg: FakeTelegram) -> FakeTelegram:
    return sim_tg


@pytest.fixture
def feeds(sim_feeds: FeedServer) -> FeedServer:
    return sim_feeds


def settings_for(tg: FakeTelegram, feeds: FeedServer, tmp_path: Path, paths: Sequence[str], **extra: str) -> Settings:
    urls = [feeds.url_for(p) for p in paths]
    return bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, urls)), **extra)


async def primed(settings: Settings, tg: FakeTelegram, count: int) -> None:
    """Until the bot's first round has read every feed (their backlog is history)."""
    await tg.await_for(lambda: query(settings.db_path, "SELECT count(*) FROM feeds WHERE primed = 1") == [(count,)], timeout=30)


async def poll(rt: Runtime) -> None:
    summary = await poll_due_feeds(rt.services, all_feeds=True)
    assert all(o.result != "error" for o in summary.outcomes), summary.outcomes


async def settled(settings: Settings, tg: FakeTelegram) -> None:
    """Until nothing is waiting to be sent or on its way."""
    waiting = "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"
    await tg.await_for(lambda: query(settings.db_path, waiting) == [(0,)], timeout=30)


def edits(tg: FakeTelegram) -> list[RecordedCall]:
    return tg.calls("editMessageText")


async def test_another_feeds_item_under_a_delivered_guid_is_a_story_of_its_own(
    clock: SimClock, tg: FakeTelegram, feeds: FeedServer, tmp_path: Path
) -> None:
    """The sports feed publishes an item whose guid is the world story the world readers were
    alerted to, with another link and headline: it is the sports readers' new story, and
    the world readers' alert is left as it was (no edit, no "(updated)")."""
    world_items, sports_items = backlog("Old world", 3), backlog("Old sports", 3)
    feeds.serve("/world.xml", rss(world_items))
    feeds.serve("/sports.xml", rss(sports_items))
    settings = settings_for(tg, feeds, tmp_path, ["/world.xml", "/sports.xml"])
    await follow(settings.db_path, [WORLD_READER], "world")
    await follow(settings.db_path, [SPORTS_READER], "sports")
    async with running(settings, clock=clock) as rt:
        await primed(settings, tg, 2)
        flood = FeedItem("story-1", "Flood closes the E4", section="World", link="https://herald.example/world/flood")
        feeds.serve("/world.xml", rss([flood, *world_items]))
        await poll(rt)
        [alert] = await tg.await_messages(WORLD_READER, 1, timeout=30)

        derby = FeedItem("story-1", "Derby ends in a draw", section="Sports", link="https://sports.example/derby")
        feeds.serve("/sports.xml", rss([derby, *sports_items]))
        await poll(rt)
        await settled(settings, tg)

    assert edits(tg) == []
    assert first_line(tg.message(WORLD_READER, alert["message_id"])) == "World · Flood closes the E4"
    assert len(tg.sent_messages(WORLD_READER)) == 1
    [sports_alert] = tg.sent_messages(SPORTS_READER)
    assert first_line(sports_alert) == "Sports · Derby ends in a draw"
    stories = query(settings.db_path, "SELECT id, url, sections FROM articles WHERE title IN (?, ?) ORDER BY rowid",
                    (flood.title, derby.title))  # fmt: skip
    assert stories == [
        ("story-1", flood.link, "world"),
        (identity.scoped_id(2, "story-1"), derby.link, "sports"),
    ]


async def test_two_stories_with_one_headline_both_alert(
    clock: SimClock, tg: FakeTelegram, feeds: FeedServer, tmp_path: Path
) -> None:
    """Two different stories (their own guid and link, an hour and a half apart) under the
    same headline: the reader hears of each."""
    items = backlog("Old", 3)
    feeds.serve("/world.xml", rss(items))
    settings = settings_for(tg, feeds, tmp_path, ["/world.xml"])
    await follow(settings.db_path, [WORLD_READER], "world")
    now = clock.time()
    morning = FeedItem("storm-am", "Storm warning for the west coast", link="https://herald.example/storm-am", published=now - 7200)
    noon = FeedItem("storm-pm", "Storm warning for the west coast", link="https://herald.example/storm-pm", published=now - 1800)
    async with running(settings, clock=clock) as rt:
        await primed(settings, tg, 1)
        feeds.serve("/world.xml", rss([morning, *items]))
        await poll(rt)
        await tg.await_messages(WORLD_READER, 1, timeout=30)
        feeds.serve("/world.xml", rss([noon, morning, *items]))
        await poll(rt)
        await settled(settings, tg)

    alerts = tg.sent_messages(WORLD_READER)
    assert [first_line(m) for m in alerts] == ["World · Storm warning for the west coast"] * 2
    sent = "SELECT article_id FROM outbox WHERE chat_id = ? AND kind = 'alert' AND state = 'sent' ORDER BY id"
    assert query(settings.db_path, sent, (WORLD_READER,)) == [("storm-am",), ("storm-pm",)]
    assert query(settings.db_path, "SELECT id FROM articles WHERE title LIKE 'Storm warning%' ORDER BY rowid") == [
        ("storm-am",), ("storm-pm",)
    ]


async def test_a_story_still_listed_stays_in_the_archive_and_never_alerts_again(
    clock: SimClock, tg: FakeTelegram, feeds: FeedServer, tmp_path: Path
) -> None:
    """NEWSBOT_ARCHIVE_DAYS=2, and alerts for stories up to 30 days old: a story alerted on
    day 0 is still in its feed every day after (days 1-3 and 5-7 the feed is unchanged and
    answers 304, day 4 it is a new document). Retention runs each day; on day 7 the feed
    gains a story: the reader hears of the new one only, and the old one is still in the
    archive (found by /search)."""
    items = backlog("Old", 3)
    feeds.serve("/world.xml", rss(items))
    settings = settings_for(tg, feeds, tmp_path, ["/world.xml"], NEWSBOT_ARCHIVE_DAYS="2", NEWSBOT_ALERT_MAX_AGE="30d")
    await follow(settings.db_path, [WORLD_READER], "world")
    bridge = FeedItem("bridge-1", "Bridge closed for repairs")
    async with running(settings, clock=clock) as rt:
        await primed(settings, tg, 1)
        feeds.serve("/world.xml", rss([bridge, *items]))
        await poll(rt)
        await tg.await_messages(WORLD_READER, 1, timeout=30)
        await settled(settings, tg)
        for day in range(1, 8):
            clock.step(DAY)
            if day == 4:  # another summary for an old story: a new document, still listing it
                edited = [FeedItem(i.guid, i.title, published=i.published, summary="Rewritten.") for i in items]
                feeds.serve("/world.xml", rss([bridge, *edited]))
            await poll(rt)
            await prune(rt.services, settings, clock)
        ferry = FeedItem("ferry-1", "Ferry to Gotland delayed", published=clock.time() - 600)
        feeds.serve("/world.xml", rss([ferry, bridge, *edited]))
        await poll(rt)
        await tg.await_messages(WORLD_READER, 2, timeout=30)
        await settled(settings, tg)
        found = await articles.search(rt.services.db, "bridge repairs")

    assert [first_line(m) for m in tg.sent_messages(WORLD_READER)] == [
        "World · Bridge closed for repairs", "World · Ferry to Gotland delayed"
    ]
    assert [a.id for a in found] == ["bridge-1"]
    assert [r.status for r in feeds.requests("/world.xml")][-8:] == [304, 304, 304, 200, 304, 304, 304, 200]


async def test_a_story_that_left_the_archive_and_comes_back_is_remembered(
    clock: SimClock, tg: FakeTelegram, feeds: FeedServer, tmp_path: Path
) -> None:
    """The story leaves its feed, and after NEWSBOT_ARCHIVE_DAYS the archive; ten days later
    the feed lists it again (alerts for stories up to 30 days old are on): it is known
    (`seen`), and nobody hears of it twice. After storage.identity.SEEN_DAYS unlisted, the
    memory goes."""
    items = backlog("Old", 3)
    feeds.serve("/world.xml", rss(items))
    settings = settings_for(tg, feeds, tmp_path, ["/world.xml"], NEWSBOT_ARCHIVE_DAYS="2", NEWSBOT_ALERT_MAX_AGE="30d")
    await follow(settings.db_path, [WORLD_READER], "world")
    bridge = FeedItem("bridge-1", "Bridge closed for repairs")
    async with running(settings, clock=clock) as rt:
        await primed(settings, tg, 1)
        feeds.serve("/world.xml", rss([bridge, *items]))
        await poll(rt)
        await tg.await_messages(WORLD_READER, 1, timeout=30)
        await settled(settings, tg)
        clock.step(2 * 3600)
        feeds.serve("/world.xml", rss(items))  # it leaves the feed two hours later
        await poll(rt)
        clock.step(3 * DAY)
        await poll(rt)
        await prune(rt.services, settings, clock)
        assert await articles.get_article(rt.services.db, "bridge-1") is None
        assert query(settings.db_path, "SELECT count(*) FROM seen") == [(2,)]  # its id and its link

        clock.step(10 * DAY)
        feeds.serve("/world.xml", rss([bridge, *items]))
        await poll(rt)
        await settled(settings, tg)
        assert len(tg.sent_messages(WORLD_READER)) == 1
        assert await articles.get_article(rt.services.db, "bridge-1") is None

        # Listed again on day 13, the memory counts from there: gone 30 days after it leaves.
        feeds.serve("/world.xml", rss(items))
        await poll(rt)
        clock.step((identity.SEEN_DAYS - 1) * DAY)
        await poll(rt)
        await prune(rt.services, settings, clock)
        assert query(settings.db_path, "SELECT count(*) FROM seen") == [(2,)]
        clock.step(2 * DAY)
        await poll(rt)
        await prune(rt.services, settings, clock)
        assert query(settings.db_path, "SELECT count(*) FROM seen") == [(0,)]


async def prune(services: Services, settings: Settings, clock: SimClock) -> None:
    """The maintenance job's retention, until it has nothing left to do."""
    while (await maintenance.prune(
        services.db, outbox_days=settings.outbox_days, archive_days=settings.archive_days, now=clock.time()
    )).total:  # fmt: skip
        pass


async def test_a_hostile_document_costs_a_bounded_number_of_statements(
    clock: SimClock, feeds: FeedServer, tmp_path: Path
) -> None:
    """1,000 items: fifty different stories under one headline, items whose guids are another
    feed's stories (with links of their own), and one story under 350 guids: every story is
    stored once, the repeats and the scoped ids are counted, and the store runs a fixed
    number of batched lookups whatever the document holds (no query per item)."""
    now = clock.time()
    feeds.serve("/world.xml", rss(backlog("Old world", 2)))
    feeds.serve("/sports.xml", rss(backlog("Old sports", 2)))
    urls = [feeds.url_for("/world.xml"), feeds.url_for("/sports.xml")]
    services = await open_services(load_settings({
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, urls)),
        "NEWSBOT_DB": str(tmp_path / "newsbot.db"),
        "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
    }, env_file=None), clock=clock)  # fmt: skip
    try:
        await poll_due_feeds(services, all_feeds=True)  # both primed
        world = [FeedItem(f"w-{n}", f"World story {n}", published=now - 900 - n) for n in range(300)]
        feeds.serve("/world.xml", rss(world))
        await poll_due_feeds(services, all_feeds=True)
        same_headline = [
            FeedItem(f"h-{n}", "Breaking news", section="Sports", published=now - 3600 + n) for n in range(50)
        ]
        colliding = [
            FeedItem(f"w-{n}", f"Match report {n}", section="Sports", link=f"https://sports.example/{n}")
            for n in range(300)
        ]
        # One story under 350 guids (its link says it is one).
        repeats = [
            FeedItem(f"cup-{n}", "Cup final tonight", section="Sports", link="https://sports.example/cup")
            for n in range(350)
        ]
        fresh = [FeedItem(f"s-{n}", f"Sports story {n}", section="Sports") for n in range(300)]
        document = [*same_headline, *colliding, *repeats, *fresh]
        assert len(document) == 1000
        feeds.serve("/sports.xml", rss(document))
        statements: list[str] = []
        writer = services.db._writer
        await writer.set_trace_callback(statements.append)
        try:
            summary = await poll_due_feeds(services, all_feeds=True)
        finally:
            await writer.set_trace_callback(None)
        [outcome] = [o for o in summary.outcomes if o.feed.url.endswith("/sports.xml")]
        assert len(outcome.new) == 50 + 300 + 1 + 300
        assert services.metrics.value("newsbot_feed_items_repeated_total") == 349
        assert services.metrics.value("newsbot_stories_scoped_total") == 300
        lookups = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE SEEN"))]
        # Two batches of 500 items, at most six lookups each (recognise's five and the rows
        # found), and a few for queuing the alerts.
        assert len(lookups) <= 2 * 6 + 6, lookups
        # The world feed's stories are as they were.
        story = await articles.get_article(services.db, "w-7")
        assert story is not None and story.title == "World story 7" and story.sections == ("world",)
    finally:
        await services.close()
