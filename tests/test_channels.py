"""Where alerts go besides readers' chats: a section's channel, and a forum group's topics.

The bot runs in-process against the fake Bot API (which has the channels, the forum and its
topics) and the loopback feed server; a story is published by changing the feed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram, RecordedCall
from tests.harness import ask, bot_settings, press, running_bot, write_feeds_file
from tests.simtime import SimClock
from tests.test_admin_broadcast import ADMIN, button
from tests.test_delivery import FeedItem, backlog, polled, query, rss

SECTIONS = """
[sections]
world = "World"
sports = { name = "Sports", channel = "@herald_sports" }
business = { name = "Business", channel = "@herald_business" }
"""
SPORTS_CHANNEL, BUSINESS_CHANNEL = -1_000_000_000_777, -1_000_000_000_778
FAN = 50_001


def posts(tg: FakeTelegram, channel: int) -> list[RecordedCall]:
    return [c for c in tg.calls("sendMessage") if c.chat_id in (channel, "@herald_sports", "@herald_business")]


def titles(tg: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"].split("\n")[0] for m in tg.sent_messages(chat_id)]


async def test_a_sections_channel_gets_each_new_story_once_as_a_group_and_survives_a_restart(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg, feeds = sim_tg, sim_feeds
    caplog.set_level(logging.INFO)
    tg.add_chat(SPORTS_CHANNEL, "channel", title="Herald Sports", username="herald_sports")
    tg.set_channel_admin("@herald_sports", True)
    tg.add_chat(BUSINESS_CHANNEL, "channel", title="Herald Business", username="herald_business")
    tg.set_channel_admin("@herald_business", False)  # the bot was never made an admin there
    # Two posts a minute, for the bot and the fake alike: the third waits for the window.
    tg.enforce_limits(group_per_minute=2)
    items = backlog("Old", 5)
    feeds.serve("/news.xml", rss(items))
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_POLL_SECONDS="2", NEWSBOT_RATE_GROUP_PER_MINUTE="2",
        NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [feeds.url_for("/news.xml")], sections=SECTIONS)),
    )
    async with running_bot(settings, clock=clock):
        welcome = await ask(tg, FAN, "/start")
        await press(tg, FAN, welcome["message_id"], "sec:sports")
        await polled(feeds, "/news.xml", 1)
        read = len(tg.sent_messages(FAN))
        items[:0] = [
            FeedItem("match-1", "Sweden wins the opener", section="Sports"),
            FeedItem("match-2", "Norway draws in Oslo", section="Sports"),
            FeedItem("match-3", "Denmark loses at home", section="Sports"),
            FeedItem("rates-1", "The central bank holds its rate", section="Business"),
            FeedItem("world-1", "Talks resume in Geneva", section="World"),
        ]
        feeds.serve("/news.xml", rss(items))
        await tg.await_for(lambda: len(posts(tg, SPORTS_CHANNEL)) >= 3, timeout=90)
        await polled(feeds, "/news.xml", 2)

    # A restart, and the feed read again: nothing is posted twice; a new story once.
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 2)
        assert len(posts(tg, SPORTS_CHANNEL)) == 3
        items.insert(0, FeedItem("match-4", "Finland qualifies", section="Sports"))
        feeds.serve("/news.xml", rss(items))
        await tg.await_for(lambda: len(posts(tg, SPORTS_CHANNEL)) >= 4, timeout=30)
        await polled(feeds, "/news.xml", 2)

    sent = posts(tg, SPORTS_CHANNEL)
    assert all(c.ok for c in sent)
    assert [c.params["chat_id"] for c in sent] == [SPORTS_CHANNEL] * 4
    assert sorted(titles(tg, SPORTS_CHANNEL)) == sorted(
        f"Sports · {t}" for t in ("Sweden wins the opener", "Norway draws in Oslo", "Denmark loses at home", "Finland qualifies")
    )
    # A post is the story, not a reader's alert: no Related or Mute buttons, no "because".
    assert all("reply_markup" not in c.params for c in sent)
    assert not [m for m in tg.sent_messages(SPORTS_CHANNEL) if "because you follow" in m["text"]]
    # Rate-limited as a group: the third post waited for the first two to leave the minute.
    assert tg.violations == []
    assert sent[2].monotonic - sent[0].monotonic >= 60.0
    # The reader got their own alerts, with buttons, each once.
    assert sorted(titles(tg, FAN)[read:]) == sorted(titles(tg, SPORTS_CHANNEL))
    assert all("reply_markup" in m for m in tg.sent_messages(FAN)[read:])
    # The channel where the bot is not an admin: said so at each start, never posted to.
    assert posts(tg, BUSINESS_CHANNEL) == []
    refusals = [r.getMessage() for r in caplog.records if "channel not usable section=business" in r.getMessage()]
    assert len(refusals) == 2 and all("not an admin" in text for text in refusals)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert query(settings.db_path, "SELECT kind, state, count(*) FROM outbox WHERE chat_id = ? GROUP BY kind, state",
                 (SPORTS_CHANNEL,)) == [("post", "sent", 4)]  # fmt: skip


FORUM, MEMBER = -1_000_000_000_900, 1001


def in_topic(tg: FakeTelegram, thread: int | None) -> list[str]:
    """Titles of the bot's alerts in one topic of the forum (None: the General topic)."""
    return [
        m["text"].split("\n")[0]
        for m in tg.topic_messages(FORUM, thread)
        if m.get("from", {}).get("is_bot") and "because you follow" in m.get("text", "")
    ]


