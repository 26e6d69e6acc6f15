"""A year at 100,000 readers: the database after a long run, its size and its hot queries.

    python -m bench.year [--readers 100000] [--subscriptions 1000000] [--articles 1000000]
                         [--rate 30] [--days 30] [--outbox-days 7] [--runs 200]

Built in compressed time: the readers, subscriptions and a million archived stories (cached in
the bench cache directory, keyed by size), then an outbox fed at `--rate` messages a second
for `--days` days — a day of rows at a time, written straight through sqlite3 with the day's
hourly counters — with 0.2's retention (`storage.maintenance.prune`, then
`Database.maintain`: incremental vacuum and a checkpoint) run at the end of every day, as the
bot's maintenance job does every minute. The database after the days is cached as well,
keyed by every size option (the days take most of an hour at full size and come out the same
each time); every figure below is measured afresh on a copy. Then, on that database (with a
broadcast to everyone pending, as at the worst moment):

* the file's size at days 7, 14 and 30 (file + write-ahead log);
* p99 of every hot query, through the storage functions the bot calls: due rows per lane,
  a claim and a sent mark, an enqueue of a section fan-out, /latest, /search, /related by
  text and by link, the broadcast audience, /stats (`bot.newsroom.figures`, the matcher
  loaded with every subscription), and `/healthz` (`bot.health.check_health`) asked while
  /stats runs in a loop beside it;
* the dispatcher's throughput with limits lifted (an in-process Telegram answering at once)
  on the big database against an empty one: the same broadcast to 5,000 chats on each (the
  one to everyone stopped first).

Each figure stands beside the same figure for newsbot 0.1, measured in the same run by
`bench/year_v01.py` in a child process on 0.1's own code (`git archive` of the 0.1 release)
and schema. 0.1 deletes nothing, so it is built to day 7 only: its size at day 14 and 30 is
that day-7 figure's daily growth carried on (said so in the table).

Targets (the retention issue): size flat after day 7 (±10 %); every per-message and per-command
query p99 < 20 ms; /stats p99 < 50 ms; /healthz p99 < 50 ms while /stats runs; dispatcher
throughput on the big database ≥ 90 % of the empty database's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import year_data as data
from bench.common import (
    BUILD_CACHE_PRAGMA,
    REPO,
    Row,
    bot_settings,
    builder,
    cache_dir,
    cached_record,
    child_env,
    figure,
    keep_record,
    percentile,
    print_rows,
    remove_db,
)
from bot.context import Services, open_services
from bot.health import check_health
from bot.newsroom import figures as newsroom_figures
from bot.pipeline.botapi import Answer
from bot.pipeline.deliver import LOAD_PER_LANE, Dispatcher
from bot.pipeline.ratelimit import RateLimits
from storage import articles, broadcasts, counters, due, maintenance, outbox, words
from storage.db import Database
from storage.outbox import Match, SentBatch

V01 = "dac7ac3"  # the 0.1 release
GENERATOR_VERSION = 1
SIZE_DAYS = (7, 14, 30)
QUERY_RUNS = 200  # timed runs of each hot query (--runs); /stats a quarter, /healthz half


# --------------------------------------------------------------------------- building


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


def build_base(path: Path, readers: int, subscriptions: int, stories: int, seed: int) -> float:
    """Readers, subscriptions and the archive, on 0.2's schema."""
    started = time.perf_counter()
    remove_db(path)
    asyncio.run(_migrate(path))
    conn = builder(path)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO chats (id, type, created_at, updated_at) VALUES (?, 'private', ?, ?)",
            [(chat, data.START, data.START) for chat in data.readers(readers)],
        )
        conn.executemany(
            "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) VALUES (?, ?, ?, ?, ?)",
            ((chat, kind, value, value, data.START) for chat, kind, value in data.subscriptions(subscriptions, readers, seed)),
        )
        conn.execute("COMMIT")
        batch: list[tuple[Any, ...]] = []
        index: list[tuple[Any, ...]] = []
        for n, title, summary, section, url, published in data.stories(stories, seed):
            batch.append((n + 1, f"s{n}", url, title, summary, section, section, published, published, words.title_key(title)))
            index.append((n + 1, words.index_text(title), words.index_text(summary), ""))
            if len(batch) >= 50_000:
                _flush_articles(conn, batch, index)
        _flush_articles(conn, batch, index)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    Path(f"{path}.done").write_text(json.dumps([readers, subscriptions, stories, seed]))
    return time.perf_counter() - started


