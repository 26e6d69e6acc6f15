"""Push: the publish ping and WebSub, end to end on simulated time.

The bot runs as `newsbot run` runs it (`running_bot`) with its HTTP server on a loopback
port; the site is the loopback feed server, the hub a small WebSub hub
(tests/fakes/websub_hub.py), Telegram the fake Bot API — all on the test's own loop, so
minutes of leases and intervals take milliseconds. Times asserted are simulated seconds.
"""

from __future__ import annotations

import itertools
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.stages.websub import VERIFY_WAIT, signature_ok
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.websub_hub import Hub
from tests.harness import ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock

ADMIN = 9001
READER = 100
SECRET = "ping-secret-0123456789abcdef"
ATOM = "http://www.w3.org/2005/Atom"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def story(n: int, section: str = "World") -> str:
    return (f"<item><title>Wire story {n}</title><link>https://wire.example/{n}</link><guid>wire-{n}</guid>"
            f'<category domain="section">{section}</category></item>')


def rss(*stories: int, hub: str | None = None, self_url: str | None = None, section: str = "World") -> bytes:
    links = ""
    if hub:
        links += f'<atom:link rel="hub" href="{hub}"/>'
    if self_url:
        links += f'<atom:link rel="self" href="{self_url}"/>'
    return (f'<?xml version="1.0"?><rss version="2.0" xmlns:atom="{ATOM}"><channel><title>Tiny wire</title>{links}'
            + "".join(story(n, section) for n in stories) + "</channel></rss>").encode()


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


async def follow_world(tg: FakeTelegram) -> None:
    await ask(tg, READER, "/start")
    tg.callback_query(READER, tg.sent_messages(READER)[0]["message_id"], "sec:world")
    await tg.await_calls("answerCallbackQuery", 1, timeout=10)


def alerts(tg: FakeTelegram) -> list[str]:
    return [str(m["text"]) for m in tg.sent_messages(READER) if "Wire story" in str(m.get("text", ""))]


async def await_alert(tg: FakeTelegram, n: int, within: float) -> float:
    """When (the fake's monotonic clock) the reader got story n, within `within` simulated s."""
    await tg.await_for(lambda: any(f"Wire story {n}" in a for a in alerts(tg)), timeout=within)
    call = next(c for c in tg.calls("sendMessage") if c.chat_id == READER and f"Wire story {n}" in str(c.params.get("text")))
    return call.monotonic


def settings_for(tg: FakeTelegram, tmp_path: Path, urls: list[str], port: int, **extra: str) -> Any:
    return bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, urls)), NEWSBOT_HTTP_PORT=str(port), **extra,
    )


# --- the publish ping -----------------------------------------------------------------------


