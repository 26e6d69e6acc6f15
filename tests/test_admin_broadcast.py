"""Broadcasts end to end: the bot in-process against the fake Bot API, a real SQLite file.

Fan-out to 200 readers through blocked chats and a 429 storm, Stop mid-way, Send pressed
twice, another admin's press, an expired preview.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from storage import chats
from storage.db import Database
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot
from tests.simtime import SimClock

ADMIN = 9001
OTHER_ADMIN = 9002
PREVIEW_HEADING = "Preview — not sent yet"
TEXT = "<Breaking> Storm & floods in the north: stay indoors"



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


async def test_broadcast_to_200_readers_through_blocks_and_a_429_storm(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    readers = list(range(1000, 1200))
    blocked = readers[::20]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_GLOBAL="200", NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)
    for chat_id in blocked:
        tg.block_chat(chat_id)
    tg.rate_limit_chats(readers[100:140], retry_after=1)

    async with running_bot(settings, clock=clock):
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


async def test_stop_mid_way_sends_nothing_after_the_acknowledgement(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    readers = list(range(2000, 2150))
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_GLOBAL="200", NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)

    async with running_bot(settings, clock=clock):
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        tg.set_delay(0.2)  # every request answers slowly: ~40 messages/s with 8 in flight
        await press(tg, ADMIN, preview["message_id"], button(preview, "Send"))
        progress = (await tg.await_messages(ADMIN, 2, timeout=10))[1]
        await tg.await_for(lambda: sum(received(tg, readers, TEXT).values()) >= 20, timeout=20)

        ack = await press(tg, ADMIN, progress["message_id"], button(progress, "Stop"), user_id=OTHER_ADMIN)
        at_ack = sum(received(tg, readers, TEXT).values())
        assert ack["text"] == f"Stopped. {at_ack} sent, {len(readers) - at_ack} not sent."
        await clock.run_for(3.0)
        assert sum(received(tg, readers, TEXT).values()) == at_ack < len(readers)
        last = tg.message(ADMIN, progress["message_id"])
        assert last is not None and ": stopped" in last["text"] and f"Sent {at_ack} / 150" in last["text"]

    assert max(received(tg, readers, TEXT).values()) == 1
    assert query(settings.db_path, "SELECT state FROM broadcasts") == [("stopped",)]
    states = dict(query(settings.db_path, "SELECT state, count(*) FROM outbox GROUP BY state"))
    assert states == {"sent": at_ack, "cancelled": len(readers) - at_ack}


async def test_send_pressed_twice_queues_once(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    readers = [3001, 3002, 3003]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)
    async with running_bot(settings, clock=clock):
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


async def test_section_broadcast_and_reply_broadcast(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    sports, others = [4001, 4002], [4003]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, sports, section="sports")
    await seed_readers(settings.db_path, others, section="world")
    async with running_bot(settings, clock=clock):
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


async def test_only_the_author_may_send_and_previews_expire(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    group = -7000
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, [5001, 5002])
    async with running_bot(settings, clock=clock):
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


# --- the preview, Urgent, Cancel and the report -------------------------------------------------


def progress_of(tg: FakeTelegram, broadcast_id: int) -> list[dict[str, Any]]:
    return [m for m in tg.sent_messages(ADMIN) if m["text"].startswith(f"Broadcast #{broadcast_id} ")]


def quiet_now(zone: str = "Europe/Stockholm") -> tuple[int, int]:
    """Quiet hours (minutes after local midnight) from an hour ago to an hour from now."""
    now = datetime.now(ZoneInfo(zone))
    minute = now.hour * 60 + now.minute
    return (minute - 60) % 1440, (minute + 60) % 1440


async def test_preview_cancel_urgent_and_report(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    awake, asleep = 5101, 5102
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, [awake, asleep])
    db = await Database.open(settings.db_path)
    await chats.set_quiet(db, asleep, *quiet_now(), "hold", now=clock.time())
    await db.close()

    async with running_bot(settings, clock=clock):
        # Cancel: the preview says so and loses its buttons; nothing is queued.
        first = await ask(tg, ADMIN, "/broadcast Not this one")
        assert first["text"] == f"{PREVIEW_HEADING}\n\nNot this one"
        assert first["entities"][0] == {"type": "bold", "offset": 0, "length": len(PREVIEW_HEADING)}
        assert button(first, "Urgent: off") and button(first, "Cancel")
        await press(tg, ADMIN, first["message_id"], button(first, "Cancel"))
        cancelled = tg.message(ADMIN, first["message_id"])
        assert cancelled is not None and cancelled["text"] == "Cancelled — nothing was sent."
        assert "reply_markup" not in cancelled

        # Not urgent: a reader in quiet hours gets it when they end, not now.
        calm = await ask(tg, ADMIN, "/broadcast Roadworks on Monday")
        await press(tg, ADMIN, calm["message_id"], button(calm, "Send"))
        await tg.await_for(lambda: received(tg, [awake], "Roadworks on Monday")[awake] == 1, timeout=15)
        # Its progress message follows the press: the next preview is the message after it.
        await tg.await_for(lambda: progress_of(tg, 2), timeout=15)

        # Urgent, toggled on, off and on again: it reaches the reader in quiet hours too.
        urgent = await ask(tg, ADMIN, "/broadcast Storm warning: stay indoors")
        data = button(urgent, "Urgent")
        toggled = [(await press(tg, ADMIN, urgent["message_id"], data))["text"] for _ in range(3)]
        assert toggled == [
            "Urgent: it will reach readers in their quiet hours too.",
            "Not urgent: readers in quiet hours get it when those end.",
            "Urgent: it will reach readers in their quiet hours too.",
        ]
        shown = tg.message(ADMIN, urgent["message_id"])
        assert shown is not None and button(shown, "Urgent: on ✅")
        assert shown["text"] == f"{PREVIEW_HEADING}\n\nStorm warning: stay indoors"
        await press(tg, ADMIN, urgent["message_id"], button(shown, "Send"))
        await tg.await_for(lambda: all(received(tg, [awake, asleep], "Storm warning: stay indoors").values()), timeout=15)
        [report] = await tg.await_for(lambda: [r for r in reports(tg) if "#3" in r["text"]], timeout=20)
        await clock.run_for(1.0)  # long enough for a held message to have slipped through
        held = received(tg, [asleep], "Roadworks on Monday")

    # Readers never see the heading.
    assert not [m for c in (awake, asleep) for m in tg.sent_messages(c) if "Preview" in m["text"]]
    assert held == {asleep: 0}
    [(state, next_at)] = query(
        settings.db_path, "SELECT state, next_attempt_at FROM outbox WHERE chat_id = ? AND broadcast_id = 2", (asleep,)
    )
    assert state == "pending" and next_at > clock.time() + 30 * 60  # when the quiet hours end
    # The progress message ends with the figures, the report is a summary: two messages.
    [progress] = progress_of(tg, 3)
    assert "(urgent: ignores quiet hours)" in progress["text"]
    final = tg.message(ADMIN, progress["message_id"])
    assert final is not None and final["text"].startswith("Broadcast #3 to everyone: done")
    assert "Sent 2 / 2" in final["text"]
    assert report["text"].startswith("Report: broadcast #3 finished — 2 readers of 2 reached (100 %).")
    assert "Storm warning: stay indoors" in report["text"]
    assert report["text"] != final["text"]
    assert query(settings.db_path, "SELECT id, state, urgent FROM broadcasts ORDER BY id") == [
        (1, "cancelled", 0), (2, "sending", 0), (3, "done", 1)
    ]


async def test_admin_buttons_refuse_everyone_else_and_an_edited_broadcast_makes_no_second_preview(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    group, outsider = -7100, 555
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, [5201, 5202])
    async with running_bot(settings, clock=clock):
        preview = await ask(tg, group, "/broadcast Newsroom test", user_id=ADMIN, chat_type="group")
        for label in ("Send", "Urgent", "Cancel"):
            refused = await press(tg, group, preview["message_id"], button(preview, label), user_id=outsider)
            assert refused["text"] == "Sorry, that button is for the newsroom's admins.", label
            assert refused.get("show_alert") is True

        # The admin edits the /broadcast message: commands answer new messages only.
        update = tg.user_message(ADMIN, "/broadcast Hello readers")
        first = (await tg.await_messages(ADMIN, 1, timeout=10))[0]
        edited = {**update["message"], "text": "/broadcast Hello readers, edited", "edit_date": int(clock.time())}
        tg.push_update({"edited_message": edited})
        await tg.await_for(lambda: tg.pending_update_count == 0, timeout=10)
        listing = await ask(tg, ADMIN, "/broadcasts")
        await clock.run_for(1.0)  # time for a second preview to arrive, if one were coming

    assert [m["message_id"] for m in tg.sent_messages(ADMIN)] == [first["message_id"], listing["message_id"]]
    assert query(settings.db_path, "SELECT state FROM broadcasts ORDER BY id") == [("preview",), ("preview",)]
    assert query(settings.db_path, "SELECT count(*) FROM outbox") == [(0,)]
