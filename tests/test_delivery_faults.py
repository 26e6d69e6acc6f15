"""Only Telegram can fail a message: a fault of ours loses nothing.

A story whose alert cannot be rendered (here: a date far beyond what a calendar can show,
as a damaged row or an old bug could leave in the database) makes the renderer raise. That
is not an answer from Telegram about the message: the rows stay due, are tried again after a
back-off, are logged once for the story (not once per chat), counted in /metrics and reported
by /healthz — and once the fault is fixed and the bot restarted, every reader gets the alert.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bot.health import check_health, metrics_text
from storage import articles, chats, outbox, subscriptions
from storage.db import Database
from storage.models import Article
from storage.outbox import Match
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings, running_bot
from tests.simtime import SimClock
from tests.test_delivery import query

READERS = (71_001, 71_002, 71_003)


async def _seed_unrenderable(db_path: Path, now: float) -> str:
    db = await Database.open(db_path)
    try:
        for chat_id in READERS:
            await chats.join(db, chat_id, "private", now=now)
            await subscriptions.add_subscription(db, chat_id, "section", "world", "World", limit=50, now=now)
        story = Article(
            id="far-future", url="https://news.example/far-future", title="A story from the year 3e12",
            summary="", section="world", tags=(), published_at=1e20, fetched_at=now,
        )
        async with db.write() as conn:
            await articles.store_articles(conn, [story], now=now, seen=True)
        await outbox.enqueue_alerts(db, [story], {story.id: {c: Match(("section:world",)) for c in READERS}}, now=now)
        return story.id
    finally:
        await db.close()


async def test_a_story_the_renderer_cannot_show_is_kept_reported_and_sent_once_fixed(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg = sim_tg
    settings = bot_settings(tg, tmp_path)
    story_id = await _seed_unrenderable(settings.db_path, clock.time())
    caplog.set_level(logging.INFO, logger="bot")

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await clock.run_for(120)
        health = await check_health(services, clock.time())
        metrics = await metrics_text(services, clock.time())
        errors = services.metrics.value("newsbot_delivery_errors_total")
        failed = services.metrics.value("newsbot_messages_failed_total")

    assert tg.calls("sendMessage") == []
    # Kept, not failed: due again, with no attempt spent on Telegram's account.
    assert query(settings.db_path, "SELECT DISTINCT state FROM outbox") == [("pending",)]
    assert failed == 0 and errors >= len(READERS)
    assert not health.ok and any(r.startswith("delivery: 3 message(s) could not be prepared") for r in health.reasons)
    assert b"newsbot_undeliverable_messages 3.0" in metrics
    # One log line for the story, with its id, however many chats and tries.
    lines = [r for r in caplog.records if "message not prepared" in r.getMessage()]
    assert len(lines) == 1 and story_id in lines[0].getMessage()
    # Retried with a back-off (2, 4, 8 … s), not in a loop: a handful of tries in two minutes,
    # none of them counted as an attempt.
    assert 4 * len(READERS) <= errors <= 8 * len(READERS)
    assert query(settings.db_path, "SELECT max(attempts) FROM outbox") == [(0,)]

    # The fault is fixed (the date repaired) and the bot restarted: every reader gets it once.
    with_fix = time.time()
    db = await Database.open(settings.db_path)
    try:
        await db.execute("UPDATE articles SET published_at = ? WHERE id = ?", (with_fix - 60, story_id))
    finally:
        await db.close()
    async with running_bot(settings, polling=False, clock=clock):
        for chat_id in READERS:
            await tg.await_messages(chat_id, 1, timeout=700)
        await clock.run_for(5)
    assert sorted(c.chat_id for c in tg.calls("sendMessage")) == sorted(READERS)
    assert query(settings.db_path, "SELECT DISTINCT state FROM outbox") == [("sent",)]
