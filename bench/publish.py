"""Publish → first alert, from the reader's side: fixed polling, adaptive polling, the
publish ping and WebSub, over one simulated day of the same stories, and what each costs
the site in requests.

    python -m bench.publish [--feeds 100] [--hours 24] [--fixed 60] [--seed 7]

A loopback site (tests/fakes/feed_server.py) serves `--feeds` RSS feeds, each listing its
ten latest stories. Over `--hours` simulated hours stories appear at random: each feed has
its own rate (a tenth of the feeds busy, about 40 stories a day; three tenths 8 a day; the
rest 2 a day), stronger by day than by night, and a story brings a follow-up within minutes
a third of the time. Every feed is its own section with one reader following it.
newsbot runs as `newsbot run` runs it (bot.runner, default settings unless said), with the
fake Bot API on the same loop (tests/fakes/telegram_api.py), on simulated time
(tests/simtime.py: the clock jumps whenever everything waits, so a day takes as long as the
work done in it; CPU time is not simulated time, so a figure here is the waiting the design
imposes, not this machine's speed).

The same day runs four times, from the same seed:

* fixed — NEWSBOT_POLL_SECONDS = `--fixed` (the baseline);
* adaptive — the defaults (NEWSBOT_POLL_MIN 10 s … NEWSBOT_POLL_MAX 10 min);
* ping — the defaults and NEWSBOT_PING_SECRET; the site's CMS POSTs /ping for the feed on
  every story;
* websub — the defaults and NEWSBOT_PUBLIC_URL; every feed declares a hub
  (tests/fakes/websub_hub.py); on every story the site pings the hub, which fetches the
  feed (a request to the site, counted) and delivers it, signed, to newsbot.

For the pushed modes, whose alerts take no simulated time at all, each story's latency is
its simulated wait plus the time this machine really took from the push to Telegram's
answer (the loopback requests, parsing, SQLite, the send), measured per story; the polled
modes' latencies are their simulated waits (a poll's own processing, milliseconds, is left
out of both polled rows alike).

Figures: p50 / p95 of (first alert accepted by Telegram − story appearing on the site),
and the site's requests per hour (every request the site answered, the hub's included),
each with its ratio to fixed polling; stories never alerted are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import random
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import Row, bot_settings, figure, percentile, print_rows
from bot.runner import running
from storage import chats, subscriptions
from storage.db import Database
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.websub_hub import Hub
from tests.simtime import SimClock, SimLoop

MODES = ("fixed", "adaptive", "ping", "websub")
SECRET = "bench-ping-secret-0123456789"
DAY_START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC).timestamp()
LISTED = 10
TITLE = re.compile(r"F(\d+) story (\d+)\b")


@dataclass
class Story:
    feed: int
    n: int
    at: float  # seconds after the day starts
    published: float = 0.0  # wall time (pubDate)


@dataclass
class Day:
    feeds: int
    hours: float
    stories: list[Story] = field(default_factory=list)
    history: dict[int, list[Story]] = field(default_factory=dict)  # stories listed before the day


def diurnal(hour: float) -> float:
    """Relative publishing intensity by hour of day: quiet at night, busiest by day."""
    return 0.08 + 0.92 * max(0.0, math.sin(math.pi * (hour - 5.0) / 18.0)) ** 1.5 if 5 <= hour <= 23 else 0.08


def make_day(feeds: int, hours: float, seed: int) -> Day:
    rng = random.Random(seed)
    day = Day(feeds, hours)
    mean = sum(diurnal(h / 10) for h in range(240)) / 240
    for feed in range(feeds):
        roll = rng.random()
        per_day = 40.0 if roll < 0.1 else 8.0 if roll < 0.4 else 2.0
        base = per_day / 86400 / mean / 1.5  # follow-ups add about half as many again
        t, own = 0.0, []
        while True:
            # Thinning: a Poisson process of the highest intensity, kept by diurnal(t).
            t += rng.expovariate(base)
            if t >= hours * 3600:
                break
            if rng.random() > diurnal((t / 3600) % 24):
                continue
            own.append(t)
            if rng.random() < 1 / 3:
                follow = t + rng.expovariate(1 / 300)
                if follow < hours * 3600:
                    own.append(follow)
        for n, at in enumerate(sorted(own), start=1):
            day.stories.append(Story(feed, n, at, DAY_START + at))
        # Yesterday's last stories, as the feed lists them when the day starts.
        day.history[feed] = [
            Story(feed, -k, 0.0, DAY_START - k * 86400 / max(1.0, per_day) * rng.uniform(0.5, 1.5))
            for k in range(LISTED, 0, -1)
        ]
    day.stories.sort(key=lambda s: s.at)
    return day


def rss(feed: int, listed: list[Story], *, hub: str | None, self_url: str) -> bytes:
    links = f'<atom:link rel="hub" href="{hub}"/><atom:link rel="self" href="{self_url}"/>' if hub else ""
    items = "".join(
        f"<item><title>F{s.feed} story {s.n}</title><link>https://site.example/f{feed}/{s.n}</link>"
        f"<guid>f{feed}-{s.n}</guid><pubDate>{format_datetime(datetime.fromtimestamp(s.published, UTC))}</pubDate>"
        "</item>"
        for s in reversed(listed[-LISTED:])
    )
    return (f'<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
            f"<title>Feed {feed}</title>{links}{items}</channel></rss>").encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed_readers(db_path: Path, feeds: int, now: float) -> None:
    db = await Database.open(db_path)
    try:
        for feed in range(feeds):
            await chats.join(db, 10_000 + feed, "private", now=now)
            await subscriptions.add_subscription(db, 10_000 + feed, "section", f"f{feed}", f"F{feed}", limit=50, now=now)
    finally:
        await db.close()


async def run_mode(mode: str, day: Day, work: Path, fixed: float) -> dict[str, Any]:
    clock = SimClock(start=DAY_START - 600)
    site_listed = {f: list(day.history[f]) for f in range(day.feeds)}
    async with FakeTelegram().here(clock) as tg, FeedServer().here(clock) as site, Hub(grant=864000).here(clock) as hub:
        hub_url = hub.url if mode == "websub" else None
        for feed in range(day.feeds):
            site.serve(f"/f{feed}.xml", rss(feed, site_listed[feed], hub=hub_url, self_url=site.url_for(f"/f{feed}.xml")))
        feeds_file = work / f"{mode}.toml"
        feeds_file.write_text(
            "[sections]\n" + "".join(f'f{f} = "F{f}"\n' for f in range(day.feeds))
            + "".join(f'\n[[feeds]]\nurl = "{site.url_for(f"/f{f}.xml")}"\nsection = "f{f}"\n' for f in range(day.feeds))
        )
        db_path = work / f"{mode}.db"
        await seed_readers(db_path, day.feeds, clock.time())
        port = free_port()
        extra = {"NEWSBOT_FEEDS": str(feeds_file), "NEWSBOT_HTTP_PORT": str(port)}
        if mode == "fixed":
            extra["NEWSBOT_POLL_SECONDS"] = f"{fixed:g}"
        elif mode == "ping":
            extra["NEWSBOT_PING_SECRET"] = SECRET
        elif mode == "websub":
            extra["NEWSBOT_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        settings = bot_settings(tg.api_url, tg.token, db_path, **extra)
        appeared: dict[tuple[int, int], float] = {}
        first: dict[tuple[int, int], float] = {}
        processing: dict[tuple[int, int], float] = {}
        scanned = 0

        def alerted(key: tuple[int, int]) -> bool:
            nonlocal scanned
            calls = tg.calls("sendMessage")
            for call in calls[scanned:]:
                if call.ok:
                    for match in TITLE.finditer(str(call.params.get("text", ""))):
                        first.setdefault((int(match.group(1)), int(match.group(2))), call.monotonic)
            scanned = len(calls)
            return key in first

        async with running(settings, clock=clock), httpx.AsyncClient(timeout=30) as http:
            await clock.run_until(DAY_START)  # every feed primed, WebSub subscribed by then
            start_mono = clock.monotonic()
            site.clear_requests()
            for story in day.stories:
                await clock.run_until(DAY_START + story.at)
                site_listed[story.feed].append(story)
                path = f"/f{story.feed}.xml"
                site.serve(path, rss(story.feed, site_listed[story.feed], hub=hub_url, self_url=site.url_for(path)))
                key = (story.feed, story.n)
                appeared[key] = clock.monotonic()
                if mode not in ("ping", "websub"):
                    continue
                # Simulated time stands still while the machine works: the processing of a
                # push (HTTP on loopback, parsing, SQLite, the send) is timed for real.
                stopwatch = time.perf_counter()
                if mode == "ping":
                    await http.post(f"http://127.0.0.1:{port}/ping", data={"feed": site.url_for(path)},
                                    headers={"Authorization": f"Bearer {SECRET}"})
                else:
                    await hub.fetch_and_publish(site.url_for(path))
                with contextlib.suppress(TimeoutError):
                    await tg.await_for(lambda key=key: alerted(key), timeout=120)  # type: ignore[misc]
                    processing[key] = time.perf_counter() - stopwatch
            await clock.run_until(DAY_START + day.hours * 3600 + 900)  # the last stories' alerts
            requests = [r for r in site.requests() if r.at <= start_mono + day.hours * 3600]
        alerted((-1, -1))
        # Pushed stories: the simulated waits plus the processing measured for real.
        latencies = sorted(first[k] - t + processing.get(k, 0.0) for k, t in appeared.items() if k in first)
        waits = sorted(first[k] - t for k, t in appeared.items() if k in first)
        work = sorted(processing.values())
    return {
        "mode": mode,
        "stories": len(appeared),
        "alerted": len(latencies),
        "missed": len(appeared) - len(latencies),
        "p50": percentile(latencies, 50) if latencies else math.inf,
        "p95": percentile(latencies, 95) if latencies else math.inf,
        "requests_per_hour": len(requests) / day.hours,
        "simulated_p50": percentile(waits, 50) if waits else math.inf,
        "processing_p50": percentile(work, 50) if work else None,
        "processing_p95": percentile(work, 95) if work else None,
        "subscriptions_verified": sum(1 for v in hub.verifications if v[2]),
    }


async def bench(args: argparse.Namespace) -> list[Row]:
    day = make_day(args.feeds, args.hours, args.seed)
    work = Path(tempfile.mkdtemp(prefix="newsbot-publish-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for mode in MODES:
            results[mode] = await run_mode(mode, day, work, args.fixed)
            r = results[mode]
            print(f"publish: {mode}: p50 {r['p50']:.2f} s, p95 {r['p95']:.2f} s, "
                  f"{r['requests_per_hour']:,.0f} requests/h, {r['missed']} of {r['stories']} not alerted", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows_of(results, args)


def rows_of(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[Row]:
    base = results["fixed"]
    rows = []
    size = f"{args.feeds} feeds, {results['fixed']['stories']} stories, {args.hours:g} h"
    targets = {
        "fixed": ("—", None),
        "adaptive": ("p50 ≤ ½ fixed's, requests/h ≤ fixed's",
                     results["adaptive"]["p50"] <= base["p50"] / 2
                     and results["adaptive"]["requests_per_hour"] <= base["requests_per_hour"]),
        "ping": ("p50 ≤ 1.5 s, p95 ≤ 3 s", results["ping"]["p50"] <= 1.5 and results["ping"]["p95"] <= 3.0),
        "websub": ("p50 ≤ 1.5 s, p95 ≤ 3 s", results["websub"]["p50"] <= 1.5 and results["websub"]["p95"] <= 3.0),
    }
    names = {"fixed": f"fixed {args.fixed:g} s polling", "adaptive": "adaptive polling", "ping": "publish ping",
             "websub": "WebSub"}
    for mode in MODES:
        r = results[mode]
        target, passed = targets[mode]
        if r["missed"]:
            passed = False
        rows.append(figure(
            f"publish_{mode}", f"publish → first alert, {names[mode]} ({size}): p50 / p95",
            r["p50"], "s", baseline=base["p50"] if mode != "fixed" else None, better="lower",
            value_text=f"{r['p50']:.2f} / {r['p95']:.2f} s", target=target, passed=passed,
            baseline_text=f"fixed: {base['p50']:.1f} / {base['p95']:.1f} s" if mode != "fixed" else "—",
            detail={**r, "note": f"{r['requests_per_hour']:,.0f} requests/h to the site "
                                 f"({r['requests_per_hour'] / base['requests_per_hour']:.2f}× fixed polling's); "
                                 f"{r['missed']} of {r['stories']} stories not alerted"
                                 + (f"; simulated waits p50 {r['simulated_p50']:.2f} s, this machine's processing "
                                    f"p50 {r['processing_p50']:.3f} s / p95 {r['processing_p95']:.3f} s"
                                    if r["processing_p50"] is not None else "")},
        ))
        rows.append(figure(
            f"publish_{mode}_requests", f"requests per hour to the site, {names[mode]}",
            r["requests_per_hour"], "/h", baseline=base["requests_per_hour"] if mode != "fixed" else None,
            better="lower", passed=None, value_text=f"{r['requests_per_hour']:,.0f}/h",
            baseline_text=f"fixed: {base['requests_per_hour']:,.0f}/h" if mode != "fixed" else "—",
        ))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--fixed", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    with contextlib.closing(SimLoop()) as loop:
        rows = loop.run_until_complete(bench(args))
    print_rows(rows, "publish")
    return rows


if __name__ == "__main__":
    main()
