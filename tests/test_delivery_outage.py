"""Telegram down for ten minutes, on a clock that runs 60 times faster than real time.

The dispatcher gets a `ScaledClock`: a simulated minute is a real second, so a ten-minute
outage takes ten seconds while the dispatcher's own back-off, probes and retries run on the
times they were written for. Telegram is the fake Bot API server, down in three ways: nginx's
502 page for every request, connections reset without an answer, and 401 for every method
(the token refused). Throughout, the outbox and the server's records say what happened:
nothing lost, nothing failed, no attempt spent, getMe probed with back-off, /healthz saying
Telegram is unreachable while it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.clock import Clock
from bot.context import Services
from bot.health import check_health
from bot.pipeline.deliver import PROBE_MAX_DELAY
from tests.fakes.telegram_api import FakeTelegram
from tests.test_delivery import (
    delivered,
    dispatching,
    expected,
    outbox_states,
    query,
    seed,
    settings_for,
    settle,
)

SPEED = 60.0  # simulated seconds per real second
OUTAGE = 600.0  # simulated seconds


class ScaledClock:
    """A `bot.pipeline.clock.Clock` whose time runs `speed` times faster than real time:
    monotonic() and time() advance `speed` seconds per real second, and sleep()/wait() last
    1/`speed` of the time asked for."""

    def __init__(self, speed: float = SPEED) -> None:
        self.speed = speed
        self._real = time.monotonic()
        self._wall = time.time()

    def _elapsed(self) -> float:
        return (time.monotonic() - self._real) * self.speed

    def monotonic(self) -> float:
        return self._real + self._elapsed()

    def time(self) -> float:
        return self._wall + self._elapsed()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, deadline: float) -> None:
        await self.sleep(deadline - self.monotonic())

    async def wait(self, seconds: float, *events: asyncio.Event) -> None:
        if seconds <= 0 or any(e.is_set() for e in events):
            await asyncio.sleep(0)
            return
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            if waiters:
                await asyncio.wait(waiters, timeout=seconds / self.speed, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(seconds / self.speed)
        finally:
            for waiter in waiters:
                waiter.cancel()


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def begin_outage(tg: FakeTelegram, kind: str) -> None:
    if kind == "401":
        tg.fail_all(401, "Unauthorized")
    else:
        tg.set_outage(kind)


def end_outage(tg: FakeTelegram, kind: str) -> None:
    if kind == "401":
        tg.clear_faults()
    else:
        tg.set_outage(None)


def requests_refused(tg: FakeTelegram, kind: str) -> tuple[int, int]:
    """(getMe, sendMessage) requests Telegram refused so far. A reset connection leaves no
    recorded call, only a count (both methods together, reported as getMe)."""
    if kind == "reset":
        return tg.refused_connections, 0
    return (
        sum(1 for c in tg.calls("getMe") if not c.ok),
        sum(1 for c in tg.calls("sendMessage") if not c.ok),
    )


def most_probes(seconds: float) -> int:
    """How many getMe probes a back-off of 1, 2, 4 … PROBE_MAX_DELAY seconds makes at most in
    `seconds` (a slower machine makes fewer), the first one included."""
    probes, at, delay = 1, 0.0, 1.0
    while at + delay <= seconds:
        at += delay
        probes += 1
        delay = min(delay * 2, PROBE_MAX_DELAY)
    return probes


async def telegram_reason(services: Services, now: float) -> str | None:
    health = await check_health(services, now)
    found = [r for r in health.reasons if r.startswith("telegram:")]
    assert health.telegram is (not found)
    return found[0] if found else None


@pytest.mark.parametrize("kind", ["502", "reset", "401"])
async def test_ten_minute_outage_loses_nothing_and_spends_no_attempt(
    tg: FakeTelegram, tmp_path: Path, kind: str
) -> None:
    readers = [20_000 + i for i in range(40)]
    plan = {c: [1] for c in readers}
    settings = settings_for(tg, tmp_path, NEWSBOT_MAX_ATTEMPTS="3")
    assert await seed(settings.db_path, plan) == 40
    tg.set_delay(0.1)  # sends are in flight when Telegram goes down
    clock: Clock = ScaledClock()

    async with dispatching(settings, clock=clock) as (services, dispatcher):
        status = services.status
        await tg.await_for(lambda: len(tg.sent_messages()) >= 8, timeout=30)
        begin_outage(tg, kind)
        down_at = clock.monotonic()
        sent_before = len(tg.sent_messages())
        await tg.await_for(lambda: status.telegram_down_since is not None, timeout=30)
        assert dispatcher.paused_for_outage
        reason = await telegram_reason(services, clock.time())
        assert reason is not None and "sending paused, nothing lost" in reason

        # Ten simulated minutes of nothing: every row still queued has spent no attempt.
        while clock.monotonic() - down_at < OUTAGE:
            await asyncio.sleep(0.2)
            assert query(settings.db_path, "SELECT count(*) FROM outbox WHERE state = 'failed'") == [(0,)]
        probes, refused_sends = requests_refused(tg, kind)
        attempts = query(settings.db_path, "SELECT DISTINCT attempts FROM outbox WHERE state = 'pending'")
        assert attempts == [(0,)]
        assert status.telegram_down_since is not None
        assert await telegram_reason(services, clock.time()) is not None
        assert len(tg.sent_messages()) == sent_before

        end_outage(tg, kind)
        await settle(services, timeout=60)
        assert status.telegram_down_since is None
        assert not dispatcher.paused_for_outage
        assert await telegram_reason(services, clock.time()) is None
        outages = services.metrics.value("newsbot_telegram_outages_total")
        failed = services.metrics.value("newsbot_messages_failed_total")

    seen = delivered(tg)
    assert set(seen) == expected(plan)
    assert max(seen.values()) == 1
    assert outbox_states(settings.db_path) == {c: {"sent": 1} for c in readers}
    # One attempt each: the one that went through. The outage cost none.
    assert query(settings.db_path, "SELECT DISTINCT attempts FROM outbox") == [(1,)]
    assert outages == 1 and failed == 0
    # getMe was asked again and again, with back-off: every 30 s at most, not every second.
    # Requests refused for other reasons (the sends in flight, resets of their connections)
    # are at most one per send slot on top.
    slots = settings.send_concurrency
    assert refused_sends <= 2 * slots
    if kind == "reset":
        assert 6 <= probes <= most_probes(OUTAGE) + 2 * slots + 2, probes
    else:
        assert 6 <= probes <= most_probes(OUTAGE) + 2, probes


async def test_a_5xx_for_one_chat_while_getme_answers_spends_attempts_and_fails(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    broken, fine = 21_001, [21_002, 21_003]
    plan = {broken: [1], **{c: [1] for c in fine}}
    settings = settings_for(tg, tmp_path, NEWSBOT_MAX_ATTEMPTS="3")
    assert await seed(settings.db_path, plan) == 3
    tg.server_error_chat(broken, 502, "Bad Gateway", times=None)

    async with dispatching(settings, clock=ScaledClock()) as (services, dispatcher):
        await settle(services, timeout=30)
        assert services.status.telegram_down_since is None
        assert not dispatcher.paused_for_outage
        outages = services.metrics.value("newsbot_telegram_outages_total")

    assert outages == 0
    tries = [c for c in tg.calls("sendMessage") if c.chat_id == broken]
    assert [c.status for c in tries] == [502, 502, 502]  # NEWSBOT_MAX_ATTEMPTS, then given up
    # Each failure asked getMe first, which answered: the error was about this chat.
    assert tg.calls("getMe") and all(c.ok for c in tg.calls("getMe"))
    assert query(settings.db_path, "SELECT state, attempts, last_error FROM outbox WHERE chat_id = ?", (broken,)) == [
        ("failed", 3, "Bad Gateway")
    ]
    assert outbox_states(settings.db_path) == {broken: {"failed": 1}, **{c: {"sent": 1} for c in fine}}
