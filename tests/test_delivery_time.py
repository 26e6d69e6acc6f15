"""Alerts keep moving whatever else happens: readers flooding the bot with commands, the system
clock set back an hour.

* Replies to commands and alerts share Telegram's 30 messages a second: whenever both wait,
  neither takes more than two thirds, so alerts keep at least a third (10 a second) however
  many readers send commands just under the flood guard's limit — and the replies still flow.
* Every wait runs on the monotonic clock: a wall clock stepped back an hour while alerts go
  out delays none of them (due times kept in the database are compared with a wall time that
  a step cannot send back).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.pipeline.ratelimit import SHARE
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings, running_bot
from tests.simtime import SimClock
from tests.test_delivery import delivered, expected, seed

RATE = 30


async def test_readers_flooding_commands_leave_alerts_their_share(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    tg.enforce_limits()
    tg.set_delay(0.05)  # Telegram's answers take 50 ms
    askers = [90_000 + i for i in range(70)]
    readers = [91_000 + i for i in range(200)]
    plan = {chat_id: [1] for chat_id in readers}
    settings = bot_settings(tg, tmp_path)

    async def flood() -> None:
        # Each asker just under the flood guard (12 in 10 s): 10.5 in 10 s; all of them
        # together 74 a second, more than twice Telegram's 30.
        while True:
            for chat_id in askers:
                tg.user_message(chat_id, "/help")
            await asyncio.sleep(0.95)

    async with running_bot(settings, clock=clock) as rt:
        flooding = asyncio.create_task(flood())
        await clock.run_for(5)  # the flood is on: replies fill the rate
        await seed(settings.db_path, plan)
        rt.services.outbox_wake.set()
        started = clock.monotonic()
        await tg.await_messages(None, len(readers), timeout=120)  # readers' alerts (and replies)
        await tg.await_for(lambda: set(delivered(tg)) >= expected(plan), timeout=120)
        took = clock.monotonic() - started
        replies = sum(len(tg.sent_messages(chat_id)) for chat_id in askers)
        flooding.cancel()

    seen = delivered(tg)
    assert set(seen) == expected(plan) and max(seen.values()) == 1
    # At least a third of the rate for alerts: 200 alerts in 20 s (25 s without the share).
    assert took <= len(readers) / (RATE * (1 - SHARE)) + 2, took
    # And the replies kept going meanwhile: at least a third of the rate for them too.
    assert replies >= (took + 5) * RATE * (1 - SHARE)
    assert tg.violations == []


async def test_the_wall_clock_set_back_an_hour_delays_no_alert(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    readers = [92_000 + i for i in range(1200)]
    plan = {chat_id: [1] for chat_id in readers}
    settings = bot_settings(tg, tmp_path)
    await seed(settings.db_path, plan)
    started = clock.monotonic()
    async with running_bot(settings, polling=False, clock=clock):
        await tg.await_messages(None, 300, timeout=60)
        clock.step(-3600)  # an operator (or NTP) sets the system clock back an hour
        await tg.await_messages(None, 1200, timeout=4000)
        took = clock.monotonic() - started

    seen = delivered(tg)
    assert set(seen) == expected(plan) and max(seen.values()) == 1
    # 1,200 alerts at 30 a second: 40 s, whatever the wall clock did.
    assert took <= 1200 / RATE + 10, took
