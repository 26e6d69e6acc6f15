"""`newsbot` as an operator runs it: real processes against the fake Bot API and the loopback
feed server, judged by what an operator sees — exit codes, log lines, /healthz.

`BotProcess` (used by the other operator-facing test files too) runs one `newsbot` command
with its stdout and stderr in one file, so nothing it prints can be missed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.config import Settings
from bot.logs import setup_logging
from bot.runner import STOP_SECONDS
from tests.conftest import REPO, SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import SECTIONS_TOML, ask, bot_settings, press, running_bot, write_feeds_file
from tests.simtime import SimClock
from tests.test_admin_broadcast import ADMIN, button, reports, seed_readers

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Block until predicate() is truthy; a bounded wait for something to happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The operator's environment without any NEWSBOT_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
    env.update({"PYTHONPATH": str(REPO), "NEWSBOT_DB": str(tmp_path / "newsbot.db"), **extra})
    return env


def newsbot(tmp_path: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=timeout,
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
    )


def get_health(port: int, path: str = "/healthz", timeout: float = 5.0) -> tuple[int, Any] | None:
    """(status, parsed JSON or text) from the bot's endpoint, None while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError:
        return None
    text = body.decode("utf-8")
    return status, json.loads(text) if path == "/healthz" else text


class BotProcess:
    """One `newsbot` subprocess; stdout and stderr go to one log file."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str, name: str = "bot") -> None:
        self.log_path = tmp_path / f"{name}.log"
        self.port = int(env["NEWSBOT_HTTP_PORT"]) if env.get("NEWSBOT_HTTP_PORT") else None
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", *(args or ("run",))], stdout=log,
                stderr=subprocess.STDOUT, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            )

    @property
    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.text.splitlines() if re.search(pattern, line)]

    def wait_for_lines(self, pattern: str, n: int = 1, timeout: float = 30.0) -> list[str]:
        def enough() -> list[str]:
            if self.proc.poll() is not None:
                raise AssertionError(f"newsbot exited {self.proc.returncode}:\n{self.text}")
            found = self.lines(pattern)
            return found if len(found) >= n else []

        return wait_until(enough, timeout, f"{n} log line(s) matching {pattern!r}:\n{self.text}")

    def health(self, path: str = "/healthz") -> tuple[int, Any] | None:
        assert self.port is not None
        return get_health(self.port, path)

    def wait_for_health(self, predicate: Callable[[int, Any], bool], timeout: float = 30.0) -> tuple[int, Any]:
        seen: list[tuple[int, Any] | None] = []

        def check() -> tuple[int, Any] | None:
            answer = self.health()
            seen[:] = [answer]
            return answer if answer is not None and predicate(*answer) else None

        try:
            return wait_until(check, timeout, "health")
        except TimeoutError:
            raise AssertionError(f"/healthz never matched; last {seen}\n{self.text}") from None

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Signal it and wait: (exit status, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=STOP_SECONDS + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"newsbot did not stop within {STOP_SECONDS + 30} s:\n{self.text}") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def run_env(tg: FakeTelegram, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A bot against the fake, with its health endpoint on a free port and no feeds."""
    settings = {
        **tg.bot_env(),
        "NEWSBOT_HTTP_PORT": str(free_port()),
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, [], name="no-feeds.toml")),
        "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
        "NEWSBOT_ADMIN_IDS": "9001",
    }
    settings.update(extra)
    return base_env(tmp_path, **settings)


@pytest.fixture
def bots() -> Iterator[list[BotProcess]]:
    """Every bot a test starts is killed at its end, whatever happened."""
    started: list[BotProcess] = []
    yield started
    for bot in started:
        bot.kill()


def start(bots: list[BotProcess], tmp_path: Path, env: dict[str, str], *args: str, name: str = "bot") -> BotProcess:
    bot = BotProcess(tmp_path, env, *args, name=name)
    bots.append(bot)
    return bot


def stopped_cleanly(bot: BotProcess) -> None:
    code, seconds = bot.stop()
    assert code == 0, bot.text
    assert seconds < STOP_SECONDS, f"took {seconds:.1f} s to stop"
    assert "Traceback" not in bot.text, bot.text


def running_and_healthy(tg: FakeTelegram, bot: BotProcess) -> None:
    """Wait for a running bot whose getUpdates has answered (an update makes it answer now)."""
    tg.user_message(55, "/start")
    tg.wait_for_messages(55, 1, timeout=60)
    status, body = bot.wait_for_health(lambda s, b: b["status"] == "ok", timeout=30)
    assert status == 200, body


