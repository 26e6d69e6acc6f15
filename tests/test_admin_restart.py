"""A broadcast survives a hard crash: `python -m bot run` is killed with SIGKILL mid-way and
started again; the rest goes out, and nobody gets it twice beyond the messages that were in
flight at the crash (at most NEWSBOT_SEND_CONCURRENCY)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import REPO
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, press, write_feeds_file
from tests.test_admin_broadcast import button, received, reports, seed_readers

ADMIN = 9001
CONCURRENCY = 4
TEXT = "Polls close at 20:00 tonight"


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def open_log(path: Path) -> IO[bytes]:
    """The bots' output, kept for the failure message (opened outside the event loop's code)."""
    return path.open("wb")


def start_bot(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


async def test_broadcast_resumes_after_sigkill(tg: FakeTelegram, tmp_path: Path) -> None:
    readers = list(range(6000, 6060))
    db_path = tmp_path / "newsbot.db"
    await seed_readers(db_path, readers)
    env = {
        **os.environ,
        **tg.bot_env(),
        "NEWSBOT_DB": str(db_path),
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, [], name="no-feeds.toml")),
        "NEWSBOT_ADMIN_IDS": f"{ADMIN}",
        "NEWSBOT_RATE_GLOBAL": "200",
        "NEWSBOT_RATE_PRIVATE_INTERVAL": "0",
        "NEWSBOT_SEND_CONCURRENCY": str(CONCURRENCY),
        "NEWSBOT_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
        "PTB_TIMEDELTA": "1",
    }
    tg.set_delay(0.05)  # every answer takes 0.05 s: about 80 messages/s
    with open_log(tmp_path / "bot.log") as log:
        first = start_bot(env, log)
        try:
            # post_init is done once the admin's menu is set (2nd setMyCommands); updates queue.
            await tg.await_calls("setMyCommands", 2, timeout=30)
            preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
            await press(tg, ADMIN, preview["message_id"], button(preview, "Send"))
            await tg.await_for(lambda: sum(received(tg, readers, TEXT).values()) >= 15, timeout=30)
        finally:
            stop(first)
        at_crash = sum(received(tg, readers, TEXT).values())
        assert at_crash < len(readers), "the broadcast ended before the crash; nothing to resume"

        second = start_bot(env, log)
        try:
            await tg.await_for(lambda: all(received(tg, readers, TEXT).values()), timeout=45)
            report = await tg.await_for(lambda: reports(tg), timeout=30)
        finally:
            stop(second)

    got = received(tg, readers, TEXT)
    twice = [c for c, n in got.items() if n > 1]
    assert len(twice) <= CONCURRENCY and max(got.values()) <= 2, (tmp_path / "bot.log").read_text()
    assert report[0]["text"].startswith(f"Report: broadcast #1 finished — {len(readers)} readers of {len(readers)}")
    progress = tg.sent_messages(ADMIN)[1]
    final = tg.message(ADMIN, progress["message_id"])
    assert final is not None and f"Sent {len(readers)} / {len(readers)}" in final["text"]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT state FROM broadcasts").fetchall() == [("done",)]
        assert conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall() == [("sent", len(readers))]
