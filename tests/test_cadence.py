"""Adaptive polling: each feed's interval follows its publishing, within NEWSBOT_POLL_MIN and
NEWSBOT_POLL_MAX, honours Cache-Control max-age and Retry-After, and NEWSBOT_POLL_SECONDS
keeps a fixed interval. The rule on its own, then feeds polled by a running bot on
simulated time, counting the requests the loopback site sees."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.pipeline.cadence import REQUEST_WORTH, Pacing, cadence_interval, max_age
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock

ADMIN = 9001
HOUR = 3600.0


def rule(gap: float) -> float:
    return math.sqrt(2 * REQUEST_WORTH * gap)


def test_the_interval_is_the_square_root_of_the_expected_gap() -> None:
    # Just after a story, the feed's own pace; the longer it is quiet, the rarer.
    assert cadence_interval([3600.0] * 5, 0.0, default_gap=3600) == pytest.approx(rule(3600)) == pytest.approx(32.9, abs=0.1)
    assert cadence_interval([600.0] * 5, 10.0, default_gap=3600) == pytest.approx(rule(600))
    assert cadence_interval([600.0] * 5, 4 * HOUR, default_gap=3600) == pytest.approx(rule(4 * HOUR))
    # A night's gap does not drown a busy feed's pace (a geometric mean).
    assert cadence_interval([60.0, 60.0, 60.0, 60.0, 8 * HOUR], 30.0, default_gap=3600) < 15
    assert cadence_interval([], None, default_gap=3600) == pytest.approx(rule(3600))


def test_max_age_less_age() -> None:
    assert max_age({"cache-control": "public, max-age=300"}) == 300
    assert max_age({"cache-control": "max-age=300", "age": "100"}) == 200
    assert max_age({"cache-control": "no-cache"}) is None
    assert max_age({}) is None


def test_poll_settings() -> None:
    adaptive = load_settings({}, env_file=None)
    assert (adaptive.poll_fixed, adaptive.poll_min, adaptive.poll_max) == (False, 10, 600)
    fixed = load_settings({"NEWSBOT_POLL_SECONDS": "60", "NEWSBOT_POLL_MIN": "5s", "NEWSBOT_POLL_MAX": "1h"}, env_file=None)
    assert (fixed.poll_fixed, fixed.poll_seconds, fixed.poll_min, fixed.poll_max) == (True, 60, 5, 3600)
    with pytest.raises(ConfigError, match="NEWSBOT_POLL_MAX: must not be below NEWSBOT_POLL_MIN"):
        load_settings({"NEWSBOT_POLL_MIN": "10m", "NEWSBOT_POLL_MAX": "1m"}, env_file=None)
    with pytest.raises(ConfigError, match="NEWSBOT_PUBLIC_URL"):
        load_settings({"NEWSBOT_PUBLIC_URL": "news.example", "NEWSBOT_HTTP_PORT": "8080"}, env_file=None)
    with pytest.raises(ConfigError, match="NEWSBOT_HTTP_PORT: required with NEWSBOT_PUBLIC_URL"):
        load_settings({"NEWSBOT_PUBLIC_URL": "https://news.example/bot"}, env_file=None)
    with pytest.raises(ConfigError, match="NEWSBOT_PING_SECRET: use 16-256"):
        load_settings({"NEWSBOT_PING_SECRET": "short", "NEWSBOT_HTTP_PORT": "8080"}, env_file=None)
    secret = "a-long-enough-ping-secret"
    settings = load_settings({"NEWSBOT_PING_SECRET": secret, "NEWSBOT_HTTP_PORT": "8080",
                              "NEWSBOT_PUBLIC_URL": "https://news.example/bot/"}, env_file=None)
    assert settings.public_url == "https://news.example/bot" and secret not in repr(settings)


class _Clock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_800_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall


def test_pacing_follows_the_feed_and_its_push() -> None:
    clock = _Clock()
    pacing = Pacing(load_settings({}, env_file=None), clock)
    assert pacing.interval(1, jitter=False) == pytest.approx(60)  # nothing known: the usual minute
    pacing.saw(1, [clock.wall - 600 * n for n in range(6)])  # every ten minutes, the last just now
    assert pacing.interval(1, jitter=False) == pytest.approx(max(10, rule(600)))
    clock.wall += 6 * HOUR  # quiet since
    assert pacing.interval(1, jitter=False) == pytest.approx(rule(6 * HOUR))
    pacing.saw(2, [clock.wall - 10 * n for n in range(6)])  # a burst
    assert pacing.interval(2, jitter=False) == 10  # NEWSBOT_POLL_MIN
    assert pacing.interval(2, jitter=False, fresh_for=300) == 300  # max-age
    assert pacing.interval(2, jitter=False, fresh_for=99_999) == 600  # … never past POLL_MAX
    assert pacing.interval(2, jitter=False, retry_after=7200) == 7200  # Retry-After, up to a day
    pacing.pinged(2)
    assert pacing.interval(2, jitter=False) == 600  # pushed: the slow end
    pacing.polled(2, pushed=False, new=1)  # a poll found what no ping announced
    assert pacing.interval(2, jitter=False) == 10
    pacing.pinged(2)
    assert pacing.push_works(2)
    clock.mono += 25 * HOUR  # no ping for a day: pings are not trusted any more
    assert not pacing.push_works(2)
    for _ in range(5):
        pacing.request(3)
    clock.mono += HOUR - 1
    pacing.request(3)
    assert pacing.requests_last_hour(3) == 6
    clock.mono += 2
    assert pacing.requests_last_hour(3) == 1


def rss(stories: list[tuple[int, float]]) -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>https://news.example/{n}</link><guid>s-{n}</guid>"
        f"<pubDate>{format_datetime(datetime.fromtimestamp(at, UTC))}</pubDate></item>" for n, at in stories
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()


async def test_a_busy_feed_is_polled_often_a_quiet_one_rarely_and_servers_are_heard(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, site = sim_tg, sim_feeds
    now = clock.time()
    site.serve("/busy.xml", rss([(n, now - 120 * n) for n in range(6)]))  # every two minutes
    site.serve("/quiet.xml", rss([(n, now - 30 * 86400 * (n + 1)) for n in range(6)]))  # monthly
    site.serve("/cached.xml", rss([(n, now - 120 * n) for n in range(6)]), headers={"Cache-Control": "max-age=300"})
    site.serve("/later.xml", rss([(n, now - 120 * n) for n in range(6)]), headers={"Retry-After": "1800"})
    urls = [site.url_for(p) for p in ("/busy.xml", "/quiet.xml", "/cached.xml", "/later.xml")]
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, urls)), NEWSBOT_POLL_SECONDS="")
    async with running_bot(settings, clock=clock):
        await clock.run_for(HOUR)
        counts = {p: len(site.requests(p)) for p in ("/busy.xml", "/quiet.xml", "/cached.xml", "/later.xml")}
        # Busy: every NEWSBOT_POLL_MIN at first, slower as it stays quiet; quiet: its
        # √(2w · a month) > 10 min, so every NEWSBOT_POLL_MAX.
        assert counts["/busy.xml"] > 40, counts
        assert 5 <= counts["/quiet.xml"] <= 7, counts
        assert counts["/cached.xml"] <= 13, counts  # not sooner than max-age = 5 min
        assert counts["/later.xml"] <= 3, counts  # not sooner than Retry-After = 30 min
        text = str((await ask(tg, ADMIN, "/feeds"))["text"])
        quiet = text.split("#2 ", 1)[1].split("#3 ", 1)[0]
        assert "min" in quiet and "(adaptive) · push: none ·" in quiet and "requests in the last hour" in quiet


async def test_poll_seconds_keeps_a_fixed_interval(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, site = sim_tg, sim_feeds
    now = clock.time()
    site.serve("/busy.xml", rss([(n, now - 60 * n) for n in range(6)]))
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [site.url_for("/busy.xml")])),
                            NEWSBOT_POLL_SECONDS="120")
    async with running_bot(settings, clock=clock):
        await clock.run_for(HOUR)
        times = [r.at for r in site.requests("/busy.xml")]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(108 - 1 <= g <= 120 + 1 for g in gaps), gaps  # 120 s less at most 10 % jitter
        assert "every 2 min (NEWSBOT_POLL_SECONDS)" in str((await ask(tg, ADMIN, "/feeds"))["text"])


async def test_health_waits_for_the_longest_interval_before_calling_polls_stale(tmp_path: Path) -> None:
    """Under adaptive polling a quiet or pushed feed waits NEWSBOT_POLL_MAX between polls:
    /healthz must not call that stale after three minutes."""
    from bot.context import open_services
    from bot.health import stale_after

    for env, expected in (({"NEWSBOT_POLL_SECONDS": "60"}, 240), ({"NEWSBOT_POLL_MAX": "15m"}, 3 * 900 + 60)):
        services = await open_services(load_settings({"NEWSBOT_DB": str(tmp_path / "h.db"), **env}, env_file=None))
        try:
            assert stale_after(services) == expected
        finally:
            await services.close()
