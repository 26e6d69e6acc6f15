"""GET /healthz and GET /metrics on loopback, served by the running bot."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings, running_bot, write_feeds_file

TINY_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Tiny</title>
<item><title>One</title><link>https://t.example/1</link><guid>t-1</guid></item></channel></rss>"""


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_and_metrics(tg: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    with FeedServer() as server:
        server.serve("/tiny.xml", TINY_FEED)
        server.status("/broken.xml", 500)
        feeds_file = write_feeds_file(tmp_path, [server.url_for("/tiny.xml"), server.url_for("/broken.xml")])
        settings = bot_settings(
            tg, tmp_path, NEWSBOT_HTTP_PORT=str(port), NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_POLL_SECONDS="1"
        )
        async with running_bot(settings) as app, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await tg.await_for(lambda: len(server.requests("/broken.xml")) >= 1, timeout=10)
            await tg.await_for(lambda: app.bot_data.services.metrics.last_poll_success is not None, timeout=10)

            health = await http.get("/healthz")
            assert health.status_code == 200
            assert health.headers["content-type"] == "application/json"
            body = health.json()
            assert body["status"] == "ok" and body["database"] is True and body["dispatcher"] is True
            assert 0 <= body["last_poll_age_seconds"] < 10

            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            lines = dict(line.rsplit(" ", 1) for line in metrics.text.splitlines() if not line.startswith("#"))
            assert lines["newsbot_outbox_backlog"] == "0"
            assert lines["newsbot_feeds_enabled"] == "2" and lines["newsbot_feeds_failing"] == "1"
            assert lines["newsbot_readers_active"] == "0" and lines["newsbot_dispatcher_up"] == "1"
            assert float(lines["newsbot_last_poll_age_seconds"]) < 10
            assert "# TYPE newsbot_polls_total counter" in metrics.text

            assert (await http.get("/")).status_code == 404
            assert (await http.get("/healthz/extra")).status_code == 404
            assert (await http.post("/healthz")).status_code == 404

            # A poll that has not succeeded for more than 3 intervals + 60 s: unhealthy.
            server.status("/tiny.xml", 500)
            failed = len([r for r in server.requests("/tiny.xml") if r.status == 500])
            await tg.await_for(lambda: len([r for r in server.requests("/tiny.xml") if r.status == 500]) > failed, timeout=10)
            app.bot_data.services.metrics.last_poll_success = time.time() - 1000
            stale = await http.get("/healthz")
            assert stale.status_code == 503
            assert stale.json()["status"] == "unhealthy"
            assert any(r.startswith("poll: last success") for r in stale.json()["reasons"])

            # The dispatcher stopped: unhealthy, and the failing field says which.
            await app.bot_data.dispatcher.stop(timeout=1)
            dead = await http.get("/healthz")
            assert dead.status_code == 503
            assert dead.json()["dispatcher"] is False and dead.json()["database"] is True
            assert "dispatcher: not running" in dead.json()["reasons"]

    # Stopped with the bot.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_no_endpoint_without_a_port(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running_bot(bot_settings(tg, tmp_path)) as app:
        assert app.bot_data.health is None


async def test_a_slow_client_does_not_block_others(tg: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    async with running_bot(bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT=str(port))):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finishes its request
        await writer.drain()
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert answer.status_code == 200 and answer.json()["last_poll_age_seconds"] is None
        writer.close()
        await writer.wait_closed()
