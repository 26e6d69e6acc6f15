"""GET /healthz and GET /metrics on loopback, served by the running bot; a database that
cannot be written must show there, and readers must be told their change was not saved."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.health import UPDATES_STALE
from bot.metrics import COUNTERS, GAUGES
from bot.stages.poll import poll_due_feeds
from storage import outbox, subscriptions
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock
from tests.test_operator import free_port

TINY_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Tiny</title>
<item><title>One</title><link>https://t.example/1</link><guid>t-1</guid></item></channel></rss>"""
NOT_SAVED = "Sorry, that could not be saved — please try again later"
HEALTH_FIELDS = {"status", "database", "dispatcher", "updates", "telegram", "last_poll_age_seconds"}


def samples(text: str) -> dict[str, str]:
    """`name{labels}` → value, for every sample line of a Prometheus text page."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = value
    return found


async def updates_answered(tg: FakeTelegram, chat_id: int = 55) -> None:
    """An update makes the long poll in progress answer at once."""
    tg.user_message(chat_id, "/start")
    await tg.await_messages(chat_id, 1, timeout=30)


async def test_healthz_and_metrics(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, server = sim_tg, sim_feeds
    port = free_port()
    server.serve("/tiny.xml", TINY_FEED)
    server.status("/broken.xml", 500)
    feeds_file = write_feeds_file(tmp_path, [server.url_for("/tiny.xml"), server.url_for("/broken.xml")])
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_HTTP_PORT=str(port), NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_POLL_SECONDS="1"
    )
    async with running_bot(settings, clock=clock) as rt, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        services = rt.services
        await updates_answered(tg)
        await tg.await_for(lambda: len(server.requests("/broken.xml")) >= 1, timeout=10, interval=0.05)
        await tg.await_for(lambda: services.metrics.last_poll_success is not None, timeout=10, interval=0.05)

        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.headers["content-type"] == "application/json"
        body = health.json()
        assert set(body) == HEALTH_FIELDS, body
        assert body["status"] == "ok" and body["database"] is True and body["dispatcher"] is True
        assert body["updates"] is True and body["telegram"] is True
        assert 0 <= body["last_poll_age_seconds"] < 10

        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = samples(metrics.text)
        assert float(lines['newsbot_outbox_backlog{lane="personal"}']) == 0
        assert float(lines["newsbot_feeds_enabled"]) == 2 and float(lines["newsbot_feeds_failing"]) == 1
        assert float(lines["newsbot_readers_active"]) == 1 and float(lines["newsbot_dispatcher_up"]) == 1
        assert float(lines["newsbot_last_poll_age_seconds"]) < 10
        assert float(lines['newsbot_polls_total{result="error"}']) >= 1
        assert "# TYPE newsbot_polls_total counter" in metrics.text

        assert (await http.get("/")).status_code == 404
        assert (await http.get("/healthz/extra")).status_code == 404
        assert (await http.post("/healthz")).status_code == 404

        # A poll that has not succeeded for more than 3 intervals + 60 s: unhealthy.
        server.status("/tiny.xml", 500)
        failed = len([r for r in server.requests("/tiny.xml") if r.status == 500])
        await tg.await_for(lambda: len([r for r in server.requests("/tiny.xml") if r.status == 500]) > failed, timeout=10, interval=0.05)
        services.metrics.last_poll_success = services.clock.monotonic() - 1000
        stale = await http.get("/healthz")
        assert stale.status_code == 503
        assert stale.json()["status"] == "unhealthy"
        assert any(r.startswith("poll: last success") for r in stale.json()["reasons"])

        # The dispatcher stopped: unhealthy, and the failing field says which.
        assert rt.dispatcher is not None
        await rt.dispatcher.stop(timeout=1)
        dead = await http.get("/healthz")
        assert dead.status_code == 503
        assert dead.json()["dispatcher"] is False and dead.json()["database"] is True
        assert "dispatcher: not running" in dead.json()["reasons"]

    # Stopped with the bot.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_metrics_come_from_prometheus_client_in_full(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    """Every metric has HELP and TYPE; numbers keep every digit; the backlog has one sample
    per lane, labelled."""
    tg = sim_tg
    port = free_port()
    async with running_bot(bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port)), clock=clock) as rt:
        await updates_answered(tg)
        rt.services.metrics.inc("newsbot_articles_new_total", 1234567)
        rt.services.metrics.inc("newsbot_errors_total", 987654321, stage="poll")
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    lines = samples(text)
    # Every digit kept (Go's notation, 1.234567e+06, is fine; %g's 1.23457e+06 is not).
    assert float(lines["newsbot_articles_new_total"]) == 1234567, lines["newsbot_articles_new_total"]
    assert float(lines['newsbot_errors_total{stage="poll"}']) == 987654321
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.MULTILINE))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    for sample in lines:
        name = sample.split("{")[0]
        family = re.sub(r"_(bucket|count|sum)$", "", name) if name.startswith(("newsbot_send_seconds", "newsbot_alert_latency_seconds")) else name
        assert family in helps and family in types, name
    for name in GAUGES:
        if name != "newsbot_last_poll_age_seconds":  # only once something was polled
            assert types.get(name) == "gauge", name
    for name in COUNTERS:
        assert types.get(name) == "counter", name
    assert types["newsbot_send_seconds"] == "histogram"
    lanes = sorted(re.findall(r'^newsbot_outbox_backlog\{lane="([a-z]+)"\} ', text, re.MULTILINE))
    assert lanes == sorted(outbox.LANE_NAMES.values()), lanes


async def test_no_endpoint_without_a_port(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    async with running_bot(bot_settings(tg, tmp_path), clock=clock) as rt:
        assert rt.health is None


async def test_a_slow_client_does_not_block_others(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    port = free_port()
    async with running_bot(bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port)), clock=clock):
        await updates_answered(tg)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finishes its request
        await writer.drain()
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert answer.status_code == 200 and answer.json()["last_poll_age_seconds"] is None
        writer.close()
        await writer.wait_closed()


async def test_updates_never_answered_is_unhealthy_after_the_grace(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    """getUpdates that stops answering (a hang, not an error) shows after UPDATES_STALE."""
    tg = sim_tg
    port = free_port()
    async with running_bot(bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port)), clock=clock) as rt:
        await updates_answered(tg)
        status = rt.services.status
        assert status.updates_ok_at is not None
        status.updates_ok_at -= UPDATES_STALE + 5  # as if the last answer were that old
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert answer.status_code == 503
        assert answer.json()["updates"] is False
        assert any(r.startswith("updates: no answer from getUpdates for") for r in answer.json()["reasons"])


async def test_an_update_python_telegram_bot_cannot_read_is_logged_counted_and_skipped(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A poll without the fields python-telegram-bot requires (as when Telegram adds one):
    one line naming its update id, counted, and the next getUpdates confirms it; the updates
    around it are answered and the bot keeps polling."""
    tg = sim_tg
    caplog.set_level(logging.INFO)
    async with running_bot(bot_settings(tg, tmp_path), clock=clock) as rt:
        await updates_answered(tg)
        tg.user_message(56, "/help")
        unreadable = tg.push_update({"poll": {"id": "p-1", "question": "Which one?"}})
        await tg.await_messages(56, 1, timeout=30)
        # The last update taken: only the offset past it confirms it.
        await tg.await_for(lambda: tg.pending_update_count == 0, timeout=60)
        tg.user_message(57, "/help")
        await tg.await_messages(57, 1, timeout=30)
        assert rt.services.metrics.value("newsbot_errors_total", stage="updates") == 1
    skipped = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in caplog.records]
    assert f"update_id={unreadable['update_id']} " in skipped[0].getMessage()
    assert "Poll" in skipped[0].getMessage() and "Which one?" not in skipped[0].getMessage()
    assert [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR] == []


