"""What must never leak or be reached: the bot token in any output, and addresses inside the
operator's network through a feed URL."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storage import feeds
from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock
from tests.test_operator import (
    BotProcess,
    base_env,
    bots,  # noqa: F401 - fixture
    free_port,
    newsbot,
    start,
    stopped_cleanly,
)

TOKEN = "7311:AAH_secret-value-that-must-never-be-printed"
SECRET_PART = TOKEN.split(":", 1)[1]
RETRY_LINE = r"telegram not reachable at start attempt=(\d+) retry_in=(\d+)s"


def assert_no_token(bot: BotProcess, tmp_path: Path) -> None:
    """Not in the process's output, nor in any file it left beside the database."""
    assert SECRET_PART not in bot.text
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm"):
            assert SECRET_PART not in path.read_text(errors="replace"), path


def assert_retries_one_line_each(bot: BotProcess, attempts: int) -> None:
    """One warning line per attempt (at least two), each attempt waiting longer; no traceback."""
    assert attempts >= 2
    lines = bot.wait_for_lines(RETRY_LINE, attempts, timeout=30)
    found = [re.search(RETRY_LINE, line) for line in lines]
    numbers = [int(m.group(1)) for m in found if m]
    delays = [int(m.group(2)) for m in found if m]
    assert numbers == list(range(1, len(numbers) + 1))
    assert delays[:3] == [1, 2, 4][: len(delays[:3])]  # back-off
    assert "Traceback" not in bot.text
    # Nothing else is repeated per attempt: the log stays a few lines long.
    assert len(bot.text.splitlines()) < len(lines) + 15, bot.text


def starting_meanwhile(bot: BotProcess) -> None:
    status, body = bot.wait_for_health(lambda s, b: True)
    assert status == 503 and body["status"] == "starting", body
    assert any(r.startswith("starting: Telegram not reached yet") for r in body["reasons"]), body


@pytest.mark.parametrize(
    "api_path",
    [
        pytest.param("/bot", id="401-unknown-token"),
        pytest.param("/wrong-prefix", id="404-malformed-path"),
    ],
)
def test_a_refused_token_is_retried_and_never_printed(
    tmp_path: Path, bots: list[BotProcess], api_path: str  # noqa: F811
) -> None:
    """Telegram refusing the token (401) or the path (404): retried with back-off, one line
    per attempt, "starting" on /healthz, a clean stop on SIGTERM, and the token nowhere."""
    with FakeTelegram() as tg:  # its own token, not ours
        env = base_env(
            tmp_path, NEWSBOT_TOKEN=TOKEN, NEWSBOT_API_URL=tg.url + api_path,
            NEWSBOT_HTTP_PORT=str(free_port()), NEWSBOT_LOG_LEVEL="DEBUG",
        )
        bot = start(bots, tmp_path, env)
        assert_retries_one_line_each(bot, 3)
        assert "refused the token (401/404): check NEWSBOT_TOKEN" in bot.lines(RETRY_LINE)[0]
        starting_meanwhile(bot)
        assert tg.calls("getMe") == []  # refused before any method ran
        stopped_cleanly(bot)
    assert " DEBUG " in bot.text  # the most talkative level, and still no token
    assert_no_token(bot, tmp_path)


def test_unreachable_telegram_at_start_then_it_runs(tmp_path: Path, bots: list[BotProcess]) -> None:  # noqa: F811
    """Nothing listening where Telegram should be: retried with back-off, one line per
    attempt, "starting" meanwhile; once Telegram answers, the bot runs and answers."""
    port = free_port()
    env = base_env(
        tmp_path, NEWSBOT_TOKEN=TOKEN, NEWSBOT_API_URL=f"http://127.0.0.1:{port}/bot",
        NEWSBOT_HTTP_PORT=str(free_port()),
        NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [], name="no-feeds.toml")),
    )
    bot = start(bots, tmp_path, env)
    # Two attempts show the back-off (test_a_refused_token_is_retried_and_never_printed
    # waits for a third); the third, 2 s later, finds Telegram.
    assert_retries_one_line_each(bot, 2)
    starting_meanwhile(bot)
    with FakeTelegram(token=TOKEN, port=port) as tg:
        tg.user_message(55, "/start")
        [reply] = tg.wait_for_messages(55, 1, timeout=60)
        assert "Welcome" in reply["text"]
        status, _body = bot.wait_for_health(lambda s, b: b["status"] == "ok", timeout=30)
        assert status == 200
        stopped_cleanly(bot)
    assert bot.lines("newsbot running")
    assert_no_token(bot, tmp_path)


def test_sigterm_while_starting_stops_at_once(tmp_path: Path, bots: list[BotProcess]) -> None:  # noqa: F811
    """A bot that never reached Telegram still stops on SIGTERM and SIGINT with status 0."""
    started = {}
    for sig in (signal.SIGTERM, signal.SIGINT):  # both at once: each waits for its retries
        env = base_env(
            tmp_path / sig.name, NEWSBOT_TOKEN=TOKEN, NEWSBOT_API_URL=f"http://127.0.0.1:{free_port()}/bot",
            NEWSBOT_HTTP_PORT=str(free_port()),
        )
        (tmp_path / sig.name).mkdir()
        started[sig] = start(bots, tmp_path / sig.name, env, name=f"bot-{sig.name}")
    for sig, bot in started.items():
        bot.wait_for_lines(RETRY_LINE, 2)
        code, _ = bot.stop(sig)
        assert code == 0, bot.text
        assert "Traceback" not in bot.text