def _flush_articles(conn: sqlite3.Connection, batch: list[tuple[Any, ...]], index: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO articles (rowid, id, url, title, summary, section, sections, published_at, fetched_at, "
        "title_key, matched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        batch,
    )
    conn.executemany("INSERT INTO articles_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)", index)
    conn.execute("COMMIT")
    batch.clear()
    index.clear()


def cached_base(readers: int, subscriptions: int, stories: int, seed: int) -> tuple[Path, float | None]:
    path = cache_dir() / f"year-{readers}-{subscriptions}-{stories}-{seed}-v{GENERATOR_VERSION}.db"
    done = Path(f"{path}.done")
    if path.exists() and done.exists() and json.loads(done.read_text()) == [readers, subscriptions, stories, seed]:
        return path, None
    return path, build_base(path, readers, subscriptions, stories, seed)


def add_day(path: Path, day: int, per_day: int, readers: int, stories: int, seed: int) -> None:
    """One day of sent alerts and their hourly counters, as the dispatcher leaves them."""
    conn = builder(path)
    try:
        rows = data.day_of_outbox(day, per_day, readers, stories, seed)
        hours: dict[tuple[int, str], int] = {}
        chunk: list[tuple[Any, ...]] = []

        def flush() -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (chat_id, kind, key, lane, article_id, reasons, state, attempts, "
                "next_attempt_at, created_at, sent_at, done_at, message_id) "
                "VALUES (?, 'alert', ?, 2, ?, 'section:world', 'sent', 1, ?, ?, ?, ?, 1)",
                chunk,
            )
            conn.execute("COMMIT")
            chunk.clear()

        for chat, story, created, sent in rows:
            chunk.append((chat, "a:" + story, story, created, created, sent, sent))
            hour = int(sent // 3600)
            hours[(hour, "alert_sent")] = hours.get((hour, "alert_sent"), 0) + 1
            bucket = counters.latency_bucket(sent - created + 60)
            hours[(hour, bucket)] = hours.get((hour, bucket), 0) + 1
            if len(chunk) >= 200_000:
                flush()
        flush()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO counters (hour, name, n) VALUES (?, ?, ?) "
            "ON CONFLICT(hour, name) DO UPDATE SET n = n + excluded.n",
            [(hour, name, n) for (hour, name), n in hours.items()],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def file_size(path: Path) -> int:
    return sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))


async def retention(path: Path, now: float, outbox_days: float) -> None:
    db = await Database.open(path)
    try:
        await db.execute(BUILD_CACHE_PRAGMA)
        while (await maintenance.prune(db, outbox_days=outbox_days, archive_days=0, now=now, batch=500_000)).total:
            pass
        await db.maintain(free_pages=10**9)
    finally:
        await db.close()


# --------------------------------------------------------------------------- measuring


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    await call()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


class InstantTelegram:
    """Telegram answering at once: the dispatcher's own cost, limits lifted."""

    def __init__(self) -> None:
        self.sent = 0

    async def call(self, method: str, params: dict[str, Any]) -> Answer:
        self.sent += 1
        await asyncio.sleep(0)
        return Answer(True, 200, result={"message_id": self.sent})