# --- 2. getUpdates deafness -----------------------------------------------------------------


def test_get_updates_refused_for_a_while_is_retried_reported_and_recovered(
    tg: FakeTelegram, tmp_path: Path, bots: list[BotProcess]
) -> None:
    """5 s of 401 on getUpdates: retried with back-off (one line each: the attempts at 0, 1
    and 3 s fail, the one at 7 s is answered), /healthz unhealthy naming updates meanwhile,
    healthy again after; a command sent meanwhile is answered after recovery; then a 404
    period, and SIGTERM in the middle of it stops the bot in time."""
    bot = start(bots, tmp_path, run_env(tg, tmp_path))
    running_and_healthy(tg, bot)

    tg.fail_for(5, 401, "Unauthorized", methods=["getUpdates"])
    tg.user_message(56, "/help")  # ends the long poll in progress; the next one is refused
    tg.wait_for_messages(56, 1, timeout=30)
    _, body = bot.wait_for_health(lambda s, b: s == 503, timeout=30)
    assert body["status"] == "unhealthy" and body["updates"] is False, body
    assert any(r.startswith("updates: ") for r in body["reasons"]), body
    assert body["database"] is True and body["telegram"] is True, body
    tg.user_message(57, "/help")  # waits in Telegram until getUpdates is answered again

    failures = bot.wait_for_lines(r"getUpdates failed attempt=\d+ retry_in=\d+s", 3, timeout=30)
    found = [re.search(r"attempt=(\d+) retry_in=(\d+)s", line) for line in failures]
    assert [(int(m.group(1)), int(m.group(2))) for m in found if m][:3] == [(1, 1), (2, 2), (3, 4)], failures

    [answer] = tg.wait_for_messages(57, 1, timeout=90)
    assert "/follow" in answer["text"]
    _status, body = bot.wait_for_health(lambda s, b: b["status"] == "ok", timeout=30)
    assert body["updates"] is True

    # Deaf again (a malformed path this time), and stopped while it waits to retry.
    tg.fail_for(600, 404, "Not Found", methods=["getUpdates"])
    tg.user_message(58, "/help")
    tg.wait_for_messages(58, 1, timeout=30)
    bot.wait_for_lines(r"getUpdates failed attempt=1 retry_in=\d+s error=.*(404|Not Found)", 1, timeout=30)
    stopped_cleanly(bot)
    assert len(bot.lines("Traceback")) == 0


def test_a_proxy_error_page_on_get_updates_is_one_line_per_attempt(
    tg: FakeTelegram, tmp_path: Path, bots: list[BotProcess]
) -> None:
    """Telegram behind its proxy answering nginx's "502 Bad Gateway" page instead of JSON:
    each failed getUpdates is one line, numbered, naming the status (no traceback, no page);
    one line when getUpdates answers again; nothing else meanwhile."""
    bot = start(bots, tmp_path, run_env(tg, tmp_path))
    running_and_healthy(tg, bot)
    before = len(bot.text.splitlines())
    tg.set_outage("502")  # the long poll in progress gets the page at once
    bot.wait_for_lines(r"getUpdates failed attempt=2 ", 1, timeout=30)
    tg.set_outage(None)
    tg.user_message(56, "/help")  # the next long poll answers at once, with this update
    [recovered] = bot.wait_for_lines(r"getUpdates answering again", 1, timeout=30)
    outage = bot.text.splitlines()[before:]
    outage = outage[: outage.index(recovered) + 1]
    attempts = len(outage) - 1
    assert attempts >= 2, outage
    for n, line in enumerate(outage[:-1], start=1):
        assert re.search(rf" WARNING bot\.runner: getUpdates failed attempt={n} retry_in=\d+s "
                         r"error=NetworkError: Bad Gateway \(502\) \(an answer that is not the Bot API's\)$", line), line
    assert re.search(rf" INFO bot\.runner: getUpdates answering again after attempts={attempts} seconds=\d+$", recovered)
    tg.wait_for_messages(56, 1, timeout=30)
    stopped_cleanly(bot)  # also: no traceback anywhere


# --- 3. one process per database ------------------------------------------------------------

LOCKED = r"^newsbot: storage: another newsbot process \(pid (\d+)\) is using .*newsbot\.db; stop it first"


