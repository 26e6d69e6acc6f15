"""The fake Bot API server on the test's own loop, under simulated time.

Every test here runs FakeTelegram with ``here(clock)`` (no thread) and talks to it with
python-telegram-bot's Bot or httpx on the same loop. Simulated minutes must pass in
milliseconds: each test checks the simulated time that passed, and that the real time
stayed far below it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from tests.fakes.telegram_api import FakeTelegram
from tests.simtime import SimClock

TOKEN = "123:ABC"
# Far above what any test here takes in real time (milliseconds), far below the
# simulated time it lets pass (minutes).
REAL_BOUND = 5.0


class Stopwatch:
    """Simulated and real time since it was made."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._sim = clock.monotonic()
        self._real = time.monotonic()

    @property
    def sim(self) -> float:
        return self._clock.monotonic() - self._sim

    @property
    def real(self) -> float:
        return time.monotonic() - self._real


@pytest.fixture
async def tg(clock: SimClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN).here(clock) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=tg.api_url, base_file_url=tg.file_url) as ptb:
        yield ptb


@pytest.fixture
async def http(tg: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=None) as client:
        yield client


# --------------------------------------------------------------------------- the mode


async def test_serves_on_the_loop_and_reads_the_given_clock(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    assert tg.running and tg.clock is clock
    assert not any(t.name == "fake-telegram" for t in threading.enumerate())
    # An hour ahead of the system's clocks, so that a time read from them would show.
    await clock.run_for(3600)
    clock.step(86_400)
    await bot.send_message(1, "now")
    [call] = tg.calls("sendMessage")
    assert call.monotonic == pytest.approx(clock.monotonic(), abs=0.01)
    assert call.time == pytest.approx(clock.time(), abs=0.01)
    assert call.time > time.time() + 86_000
    [message] = tg.sent_messages(1)
    assert message["date"] == int(call.time)

    tg.user_message(1, "/start")
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None
    assert update.message.date.timestamp() == int(clock.time())


async def test_blocking_calls_are_refused_in_loop(tg: FakeTelegram) -> None:
    with pytest.raises(RuntimeError, match="await_for"):
        tg.wait_for(lambda: True)
    with pytest.raises(RuntimeError, match="stop_here"):
        tg.stop()
    with pytest.raises(RuntimeError, match="already running"):
        tg.start()
    with pytest.raises(RuntimeError, match="already running"):
        await tg.start_here()


async def test_stop_here_ends_a_long_poll_and_the_fake_restarts_on_its_port(
    tg: FakeTelegram, http: httpx.AsyncClient, clock: SimClock
) -> None:
    port = tg.port
    poll = asyncio.create_task(http.post("getUpdates", data={"timeout": "30"}))
    await clock.run_for(5)
    assert not poll.done()
    await tg.stop_here()
    assert not tg.running
    with pytest.raises(httpx.HTTPError):
        await poll
    await tg.stop_here()  # idempotent

    await tg.start_here(clock)
    assert tg.port == port
    response = await http.post("getMe")
    assert response.json()["result"]["id"] == 123


# --------------------------------------------------------------------------- waits


async def test_delays_take_simulated_time(tg: FakeTelegram, bot: Bot, clock: SimClock) -> None:
    tg.set_delay(600)
    watch = Stopwatch(clock)
    await bot.get_me(read_timeout=700)
    assert watch.sim == pytest.approx(600, abs=0.5)
    assert watch.real < REAL_BOUND

    tg.set_delay(0)
    tg.set_delay(120, chat_id=5)
    watch = Stopwatch(clock)
    slow = asyncio.create_task(bot.send_message(5, "slow", read_timeout=200))
    await bot.send_message(6, "fast")
    assert watch.sim < 0.5 and not slow.done()
    await slow
    assert watch.sim == pytest.approx(120, abs=0.5)
    # Executed when answered: "slow" is dated two minutes after "fast".
    fast, late = tg.sent_messages()
    assert (fast["text"], late["text"]) == ("fast", "slow")
    assert late["date"] - fast["date"] in (119, 120, 121)

    # A client that gives up during the delay has sent nothing.
    with pytest.raises(TimedOut):
        await bot.send_message(5, "gave up", read_timeout=10)
    await clock.run_for(200)
    assert [m["text"] for m in tg.sent_messages(5)] == ["slow"]
    assert watch.real < REAL_BOUND


async def test_long_polls_end_after_their_timeout(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    watch = Stopwatch(clock)
    assert await bot.get_updates(timeout=30, read_timeout=10) == ()
    assert watch.sim == pytest.approx(30, abs=0.5)

    watch = Stopwatch(clock)
    poll = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=10))
    await clock.run_for(10)
    assert not poll.done()
    tg.user_message(7, "/start")
    [update] = await poll
    assert update.message is not None and update.message.text == "/start"
    assert watch.sim == pytest.approx(10, abs=0.5)
    assert watch.real < REAL_BOUND


