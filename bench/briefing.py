"""Morning briefings for many readers at once: how they are spread, and what that spares.

    python -m bench.briefing [--readers 20000] [--keyword-alerts 20]

`--readers` readers in Europe/Stockholm all chose a briefing at 07:00; every one follows two
sections and one keyword. The briefing job (`bot.briefings.schedule`, every 20 simulated
seconds as in the bot) queues their briefings, spread at the rate they can be sent (the i-th
due i ÷ 30 s after 07:00); between 07:00 and 07:10, `--keyword-alerts` stories arrive, each
matching a keyword three readers follow. The real outbox and dispatcher send everything to an
in-process Telegram enforcing its limits, on a simulated clock (bench.newsday).

Figures: the delay from 07:00 to each briefing (p50 / p95 / max), and the keyword alerts'
delay (publication → sent) during the rush; baseline: the same morning with every briefing due
at 07:00 (no spread), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import Row, bot_settings, figure, percentile, print_rows
from bench.newsday import SimTelegram, VirtualClock, _settle
from bot import briefings, localtime
from bot.context import Services, open_services
from bot.stages.deliver import Dispatcher
from bot.stages.poll import enqueue_alerts
from storage import articles, due, outbox
from storage.db import Database
from storage.models import Article

ZONE = ZoneInfo("Europe/Stockholm")
SEVEN = datetime(2026, 3, 2, 7, 0, tzinfo=ZONE).timestamp()
SECTIONS = ("sweden", "world", "sports")


async def seed(path: Path, readers: int, alerts: int) -> None:
    db = await Database.open(path)
    rng = random.Random(4)
    yesterday = SEVEN - 20 * 3600
    try:
        async with db.write() as conn:
            await conn.executemany(
                "INSERT INTO chats (id, type, briefings, next_briefing_at, last_briefing_at, created_at, updated_at) "
                "VALUES (?, 'private', '420', ?, ?, ?, ?)",
                [(1_000 + n, SEVEN, yesterday, yesterday, yesterday) for n in range(readers)],
            )
            subs = []
            for n in range(readers):
                for section in rng.sample(SECTIONS, 2):
                    subs.append((1_000 + n, "section", section, section, yesterday))
                subs.append((1_000 + n, "keyword", f"topic{n % max(1, readers // 3)}", "t", yesterday))
            await conn.executemany(
                "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) VALUES (?, ?, ?, ?, ?)", subs
            )
            stories = [
                Article(id=f"y{n}", url=f"https://news.example/y{n}", title=f"Yesterday's story {n}", summary="",
                        section=rng.choice(SECTIONS), tags=(), published_at=yesterday + n * 600,
                        fetched_at=yesterday + n * 600)
                for n in range(60)
            ]
            await articles.store_articles(conn, stories, seen=True, now=time.time())
    finally:
        await db.close()


async def morning(path: Path, work: Path, readers: int, alerts: int, *, spread: bool) -> tuple[list[float], list[float], int]:
    feeds = work / "feeds.toml"
    feeds.write_text("[sections]\n" + "".join(f'{s} = "{s.title()}"\n' for s in SECTIONS))
    settings = bot_settings("http://127.0.0.1:9/bot", "123456:SIM-token", path, NEWSBOT_FEEDS=str(feeds))
    clock = VirtualClock(SEVEN - 30)
    services = await open_services(settings, clock=clock)
    telegram = SimTelegram(clock)
    dispatcher = Dispatcher(services, telegram)
    await dispatcher.start()
    rng = random.Random(9)
    news = sorted((SEVEN + rng.uniform(0, 600), n) for n in range(alerts))
    next_job = clock.time()
    try:
        while True:
            # Whatever is due now happens, then everything runs, then time moves on.
            now = clock.time()
            if now >= next_job:
                if spread:
                    await briefings.schedule(services, now)
                else:
                    await _all_at_once(services, now)
                next_job += 20.0
            while news and news[0][0] <= now:
                _, n = news.pop(0)
                await _keyword_story(services, n, readers, now)
            await _settle(clock, dispatcher)
            if not news and now > SEVEN + 60 and not dispatcher.in_flight and not (await due.backlog(services.db)).total:
                break
            upcoming = min(next_job, news[0][0] if news else math.inf)
            clock.advance(min(clock.next_deadline(), upcoming - clock.time() + clock.monotonic()))
        rows = await services.db.fetchall(
            "SELECT o.kind, o.sent_at, o.created_at, a.published_at FROM outbox o "
            "LEFT JOIN articles a ON a.id = o.article_id WHERE o.state = 'sent'"
        )
    finally:
        await dispatcher.stop(timeout=1)
        await services.close()
    delays = [r["sent_at"] - SEVEN for r in rows if r["kind"] == "briefing"]
    keyword = [r["sent_at"] - r["published_at"] for r in rows if r["kind"] == "alert"]
    return delays, keyword, telegram.violations


async def _all_at_once(services: Services, now: float) -> None:
    """The baseline: every due briefing queued due at its slot (no spread)."""
    due = await services.db.fetchall("SELECT id, next_briefing_at FROM chats WHERE next_briefing_at <= ?", (now,))
    if not due:
        return
    items = [(r["id"], localtime.slot_name(r["next_briefing_at"], ZONE), r["next_briefing_at"]) for r in due]
    await outbox.enqueue_briefings(services.db, items, now=now)
    await services.db.executemany(
        "UPDATE chats SET next_briefing_at = ? WHERE id = ?",
        [(localtime.next_slot((420,), ZONE, now), r["id"]) for r in due],
    )
    services.outbox_wake.set()


async def _keyword_story(services: Services, n: int, readers: int, now: float) -> None:
    topic = f"topic{(n * 7) % max(1, readers // 3)}"
    story = Article(id=f"k{n}", url=f"https://news.example/k{n}", title=f"Breaking {topic} news {n}", summary="",
                    section=None, tags=(), published_at=now, fetched_at=now)
    async with services.db.write() as conn:
        stored = await articles.store_articles(conn, [story], now=time.time())
    await enqueue_alerts(services, stored.new, now=now)


async def bench(args: argparse.Namespace) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="newsbot-briefing-"))
    try:
        source = work / "seed.db"
        await seed(source, args.readers, args.keyword_alerts)
        results = {}
        for spread in (True, False):
            copy = work / f"run-{spread}.db"
            shutil.copy(source, copy)
            print(f"briefing: {'spread' if spread else 'all at 07:00'} …", flush=True)
            results[spread] = await morning(copy, work, args.readers, args.keyword_alerts, spread=spread)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (delays, keyword, violations), (base_delays, base_keyword, base_violations) = results[True], results[False]

    def three(values: list[float]) -> str:
        return "—" if not values else f"{percentile(values, 50):,.0f} / {percentile(values, 95):,.0f} / {max(values):,.0f} s"

    rows = [
        figure(
            "briefing_spread", f"briefings for {args.readers:,} readers at 07:00: delay p50 / p95 / max",
            percentile(delays, 95) if delays else 0.0, "s", baseline=percentile(base_delays, 95) if base_delays else None,
            better="lower", passed=bool(delays) and len(delays) == args.readers and violations == 0,
            target="every one sent, 0 violations", value_text=three(delays), baseline_text=f"no spread: {three(base_delays)}",
            floor=0.95 * args.readers / 30, floor_text=f"at 30/s: p95 {0.95 * args.readers / 30:,.0f} s",
            detail={"note": f"{len(delays):,} briefings sent (no spread: {len(base_delays):,}); the rate "
                            f"needs {args.readers / 30:,.0f} s for them anyway"},
        ),
        figure(
            "briefing_keyword", "keyword alerts during the briefing rush: delay p50 / p95 / max",
            percentile(keyword, 95) if keyword else 0.0, "s", baseline=percentile(base_keyword, 95) if base_keyword else None,
            better="lower", passed=None, value_text=three(keyword), baseline_text=f"no spread: {three(base_keyword)}",
            detail={"note": f"violations: {violations} (no spread: {base_violations})"},
        ),
    ]
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.briefing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--keyword-alerts", type=int, default=20)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    rows = asyncio.run(bench(args))
    print_rows(rows, "briefings")
    return rows


if __name__ == "__main__":
    main()
