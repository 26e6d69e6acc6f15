"""/stop against everything else going on for that chat: a /follow racing it, and alerts the
dispatcher holds in flight or in its view.

The races are run in a chosen order: the test holds the database's writer, so each change
waits for it in the order the test starts them (asyncio locks are first come, first served),
then lets go. What remains is checked in the database, in the matcher and at the fake Bot
API server.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot import readers
from bot.readers import Outcome
from storage import chats, subscriptions
from storage.models import Article
from tests.fakes.telegram_api import FakeTelegram
from tests.simtime import SimClock
from tests.test_reader_choices import newsroom
from tests.test_reader_handlers import READER, driven_bot

T = TypeVar("T")
DRONES = Article(
    id="drones", url="https://news.example/drones", title="Drones over Gotland", summary="",
    section="world", tags=(), published_at=0.0, fetched_at=0.0,
)


async def started(coro: Awaitable[T]) -> asyncio.Task[T]:
    """The coroutine as a task that has run up to its first wait."""
    task = asyncio.ensure_future(coro)
    for _ in range(20):
        await asyncio.sleep(0)
    return task


@pytest.mark.parametrize("first", ["follow", "stop"])
async def test_a_follow_racing_a_stop_leaves_no_ghost(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, first: str
) -> None:
    """Whichever comes first, the matcher ends up agreeing with the database: a stopped chat
    matches no story. (Before the chat's lock: /follow written, /stop's matcher step, the
    delete, then /follow's matcher step — a subscription whose row is gone, alerting a
    chat that has no row; or /follow after the delete failing on the missing chat.)"""
    async with newsroom(sim_tg, tmp_path, clock, sending=False) as room:
        services = room.services
        await room.reader(READER, sections=("world",))
        async with services.db.write():
            if first == "follow":
                follow = await started(readers.add(services, READER, "keyword", "drones", "drones"))
                stop = await started(readers.forget(services, READER))
            else:
                stop = await started(readers.forget(services, READER))
                follow = await started(readers.add(services, READER, "keyword", "drones", "drones"))
            assert not follow.done() and not stop.done()
        outcome, forgotten = await follow, await stop
        assert forgotten is True
        assert outcome is (Outcome.ADDED if first == "follow" else Outcome.GONE)
        assert await chats.get_chat(services.db, READER) is None
        assert await subscriptions.subscriptions_for_chat(services.db, READER) == []
        assert READER not in services.matcher.match(DRONES)
        assert services.matcher.stats().chats == 0
        assert len(services.chat_locks) == 0  # nothing kept for a chat nobody is changing


def outbox_rows(db_path: Path, chat_id: int) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT state FROM outbox WHERE chat_id = ?", (chat_id,)).fetchall()


async def test_nothing_reaches_a_reader_after_their_stop_is_answered(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """One alert on its way to Telegram and one waiting in the dispatcher's view when the
    reader sends /stop: the answer comes once the first is delivered, and the second never
    goes, even with no wait between two messages to one chat."""
    tg = sim_tg
    async with driven_bot(clock, tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0") as bot:
        db_path = bot.services.settings.db_path
        await bot.reply(READER, "/follow drones")
        tg.set_delay(0.6, READER)  # Telegram takes its time with the next message
        now = clock.time()
        await bot.publish(replace(DRONES, published_at=now - 60, fetched_at=now - 60))
        await tg.await_for(lambda: outbox_rows(db_path, READER) == [("sending",)], timeout=10, interval=0.05)
        await asyncio.sleep(0.1)  # the request crosses the loopback to the fake
        tg.set_delay(0, READER)
        await bot.publish(Article(
            id="drones-2", url="https://news.example/drones-2", title="Drones over Öland", summary="",
            section="world", tags=(), published_at=now - 30, fetched_at=now - 30,
        ))
        assert ("pending",) in outbox_rows(db_path, READER)  # waits for the chat's send in flight

        await bot.send(READER, "/stop")
        answered = len(tg.sent_messages(READER))
        # The alert in flight was delivered before the answer; nothing is left to send.
        texts = [str(m["text"]) for m in tg.sent_messages(READER)]
        assert "deleted" in texts[-1] and any("Drones over Gotland" in t for t in texts[:-1]), texts
        assert outbox_rows(db_path, READER) == []
        await bot.reply(READER + 1, "/help")  # the dispatcher and the bot go on
        assert len(tg.sent_messages(READER)) == answered
        assert not any("Öland" in str(m["text"]) for m in tg.sent_messages(READER))