async def test_await_messages_fails_fast_in_real_time(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    watch = Stopwatch(clock)
    jumps = clock.loop.jumps
    with pytest.raises(TimeoutError, match=r"expected 1 message\(s\) to chat 1 within 600 s"):
        await tg.await_messages(1, 1, timeout=600)
    assert watch.sim == pytest.approx(600, abs=0.5)
    assert watch.real < REAL_BOUND
    # Woken by events, not by polling: a handful of clock jumps, not 120,000.
    assert clock.loop.jumps - jumps < 10


async def test_async_waiters_wake_on_what_the_fake_does(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    async def later(seconds: float, text: str) -> None:
        await asyncio.sleep(seconds)
        await bot.send_message(1, text)

    watch = Stopwatch(clock)
    sender = asyncio.create_task(later(100, "hello"))
    [message] = await tg.await_messages(1, 1, timeout=600)
    assert message["text"] == "hello"
    assert watch.sim == pytest.approx(100, abs=0.5)
    await sender

    getter = asyncio.create_task(bot.get_updates(timeout=60))
    [call] = await tg.await_calls("sendMessage", 1, timeout=1)
    assert call.ok
    tg.user_message(2, "hi")
    await tg.await_for(lambda: tg.pending_update_count == 1, timeout=1)
    assert len(await getter) == 1
    tg.push_update({"message": {"message_id": 1, "date": 0, "chat": {"id": 2, "type": "private"}}})
    confirm = asyncio.create_task(bot.get_updates(offset=10**6, timeout=0))
    await tg.await_for(lambda: tg.pending_update_count == 0, timeout=1)
    await confirm

    # A predicate on anything else is only checked again with an interval.
    flag: list[bool] = []
    asyncio.get_running_loop().call_later(5, flag.append, True)
    with pytest.raises(TimeoutError, match="interval="):
        await tg.await_for(lambda: flag, timeout=3)
    watch = Stopwatch(clock)
    assert await tg.await_for(lambda: flag, timeout=60, interval=1) == [True]
    assert 1 < watch.sim <= 3
    assert watch.real < REAL_BOUND


# --------------------------------------------------------------------------- faults


async def test_a_status_fault_fails_one_method_for_a_window(
    tg: FakeTelegram, bot: Bot, http: httpx.AsyncClient, clock: SimClock
) -> None:
    tg.clear()  # the getMe of the Bot's start
    watch = Stopwatch(clock)
    tg.fail_method("sendMessage", 502, seconds=600)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(1, "during")
    assert (await bot.get_me()).id == 123
    assert await bot.get_updates(timeout=0) == ()
    await clock.run_for(599)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(1, "still during")
    await clock.run_for(1)
    await bot.send_message(1, "after")
    assert [m["text"] for m in tg.sent_messages()] == ["after"]
    assert [(c.method, c.status) for c in tg.calls()] == [
        ("sendMessage", 502),
        ("getMe", 200),
        ("getUpdates", 200),
        ("sendMessage", 502),
        ("sendMessage", 200),
    ]

    tg.fail_method("sendMessage", 500)  # until cleared
    response = await http.post("sendMessage", data={"chat_id": "1", "text": "x"})
    assert response.status_code == 500
    assert response.json() == {
        "ok": False,
        "error_code": 500,
        "description": "Internal Server Error",
    }
    tg.clear_faults("sendMessage")
    tg.fail_method("sendMessage", 401, seconds=60)
    with pytest.raises(InvalidToken):
        await bot.send_message(1, "x")
    assert (await bot.get_me()).id == 123
    await clock.run_for(60)
    await bot.send_message(1, "healed")
    assert watch.sim == pytest.approx(660, abs=1)
    assert watch.real < REAL_BOUND


async def test_a_hang_fault_holds_one_method_until_its_window_ends(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    tg.fail_method("sendMessage", mode="hang", seconds=70)
    watch = Stopwatch(clock)
    held = asyncio.create_task(bot.send_message(1, "held", read_timeout=100))
    await tg.await_for(lambda: tg.hung_requests == 1, timeout=1)
    assert (await bot.get_me()).id == 123  # other methods answer meanwhile
    assert watch.sim < 0.5 and not held.done()
    assert tg.calls("sendMessage") == []

    message = await held  # answered when the window ends
    assert message.text == "held"
    assert watch.sim == pytest.approx(70, abs=0.5)
    [call] = tg.calls("sendMessage")
    assert call.monotonic == pytest.approx(clock.monotonic(), abs=0.5)

    # A client that gives up during the hang is dropped: nothing is sent.
    tg.fail_method("sendMessage", mode="hang", seconds=70)
    with pytest.raises(TimedOut):
        await bot.send_message(1, "gave up", read_timeout=10)
    await clock.run_for(100)
    assert [m["text"] for m in tg.sent_messages()] == ["held"]
    assert tg.hung_requests == 2
    assert watch.real < REAL_BOUND


async def test_a_reset_fault_drops_one_methods_connections(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    tg.fail_method("sendMessage", mode="reset", seconds=35)
    watch = Stopwatch(clock)
    with pytest.raises(NetworkError) as reset:
        await bot.send_message(1, "during")
    assert not isinstance(reset.value, TimedOut) and watch.sim < 0.5
    assert tg.refused_connections >= 1
    assert (await bot.get_me()).id == 123
    assert tg.calls("sendMessage") == []
    await clock.run_for(35)
    await bot.send_message(1, "after")
    assert [m["text"] for m in tg.sent_messages()] == ["after"]
    assert watch.real < REAL_BOUND


async def test_method_faults_end_early_when_cleared(
    tg: FakeTelegram, bot: Bot, http: httpx.AsyncClient, clock: SimClock
) -> None:
    tg.fail_method("sendMessage", mode="hang")  # no window: until cleared
    watch = Stopwatch(clock)
    held = asyncio.create_task(bot.send_message(1, "held", read_timeout=None))
    await clock.run_for(300)
    assert not held.done()
    tg.clear_faults("sendMessage")
    assert (await held).text == "held"
    assert watch.sim == pytest.approx(300, abs=0.5)

    tg.fail_method(["sendMessage", "getMe"], mode="hang", seconds=3600)
    held = asyncio.create_task(bot.send_message(1, "held again", read_timeout=None))
    await clock.run_for(60)
    assert not held.done()
    tg.clear_faults()  # every fault
    assert (await held).text == "held again"
    assert watch.sim == pytest.approx(360, abs=0.5)

    tg.fail_method(["sendMessage", "getMe"], 503)
    tg.clear_faults("sendMessage")
    await bot.send_message(1, "sent")
    assert (await http.post("getMe")).status_code == 503
    tg.clear_faults()
    assert (await http.post("getMe")).status_code == 200

    tg.fail_method("getMe", 500, times=1)
    assert (await http.post("getMe")).status_code == 500
    assert (await http.post("getMe")).status_code == 200

    tg.set_outage("hang")
    outage = asyncio.create_task(http.post("getMe"))
    await clock.run_for(600)
    assert not outage.done()
    tg.set_outage(None)
    assert (await outage).status_code == 200

    with pytest.raises(ValueError, match="fault mode"):
        tg.fail_method("sendMessage", mode="flood")
    with pytest.raises(ValueError, match="seconds"):
        tg.fail_method("sendMessage", seconds=0)


async def test_fail_for_windows_run_on_the_clock(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    tg.fail_for(600, 401, "Unauthorized", methods=["getUpdates"])
    with pytest.raises(InvalidToken):
        await bot.get_updates(timeout=0)
    await bot.send_message(1, "other methods work")
    await clock.run_for(599)
    with pytest.raises(InvalidToken):
        await bot.get_updates(timeout=0)
    await clock.run_for(1)
    assert await bot.get_updates(timeout=0) == ()


# --------------------------------------------------------------------------- limits and dates


async def test_flood_windows_run_on_the_clock(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    tg.enforce_limits()
    watch = Stopwatch(clock)
    await bot.send_message(1, "first")
    with pytest.raises(RetryAfter) as private:
        await bot.send_message(1, "too soon")
    assert private.value.retry_after == dt.timedelta(seconds=1)
    [violation] = tg.violations
    assert violation.kind == "private_chat"
    assert violation.time == pytest.approx(clock.monotonic(), abs=0.01)
    await clock.run_for(1)
    await bot.send_message(1, "a second later")

    group = -100123
    for i in range(20):
        await bot.send_message(group, f"news {i}")
        await clock.run_for(1)
    with pytest.raises(RetryAfter) as full:
        await bot.send_message(group, "the 21st within a minute")
    assert full.value.retry_after == dt.timedelta(seconds=40)  # the first at 1 s, now 21 s
    await clock.run_for(39)
    with pytest.raises(RetryAfter):
        await bot.send_message(group, "still within the minute")
    await clock.run_for(2)
    await bot.send_message(group, "the minute is over")
    assert [v.kind for v in tg.violations] == ["private_chat", "group", "group"]
    assert watch.sim == pytest.approx(62, abs=0.5)
    assert watch.real < REAL_BOUND


async def test_dates_and_the_edit_limit_follow_the_clock(
    tg: FakeTelegram, bot: Bot, clock: SimClock
) -> None:
    sent = await bot.send_message(1, "v1")
    first = tg.message(1, sent.message_id)
    assert first is not None and first["date"] == int(clock.time())

    await clock.run_for(47 * 3600)
    await bot.edit_message_text("v2", chat_id=1, message_id=sent.message_id)
    second = tg.message(1, sent.message_id)
    assert second is not None and second["edit_date"] == int(clock.time())

    await clock.run_for(3600)  # 48 hours after it was sent
    with pytest.raises(BadRequest, match="can't be edited"):
        await bot.edit_message_text("v3", chat_id=1, message_id=sent.message_id)

    fresh = await bot.send_message(1, "fresh")
    clock.step(49 * 3600)  # wall time alone: the limit is on the date readers see
    with pytest.raises(BadRequest, match="can't be edited"):
        await bot.edit_message_text("late", chat_id=1, message_id=fresh.message_id)
    newer = await bot.send_message(1, "newer")
    tg.age_message(1, newer.message_id, 48 * 3600)
    with pytest.raises(BadRequest, match="can't be edited"):
        await bot.edit_message_text("aged", chat_id=1, message_id=newer.message_id)


# --------------------------------------------------------------------------- a polling bot


async def test_a_polling_application_through_simulated_minutes(
    tg: FakeTelegram, clock: SimClock
) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, "Welcome")

    app = ApplicationBuilder().token(TOKEN).base_url(tg.api_url).base_file_url(tg.file_url).build()
    app.add_handler(CommandHandler("start", start))
    watch = Stopwatch(clock)
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=30)
        try:
            await clock.run_for(600)
            # Long polls of 30 s each: about 20 in ten minutes, not thousands.
            assert 19 <= len(tg.calls("getUpdates")) <= 22
            tg.user_message(7, "/start")
            [welcome] = await tg.await_messages(7, 1, timeout=60)
            assert welcome["text"] == "Welcome"
        finally:
            await app.updater.stop()
            await app.stop()
    assert watch.sim >= 600
    assert watch.real < REAL_BOUND