def test_a_second_process_on_the_same_database_is_refused(
    tg: FakeTelegram, tmp_path: Path, bots: list[BotProcess]
) -> None:
    """While one bot runs, a second `newsbot run` and a `newsbot ingest` on its database stop
    with one clear line and a non-zero status; after the first is SIGKILLed (no clean
    release) a new one starts."""
    env = run_env(tg, tmp_path)
    first = start(bots, tmp_path, env, name="first")
    first.wait_for_lines("newsbot running")
    for args in (("run",), ("ingest",)):
        second = newsbot(tmp_path, *args, env={**env, "NEWSBOT_HTTP_PORT": str(free_port())}, timeout=60)
        assert second.returncode != 0, second
        [line] = (second.stdout + second.stderr).strip().splitlines()
        found = re.match(LOCKED, line)
        assert found and int(found.group(1)) == first.proc.pid, line
    assert first.proc.poll() is None  # the first one is untouched
    first.kill()  # SIGKILL: nothing released by the process itself
    third = start(bots, tmp_path, env, name="third")
    third.wait_for_lines("newsbot running")
    tg.user_message(60, "/start")
    tg.wait_for_messages(60, 1, timeout=60)
    stopped_cleanly(third)


# --- 6. quiet, useful logs ------------------------------------------------------------------

STORY = """<item><title>{title}</title><link>https://swedenherald.com/article/{slug}</link>
<guid isPermaLink="false">{guid}</guid><category domain="section">World</category>
<description>New story</description></item>"""


@contextlib.contextmanager
def newsbot_logging(settings: Settings) -> Iterator[io.StringIO]:
    """The logging `newsbot run` sets up (bot.logs.setup_logging, at the settings' level),
    writing into the buffer returned instead of stderr; every logger, hook and the warnings
    capture are put back as they were afterwards."""
    manager = logging.Logger.manager
    before = {logging.getLogger(), *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger))}
    saved = [(logger, logger.level, logger.handlers[:], logger.filters[:]) for logger in before]
    hooks = sys.excepthook, threading.excepthook
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        setup_logging(settings.log_level, [settings.require_token()])
    try:
        yield out
    finally:
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook = hooks
        for logger, level, handlers, filters in saved:
            logger.setLevel(level)
            logger.handlers[:], logger.filters[:] = handlers, filters
        for logger in manager.loggerDict.values():
            if isinstance(logger, logging.Logger) and logger not in before:
                logger.setLevel(logging.NOTSET)
                logger.filters.clear()


async def test_logs_at_the_default_level_say_what_happened_and_nothing_per_tick(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """Twenty seconds of one-second poll ticks at the default level, logged as `newsbot run`
    logs: no scheduler line per job run, no line per unchanged poll; a poll that found a story
    says so in one line; a broadcast logs its start and its end. In-process on simulated
    time, so that the twenty seconds (and the jobs' ticks in them) take no time."""
    tg, feed_server = sim_tg, sim_feeds
    sample = SAMPLE_FEED.read_text()
    feed_server.serve("/rss.xml", sample.encode())
    feeds_file = write_feeds_file(tmp_path, [feed_server.url_for("/rss.xml")])
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_POLL_SECONDS="1")
    assert settings.log_level == "INFO"  # the default: NEWSBOT_LOG_LEVEL is not set

    with newsbot_logging(settings) as out:

        async def wait_for_lines(pattern: str) -> list[str]:
            def found() -> list[str]:
                return [line for line in out.getvalue().splitlines() if re.search(pattern, line)]

            return await tg.await_for(found, timeout=60, interval=0.05)

        async with running_bot(settings, clock=clock):
            await ask(tg, 70, "/start")
            await ask(tg, 70, "/follow drones")
            await tg.await_for(lambda: len(feed_server.requests("/rss.xml")) >= 3, timeout=30, interval=0.05)
            lines_before = len(out.getvalue().splitlines())
            polls_before = len(feed_server.requests("/rss.xml"))
            await clock.run_for(20)
            polls = len(feed_server.requests("/rss.xml")) - polls_before
            assert polls >= 10, polls  # the ticks did run
            quiet = out.getvalue().splitlines()[lines_before:]
            assert quiet == [], quiet

            item = STORY.format(title="Drones over the harbour", slug="drones", guid="sh-new-1")
            feed_server.serve("/rss.xml", sample.replace("<item>", item + "\n<item>", 1).encode())
            [found] = await wait_for_lines(r"feed=\d+ new=\d+ alerts_queued=\d+")
            assert re.search(r"feed=1 new=1 alerts_queued=1\b", found), found
            await tg.await_messages(70, 3, timeout=60)

            tg.user_message(9001, "/broadcast Road closures tonight")
            [preview] = await tg.await_messages(9001, 1, timeout=60)
            assert "reply_markup" in preview, preview["text"]
            data = next(b["callback_data"] for row in preview["reply_markup"]["inline_keyboard"] for b in row
                        if b["text"].startswith("Send"))
            tg.callback_query(9001, preview["message_id"], data)
            [started] = await wait_for_lines(r"broadcast started broadcast_id=\d+")
            [ended] = await wait_for_lines(r"broadcast (done|finished|sent|completed) broadcast_id=\d+")
        text = out.getvalue()
    assert "total=1" in started, started
    assert "sent=1" in ended, ended
    assert "Traceback" not in text, text
    assert not re.search(r"INFO apscheduler|Running job|executed successfully", text), text