async def test_a_forum_gets_a_sections_alerts_in_its_topic_and_the_general_topic_when_it_is_deleted(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    tg.add_chat(FORUM, "supergroup", title="Newsroom fans", is_forum=True)
    sport = tg.create_topic(FORUM, "Sport")
    items = backlog("Old", 5)
    feeds.serve("/news.xml", rss(items))
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_POLL_SECONDS="2",
        NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [feeds.url_for("/news.xml")])),
    )
    async with running_bot(settings, clock=clock):
        # World from the General topic; Sports from inside the Sport topic.
        welcome = await ask(tg, FORUM, "/start", user_id=MEMBER, chat_type="supergroup")
        await press(tg, FORUM, welcome["message_id"], button(welcome, "World"), user_id=MEMBER)
        picker = await ask(tg, FORUM, "/sections", user_id=MEMBER, thread_id=sport)
        assert picker.get("message_thread_id") == sport
        bound = await press(tg, FORUM, picker["message_id"], button(picker, "Sports"), user_id=MEMBER)
        assert bound["text"] == "Added Sports in this topic"
        await polled(feeds, "/news.xml", 1)

        items[:0] = [
            FeedItem("match-1", "Sweden wins the opener", section="Sports"),
            FeedItem("world-1", "Talks resume in Geneva", section="World"),
        ]
        feeds.serve("/news.xml", rss(items))
        await tg.await_for(lambda: len(in_topic(tg, sport)) + len(in_topic(tg, None)) >= 2, timeout=30)
        assert in_topic(tg, sport) == ["Sports · Sweden wins the opener"]
        assert in_topic(tg, None) == ["World · Talks resume in Geneva"]

        # The topic is deleted: the next Sports alert falls back to the General topic, once.
        tg.delete_topic(FORUM, sport)
        items.insert(0, FeedItem("match-2", "Norway draws in Oslo", section="Sports"))
        feeds.serve("/news.xml", rss(items))
        await tg.await_for(lambda: len(in_topic(tg, None)) >= 2, timeout=30)
        items.insert(0, FeedItem("match-3", "Denmark loses at home", section="Sports"))
        feeds.serve("/news.xml", rss(items))
        await tg.await_for(lambda: len(in_topic(tg, None)) >= 3, timeout=30)
        await polled(feeds, "/news.xml", 2)

    assert in_topic(tg, None) == [
        "World · Talks resume in Geneva", "Sports · Norway draws in Oslo", "Sports · Denmark loses at home"
    ]
    alerts = [c for c in tg.calls("sendMessage") if c.chat_id == FORUM and "because you follow" in c.params["text"]]
    threads = [(c.status, c.params.get("message_thread_id")) for c in alerts]
    # One refusal for the deleted topic, recognised at once: no retry there, nothing lost,
    # and the next alert goes straight to the General topic.
    assert threads == [(200, sport), (200, None), (400, sport), (200, None), (200, None)] or threads == [
        (200, None), (200, sport), (400, sport), (200, None), (200, None)
    ], threads
    assert alerts[2].description is not None and "message thread not found" in alerts[2].description
    assert query(settings.db_path, "SELECT value, thread_id FROM subscriptions WHERE chat_id = ? ORDER BY value",
                 (FORUM,)) == [("sports", None), ("world", None)]  # fmt: skip
    assert query(settings.db_path, "SELECT state, count(*) FROM outbox WHERE chat_id = ? GROUP BY state", (FORUM,)) == [
        ("sent", 4)
    ]


