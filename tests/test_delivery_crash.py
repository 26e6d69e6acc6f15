"""The bot as a real process: killed hard mid-delivery, or stopped with SIGTERM.

The outbox is seeded before the process starts; the fake Bot API server answers slowly so
that sends are in flight when the signal lands. After a SIGKILL the only duplicates allowed
are the alerts whose rows were 'sending' at that moment (at most NEWSBOT_SEND_CONCURRENCY
messages; a combined message counts each of its alerts).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fakes.telegram_api import FakeTelegram
from tests.test_delivery import delivered, expected, outbox_states, seed

CONCURRENCY = 8


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


class BotProcess:
    """`python -m bot run` against the fake server, its output kept in a log file."""

    def __init__(self, tg: FakeTelegram, tmp_path: Path, db_path: Path, name: str, **extra: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
        env.update(tg.bot_env())
        env.update(
            NEWSBOT_DB=str(db_path),
            NEWSBOT_LOG_LEVEL="INFO",
            NEWSBOT_POLL_SECONDS="60",
            NEWSBOT_SEND_CONCURRENCY=str(CONCURRENCY),
            PYTHONPATH=str(REPO),
            PTB_TIMEDELTA="1",
        )
        env.update(extra)
        self.log_path = tmp_path / f"{name}.log"
        with self.log_path.open("wb") as log:
            # cwd is the test's directory so that no stray .env file is read.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"bot did not exit within {timeout} s:\n{self.log[-3000:]}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def count_sent(tg: FakeTelegram) -> int:
    return sum(delivered(tg).values())


def rows(db_path: Path, state: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE state = ?", (state,)).fetchone()[0])


def test_sigkill_mid_delivery_then_restart_delivers_everything(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    # 80 readers with two alerts each and four with five (sent as one combined message).
    plan = {5000 + i: [1, 2] for i in range(80)}
    plan.update({6000 + i: [1, 2, 3, 4, 5] for i in range(4)})
    db_path = tmp_path / "newsbot.db"
    assert asyncio.run(seed(db_path, plan)) == 180
    for chat_id in plan:
        tg.set_delay(0.1, chat_id)
    # The global limit is lifted so that the slow answers, not the limiter, pace the sends.
    extra = {"NEWSBOT_RATE_GLOBAL": "1000"}

    first = BotProcess(tg, tmp_path, db_path, "first", **extra)
    try:
        tg.wait_for(lambda: count_sent(tg) >= 50, timeout=60)
        first.proc.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.close()
    in_flight = rows(db_path, "sending")
    sent_before = rows(db_path, "sent")
    with sqlite3.connect(db_path) as conn:
        sending_chats = conn.execute(
            "SELECT count(DISTINCT chat_id) FROM outbox WHERE state = 'sending'"
        ).fetchone()[0]
    assert sending_chats <= CONCURRENCY  # one message per chat at a time
    assert 0 < sent_before < 180

    second = BotProcess(tg, tmp_path, db_path, "second", **extra)
    try:
        tg.wait_for(lambda: set(delivered(tg)) >= expected(plan), timeout=90)
        deadline = time.monotonic() + 30
        while rows(db_path, "sent") < 180 and time.monotonic() < deadline:
            time.sleep(0.1)
        second.proc.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, second.log[-3000:]
    finally:
        second.close()

    seen = delivered(tg)
    assert set(seen) == expected(plan)
    duplicates = sum(n - 1 for n in seen.values())
    assert duplicates <= in_flight, (duplicates, in_flight)
    assert outbox_states(db_path) == {c: Counter({"sent": len(v)}) for c, v in plan.items()}
    assert "outbox rows caught in flight by the last stop resent" in second.log or in_flight == 0


def test_sigterm_finishes_sends_in_flight_and_keeps_the_rest_queued(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    plan = {7000 + i: [1] for i in range(100)}
    db_path = tmp_path / "newsbot.db"
    assert asyncio.run(seed(db_path, plan)) == 100
    for chat_id in plan:
        tg.set_delay(0.25, chat_id)

    bot = BotProcess(tg, tmp_path, db_path, "bot")
    try:
        tg.wait_for(lambda: count_sent(tg) >= 16, timeout=60)
        stopped = time.monotonic()
        bot.proc.send_signal(signal.SIGTERM)
        assert bot.wait(20) == 0, bot.log[-3000:]
        took = time.monotonic() - stopped
    finally:
        bot.close()

    assert took <= 10.0 + 2.0, took  # the 10 s bound, plus the interpreter's own exit
    seen = delivered(tg)
    assert max(seen.values()) == 1
    with sqlite3.connect(db_path) as conn:
        marked = set(conn.execute("SELECT chat_id FROM outbox WHERE state = 'sent'").fetchall())
        states = Counter(s for (s,) in conn.execute("SELECT state FROM outbox"))
    # Whatever went out is marked sent, nothing else is, and nothing is left half-done.
    assert {c for (c,) in marked} == {chat_id for chat_id, _ in seen}
    assert states["sending"] == 0
    assert states["sent"] + states["pending"] == 100
    assert states["pending"] > 0
    assert "Traceback" not in bot.log, bot.log[-3000:]