async def test_a_ping_fetches_the_feed_at_once_and_its_story_alerts_within_seconds(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg, site = sim_tg, sim_feeds
    port = free_port()
    site.serve("/wire.xml", rss(1))
    url = site.url_for("/wire.xml")
    # Polls an hour apart: whatever arrives within seconds came by the ping.
    settings = settings_for(tg, tmp_path, [url], port, NEWSBOT_PING_SECRET=SECRET, NEWSBOT_POLL_SECONDS="3600")
    caplog.set_level(logging.INFO, logger="bot")
    async with running_bot(settings, clock=clock), httpx.AsyncClient() as http:
        await follow_world(tg)
        await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds") == [(1,)], timeout=10, interval=0.1)
        ping = f"http://127.0.0.1:{port}/ping"

        site.serve("/wire.xml", rss(1, 2))
        published = clock.monotonic()
        answer = await http.post(ping, data={"feed": url}, headers={"Authorization": f"Bearer {SECRET}"})
        assert answer.status_code == 202 and answer.json() == {"accepted": [1]}
        arrived = await await_alert(tg, 2, within=10)
        assert arrived - published < 2.0
        assert [r.status for r in site.requests("/wire.xml")][-1] == 200
        assert site.requests("/wire.xml")[-1].header("if-none-match") is not None  # conditional

        # JSON, and a section slug for every feed of that section.
        site.serve("/wire.xml", rss(1, 2, 3))
        by_section = await http.post(ping, json={"feed": "world"}, headers={"Authorization": f"Bearer {SECRET}"})
        assert by_section.status_code == 202
        await await_alert(tg, 3, within=10)

        # Refusals: the secret first, so nobody learns which feeds exist without it.
        fetches = len(site.requests("/wire.xml"))
        assert (await http.post(ping, data={"feed": url})).status_code == 401
        wrong = await http.post(ping, data={"feed": url}, headers={"Authorization": "Bearer not-the-secret-at-all"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        assert (await http.post(ping, data={"feed": "https://elsewhere.example/rss"},
                                headers={"Authorization": "Bearer not-the-secret-at-all"})).status_code == 401
        unknown = await http.post(ping, data={"feed": "https://elsewhere.example/rss"},
                                  headers={"Authorization": f"Bearer {SECRET}"})
        assert unknown.status_code == 404
        assert (await http.post(ping, content=b"feed", headers={"Authorization": f"Bearer {SECRET}"})).status_code == 400
        await clock.run_for(5)
        assert len(site.requests("/wire.xml")) == fetches  # none of them fetched anything
        metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'newsbot_push_refused_total{via="ping",why="secret"} 3.0' in metrics
        assert 'newsbot_push_refused_total{via="ping",why="unknown"} 1.0' in metrics
        assert 'newsbot_pushes_total{via="ping"} 2.0' in metrics
    assert SECRET not in caplog.text
    assert "ping refused: missing secret" in caplog.text and "ping refused: wrong secret" in caplog.text


async def test_a_ping_flood_is_merged_into_one_fetch_a_second_and_refused_past_its_rate(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, site = sim_tg, sim_feeds
    port = free_port()
    site.serve("/wire.xml", rss(1))
    url = site.url_for("/wire.xml")
    settings = settings_for(tg, tmp_path, [url], port, NEWSBOT_PING_SECRET=SECRET, NEWSBOT_POLL_SECONDS="3600")
    async with running_bot(settings, clock=clock), httpx.AsyncClient() as http:
        await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds") == [(1,)], timeout=10, interval=0.1)
        before = len(site.requests("/wire.xml"))
        statuses = []
        for _ in range(40):  # forty pings at one instant
            answer = await http.post(f"http://127.0.0.1:{port}/ping", data={"feed": url},
                                     headers={"Authorization": f"Bearer {SECRET}"})
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.headers["retry-after"] == "1"
        assert statuses.count(202) == 20 and statuses.count(429) == 20  # the burst, then refused
        await clock.run_for(10)
        fetched = [r.at for r in site.requests("/wire.xml")[before:]]
        # Twenty accepted pings: one fetch at once, one more after a second for the pings
        # that came while it ran, and no more.
        assert 1 <= len(fetched) <= 2, fetched
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(fetched))


async def test_without_their_settings_the_ping_and_websub_paths_do_not_exist(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(sim_tg, tmp_path, [], port)
    async with running_bot(settings, clock=clock), httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        nothing = await http.get(f"{base}/nothing-here")
        ping = await http.post(f"{base}/ping", data={"feed": "world"}, headers={"Authorization": f"Bearer {SECRET}"})
        callback = await http.get(f"{base}/websub/abcdef?hub.mode=subscribe&hub.challenge=x")
        assert (ping.status_code, ping.content) == (callback.status_code, callback.content) == (404, nothing.content)


async def test_pinged_feed_is_polled_at_the_slow_end_until_a_poll_finds_what_no_ping_announced(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg, site = sim_tg, sim_feeds
    caplog.set_level(logging.INFO, logger="bot")
    port = free_port()
    site.serve("/wire.xml", rss(1))
    url = site.url_for("/wire.xml")
    # Adaptive polling (no NEWSBOT_POLL_SECONDS), at most every 15 minutes.
    settings = settings_for(tg, tmp_path, [url], port, NEWSBOT_PING_SECRET=SECRET, NEWSBOT_POLL_MAX="15m",
                            NEWSBOT_POLL_SECONDS="")
    async with running_bot(settings, clock=clock) as runtime, httpx.AsyncClient() as http:
        await follow_world(tg)
        await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds") == [(1,)], timeout=10, interval=0.1)
        services = runtime.services
        site.serve("/wire.xml", rss(1, 2))
        await http.post(f"http://127.0.0.1:{port}/ping", data={"feed": url}, headers={"Authorization": f"Bearer {SECRET}"})
        await await_alert(tg, 2, within=10)
        assert services.pacing.push_works(1)
        assert services.pacing.pace(1).interval == pytest.approx(900, rel=0.1)  # the slow end
        feeds_text = str((await ask(tg, ADMIN, "/feeds"))["text"])
        assert "push: ping" in feeds_text and "(adaptive)" in feeds_text

        # The CMS stops pinging: the safety-net poll finds the story, says so once, and the
        # feed goes back to its own pace.
        site.serve("/wire.xml", rss(1, 2, 3))
        published = clock.monotonic()
        arrived = await await_alert(tg, 3, within=1000)
        assert arrived - published <= 900
        assert "push missed a story feed_id=1" in caplog.text
        assert not services.pacing.push_works(1)
        assert services.pacing.pace(1).interval is not None and services.pacing.pace(1).interval < 900


# --- WebSub ---------------------------------------------------------------------------------


def test_signatures_of_every_algorithm_are_checked() -> None:
    import hashlib
    import hmac

    body = b"<rss/>"
    for name in ("sha1", "sha256", "sha384", "sha512"):
        good = hmac.new(b"s3cret", body, getattr(hashlib, name)).hexdigest()
        assert signature_ok("s3cret", f"{name}={good}", body)
        assert not signature_ok("s3cret", f"{name}={good}", body + b" ")
        assert not signature_ok("other", f"{name}={good}", body)
    assert not signature_ok("s3cret", None, body)
    assert not signature_ok("s3cret", "", body)
    assert not signature_ok("s3cret", "md5=" + hashlib.md5(body).hexdigest(), body)
    assert not signature_ok("s3cret", "sha256=", body)


async def websub_bot(
    tg: FakeTelegram, site: FeedServer, hub: Hub, tmp_path: Path, *, header: bool = False, **extra: str
) -> tuple[Any, int, str]:
    port = free_port()
    url = site.url_for("/wire.xml")
    if header:
        site.serve("/wire.xml", rss(1), headers={"Link": f'<{hub.url}>; rel="hub", <{url}>; rel="self"'})
    else:
        site.serve("/wire.xml", rss(1, hub=hub.url, self_url=url))
    settings = settings_for(tg, tmp_path, [url], port, NEWSBOT_PUBLIC_URL=f"http://127.0.0.1:{port}",
                            NEWSBOT_POLL_SECONDS="", **extra)
    return settings, port, url


async def test_websub_subscribe_verify_deliver_renew_and_lapse(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg, site = sim_tg, sim_feeds
    caplog.set_level(logging.INFO, logger="bot")
    async with Hub(grant=3600).here(clock) as hub:
        settings, port, url = await websub_bot(tg, site, hub, tmp_path)
        async with running_bot(settings, clock=clock) as runtime:
            services = runtime.services
            await follow_world(tg)
            # Subscribe and verify: one request with an unguessable callback and a secret.
            await tg.await_for(lambda: hub.active(url), timeout=30, interval=0.1)
            [request] = hub.requests
            assert request["hub.mode"] == "subscribe" and request["hub.topic"] == url
            callback = request["hub.callback"]
            assert callback.startswith(f"http://127.0.0.1:{port}/websub/") and len(callback.rsplit("/", 1)[1]) >= 32
            assert len(request["hub.secret"]) >= 32 and request["hub.lease_seconds"].isdigit()
            assert rows(settings.db_path, "SELECT state, lease_seconds FROM websub") == [("active", 3600)]
            assert services.pacing.push_works(1)

            # Deliver: the story alerts within seconds, without another request to the site.
            fetches = len(site.requests("/wire.xml"))
            published = clock.monotonic()
            assert await hub.publish(url, rss(1, 2, hub=hub.url, self_url=url)) == [202]
            arrived = await await_alert(tg, 2, within=10)
            assert arrived - published < 2.0
            assert len(site.requests("/wire.xml")) == fetches

            # A wrong or missing signature: 2xx (WebSub §8), the body ignored, counted.
            assert await hub.publish(url, rss(1, 2, 3), wrong=True) == [202]
            assert await hub.publish(url, rss(1, 2, 3), signature=None) == [202]
            assert await hub.publish(url, rss(1, 2, 3), signature="sha512", wrong=True) == [202]
            await clock.run_for(5)
            assert not any("Wire story 3" in a for a in alerts(tg))
            assert services.metrics.value("newsbot_push_refused_total", via="websub", why="signature") == 3
            assert "websub delivery refused feed_id=1: missing signature" in caplog.text
            assert "websub delivery refused feed_id=1: wrong signature" in caplog.text
            # Another algorithm, signed right, is taken.
            assert await hub.publish(url, rss(1, 2, 3), signature="sha1") == [202]
            await await_alert(tg, 3, within=10)

            # Safety-net polling at the slow end while the lease runs.
            assert services.pacing.pace(1).interval is not None and services.pacing.pace(1).interval <= 600

            # Renewal: before the hour's lease ends (with two NEWSBOT_POLL_MAX to spare), the
            # same callback asks again.
            await clock.run_for(3600 - 1200 + 60)
            assert len(hub.requests) == 2 and hub.requests[1]["hub.callback"] == callback
            assert hub.requests[1]["hub.secret"] == request["hub.secret"]
            assert [v for v in hub.verifications if v[2]] and len([v for v in hub.verifications if v[2]]) == 2
            expires = rows(settings.db_path, "SELECT expires_at FROM websub")[0][0]
            assert expires > clock.time() + 3000

            # The hub stops verifying: the lease lapses with one log line, polling takes over.
            hub.verify = False
            await clock.run_for(3600 + 60)
            assert caplog.text.count("websub lease lapsed feed_id=1") == 1
            assert rows(settings.db_path, "SELECT state FROM websub") == [("lapsed",)]
            assert not services.pacing.push_works(1)
            feeds_text = str((await ask(tg, ADMIN, "/feeds"))["text"])
            assert "push: none (WebSub lapsed" in feeds_text
    for record in caplog.records:
        assert request["hub.secret"] not in record.getMessage()
        assert callback.rsplit("/", 1)[1] not in record.getMessage()


async def test_websub_callbacks_tell_strangers_nothing(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    async with Hub().here(clock) as hub:
        settings, port, url = await websub_bot(sim_tg, sim_feeds, hub, tmp_path, header=True)
        async with running_bot(settings, clock=clock), httpx.AsyncClient() as http:
            await sim_tg.await_for(lambda: hub.active(url), timeout=30, interval=0.1)
            callback = hub.requests[0]["hub.callback"]
            base = f"http://127.0.0.1:{port}"
            nothing = await http.get(f"{base}/nothing")
            probes = [
                await http.get(f"{base}/websub/{'x' * 32}?hub.mode=subscribe&hub.topic={url}&hub.challenge=abc"),
                await http.post(f"{base}/websub/{'x' * 32}", content=b"<rss/>", headers={"X-Hub-Signature": "sha256=00"}),
                await http.get(callback, params={"hub.mode": "subscribe", "hub.topic": "https://other.example/",
                                                 "hub.challenge": "abc"}),
                await http.get(callback, params={"hub.mode": "unsubscribe", "hub.topic": url, "hub.challenge": "abc"}),
            ]
            for probe in probes:
                assert (probe.status_code, probe.content) == (404, nothing.content)
            # The hub found through the Link header answers its own verification.
            good = await http.get(callback, params={"hub.mode": "subscribe", "hub.topic": url, "hub.challenge": "c1"})
            assert (good.status_code, good.text) == (200, "c1")


async def test_a_hub_that_never_verifies_or_refuses_falls_back_to_polling_with_one_line(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    async with Hub(verify=False).here(clock) as hub:
        settings, _, _ = await websub_bot(sim_tg, sim_feeds, hub, tmp_path)
        async with running_bot(settings, clock=clock) as runtime:
            await sim_tg.await_for(lambda: hub.requests, timeout=30, interval=0.1)
            await clock.run_for(VERIFY_WAIT + 700)
            assert caplog.text.count("websub hub never verified feed_id=1") == 1
            assert rows(settings.db_path, "SELECT state, failures FROM websub") == [("failed", 1)]
            assert not runtime.services.pacing.push_works(1)
            # Tried again an hour later, not at every poll.
            assert len(hub.requests) == 1
            hub.refuse = True
            await clock.run_for(3600)
            assert len(hub.requests) == 2
            assert "websub subscription refused feed_id=1" in caplog.text and "HTTP 400" in caplog.text


async def test_a_hub_inside_the_network_is_refused_by_default(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub's URL comes from the feed: without NEWSBOT_FEED_ALLOW_PRIVATE a loopback hub
    gets no request. (The feed itself is on the public side here: the hub is asked about
    directly after the poll that named it.)"""
    from bot.context import open_services
    from bot.stages import websub as websub_stage
    from storage import feeds

    caplog.set_level(logging.INFO, logger="bot")
    async with Hub().here(clock) as hub:
        settings = bot_settings(
            sim_tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, ["https://wire.example/rss"])),
            NEWSBOT_HTTP_PORT=str(free_port()), NEWSBOT_PUBLIC_URL="https://news.example/newsbot",
            NEWSBOT_FEED_ALLOW_PRIVATE="0",
        )
        services = await open_services(settings, clock=clock)
        try:
            [feed] = await feeds.list_feeds(services.db)
            await websub_stage.maintain(services, feed, hub.url, "https://wire.example/rss")
        finally:
            await services.close()
    assert hub.requests == []
    assert rows(settings.db_path, "SELECT state FROM websub") == [("failed",)]
    assert "NEWSBOT_FEED_ALLOW_PRIVATE=1 allows hubs inside the network" in caplog.text