async def test_sections_offers_only_channels_the_bot_can_post_in_and_feeds_warns_of_the_others(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg = sim_tg
    sim_feeds.serve("/news.xml", rss(backlog("Old", 2)))
    sections = SECTIONS + 'entertainment = { name = "Entertainment", channel = "@herald_fun" }\n'
    tg.add_chat(SPORTS_CHANNEL, "channel", title="Herald Sports", username="herald_sports")
    tg.set_channel_admin("@herald_sports", True)
    tg.add_chat(BUSINESS_CHANNEL, "channel", title="Herald Business", username="herald_business")
    tg.set_channel_admin("@herald_business", True, can_post_messages=False)  # an admin who may not post
    tg.add_chat(-1_000_000_000_779, "channel", title="Herald Fun", username="herald_fun")
    tg.set_channel_admin("@herald_fun", False)
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [sim_feeds.url_for("/news.xml")], sections=sections))
    )
    async with running_bot(settings, clock=clock):
        offered = str((await ask(tg, FAN, "/sections"))["text"])
        assert "Sports — or join @herald_sports" in offered
        assert "@herald_business" not in offered and "@herald_fun" not in offered
        welcome = str((await ask(tg, FAN, "/start"))["text"])
        assert "@herald_sports" in welcome and "@herald_business" not in welcome and "@herald_fun" not in welcome

        warned = str((await ask(tg, ADMIN, "/feeds"))["text"])
        assert warned.startswith("Feeds: 1 polled, 0 failing\n⚠ Business's channel"), warned
        assert "⚠ Business's channel @herald_business: the bot is an admin there without the right to post messages" in warned
        assert "⚠ Entertainment's channel @herald_fun: the bot is not an admin there" in warned
        assert "@herald_sports" not in warned

        # The right is given meanwhile: the next /feeds sees it, and readers are offered the channel.
        tg.set_channel_admin("@herald_business", True)
        again = str((await ask(tg, ADMIN, "/feeds"))["text"])
        assert "@herald_business" not in again and "⚠ Entertainment's channel @herald_fun" in again
        assert "Business — or join @herald_business" in str((await ask(tg, FAN, "/sections"))["text"])

        # Telegram does not answer about the channels for a while: what was known stands.
        tg.fail_method("getChatMember", 502, seconds=600)
        during = str((await ask(tg, ADMIN, "/feeds"))["text"])
        assert "@herald_business" not in during and "@herald_sports" not in during
        assert "⚠ Entertainment's channel @herald_fun: the bot is not an admin there" in during
        offered = str((await ask(tg, FAN, "/sections"))["text"])
        assert "@herald_business" in offered and "@herald_sports" in offered and "@herald_fun" not in offered
        tg.clear_faults("getChatMember")
