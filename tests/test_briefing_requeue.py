"""A briefing is queued once per reader and slot, whatever restarts: queueing it and moving the
reader's next briefing time on are two writes, and a crash between them makes the next start
queue the same slot again — the outbox's key turns that into nothing."""

from __future__ import annotations

from pathlib import Path

from bot import briefings
from bot.context import open_services
from bot.localtime import next_slot
from storage import chats
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings
from tests.simtime import SimClock


async def test_a_briefing_queued_again_after_a_crash_is_still_one_row(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = bot_settings(sim_tg, tmp_path)
    services = await open_services(settings, clock=clock)
    try:
        now = clock.time()
        chat = await chats.join(services.db, 95_001, "private", now=now)
        slot = next_slot([7 * 60 + 30], services.chat_zone(None), now)
        assert slot is not None
        await chats.set_briefings(services.db, chat.id, [7 * 60 + 30], slot, last_at=now, now=now)
        await clock.run_until(slot + 1)
        assert await briefings.schedule(services, clock.time()) == 1
        # The crash: the row is queued, the reader's next time not moved on yet.
        await services.db.execute("UPDATE chats SET next_briefing_at = ? WHERE id = ?", (slot, chat.id))
        assert await briefings.schedule(services, clock.time()) == 0
        rows = await services.db.fetchall("SELECT kind, key, state FROM outbox")
    finally:
        await services.close()
    assert [tuple(r) for r in rows] == [("briefing", rows[0]["key"], "pending")]
