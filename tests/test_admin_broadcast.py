"""Broadcasts end to end: the bot in-process against the fake Bot API, a real SQLite file.

Fan-out to 200 readers through blocked chats and a 429 storm, Stop mid-way, Send pressed
twice, another admin's press, an expired preview.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from storage.db import Database
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot

ADMIN = 9001
OTHER_ADMIN = 9002
PREVIEW_HEADING = "Preview — not sent yet"
TEXT = "<Breaking> Storm & floods in the north: stay indoors"


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


async def seed_readers(db_path: Path, ids: Sequence[int], section: str | None = None) -> None:
    """Active private chats, optionally following `section`."""
    db = await Database.open(db_path)
    try:
        await db.executemany(
            "INSERT INTO chats (id, type, title, created_at, updated_at) VALUES (?, 'private', ?, 0, 0)",
            [(i, f"Reader {i}") for i in ids],
        )
        if section is not None:
            await db.executemany(
                "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) "
                "VALUES (?, 'section', ?, ?, 0)",
                [(i, section, section) for i in ids],
            )
    finally:
        await db.close()


def button(message: dict[str, Any], label_start: str) -> str:
    markup = message.get("reply_markup") or {}
    for row in markup.get("inline_keyboard", []):
        for b in row:
            if b["text"].startswith(label_start):
                return str(b["callback_data"])
    raise AssertionError(f"no button {label_start!r} in {markup}")


def received(tg: FakeTelegram, chat_ids: Sequence[int], text: str) -> dict[int, int]:
    by_chat = tg.messages_by_chat()
    return {c: sum(1 for m in by_chat.get(c, []) if m.get("text") == text) for c in chat_ids}


def reports(tg: FakeTelegram) -> list[dict[str, Any]]:
    """The report messages that follow finished broadcasts."""
    return [m for m in tg.sent_messages(ADMIN) if m.get("text", "").startswith("Report: broadcast #")]


def query(db_path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


async def test_broadcast_to_200_readers_through_blocks_and_a_429_storm(tg: FakeTelegram, tmp_path: Path) -> None:
    readers = list(range(1000, 1200))
    blocked = readers[::20]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_GLOBAL="200", NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)
    for chat_id in blocked:
        tg.block_chat(chat_id)
    tg.rate_limit_chats(readers[100:140], retry_after=1)

    async with running_bot(settings):
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        # Exactly what readers will get, escaped, under a heading they will not get.
        assert preview["text"] == f"{PREVIEW_HEADING}\n\n{TEXT}"
        send = button(preview, "Send to 200 chats")
        answer = await press(tg, ADMIN, preview["message_id"], send)
        assert answer["text"] == "Sending to 200 chats."

        report = await tg.await_for(lambda: reports(tg), timeout=45)
        progress = tg.sent_messages(ADMIN)[1]
        assert progress["text"].startswith("Broadcast #1 to everyone")
        # The preview lost its buttons; the progress message got the final numbers, no Stop.
        assert "reply_markup" not in (tg.message(ADMIN, preview["message_id"]) or {})
        last = tg.message(ADMIN, progress["message_id"])
        assert last is not None and "reply_markup" not in last
        assert "Broadcast #1 to everyone: done" in last["text"]
        assert "Sent 190 / 200 · blocked 10 · failed 0" in last["text"]
        assert report[0]["text"].startswith("Report: broadcast #1 finished — 190 readers of 200 reached (95 %).")

        listing = await ask(tg, ADMIN, "/broadcasts")
        assert "#1" in listing["text"] and "done" in listing["text"] and "Sent 190 / 200" in listing["text"]

    got = received(tg, readers, TEXT)
    assert {c for c, n in got.items() if n != 1} == set(blocked)
    assert all(got[c] == 0 for c in blocked)
    assert all(c.ok for c in tg.calls() if c.method in ("sendMessage", "editMessageText") and c.chat_id == ADMIN)
    assert query(settings.db_path, "SELECT state, total FROM broadcasts") == [("done", 200)]
    assert query(settings.db_path, "SELECT count(*) FROM chats WHERE active = 0")[0][0] == len(blocked)


async def test_stop_mid_way_sends_nothing_after_the_acknowledgement(tg: FakeTelegram, tmp_path: Path) -> None:
    readers = list(range(2000, 2150))
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_GLOBAL="200", NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)

    async with running_bot(settings):
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        tg.set_delay(0.2)  # every request answers slowly: ~40 messages/s with 8 in flight
        await press(tg, ADMIN, preview["message_id"], button(preview, "Send"))
        progress = (await tg.await_messages(ADMIN, 2, timeout=10))[1]
        await tg.await_for(lambda: sum(received(tg, readers, TEXT).values()) >= 20, timeout=20)

        ack = await press(tg, ADMIN, progress["message_id"], button(progress, "Stop"), user_id=OTHER_ADMIN)
        at_ack = sum(received(tg, readers, TEXT).values())
        assert ack["text"] == f"Stopped. {at_ack} sent, {len(readers) - at_ack} not sent."
        await asyncio.sleep(3.0)
        assert sum(received(tg, readers, TEXT).values()) == at_ack < len(readers)
        last = tg.message(ADMIN, progress["message_id"])
        assert last is not None and ": stopped" in last["text"] and f"Sent {at_ack} / 150" in last["text"]

    assert max(received(tg, readers, TEXT).values()) == 1
    assert query(settings.db_path, "SELECT state FROM broadcasts") == [("stopped",)]
    states = dict(query(settings.db_path, "SELECT state, count(*) FROM outbox GROUP BY state"))
    assert states == {"sent": at_ack, "cancelled": len(readers) - at_ack}


async def test_send_pressed_twice_queues_once(tg: FakeTelegram, tmp_path: Path) -> None:
    readers = [3001, 3002, 3003]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)
    async with running_bot(settings):
        preview = await ask(tg, ADMIN, "/broadcast Hello readers")
        data = button(preview, "Send")
        before = len(tg.calls("answerCallbackQuery"))
        tg.callback_query(ADMIN, preview["message_id"], data)
        tg.callback_query(ADMIN, preview["message_id"], data)
        calls = await tg.await_calls("answerCallbackQuery", before + 2, timeout=10)
        answers = sorted(str(c.params.get("text")) for c in calls[before:])
        assert answers == ["Sending to 3 chats.", "This broadcast is already sending."]
        await tg.await_for(lambda: all(n == 1 for n in received(tg, readers, "Hello readers").values()), timeout=10)
    assert query(settings.db_path, "SELECT count(*) FROM outbox")[0][0] == 3


async def test_section_broadcast_and_reply_broadcast(tg: FakeTelegram, tmp_path: Path) -> None:
    sports, others = [4001, 4002], [4003]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, sports, section="sports")
    await seed_readers(settings.db_path, others, section="world")
    async with running_bot(settings):
        # The admin's own message, with Telegram formatting kept; a typed <b> stays text.
        source = tg.user_message(ADMIN, "Kick-off moved to 20:00 <b>tonight</b>", push=False)
        source_id = source["message"]["message_id"]
        preview = await ask(tg, ADMIN, "/broadcast @sports", reply_to=source_id)
        shown = "Kick-off moved to 20:00 <b>tonight</b>"
        assert preview["text"] == f"{PREVIEW_HEADING}\n\n{shown}"
        assert button(preview, "Send to 2 chats")
        await press(tg, ADMIN, preview["message_id"], button(preview, "Send"))
        await tg.await_for(lambda: all(received(tg, sports, shown).values()), timeout=10)
        await tg.await_for(lambda: reports(tg), timeout=15)
        assert received(tg, others, shown) == {4003: 0}

        unknown = await ask(tg, ADMIN, "/broadcast @nosuch Hello")
        assert "Unknown section" in unknown["text"] and "Usage: /broadcast" in unknown["text"]
        usage = await ask(tg, ADMIN, "/broadcast")
        assert usage["text"].startswith("Usage: /broadcast")
        # The preview's heading needs room in Telegram's 4096 characters: 4000 is the limit.
        too_long = await ask(tg, ADMIN, "/broadcast " + "x" * 4001)
        assert "That is 4001 characters; a broadcast can have at most 4000." in too_long["text"]
        longest = await ask(tg, ADMIN, "/broadcast @sports " + "x" * 4000)
        assert longest["text"] == f"{PREVIEW_HEADING}\n\n" + "x" * 4000
        nobody = await ask(tg, ADMIN, "/broadcast @business Hello")
        assert "Nobody would get it" in nobody["text"]


async def test_only_the_author_may_send_and_previews_expire(tg: FakeTelegram, tmp_path: Path) -> None:
    group = -7000
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, [5001, 5002])
    async with running_bot(settings):
        preview = await ask(tg, group, "/broadcast Newsroom test", user_id=ADMIN, chat_type="group")
        send = button(preview, "Send")
        refused = await press(tg, group, preview["message_id"], send, user_id=OTHER_ADMIN)
        assert refused["text"] == "Only the admin who wrote this broadcast can send or cancel it."
        refused = await press(tg, group, preview["message_id"], send, user_id=555)
        assert refused["text"] == "Sorry, that button is for the newsroom's admins."
        assert query(settings.db_path, "SELECT state FROM broadcasts") == [("preview",)]

        # Ten minutes later the preview has expired.
        query(settings.db_path, "UPDATE broadcasts SET created_at = created_at - 601")
        expired = await press(tg, group, preview["message_id"], send, user_id=ADMIN)
        assert expired["text"] == "This preview has expired. Send /broadcast again."

        second = await ask(tg, group, "/broadcast Another test", user_id=ADMIN, chat_type="group")
        cancelled = await press(tg, group, second["message_id"], button(second, "Cancel"), user_id=ADMIN)
        assert cancelled["text"] == "Cancelled. Nothing was sent."
        again = await press(tg, group, second["message_id"], button(second, "Send"), user_id=ADMIN)
        assert again["text"] == "This broadcast is already cancelled."

    assert query(settings.db_path, "SELECT state FROM broadcasts ORDER BY id") == [("expired",), ("cancelled",)]
    assert query(settings.db_path, "SELECT count(*) FROM outbox")[0][0] == 0
    assert received(tg, [5001, 5002], "Newsroom test") == {5001: 0, 5002: 0}
