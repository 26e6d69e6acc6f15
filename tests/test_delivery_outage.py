"""Telegram half down: one method failing while the rest of the Bot API answers.

The whole bot runs on simulated time (tests/simtime.py) against the fake Bot API on the same
loop; `sendMessage` alone fails — nginx's 502, a 500, a 401, no answer at all (a hang longer
than the send time-out), a reset connection — for 35 s, 70 s or ten minutes while getMe and
getUpdates answer normally. Nothing may be lost, no attempt spent, /healthz must say what
is failing and since when, and when it heals every alert goes exactly once. A chat that
Telegram keeps failing on its own must not hold anyone else back, and is not given up on
either: a 5xx says nothing about the message.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bot.health import check_health, metrics_text
from bot.pipeline.core import PROBE_MAX_DELAY
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings, running_bot
from tests.simtime import SimClock
from tests.test_delivery import delivered, expected, outbox_states, query, seed

SEND_TIMEOUT = 20.0  # bot.runner's BotApi time-out: a hang costs this much per try

FAILURES = [
    ("status", 502, 35.0),
    ("status", 502, 70.0),
    ("status", 502, 600.0),
    ("status", 500, 600.0),
    ("status", 401, 600.0),
    ("hang", 0, 70.0),
    ("hang", 0, 600.0),
    ("reset", 0, 600.0),
]


@pytest.mark.parametrize(("mode", "status", "seconds"), FAILURES, ids=[f"{m}-{s}-{int(t)}s" for m, s, t in FAILURES])
async def test_send_message_failing_alone_loses_nothing_and_spends_no_attempt(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, mode: str, status: int, seconds: float
) -> None:
    tg = sim_tg
    readers = [20_000 + i for i in range(40)]
    plan = {chat_id: [1] for chat_id in readers}
    settings = bot_settings(tg, tmp_path, NEWSBOT_MAX_ATTEMPTS="3")
    assert await seed(settings.db_path, plan) == 40
    tg.fail_method("sendMessage", status or 502, mode=mode, seconds=seconds)
    started = clock.monotonic()

    async with running_bot(settings, clock=clock) as rt:
        services = rt.services
        await clock.run_for(seconds / 2)
        # Meanwhile: paused, not failing; /healthz and /metrics say what and since when.
        health = await check_health(services, clock.time())
        reasons = [r for r in health.reasons if r.startswith("telegram:")]
        assert not health.telegram and reasons and "sendMessage failing since" in reasons[0], health
        assert b"newsbot_telegram_up 0.0" in await metrics_text(services, clock.time())
        assert query(settings.db_path, "SELECT count(*) FROM outbox WHERE state = 'failed'") == [(0,)]
        assert query(settings.db_path, "SELECT max(attempts) FROM outbox") == [(0,)]
        # getUpdates and getMe kept answering all along: only sendMessage was down.
        assert all(c.ok for c in tg.calls("getUpdates"))

        await tg.await_messages(None, 40, timeout=seconds + 2 * PROBE_MAX_DELAY + 2 * SEND_TIMEOUT)
        healed = clock.monotonic() - started
        await clock.run_for(5)
        health = await check_health(services, clock.time())
        outages = services.metrics.value("newsbot_telegram_outages_total")
        failed = services.metrics.value("newsbot_messages_failed_total")

    seen = delivered(tg)
    assert set(seen) == expected(plan) and max(seen.values()) == 1
    assert outbox_states(settings.db_path) == {c: {"sent": 1} for c in readers}
    # One attempt each: the send that went through. The outage cost none.
    assert query(settings.db_path, "SELECT DISTINCT attempts FROM outbox") == [(1,)]
    assert outages >= 1 and failed == 0
    assert health.telegram and not [r for r in health.reasons if r.startswith("telegram:")]
    # Sending resumed within the probes' longest back-off (and a hung try) after the heal.
    assert healed <= seconds + PROBE_MAX_DELAY + SEND_TIMEOUT + 5, healed


async def test_a_ten_minute_outage_probes_with_back_off_not_in_a_loop(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    plan = {20_100 + i: [1] for i in range(40)}
    settings = bot_settings(tg, tmp_path)
    await seed(settings.db_path, plan)
    tg.fail_method("sendMessage", 502, seconds=600)
    async with running_bot(settings, polling=False, clock=clock):
        await tg.await_messages(None, 40, timeout=700)
    failed = [c for c in tg.calls("sendMessage") if not c.ok]
    # The first sends in flight, then one retry after 1, 2, 4 … at most 30 s: about 25 in ten
    # minutes, not one a second.
    assert len(failed) <= 8 + 30, len(failed)
    gaps = [b.monotonic - a.monotonic for a, b in itertools.pairwise(failed[8:])]
    assert gaps and max(gaps) <= PROBE_MAX_DELAY + 1


async def test_a_chat_telegram_keeps_failing_holds_nobody_back_and_is_not_given_up(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    broken, fine = 21_001, [21_002 + i for i in range(20)]
    plan = {broken: [1], **{c: [1, 2] for c in fine}}
    settings = bot_settings(tg, tmp_path, NEWSBOT_MAX_ATTEMPTS="3")
    await seed(settings.db_path, plan)
    tg.server_error_chat(broken, 502, "Bad Gateway", times=None)

    started = clock.monotonic()
    async with running_bot(settings, polling=False, clock=clock):
        await tg.await_messages(None, 40, timeout=60)
        others_done = clock.monotonic() - started
        await clock.run_for(600)
        tries = [c for c in tg.calls("sendMessage") if c.chat_id == broken]
        assert query(settings.db_path, "SELECT state, attempts FROM outbox WHERE chat_id = ?", (broken,)) == [
            ("pending", 0)
        ]
        tg.clear_faults()
        await tg.await_messages(broken, 1, timeout=400)

    # Everyone else got everything at once; the broken chat was tried with growing pauses
    # (no attempt spent: a 5xx says nothing about the message), and got its alert once it healed.
    assert others_done < 30
    assert 4 <= len(tries) <= 15, len(tries)
    seen = delivered(tg)
    assert set(seen) == expected(plan) and max(seen.values()) == 1
