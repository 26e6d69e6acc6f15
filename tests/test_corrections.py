"""Corrections end to end: a headline changed under the same id after its alerts went out is
fixed in the readers' chats with editMessageText (never a second message), and a story
published in two sections' feeds is one story.

The bot runs in-process against the fake Bot API, which enforces the flood limits with edits
counted like sends, and the loopback feed server; a correction is a changed feed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from storage import chats, subscriptions
from storage.db import Database
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram, RecordedCall
from tests.harness import ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock
from tests.test_delivery import FeedItem, backlog, polled, query, rss

ADMIN = 9001


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


async def follow(db_path: Path, readers: Sequence[int], *sections: str, combine: bool = True) -> None:
    """Readers who started the bot and follow `sections`, stored before it starts."""
    db = await Database.open(db_path)
    try:
        for chat_id in readers:
            await chats.join(db, chat_id, "private", now=time.time())
            if not combine:
                await chats.set_option(db, chat_id, "combine", False, now=time.time())
            for slug in sections:
                await subscriptions.add_subscription(db, chat_id, "section", slug, slug.title(), limit=50, now=time.time())
    finally:
        await db.close()


def reading(feeds: FeedServer, tg: FakeTelegram, tmp_path: Path, documents: Mapping[str, bytes]) -> Settings:
    """The loopback feed server serving `documents` (path → feed), and the settings of a bot
    reading those feeds every 2 s."""
    for path, body in documents.items():
        feeds.serve(path, body)
    urls = [feeds.url_for(path) for path in documents]
    return bot_settings(tg, tmp_path, NEWSBOT_POLL_SECONDS="2", NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, urls)))


def sends_of(tg: FakeTelegram, title: str) -> list[RecordedCall]:
    return [c for c in tg.calls("sendMessage") if title in c.params.get("text", "")]


def edits(tg: FakeTelegram) -> list[RecordedCall]:
    return tg.calls("editMessageText")


def first_line(message: dict[str, Any] | None) -> str:
    assert message is not None
    return str(message["text"]).split("\n")[0]


def keyboard(message: dict[str, Any] | None) -> list[str]:
    assert message is not None
    markup = message.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


async def test_a_corrected_headline_edits_each_alert_once_and_a_correction_of_it_again(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    readers = [60_000 + i for i in range(50)]
    tg.enforce_limits()  # edits count like sends
    items = backlog("Old", 5)
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})
    await follow(settings.db_path, readers, "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 1)
        story = FeedItem("flood-1", "Flood closes the E4")
        gone = FeedItem("ferry-1", "Ferry to Gotland delayed")
        feeds.serve("/news.xml", rss([story, gone, *items]))
        await tg.await_for(lambda: len(tg.calls("sendMessage")) >= 100, timeout=30)
        alerts = {m["chat"]["id"]: m for m in tg.sent_messages() if "Flood closes the E4" in m["text"]}
        ferries = {(m["chat"]["id"], m["message_id"]) for m in tg.sent_messages() if "Ferry" in m["text"]}
        assert len(alerts) == 50 and len(ferries) == 50

        # The headline is corrected; the ferry story leaves the feed.
        feeds.serve("/news.xml", rss([FeedItem("flood-1", "Flood closes the E4 near Uppsala"), *items]))
        await tg.await_for(lambda: len([c for c in edits(tg) if c.ok]) >= 50, timeout=30)
        await polled(feeds, "/news.xml", 2)
        first_round = len(edits(tg))
        fixed = {c: tg.message(c, m["message_id"]) for c, m in alerts.items()}

        # A correction of the correction edits again — once NEWSBOT_EDIT_INTERVAL (10
        # minutes) has passed since the first edit of each message, not before.
        feeds.serve("/news.xml", rss([FeedItem("flood-1", "Flood closes the E4 near Uppsala, police say"), *items]))
        await polled(feeds, "/news.xml", 3)
        assert len(edits(tg)) == 50
        await tg.await_for(lambda: len([c for c in edits(tg) if c.ok]) >= 100, timeout=700)
        await polled(feeds, "/news.xml", 2)
        stats = await ask(tg, ADMIN, "/stats")

    assert first_round == 50
    assert len(edits(tg)) == 100 and all(c.ok for c in edits(tg))
    firsts = {c.chat_id: c.monotonic for c in edits(tg)[:50]}
    # Due times are wall times (kept in the database); read back on the monotonic clock they
    # agree to the rounding of a float holding today's date (about 1e-7 s).
    assert all(c.monotonic - firsts[c.chat_id] >= 600 - 1e-3 for c in edits(tg)[50:])
    assert tg.violations == []
    # No new message for it: 50 alerts and 50 ferry alerts, then only edits.
    assert len(sends_of(tg, "Flood closes")) == 50
    assert len([c for c in tg.calls("sendMessage") if c.chat_id in readers]) == 100
    # Each reader's one message was edited twice: the right message, the new title marked.
    assert sorted((c.chat_id, c.params["message_id"]) for c in edits(tg)) == sorted(
        (chat_id, m["message_id"]) for chat_id, m in alerts.items() for _ in range(2)
    )
    for chat_id, original in alerts.items():
        assert first_line(fixed[chat_id]) == "World · Flood closes the E4 near Uppsala (updated)"
        now = tg.message(chat_id, original["message_id"])
        assert first_line(now) == "World · Flood closes the E4 near Uppsala, police say (updated)"
        assert keyboard(now) == keyboard(original) == ["Related", "Mute World"]
    # The story that left the feed was not touched.
    assert not [c for c in edits(tg) if (c.chat_id, c.params["message_id"]) in ferries]
    assert "100 corrections sent" in str(stats.get("caption") or stats.get("text"))
    # One edit row per message, armed again by the second correction.
    assert query(settings.db_path, "SELECT state, count(*) FROM outbox WHERE kind = 'edit' GROUP BY state") == [
        ("sent", 50)
    ]


async def test_a_combined_message_is_edited_too(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, feeds = sim_tg, sim_feeds
    reader = 61_000
    items = backlog("Old", 5)
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})
    await follow(settings.db_path, [reader], "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 1)
        burst = [FeedItem(f"burst-{i}", f"Burst story {i}", published=0) for i in range(5)]
        feeds.serve("/news.xml", rss([*burst, *items]))
        [combined] = await tg.await_messages(reader, 1, timeout=30)
        assert combined["text"].startswith("5 new stories for you")
        burst[2] = FeedItem("burst-2", "Burst story 2, corrected")
        feeds.serve("/news.xml", rss([*burst, *items]))
        await tg.await_for(lambda: edits(tg), timeout=30)
        await polled(feeds, "/news.xml", 2)

    [edit] = edits(tg)
    assert edit.ok and edit.params["message_id"] == combined["message_id"]
    assert len(tg.sent_messages(reader)) == 1
    now = tg.message(reader, combined["message_id"])
    assert now is not None
    lines = now["text"].split("\n")
    assert sum(1 for line in lines if "Burst story" in line) == 5
    [updated] = [line for line in lines if "(updated)" in line]
    assert updated.endswith("World · Burst story 2, corrected (updated)")
    assert keyboard(now) == keyboard(combined)


@pytest.mark.parametrize("order", ["sports first", "world first", "world a poll later", "world while the alert is in flight"])
async def test_a_story_in_two_sections_feeds_is_one_alert_naming_both(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, order: str
) -> None:
    tg, feeds = sim_tg, sim_feeds
    both, sports_only, world_only = 62_001, 62_002, 62_003
    title = "Sweden hosts the World Cup final"
    story_sports = FeedItem("cup-1", title, section="Sports")
    story_world = FeedItem("cup-1", title, section="World")
    sports_items, world_items = backlog("Old sports", 3), backlog("Old world", 3)
    settings = reading(feeds, tg, tmp_path, {"/sports.xml": rss(sports_items), "/world.xml": rss(world_items)})
    await follow(settings.db_path, [both], "sports", "world", combine=False)
    await follow(settings.db_path, [sports_only], "sports")
    await follow(settings.db_path, [world_only], "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/sports.xml", 1)
        await polled(feeds, "/world.xml", 1)
        if order == "sports first":
            feeds.slow("/world.xml", 1.0)
        elif order == "world first":
            feeds.slow("/sports.xml", 1.0)
        feeds.serve("/sports.xml", rss([story_sports, *sports_items]))
        if order == "world a poll later":
            await tg.await_messages(both, 1, timeout=30)
        elif order == "world while the alert is in flight":
            tg.set_delay(4.0, both)  # the world feed is read while Telegram is answering
            await tg.await_for(lambda: query(settings.db_path, "SELECT 1 FROM outbox WHERE chat_id = ? AND state = 'sending'", (both,)), timeout=30)
        feeds.serve("/world.xml", rss([story_world, *world_items]))
        for chat_id in (both, sports_only, world_only):
            await tg.await_messages(chat_id, 1, timeout=30)
        await polled(feeds, "/sports.xml", 2)
        await polled(feeds, "/world.xml", 2)

    # One message each, whatever the order the feeds were read in.
    assert len(sends_of(tg, title)) == 3
    assert {c.chat_id for c in sends_of(tg, title)} == {both, sports_only, world_only}
    [alert] = tg.sent_messages(both)
    final = tg.message(both, alert["message_id"])
    assert first_line(final) in (f"Sports · World · {title}", f"World · Sports · {title}"), first_line(final)
    assert final is not None and final["text"].split("\n")[-1] in (
        "because you follow Sports and World", "because you follow World and Sports"
    )
    assert sorted(keyboard(final)) == ["Mute Sports", "Mute World", "Related"]
    # The alert named both when it went out, or (when it went out before the second feed
    # was read) one edit made it name both; the readers of one section had nothing to fix.
    assert len(edits(tg)) <= 1 and all(c.ok and c.chat_id == both for c in edits(tg))
    [(stories, sections)] = query(settings.db_path, "SELECT count(*), sections FROM articles WHERE title = ?", (title,))
    assert stories == 1 and sorted(sections.split("|")) == ["sports", "world"]


async def test_a_correction_read_while_its_alert_is_in_flight_still_reaches_the_reader(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    reader = 63_001
    items = backlog("Old", 5)
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})
    await follow(settings.db_path, [reader], "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 1)
        tg.set_delay(4.0, reader)  # Telegram takes its time to answer this send
        feeds.serve("/news.xml", rss([FeedItem("bridge-1", "Bridge closed for repairs"), *items]))
        in_flight = "SELECT 1 FROM outbox WHERE chat_id = ? AND state = 'sending'"
        await tg.await_for(lambda: query(settings.db_path, in_flight, (reader,)), timeout=30)
        feeds.serve("/news.xml", rss([FeedItem("bridge-1", "Bridge closed for repairs until May"), *items]))
        await polled(feeds, "/news.xml", 1)
        [alert] = await tg.await_messages(reader, 1, timeout=30)
        await tg.await_for(lambda: edits(tg), timeout=30)
        await polled(feeds, "/news.xml", 2)

    assert first_line(alert) == "World · Bridge closed for repairs"  # as it was when sent
    [edit] = edits(tg)
    assert edit.ok and edit.params["message_id"] == alert["message_id"]
    assert first_line(tg.message(reader, alert["message_id"])) == "World · Bridge closed for repairs until May (updated)"
    assert len(tg.sent_messages(reader)) == 1


async def test_an_alert_sent_corrected_is_not_marked_updated_when_edited_later(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """A story corrected while its alert was held goes out corrected; when it is later
    published in a second section, the edit names both sections and is not marked
    "(updated)": the reader never saw the first version."""
    tg, feeds = sim_tg, sim_feeds
    reader = 64_001
    sports_items, world_items = backlog("Old sports", 3), backlog("Old world", 3)
    settings = reading(feeds, tg, tmp_path, {"/sports.xml": rss(sports_items), "/world.xml": rss(world_items)})
    await follow(settings.db_path, [reader], "sports", "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/sports.xml", 1)
        await polled(feeds, "/world.xml", 1)
        await ask(tg, reader, "/pause")
        feeds.serve("/sports.xml", rss([FeedItem("cup-2", "Final moved to Solna", section="Sports"), *sports_items]))
        held = "SELECT revision FROM outbox o JOIN articles a ON a.id = o.article_id WHERE o.state = 'held'"
        await tg.await_for(lambda: query(settings.db_path, held) == [(0,)], timeout=30)
        corrected = FeedItem("cup-2", "Final moved to Friends Arena in Solna", section="Sports")
        feeds.serve("/sports.xml", rss([corrected, *sports_items]))
        await tg.await_for(lambda: query(settings.db_path, held) == [(1,)], timeout=30)
        resumed = len(tg.sent_messages(reader)) + 1
        await ask(tg, reader, "/resume")
        [away] = await tg.await_for(lambda: tg.sent_messages(reader)[resumed:] or None, timeout=30)
        feeds.serve("/world.xml", rss([FeedItem("cup-2", corrected.title, section="World"), *world_items]))
        await tg.await_for(lambda: edits(tg), timeout=30)
        await polled(feeds, "/world.xml", 2)

    assert "Final moved to Friends Arena in Solna" in away["text"] and "(updated)" not in away["text"]
    [edit] = edits(tg)
    assert edit.ok and edit.params["message_id"] == away["message_id"]
    final = tg.message(reader, away["message_id"])
    assert final is not None and "World" in final["text"] and "Friends Arena" in final["text"]
    assert "(updated)" not in final["text"]
    assert len(tg.sent_messages(reader)) == resumed + 1