async def dispatcher_rate(services: Services, messages: int) -> float:
    """Messages/s sending a broadcast of `messages` rows with limits lifted."""
    now = time.time()
    broadcast_id = await broadcasts.create(services.db, admin_id=1, admin_chat_id=1, html="<b>x</b>", audience=None, now=now)
    async with services.db.write() as conn:
        await conn.executemany(
            "INSERT OR IGNORE INTO outbox (chat_id, kind, key, lane, broadcast_id, next_attempt_at, created_at) "
            "VALUES (?, 'broadcast', ?, 0, ?, ?, ?)",
            [(chat, f"b:{broadcast_id}", broadcast_id, now, now) for chat in data.readers(messages)],
        )
        await conn.execute("UPDATE broadcasts SET state = 'sending' WHERE id = ?", (broadcast_id,))
    telegram = InstantTelegram()
    dispatcher = Dispatcher(services, telegram, limits=RateLimits(unlimited=True))
    started = time.perf_counter()
    await dispatcher.start()
    try:
        while telegram.sent < messages and time.perf_counter() - started < 300:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        await dispatcher.stop(timeout=5)
    return telegram.sent / elapsed


async def measure(path: Path, work: Path, readers: int, now: float, runs: int) -> dict[str, Any]:
    settings = bot_settings("http://127.0.0.1:9/bot", "123456:YEAR-token", path, NEWSBOT_FEEDS=str(_feeds(work)))
    services = await open_services(settings)
    results: dict[str, Any] = {}
    try:
        db = services.db
        # The worst moment for the due queries: a broadcast to everyone waiting.
        big = await broadcasts.create(db, admin_id=1, admin_chat_id=1, html="x", audience=None, now=now)
        await broadcasts.start(db, big, now=now, expires_before=now - 600)
        rng = random.Random(3)
        story = await articles.get_article(db, "s999999") or await articles.get_article(db, "s0")
        assert story is not None
        texts = [" ".join(rng.choices(data.VOCABULARY[:3000], k=2)) for _ in range(50)]
        fan_out = {story.id: {chat: Match(("section:world",)) for chat in data.readers(min(readers, 7000))}}

        async def claim_mark() -> None:
            rows = await due.due_messages(db, 0, now + 30, 1)
            ids = [m.id for m in rows]
            async with db.write() as conn:
                await outbox.claim_in(conn, ids)
                await outbox.mark_sent_in(conn, SentBatch(tuple(ids), 1, "broadcast"), time.time())

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "due (broadcast lane)": lambda: due.due_messages(db, 0, now + 30, LOAD_PER_LANE),
            "due (sections lane)": lambda: due.due_messages(db, 2, now + 30, LOAD_PER_LANE),
            "claim + sent mark": claim_mark,
            "/latest": lambda: articles.latest(db, ["sports", "world"], 5),
            "/search": lambda: articles.search(db, rng.choice(texts), 10),
            "/related (text)": lambda: articles.related(db, story.title, 5, exclude_id=story.id),
            "/related (link)": lambda: articles.find_by_url(db, f"https://news.example/x/{rng.randrange(10**9)}"),
            "audience (a section)": lambda: broadcasts.audience_size(db, "sports"),
        }
        queries = {name: percentile(await timed(call, runs), 99) for name, call in calls.items()}
        enqueue = await timed(lambda: outbox.enqueue_alerts(db, [story], fan_out, now=now), 5)
        queries["enqueue 7,000 alerts (per poll)"] = percentile(enqueue, 99)
        results["queries"] = queries
        results["stats"] = percentile(await timed(lambda: newsroom_figures(services), max(1, runs // 4)), 99)
        results["healthz"] = percentile(await _health_during_stats(services, max(1, runs // 2)), 99)
        # The dispatcher's figure is its own broadcast, as on the empty database: the one to
        # everyone (there for the due queries) and the fan-out's alerts (for the enqueue) are
        # stopped first, and the log they wrote is checkpointed, as the bot's maintenance does
        # every minute.
        async with db.write() as conn:
            await conn.execute("UPDATE outbox SET state = 'cancelled' WHERE state = 'pending'")
            await conn.execute("UPDATE broadcasts SET state = 'done' WHERE id = ?", (big,))
        await db.maintain()
        big_rate = await dispatcher_rate(services, min(readers, 5000))
    finally:
        await services.close()
    empty_path = work / "empty.db"
    empty_settings = bot_settings("http://127.0.0.1:9/bot", "123456:YEAR-token", empty_path, NEWSBOT_FEEDS=str(_feeds(work)))
    empty = await open_services(empty_settings)
    try:
        async with empty.db.write() as conn:
            await conn.executemany(
                "INSERT INTO chats (id, type, created_at, updated_at) VALUES (?, 'private', ?, ?)",
                [(chat, now, now) for chat in data.readers(min(readers, 5000))],
            )
        empty_rate = await dispatcher_rate(empty, min(readers, 5000))
    finally:
        await empty.close()
    results["dispatcher"] = {"big": big_rate, "empty": empty_rate}
    return results


async def _health_during_stats(services: Services, runs: int) -> list[float]:
    done = asyncio.Event()

    async def stats_loop() -> None:
        while not done.is_set():
            await newsroom_figures(services)

    services.status.phase = "starting"  # only the database part of the checks matters here
    task = asyncio.create_task(stats_loop())
    try:
        return await timed(lambda: check_health(services, time.time()), runs)
    finally:
        done.set()
        await task


def _feeds(work: Path) -> Path:
    path = work / "feeds.toml"
    path.write_text("[sections]\n" + "".join(f'{s} = "{s.title()}"\n' for s in data.SECTIONS))
    return path


# --------------------------------------------------------------------------- 0.1


def run_v01(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """0.1's figures: its code from git, in a child process."""
    tree = work / "v01"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", V01, "storage", "bot"], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    out = work / "v01.json"
    env = child_env({"PYTHONPATH": os.pathsep.join((str(tree), str(REPO)))})
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "year_v01.py"), "--out", str(out), "--work", str(work),
         "--readers", str(args.readers), "--subscriptions", str(args.subscriptions),
         "--articles", str(args.articles), "--per-day", str(int(args.rate * data.DAY)),
         "--seed", str(args.seed), "--runs", str(args.runs)],
        cwd=work, env=env, check=True, timeout=7200,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --------------------------------------------------------------------------- the run


def simulate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    path = work / "year.db"
    after, record = cached_days(args)
    if record is not None:
        print(f"year: the database after {args.days} days from the cache ({after})", flush=True)
        shutil.copy(after, path)
        sizes = {int(day): size for day, size in record["sizes"].items()}
        rows = int(record["outbox_rows"])
    else:
        sizes, rows = build_days(args, path)
        shutil.copy(path, after)  # after retention's TRUNCATE checkpoint: no log to copy
        keep_record(after, _days_key(args), sizes=sizes, outbox_rows=rows)
    measured = asyncio.run(measure(path, work, args.readers, data.START + args.days * data.DAY, args.runs))
    return {"sizes": sizes, "outbox_rows": rows, **measured}


def _days_key(args: argparse.Namespace) -> list[Any]:
    return [args.readers, args.subscriptions, args.articles, args.seed, args.rate, args.days, args.outbox_days]


def cached_days(args: argparse.Namespace) -> tuple[Path, dict[str, Any] | None]:
    """The database after the simulated days, built once per size (like the base): the days
    take most of an hour at full size and are the same every run."""
    key = _days_key(args)
    path = cache_dir() / ("year-" + "-".join(f"{k:g}" if isinstance(k, float) else str(k) for k in key) + f"-v{GENERATOR_VERSION}-days.db")
    return path, cached_record(path, key)


def build_days(args: argparse.Namespace, path: Path) -> tuple[dict[int, int], int]:
    base, built = cached_base(args.readers, args.subscriptions, args.articles, args.seed)
    if built:
        print(f"year: base database built in {built:.0f} s", flush=True)
    shutil.copy(base, path)
    per_day = int(args.rate * data.DAY)
    sizes: dict[int, int] = {}
    started = time.perf_counter()
    for day in range(args.days):
        add_day(path, day, per_day, args.readers, args.articles, args.seed)
        asyncio.run(retention(path, data.START + (day + 1) * data.DAY, args.outbox_days))
        if day + 1 in SIZE_DAYS or day + 1 == args.days:
            sizes[day + 1] = file_size(path)
            print(f"year: day {day + 1}: {sizes[day + 1] / 2**20:,.0f} MB ({time.perf_counter() - started:.0f} s)", flush=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    return sizes, rows


NOT_RUN = "0.1: not run (--without-v01)"


def rows_of(new: dict[str, Any], old: dict[str, Any] | None, args: argparse.Namespace) -> list[Row]:
    """The table; without `old` (0.1's figures) its baselines say they were not run."""
    rows: list[Row] = []
    sizes = new["sizes"]
    steady = [d for d in SIZE_DAYS if d in sizes]
    flat = all(abs(sizes[d] - sizes[steady[0]]) <= 0.1 * sizes[steady[0]] for d in steady)
    for d in steady:
        old_mb, old_text = None, NOT_RUN
        if old is not None:
            old_value = old["sizes"].get(str(d)) or old["sizes"].get(d)
            estimated = old_value is None
            if estimated:
                old_value = old["sizes"]["7"] + old["growth_per_day"] * (d - 7)
            old_mb = old_value / 2**20
            old_text = f"0.1: {old_mb:,.0f} MB" + (" (grows by its day-7 rate)" if estimated else "")
        rows.append(figure(
            f"year_size_day{d}", f"year: database size at day {d} ({args.rate:g} msg/s, {args.outbox_days:g} days kept)",
            sizes[d] / 2**20, "MB", baseline=old_mb, better="lower",
            target="flat after day 7 (±10 %)" if d == steady[-1] else "—",
            passed=flat if d == steady[-1] else None,
            baseline_text=old_text,
            detail={"note": f"{new['outbox_rows']:,} outbox rows kept at the end; 0.1 keeps every row"} if d == steady[-1] else None,
        ))
    for name, value in new["queries"].items():
        old_value = None if old is None else old["queries"].get(name)
        rows.append(figure(
            f"year_query_{name}", f"year: {name} p99" + (f" (a load: up to {LOAD_PER_LANE:,} rows)" if name.startswith("due") else ""),
            value, "ms", baseline=old_value, better="lower",
            target="< 20 ms", passed=value < 20.0,
            baseline_text=(NOT_RUN if old is None else "—") if old_value is None else f"0.1: {old_value:,.1f} ms",
        ))
    rows.append(figure(
        "year_stats", "year: /stats p99", new["stats"], "ms", baseline=old["stats"] if old else None, better="lower",
        target="< 50 ms", passed=new["stats"] < 50.0, baseline_text=f"0.1: {old['stats']:,.0f} ms" if old else NOT_RUN,
    ))
    rows.append(figure(
        "year_healthz", "year: /healthz p99 while /stats runs", new["healthz"], "ms", baseline=old["healthz"] if old else None,
        better="lower", target="< 50 ms", passed=new["healthz"] < 50.0,
        baseline_text=f"0.1: {old['healthz']:,.0f} ms" if old else NOT_RUN,
    ))
    rate = new["dispatcher"]
    rows.append(figure(
        "year_dispatcher", "year: dispatcher msg/s, limits lifted, big database vs empty", rate["big"], "msg/s",
        baseline=rate["empty"], target="≥ 90 % of empty", passed=rate["big"] >= 0.9 * rate["empty"],
        baseline_text=f"empty: {rate['empty']:,.0f} msg/s",
    ))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.year", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=30.0, help="outbox messages a second")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--outbox-days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--runs", type=int, default=QUERY_RUNS, help="timed runs of each hot query")
    parser.add_argument("--without-v01", action="store_true",
                        help="skip 0.1's figures (its child builds 0.1's database afresh: more than half an hour at full size)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="newsbot-year-"))
    try:
        new = simulate(args, work)
        old = None if args.without_v01 else run_v01(args, work)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    rows = rows_of(new, old, args)
    print_rows(rows, "a year at 100,000 readers")
    return rows


if __name__ == "__main__":
    main()