async def test_broadcasts_leave_no_scheduler_warning_at_the_default_level(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Two broadcasts to 300 readers one after the other (ten seconds each at 30 a second,
    their progress followed every second while Telegram answers slowly), then a minute more:
    at the default level the log holds their start and end lines and no warning at all — no
    "maximum number of running instances" or any other scheduler line (bot.jobs runs the
    repeating jobs; a run never overlaps the next)."""
    tg = sim_tg
    readers = list(range(300_000, 300_300))
    settings = bot_settings(tg, tmp_path)
    assert settings.log_level == "INFO"  # the default: NEWSBOT_LOG_LEVEL is not set
    await seed_readers(settings.db_path, readers)
    tg.set_delay(1.5, ADMIN)  # the progress edits (and every answer to the admin) take longer than a tick

    with newsbot_logging(settings) as out:
        async with running_bot(settings, clock=clock):
            started_at = len(out.getvalue().splitlines())
            for text in ("Road closures tonight", "Polls close at 20:00"):
                preview = await ask(tg, ADMIN, f"/broadcast {text}")
                await press(tg, ADMIN, int(preview["message_id"]), button(preview, "Send"))
                await tg.await_for(lambda t=text: len([m for m in tg.sent_messages(readers[-1]) if m["text"] == t]) == 1,
                                   timeout=120, interval=0.05)
            await tg.await_for(lambda: len(reports(tg)) == 2, timeout=60, interval=0.05)
            await clock.run_for(60)
        logged = out.getvalue().splitlines()[started_at:]
    assert len([line for line in logged if re.search(r"broadcast started broadcast_id=\d+ .*total=300", line)]) == 2, logged
    assert len([line for line in logged if re.search(r"broadcast done broadcast_id=\d+", line)]) == 2, logged
    assert [line for line in logged if re.search(r" (WARNING|ERROR|CRITICAL) ", line)] == []
    assert not [line for line in logged if re.search(r"apscheduler|running instances|Run time of job", line, re.IGNORECASE)]


# --- 7. configuration mistakes refused ------------------------------------------------------


def test_run_without_feeds_warns_at_start(tg: FakeTelegram, tmp_path: Path, bots: list[BotProcess]) -> None:
    env = run_env(tg, tmp_path)
    del env["NEWSBOT_FEEDS"]
    bot = start(bots, tmp_path, env)
    [line] = bot.wait_for_lines("no feeds configured")
    assert " WARNING " in line and "nothing will be polled" in line, line
    stopped_cleanly(bot)


@pytest.mark.parametrize("value", ["inf", "nan", "1e9", "-1", "-inf", "soon"])
def test_impossible_poll_interval_is_refused_in_one_line(tg: FakeTelegram, tmp_path: Path, value: str) -> None:
    out = newsbot(tmp_path, "run", env=run_env(tg, tmp_path, NEWSBOT_POLL_SECONDS=value), timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("newsbot: NEWSBOT_POLL_SECONDS: ") and repr(value) in line, line
    assert tg.calls() == []  # refused before Telegram was asked anything


def test_a_non_finite_next_poll_in_the_database_is_repaired_at_start(
    tg: FakeTelegram, tmp_path: Path, feed_server: FeedServer, bots: list[BotProcess]
) -> None:
    """A feed whose next poll time is +inf (a value no poll would ever reach) is made due at
    start and polled again."""
    feed_server.serve_file("/rss.xml", SAMPLE_FEED)
    feeds_file = write_feeds_file(tmp_path, [feed_server.url_for("/rss.xml")])
    env = run_env(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file))
    first = newsbot(tmp_path, "ingest", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    with sqlite3.connect(tmp_path / "newsbot.db") as conn:
        conn.execute("UPDATE feeds SET next_poll_at = 9e999")
        assert conn.execute("SELECT next_poll_at FROM feeds").fetchone()[0] == math.inf
    feed_server.clear_requests()
    bot = start(bots, tmp_path, env)
    [line] = bot.wait_for_lines("impossible next poll time")
    assert "count=1" in line
    wait_until(lambda: feed_server.requests("/rss.xml"), 30, "the feed polled again")
    stopped_cleanly(bot)
    with sqlite3.connect(tmp_path / "newsbot.db") as conn:
        [(next_poll,)] = conn.execute("SELECT next_poll_at FROM feeds").fetchall()
    assert math.isfinite(next_poll) and next_poll < time.time() + 3600


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('\n[[feeds]]\nurl = "https://example.com/rss"\nsection = "world"\ninterval = 5\n', "'interval'"),
        ('\n[extras]\nurl = "https://example.com/rss"\n', "'extras'"),
        ('\n[[feed]]\nurl = "https://example.com/rss"\nsection = "world"\n', "'feed'"),
    ],
    ids=["feed-key", "table", "misspelt-feeds"],
)
def test_unknown_key_in_the_feeds_file_stops_start_naming_it(
    tg: FakeTelegram, tmp_path: Path, extra: str, named: str
) -> None:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(SECTIONS_TOML + extra)
    for args in (("run",), ("ingest",)):
        out = newsbot(tmp_path, *args, env=run_env(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file)), timeout=60)
        assert out.returncode == 2
        [line] = out.stderr.strip().splitlines()
        assert line.startswith(f"newsbot: {feeds_file}") and f"unknown key {named}" in line, line
    assert tg.calls() == []


# --- 8. check-feed and the feeds file -------------------------------------------------------


def test_check_feed_on_a_missing_path_says_no_such_file(tmp_path: Path) -> None:
    out = newsbot(tmp_path, "check-feed", str(tmp_path / "missing.xml"), env=base_env(tmp_path))
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == (
        f"newsbot: {tmp_path / 'missing.xml'}: no such file (give a file or an http(s) URL)"
    )
    directory = newsbot(tmp_path, "check-feed", str(tmp_path), env=base_env(tmp_path))
    assert directory.returncode == 1 and "not a file" in directory.stderr


def test_a_file_url_in_the_feeds_file_is_explained(tg: FakeTelegram, tmp_path: Path) -> None:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(SECTIONS_TOML + f'\n[[feeds]]\nurl = "{SAMPLE_FEED.as_uri()}"\nsection = "world"\n')
    out = newsbot(tmp_path, "ingest", env=run_env(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file)))
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert "feed #1: url must be an http:// or https:// address" in line, line
    assert "a local file can be looked at with: newsbot check-feed PATH" in line, line


# --- 14. newsbot healthcheck (the Docker HEALTHCHECK) ---------------------------------------


def test_healthcheck_follows_the_port_setting(tg: FakeTelegram, tmp_path: Path, bots: list[BotProcess]) -> None:
    """Exit 0 against a healthy bot on a random port; 1 while it is unhealthy (Telegram
    refuses getUpdates); 1 when nothing listens; 2 without a port."""
    env = run_env(tg, tmp_path)
    bot = start(bots, tmp_path, env)
    running_and_healthy(tg, bot)
    healthy = newsbot(tmp_path, "healthcheck", env=env, timeout=30)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["status"] == "ok"
    elsewhere = newsbot(tmp_path, "healthcheck", env={**env, "NEWSBOT_HTTP_PORT": str(free_port())}, timeout=30)
    assert elsewhere.returncode == 1
    assert "Connection refused" in elsewhere.stderr and "Traceback" not in elsewhere.stderr

    tg.fail_for(600, 401, "Unauthorized", methods=["getUpdates"])
    tg.user_message(56, "/help")
    bot.wait_for_health(lambda s, b: s == 503, timeout=30)
    unhealthy = newsbot(tmp_path, "healthcheck", env=env, timeout=30)
    assert unhealthy.returncode == 1
    assert json.loads(unhealthy.stdout)["status"] == "unhealthy"
    stopped_cleanly(bot)

    gone = newsbot(tmp_path, "healthcheck", env=env, timeout=30)
    assert gone.returncode == 1
    off = newsbot(tmp_path, "healthcheck", env={k: v for k, v in env.items() if k != "NEWSBOT_HTTP_PORT"}, timeout=30)
    assert off.returncode == 2 and "NEWSBOT_HTTP_PORT: not set" in off.stderr
