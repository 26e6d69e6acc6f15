"""Every feed on its own time, on simulated time: feeds are served over HTTP on the test's own
loop (the loopback feed server's `start_here`), the bot's schedule runs as `newsbot run`
starts it (`start_schedule`), and a real SQLite file records what the newsroom and readers get.

An hour of back-off takes milliseconds; the times asserted are simulated seconds, exact
up to the work done in them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot import newsroom
from bot.config import load_settings
from bot.context import Services, load_matcher_index, open_services
from bot.health import metrics_text
from bot.pipeline.schedule import backoff_seconds
from bot.stages.poll import start_schedule
from storage import chats, feeds, subscriptions
from tests.fakes.feed_server import FeedServer
from tests.harness import write_feeds_file
from tests.simtime import SimClock

READER = 42
POLL = 60.0
HOUR = 3600.0


def item(n: int, published: float) -> str:
    return (
        f"<item><title>Story {n} about harbour{n}</title><link>https://news.example/article/{n}</link>"
        f'<guid isPermaLink="false">s-{n}</guid><category domain="section">World</category>'
        f"<pubDate>{format_datetime(datetime.fromtimestamp(published, UTC))}</pubDate>"
        f"<description>Text {n}</description></item>"
    )


def rss(items: Sequence[str], *, padding: int = 0) -> bytes:
    filler = f"<description>{'x' * padding}</description>" if padding else ""
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Test feed</title>{filler}'
        + "".join(items) + "</channel></rss>"
    ).encode()


@pytest.fixture
def server(sim_feeds: FeedServer) -> FeedServer:
    """The loopback feed server on the test's loop: its delays and drips are timers on the
    simulated clock."""
    return sim_feeds


async def open_newsroom(tmp_path: Path, clock: SimClock, urls: list[str], **extra: str) -> Services:
    """The bot's services on the simulated clock, a reader following World; not polling yet."""
    env = {
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, urls)),
        "NEWSBOT_DB": str(tmp_path / "newsbot.db"),
        "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
        "NEWSBOT_POLL_SECONDS": str(POLL),
        "NEWSBOT_FETCH_TIMEOUT": "20",
        **extra,
    }
    services = await open_services(load_settings(env, env_file=None), clock=clock)
    await chats.join(services.db, READER, "private", now=clock.time())
    await subscriptions.add_subscription(services.db, READER, "section", "world", "World", limit=50, now=clock.time())
    await load_matcher_index(services.db, services.matcher)
    return services


async def start_polling(services: Services) -> None:
    start_schedule(services, await feeds.list_feeds(services.db))


async def alerts(services: Services) -> dict[str, float]:
    """Article id → when its alert was queued (wall time)."""
    rows = await services.db.fetchall(
        "SELECT article_id, created_at FROM outbox WHERE chat_id = ? AND kind = 'alert'", (READER,)
    )
    return {r[0]: r[1] for r in rows}


async def wait_for_alert(services: Services, clock: SimClock, article_id: str, *, within: float) -> float:
    """When the alert was queued (wall time), waiting at most `within` simulated seconds."""
    deadline = clock.monotonic() + within
    while article_id not in (found := await alerts(services)):
        assert clock.monotonic() < deadline, f"no alert for {article_id} within {within:g} s"
        await clock.run_for(0.5)
    return found[article_id]


def wall(clock: SimClock, monotonic: float) -> float:
    """The wall time at a moment of the monotonic clock (the server logs monotonic times)."""
    return clock.time() - (clock.monotonic() - monotonic)


def gaps(times: Sequence[float]) -> list[float]:
    return [round(b - a) for a, b in itertools.pairwise(times)]


# --- the back-off rule ---------------------------------------------------------------------


def test_backoff_doubles_from_the_poll_interval_to_the_cap() -> None:
    assert backoff_seconds(0, 60, 600) == 0
    assert [backoff_seconds(n, 60, 600) for n in range(1, 8)] == [60, 120, 240, 480, 600, 600, 600]
    assert backoff_seconds(5000, 60, 600) == 600  # thousands of failures: no overflow
    # A cap below the interval never makes a failing feed polled more often than a healthy one.
    assert backoff_seconds(3, 1800, 600) == 1800


# --- a failing feed: back-off, recovery, what the operator sees ----------------------------