# --- the database file gone or replaced -----------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_database_file_deleted_or_replaced_is_unhealthy(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, how: str) -> None:
    """Writes to a deleted (or replaced) file vanish at the next start: /healthz says 503
    and names the database, and /metrics reports it down."""
    tg = sim_tg
    port = free_port()
    settings = bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port))
    db_path = tmp_path / "newsbot.db"
    async with running_bot(settings, clock=clock), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        await updates_answered(tg)
        assert (await http.get("/healthz")).status_code == 200
        if how == "deleted":
            os.unlink(db_path)
        else:
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            os.replace(other, db_path)
        answer = await http.get("/healthz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "unhealthy" and body["database"] is False, body
        assert f"database: storage: database file {db_path} was {how}" in body["reasons"], body
        assert samples((await http.get("/metrics")).text)["newsbot_database_up"] == "0.0"


# --- the disk full --------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root mounts it, as CI and the developers' machines run)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"mounting a tmpfs needs root: {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the file system is full."""
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as filler:
        while True:
            try:
                filler.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 512)


async def test_disk_full_is_unhealthy_and_readers_are_told(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    """With the disk full: /healthz 503 naming the database, a reader's /follow answered
    "could not be saved" (and nothing pretends it was); room again: saved, then healthy."""
    tg = sim_tg
    port = free_port()
    with tiny_disk(tmp_path / "disk") as disk:
        settings = bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port), NEWSBOT_DB=str(disk / "newsbot.db"))
        async with running_bot(settings, clock=clock) as rt, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            services = rt.services
            await updates_answered(tg, 42)
            assert (await http.get("/healthz")).status_code == 200
            await services.db.maintain()  # the write-ahead log cut to nothing: the next write needs room
            fill(disk / "filler")
            # The check writes the time it ran: a second later, so that its write changes a
            # row (an update to the very same value needs no room on the disk).
            await clock.run_for(1)

            answer = await http.get("/healthz")
            assert answer.status_code == 503, answer.json()
            body = answer.json()
            assert body["database"] is False, body
            assert any(r.startswith("database: storage: cannot write") and "full" in r for r in body["reasons"]), body

            reply = await ask(tg, 42, "/follow drones")
            assert reply["text"] == NOT_SAVED
            assert await subscriptions.subscriptions_for_chat(services.db, 42) == []

            # Room again: the failed /follow is still the last write, so still 503 (the
            # check's own write going in says nothing about the bot's); a saved change ends it.
            os.unlink(disk / "filler")
            assert (await http.get("/healthz")).status_code == 503
            saved = await ask(tg, 42, "/follow drones")
            assert "drones" in str(saved["text"]) and saved["text"] != NOT_SAVED
            assert [s.value for s in await subscriptions.subscriptions_for_chat(services.db, 42)] == ["drones"]
            healthy = await http.get("/healthz")
            assert healthy.status_code == 200, healthy.json()


