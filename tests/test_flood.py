"""Readers who send too much, through the fake Bot API enforcing Telegram's flood limits:
the bot answers a handful, says "Slow down" once, never breaks a limit, and its replies share
one global budget with the alerts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.errors import NOTICE
from bot.flood import FLOOD_UPDATES, SLOW_DOWN
from bot.pipeline.parse import parse_feed
from bot.stages.poll import enqueue_alerts
from storage import articles, chats, subscriptions
from storage.db import Database
from tests.conftest import SAMPLE_FEED
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import SAMPLE_RULE, bot_settings, running_bot, store_sample
from tests.simtime import SimClock

READER = 4242


@pytest.fixture
def tg(sim_tg: FakeTelegram) -> FakeTelegram:
    """The fake Bot API on the test's simulated clock, enforcing Telegram's flood limits."""
    sim_tg.enforce_limits()
    return sim_tg


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


async def test_three_hundred_commands_in_ten_seconds(
    clock: SimClock, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """300 /latest in 10 s from one reader: at most FLOOD_UPDATES answers and exactly one
    "Slow down", no flood limit broken, no traceback."""
    await store_sample(tmp_path / "newsbot.db")
    caplog.set_level(logging.INFO)
    async with running_bot(bot_settings(tg, tmp_path), clock=clock):
        started = clock.monotonic()
        for i in range(300):
            tg.user_message(READER, "/latest")
            # 30 a second, as a script would send them.
            await clock.sleep_until(started + (i + 1) / 30)
        await tg.await_for(lambda: tg.pending_update_count == 0, timeout=30)
        answers = await tg.await_messages(READER, FLOOD_UPDATES + 1, timeout=60)
        # Whatever was still on its way has arrived by now (replies go out once a second).
        await clock.run_for(3)
        answers = tg.sent_messages(READER)
    texts = [str(m["text"]) for m in answers]
    assert texts.count(SLOW_DOWN) == 1, texts
    assert len(texts) <= FLOOD_UPDATES + 1, len(texts)
    assert sum(t != SLOW_DOWN for t in texts) == FLOOD_UPDATES  # the first ones were answered
    assert tg.violations == []
    assert tracebacks(caplog) == []
    assert len([r for r in caplog.records if r.getMessage().startswith("flood: chat ignored")]) == 1


async def test_error_notice_at_most_once_a_minute(
    clock: SimClock, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A button whose answer keeps failing: every failure is logged, the reader is told once."""
    tg.fail_all(500, "Internal Server Error", methods=["answerCallbackQuery"])
    async with running_bot(bot_settings(tg, tmp_path), clock=clock):
        tg.user_message(READER, "/help")
        [message] = await tg.await_messages(READER, 1, timeout=30)
        for _ in range(5):  # under the flood limit
            tg.callback_query(READER, message["message_id"], "gone:1")
            await tg.await_for(lambda: tg.pending_update_count == 0, timeout=10)
            await clock.run_for(0.3)
        await tg.await_for(
            lambda: len([c for c in tg.calls("answerCallbackQuery") if not c.ok]) >= 5, timeout=30
        )
        await tg.await_messages(READER, 2, timeout=10)
        await clock.run_for(1.5)
    assert [m["text"] for m in tg.sent_messages(READER)][1:] == [NOTICE]
    failures = [r for r in caplog.records if r.getMessage().startswith("handler failed")]
    assert len(failures) == 5


async def test_replies_and_alerts_share_the_global_budget(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    """100 alerts going out while 40 readers ask for /latest: every message delivered, and
    the global 30 a second never exceeded (replies wait for the same slots as alerts)."""
    db_path = tmp_path / "newsbot.db"
    await store_sample(db_path)
    alert_readers = list(range(10_000, 10_100))
    asking = list(range(20_000, 20_040))
    db = await Database.open(db_path)
    try:
        for chat_id in alert_readers:
            await chats.join(db, chat_id, "private", now=clock.time())
            await subscriptions.add_subscription(db, chat_id, "keyword", "drones", "drones", limit=50, now=clock.time())
    finally:
        await db.close()
    story = SAMPLE_FEED.read_text().replace(
        "<item>",
        "<item><title>Drones over the harbour</title><link>https://swedenherald.com/article/drones</link>"
        '<guid isPermaLink="false">sh-drones</guid><category domain="section">World</category>'
        "<description>Drones seen</description></item>\n<item>",
        1,
    )
    parsed = parse_feed(story.encode(), url="https://swedenherald.com/rss", rule=SAMPLE_RULE, fetched_at=clock.time())
    async with running_bot(bot_settings(tg, tmp_path), clock=clock) as rt:
        services = rt.services
        async with services.db.write() as conn:
            stored = await articles.store_articles(conn, parsed.articles, seen=False, now=clock.time())
        [drones] = [a for a in stored.new if a.id == "sh-drones"]
        queued = await enqueue_alerts(services, [drones])
        assert queued.queued == len(alert_readers)
        await tg.await_for(lambda: len(tg.sent_messages()) >= 10, timeout=30)
        for chat_id in asking:
            tg.user_message(chat_id, "/latest")
        await tg.await_for(lambda: all(tg.sent_messages(c) for c in alert_readers + asking), timeout=60)
    assert tg.violations == []
    assert all(len(tg.sent_messages(c)) == 1 for c in alert_readers + asking)