# --- feeds must not reach inside ------------------------------------------------------------

TINY_FEED = SAMPLE_FEED.read_bytes()


def test_ingest_refuses_a_loopback_feed_by_default(tmp_path: Path) -> None:
    """Default settings: a feed on 127.0.0.1 is refused with a clear error and nothing is
    fetched; with NEWSBOT_FEED_ALLOW_PRIVATE=1 the same feed is ingested."""
    with FeedServer() as server:
        server.serve("/rss.xml", TINY_FEED)
        feeds_file = write_feeds_file(tmp_path, [server.url_for("/rss.xml")])
        env = base_env(tmp_path, NEWSBOT_FEEDS=str(feeds_file))
        refused = newsbot(tmp_path, "ingest", env=env)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        [line] = [line for line in refused.stdout.splitlines() if line.startswith("feed 1 ")]
        assert line.endswith(
            f"error: fetch: not fetching {server.url_for('/rss.xml')}: its host resolves to a loopback address"
            " (NEWSBOT_FEED_ALLOW_PRIVATE=1 allows feeds inside the network)"
        ), line
        assert server.requests() == []
        assert "Traceback" not in refused.stderr

        allowed = newsbot(tmp_path, "ingest", env={**env, "NEWSBOT_FEED_ALLOW_PRIVATE": "1"})
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert "50 items, first poll" in allowed.stdout
        assert allowed.stdout.splitlines()[-1].startswith("1 feed, "), allowed.stdout
        assert len(server.requests("/rss.xml")) == 1
    with sqlite3.connect(tmp_path / "newsbot.db") as conn:
        assert conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 50


def test_check_feed_refuses_a_loopback_url_by_default(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/rss.xml", TINY_FEED)
        out = newsbot(tmp_path, "check-feed", server.url_for("/rss.xml"), env=base_env(tmp_path))
        assert out.returncode == 1
        assert out.stderr.strip() == (
            f"newsbot: fetch: not fetching {server.url_for('/rss.xml')}: its host resolves to a loopback address"
            " (NEWSBOT_FEED_ALLOW_PRIVATE=1 allows feeds inside the network)"
        )
        assert server.requests() == []


async def test_poll_of_a_loopback_feed_is_refused_by_default(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """The running bot's poll: an error recorded on the feed, no request made."""
    tg, server = sim_tg, sim_feeds
    server.serve("/rss.xml", TINY_FEED)
    feeds_file = write_feeds_file(tmp_path, [server.url_for("/rss.xml")])
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_FEED_ALLOW_PRIVATE="0",
    )
    async with running_bot(settings, clock=clock) as rt:
        await tg.await_for(
            lambda: rt.services.metrics.value("newsbot_polls_total", result="error"), timeout=30, interval=0.05
        )
        [feed] = await feeds.list_feeds(rt.services.db)
        assert feed.error_count == 1 and not feed.primed
        assert "its host resolves to a loopback address" in (feed.last_error or ""), feed.last_error
    assert server.requests() == []


async def test_addfeed_never_says_which_internal_ports_answer(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """An admin's /addfeed of internal addresses: the same refusal whether a port is open
    (a feed server listens), closed, or the host is another private range; nothing fetched."""
    tg, server = sim_tg, sim_feeds
    server.serve("/rss.xml", TINY_FEED)
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEED_ALLOW_PRIVATE="0")
    closed = free_port()
    async with running_bot(settings, clock=clock):
        replies = {}
        for name, url in (
            ("open", server.url_for("/rss.xml")),
            ("closed", f"http://127.0.0.1:{closed}/rss.xml"),
            ("localhost", f"http://localhost:{server.port}/rss.xml"),
        ):
            reply = await ask(tg, 9001, f"/addfeed {url} world")
            text = str(reply["text"])
            replies[name] = text.replace(url, "URL").replace(str(server.port), "PORT").replace(str(closed), "PORT")
    assert server.requests() == []
    assert replies["open"] == replies["closed"], replies
    for text in replies.values():
        assert text.startswith("Could not add that feed — fetch: not fetching URL: its host resolves to a loopback address"), text
        for hint in ("Connection refused", "Errno", "timed out", "ConnectError"):
            assert hint not in text, text


TRACEBACKS = f"""
import logging, sys, threading
from bot.logs import setup_logging
setup_logging("INFO", [{TOKEN!r}])
try:
    raise RuntimeError("request to /bot{TOKEN}/getMe failed")
except RuntimeError:
    logging.getLogger("newsbot").exception("handled")
def in_a_thread():
    raise OSError("/bot{TOKEN}/x")
thread = threading.Thread(target=in_a_thread)
thread.start()
thread.join()
raise ValueError("at start: {TOKEN}")
"""


def test_tracebacks_never_carry_the_token(tmp_path: Path) -> None:
    """A logged exception, one uncaught in a thread and one uncaught at the top whose texts
    hold the token: all three tracebacks are written, none with the token."""
    done = subprocess.run(
        [sys.executable, "-c", TRACEBACKS], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    assert SECRET_PART not in done.stdout + done.stderr
    assert done.stderr.count("Traceback") == 3, done.stderr
    for shown in (
        "RuntimeError: request to /bot<token>/getMe failed",
        "OSError: /bot<token>/x",
        "ValueError: at start: <token>",
    ):
        assert shown in done.stderr, done.stderr
