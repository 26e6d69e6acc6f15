"""Corrections with manners, and a memory of who was told that retention does not erase.

* A headline that changes on every poll (a newsroom's CMS fighting itself) must not storm
  the readers' chats nor hold back the news: at most one pending edit per message, at most
  one edit per NEWSBOT_EDIT_INTERVAL, an edit that would change nothing is not sent, and a
  new story reaches every reader as if nothing else were going on. The story is logged once
  as flapping.
* Once its outbox rows are gone (NEWSBOT_OUTBOX_DAYS), a correction of a story still listed
  in its feed is not alerted to everyone again as new; and NEWSBOT_OUTBOX_DAYS=1 does not
  cut the 48-hour correction window short.

The bot runs on simulated time; days pass as steps of the wall clock, as they would for
retention (which counts in wall time), without running every poll of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import running_bot
from tests.simtime import SimClock
from tests.test_corrections import edits, first_line, follow, reading
from tests.test_delivery import FeedItem, backlog, polled, query, rss

DAY = 86_400.0


async def test_a_flapping_headline_gets_one_edit_per_interval_and_holds_no_news_back(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg, feeds = sim_tg, sim_feeds
    readers = [80_000 + i for i in range(80)]
    items = backlog("Old", 5)
    tg.enforce_limits()
    caplog.set_level(logging.WARNING, logger="bot")
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})  # polled every 2 s
    await follow(settings.db_path, readers, "world")
    async with running_bot(settings, clock=clock) as rt:
        await polled(feeds, "/news.xml", 1)
        feeds.serve("/news.xml", rss([FeedItem("flap-1", "Storm: version 0"), *items]))
        await tg.await_for(lambda: len(tg.sent_messages()) >= 80, timeout=60)
        started = clock.monotonic()
        news_at = arrived = None
        version = 0
        most_pending = 0
        # The headline changes on every poll for 90 s; 20 s in, a new story appears.
        while clock.monotonic() - started < 90:
            version += 1
            listing = [FeedItem("flap-1", f"Storm: version {version}"), *items]
            if news_at is None and clock.monotonic() - started >= 20:
                news_at = clock.monotonic()
            if news_at is not None:
                listing.insert(0, FeedItem("news-1", "Bridge reopens after the storm"))
            feeds.serve("/news.xml", rss(listing))
            await polled(feeds, "/news.xml", 1)
            pending = query(settings.db_path, "SELECT count(*) FROM outbox WHERE kind = 'edit' AND state = 'pending'")
            most_pending = max(most_pending, pending[0][0])
            got = {m["chat"]["id"] for m in tg.sent_messages() if "Bridge reopens" in m["text"]}
            if arrived is None and len(got) == len(readers):
                arrived = clock.monotonic()
        storm_edits = list(edits(tg))
        flapping = rt.services.metrics.value("newsbot_stories_flapping_total")

        # After the interval, one more edit per message carries the newest headline.
        await tg.await_for(lambda: len(edits(tg)) >= 160, timeout=700)
        await clock.run_for(30)
        final_edits = list(edits(tg))
        last = version

    assert news_at is not None and arrived is not None
    assert arrived - news_at <= 10, arrived - news_at  # the news went out as fast as ever
    # One edit per message in the storm (the first correction, at once), none of them "not modified".
    per_message = [(c.chat_id, c.params["message_id"]) for c in storm_edits]
    assert len(per_message) == len(set(per_message)) == 80
    assert all(c.ok for c in final_edits)
    assert most_pending <= 80
    # Then one more each, merged: the headline as it was last, not one edit per version.
    assert len(final_edits) == 160
    for chat_id in readers:
        message_id = next(m["message_id"] for m in tg.sent_messages(chat_id) if "Storm" in m["text"])
        assert first_line(tg.message(chat_id, message_id)) == f"World · Storm: version {last} (updated)"
    assert tg.violations == []
    assert flapping == 1
    assert len([r for r in caplog.records if "story flapping" in r.getMessage()]) == 1


async def test_a_correction_after_the_outbox_is_pruned_alerts_no_one_again(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    readers = [81_000 + i for i in range(5)]
    items = backlog("Old", 3)
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})
    await follow(settings.db_path, readers, "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 1)
        feeds.serve("/news.xml", rss([FeedItem("long-1", "A story that stays listed"), *items]))
        await tg.await_for(lambda: len(tg.sent_messages()) >= 5, timeout=60)
        await clock.run_for(5)  # recorded as sent
        # Eight days later (retention keeps sent rows 7 days), the story is still listed.
        clock.step(8 * DAY)
        await clock.run_for(130)  # the retention job's minute comes round
        assert query(settings.db_path, "SELECT count(*) FROM outbox WHERE kind = 'alert'") == [(0,)]
        feeds.serve("/news.xml", rss([FeedItem("long-1", "A story that stays listed, corrected"), *items]))
        await polled(feeds, "/news.xml", 3)
        await clock.run_for(30)

    # Nothing new reached anyone: no second alert, and no edit of a week-old message.
    assert len(tg.sent_messages()) == 5
    assert edits(tg) == []


async def test_a_one_day_outbox_keeps_the_48_hour_correction_window(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    readers = [82_000 + i for i in range(5)]
    items = backlog("Old", 3)
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})
    settings = type(settings)(**{**{f: getattr(settings, f) for f in settings.__slots__}, "outbox_days": 1.0})
    await follow(settings.db_path, readers, "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 1)
        feeds.serve("/news.xml", rss([FeedItem("day-1", "Ferry timetable changes"), *items]))
        await tg.await_for(lambda: len(tg.sent_messages()) >= 5, timeout=60)
        await clock.run_for(5)  # recorded as sent
        clock.step(30 * 3600)  # 30 hours: past NEWSBOT_OUTBOX_DAYS, within the 48 hours
        await clock.run_for(130)
        feeds.serve("/news.xml", rss([FeedItem("day-1", "Ferry timetable changes from Monday"), *items]))
        await tg.await_for(lambda: len(edits(tg)) >= 5, timeout=60)
        await clock.run_for(30)

    assert len(tg.sent_messages()) == 5  # no second alert
    assert len(edits(tg)) == 5 and all(c.ok for c in edits(tg))
    for chat_id in readers:
        [alert] = tg.sent_messages(chat_id)
        assert first_line(tg.message(chat_id, alert["message_id"])) == "World · Ferry timetable changes from Monday (updated)"


async def test_a_correction_after_48_hours_edits_nothing(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """Telegram refuses many edits of messages older than 48 hours: past the correction
    window a correction is stored, and no message is touched or sent."""
    tg, feeds = sim_tg, sim_feeds
    readers = [83_000 + i for i in range(3)]
    items = backlog("Old", 3)
    settings = reading(feeds, tg, tmp_path, {"/news.xml": rss(items)})
    await follow(settings.db_path, readers, "world")
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/news.xml", 1)
        feeds.serve("/news.xml", rss([FeedItem("old-1", "Road works begin"), *items]))
        await tg.await_for(lambda: len(tg.sent_messages()) >= 3, timeout=60)
        await clock.run_for(5)
        clock.step(49 * 3600)
        feeds.serve("/news.xml", rss([FeedItem("old-1", "Road works begin on Monday"), *items]))
        await polled(feeds, "/news.xml", 2)
        await clock.run_for(30)

    assert query(settings.db_path, "SELECT revision FROM articles WHERE title LIKE 'Road works%'") == [(1,)]
    assert edits(tg) == [] and len(tg.sent_messages()) == 3