def story_feed(first: int, count: int) -> bytes:
    """An RSS document of `count` stories numbered from `first`, each with a long summary."""
    items = "".join(
        f'<item><title>Story {n} of a long day</title><link>https://t.example/{n}</link><guid>s-{n}</guid>'
        f'<category domain="section">World</category><description>{f"Words of story {n}. " * 40}</description></item>'
        for n in range(first, first + count)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Day</title>{items}</channel></rss>'.encode()


async def test_a_write_of_the_pipeline_that_fails_is_unhealthy(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """A nearly full disk: a poll's store of 200 new stories cannot be written, while the
    health check's own one-row write still fits. /healthz is 503 naming the failed write (the
    check's write alone said 200); once a store goes in, 200 again."""
    tg, server = sim_tg, sim_feeds
    port = free_port()
    with tiny_disk(tmp_path / "disk") as disk:
        server.serve("/day.xml", story_feed(0, 20))
        feeds_file = write_feeds_file(tmp_path, [server.url_for("/day.xml")])
        db_path = disk / "newsbot.db"
        settings = bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port), NEWSBOT_FEEDS=str(feeds_file),
                                NEWSBOT_DB=str(db_path))
        async with running_bot(settings, clock=clock) as rt, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            services = rt.services
            await tg.await_for(lambda: services.metrics.last_poll_success is not None, timeout=10, interval=0.05)  # primed
            await updates_answered(tg)
            assert (await http.get("/healthz")).status_code == 200
            await services.db.maintain()  # the write-ahead log cut to nothing: writes need room
            filler = disk / "filler"
            fill(filler)
            os.truncate(filler, filler.stat().st_size - 64 * 1024)  # room for a few pages

            server.serve("/day.xml", story_feed(20, 200))
            [failed] = (await poll_due_feeds(services, all_feeds=True)).outcomes
            assert failed.result == "error" and "full" in str(failed.error), failed
            answer = await http.get("/healthz")
            assert answer.status_code == 503, answer.json()
            body = answer.json()
            assert body["database"] is False, body
            assert body["reasons"] == [
                f"database: the last write failed: storage: cannot write {db_path}: database or disk is full"
            ], body
            assert (await http.get("/healthz")).status_code == 503  # not forgotten after one look

            os.unlink(filler)
            [stored] = (await poll_due_feeds(services, all_feeds=True)).outcomes
            assert stored.result == "new" and len(stored.new) == 200, stored
            healthy = await http.get("/healthz")
            assert healthy.status_code == 200, healthy.json()


async def test_healthy_as_soon_as_telegram_answered(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    """getMe answered and the first long poll is out: 200 at once, not only once that long
    poll returns (up to 30 s later when nobody writes)."""
    tg = sim_tg
    port = free_port()
    async with running_bot(bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port)), clock=clock), \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        answer = await http.get("/healthz")
        assert tg.calls("getUpdates") == []  # the first long poll has not returned
        assert answer.status_code == 200, answer.json()
        assert answer.json()["updates"] is True


async def test_get_updates_refused_from_the_start_is_unhealthy(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    """Healthy at start means getMe answered and getUpdates is not failing: a first long
    poll refused (another copy of the bot polling) is 503 naming updates."""
    tg = sim_tg
    tg.fail_all(409, "Conflict: terminated by other getUpdates request", methods=["getUpdates"])
    port = free_port()
    async with running_bot(bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port)), clock=clock), \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        await tg.await_calls("getUpdates", 1, timeout=10)
        answer = await http.get("/healthz")
        assert answer.status_code == 503, answer.json()
        body = answer.json()
        assert body["updates"] is False, body
        assert any(r.startswith("updates: getUpdates failing") and "Conflict" in r for r in body["reasons"]), body