async def test_a_failing_feed_is_tried_within_the_cap_and_recovers_at_its_next_try(
    tmp_path: Path, clock: SimClock, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two hours of HTTP 500: tries 60, 120, 240, 480 s apart, then every 600 s
    (NEWSBOT_FEED_BACKOFF_MAX's default; it was 6 hours). The log says once that the feed
    fails and once that it recovered; /metrics says which feed fails meanwhile. The story
    published as it recovers is alerted at the next try, within the cap."""
    caplog.set_level(logging.DEBUG, logger="bot.stages.poll")
    services = await open_newsroom(tmp_path, clock, [server.url_for("/feed.xml")])
    try:
        server.serve("/feed.xml", rss([item(0, clock.time() - HOUR)]))
        await start_polling(services)
        await clock.run_for(1)  # primed: its stories are history
        server.status("/feed.xml", 500)
        await clock.run_for(2 * HOUR)
        tries = [r.at for r in server.requests("/feed.xml") if r.status == 500]
        assert gaps(tries) == [60, 120, 240, 480] + [600] * (len(tries) - 5)
        assert len(tries) >= 12
        failing = await metrics_text(services, clock.time())
        assert b'newsbot_feed_failing{feed="1"} 1.0' in failing
        assert f'newsbot_feed_errors{{feed="1"}} {len(tries)}.0'.encode() in failing

        server.clear("/feed.xml")
        recovered_at = clock.time()
        server.serve("/feed.xml", rss([item(0, recovered_at - HOUR), item(1, recovered_at)]))
        queued_at = await wait_for_alert(services, clock, "s-1", within=700)
        assert queued_at - recovered_at <= 600 + 1
        healthy = await metrics_text(services, clock.time())
        assert b'newsbot_feed_failing{feed="1"} 0.0' in healthy
        assert b'newsbot_feed_errors{feed="1"} 0.0' in healthy
    finally:
        await services.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    failing_lines = [m for level, m in said if m.startswith("feed failing")]
    recovered_lines = [m for level, m in said if m.startswith("feed recovered")]
    assert len(failing_lines) == 1 and "HTTP 500" in failing_lines[0]
    assert len(recovered_lines) == 1 and f"errors={len(tries)}" in recovered_lines[0]
    assert not [m for _, m in said if "still failing" in m]  # one line each, not one per try


class ServerTime:
    """The server's clocks: simulated, its wall clock `ahead` seconds ahead of the bot's."""

    def __init__(self, clock: SimClock, ahead: float) -> None:
        self._clock = clock
        self._ahead = ahead

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def time(self) -> float:
        return self._clock.time() + self._ahead


async def test_retry_after_is_honoured_beyond_the_cap(tmp_path: Path, clock: SimClock) -> None:
    """A 429 asking for two hours is left alone for two hours (more than the 10-minute
    cap); a Retry-After date is read against the response's own Date (the server's clock
    is 5000 s ahead of ours); one asking for less than the back-off gets the back-off."""
    ahead = 5000.0
    async with FeedServer().here(ServerTime(clock, ahead)) as server:
        paths = ["/limited.xml", "/dated.xml", "/soon.xml"]
        services = await open_newsroom(tmp_path, clock, [server.url_for(p) for p in paths])
        try:
            for path in paths:
                server.serve(path, rss([item(0, clock.time() - HOUR)]))
            await start_polling(services)
            await clock.run_for(1)
            retry_at = clock.time() + ahead + POLL + 1500  # as the server's clock reads
            server.status("/limited.xml", 429, headers={"Retry-After": "7200"})
            server.status("/dated.xml", 503, headers={"Retry-After": format_datetime(datetime.fromtimestamp(retry_at, UTC), usegmt=True)})
            server.status("/soon.xml", 503, headers={"Retry-After": "5"})
            await clock.run_for(5 * HOUR)
        finally:
            await services.close()
        tries = {p: [r.at for r in server.requests(p) if r.status != 200] for p in paths}
    assert gaps(tries["/limited.xml"]) == [7200, 7200]
    first = tries["/dated.xml"][0]
    expected = retry_at - (wall(clock, first) + ahead)  # from the Date it was sent with
    assert abs(gaps(tries["/dated.xml"])[0] - expected) <= 1
    assert gaps(tries["/soon.xml"])[:5] == [60, 120, 240, 480, 600]


# --- one slow feed delays no other ----------------------------------------------------------


async def test_hanging_trickling_and_huge_feeds_do_not_delay_another_feeds_alerts(
    tmp_path: Path, clock: SimClock, server: FeedServer
) -> None:
    """One feed never answers, one drips its body a byte a second, one sends 1 MB without
    validators every time. Meanwhile the fast feed is fetched when it is due, as if alone,
    and each of its new stories is alerted within a second of the fetch that found it.
    (Before, a poll round waited for its slowest feed: a due feed waited for the round.)"""
    paths = ["/fast.xml", "/hang.xml", "/drip.xml", "/big.xml"]
    services = await open_newsroom(tmp_path, clock, [server.url_for(p) for p in paths])
    try:
        start = clock.time()
        for path in paths:
            server.serve(path, rss([item(0, start - HOUR)]))
        # Without validators: fetched and parsed whole every time.
        server.serve("/big.xml", rss([item(90, start - HOUR)], padding=1_000_000), etag=False, last_modified=False)
        server.serve("/drip.xml", rss([item(80, start - HOUR)]), etag=False, last_modified=False)
        await start_polling(services)
        await clock.run_for(1)
        server.slow("/hang.xml", 10 * HOUR)
        server.slow("/drip.xml", 1.0, trickle_bytes=1)
        late: list[float] = []  # a fetch of the fast feed after the time it was due
        found: list[float] = []  # its alert after the fetch that found the story
        due: float | None = None
        for n in range(1, 21):
            server.serve("/fast.xml", rss([item(0, start - HOUR), *(item(k, clock.time()) for k in range(1, n + 1))]))
            queued_at = await wait_for_alert(services, clock, f"s-{n}", within=POLL + 1)
            fetched_at = wall(clock, [r for r in server.requests("/fast.xml") if r.status == 200][-1].at)
            found.append(queued_at - fetched_at)
            if due is not None:
                late.append(fetched_at - due)
            fast = await feeds.get_feed(services.db, 1)
            assert fast is not None
            due = fast.next_poll_at
        assert max(late) < 1.0 and max(found) < 1.0, (late, found)
        # The slow feeds were tried meanwhile, and failed on their fetch budget.
        assert len(server.requests("/big.xml")) >= 15
        for feed_id in (2, 3):
            slow = await feeds.get_feed(services.db, feed_id)
            assert slow is not None and slow.error_count >= 1 and "timed out" in (slow.last_error or "")
    finally:
        await services.close()


async def test_waiting_for_a_fetch_slot_counts_against_the_fetch_budget(
    tmp_path: Path, clock: SimClock, server: FeedServer
) -> None:
    """Eight feeds drip their bodies and hold every fetch slot for their whole budget
    (60 s): the ninth waits for a slot within its own budget, fails when it is spent, and
    is fetched once a slot is free."""
    drips = [f"/drip{n}.xml" for n in range(8)]
    services = await open_newsroom(tmp_path, clock, [server.url_for(p) for p in [*drips, "/fast.xml"]])
    try:
        for path in [*drips, "/fast.xml"]:
            server.serve(path, rss([item(0, clock.time() - HOUR)]), etag=False, last_modified=False)
            if path != "/fast.xml":
                server.slow(path, 1.0, trickle_bytes=1)
        started = clock.time()
        await start_polling(services)
        await clock.run_for(61)
        fast = await feeds.get_feed(services.db, 9)
        assert fast is not None and fast.error_count == 1
        assert fast.last_error == "fetch: no free fetch slot within 60 s (other feeds are slow)"
        assert fast.failing_since is not None and fast.failing_since - started <= 60 + 1
        assert server.requests("/fast.xml") == []
        await clock.run_for(POLL)
        fast = await feeds.get_feed(services.db, 9)
        assert fast is not None and fast.error_count == 0 and fast.primed
    finally:
        await services.close()


async def test_after_a_restart_a_feed_backing_off_is_tried_within_the_cap(
    tmp_path: Path, clock: SimClock, server: FeedServer
) -> None:
    """A next try stored 6 hours ahead (the old rule's cap, or a Retry-After) does not keep
    the feed quiet for 6 hours after a restart: it is tried within NEWSBOT_FEED_BACKOFF_MAX."""
    services = await open_newsroom(tmp_path, clock, [server.url_for("/feed.xml")])
    try:
        server.serve("/feed.xml", rss([item(0, clock.time() - HOUR)]))
        await feeds.record_failure(services.db, 1, "fetch: HTTP 500", now=clock.time(), next_poll_at=clock.time() + 6 * HOUR)
        started = clock.monotonic()
        await start_polling(services)
        await clock.run_for(601)
        [fetch] = server.requests("/feed.xml")
        assert fetch.at - started == pytest.approx(600, abs=1)
    finally:
        await services.close()


async def test_a_feed_added_or_removed_joins_or_leaves_the_schedule_at_once(
    tmp_path: Path, clock: SimClock, server: FeedServer
) -> None:
    services = await open_newsroom(tmp_path, clock, [server.url_for("/a.xml")])
    try:
        server.serve("/a.xml", rss([item(0, clock.time() - HOUR)]))
        server.serve("/b.xml", rss([item(50, clock.time() - HOUR)]))
        await start_polling(services)
        await clock.run_for(1)
        assert services.feed_schedule.scheduled() == [1]
        added = (await newsroom.add_checked_feed(services, 9001, server.url_for("/b.xml"), "world")).feed
        await clock.run_for(1)
        assert len(server.requests("/b.xml")) == 2  # the check, then its first (priming) poll
        await newsroom.remove_feed(services, 9001, 1)
        before = len(server.requests("/a.xml"))
        await clock.run_for(HOUR)
        assert len(server.requests("/a.xml")) == before
        assert len(server.requests("/b.xml")) > 50
        assert services.feed_schedule.scheduled() == [added.id]
    finally:
        await services.close()


