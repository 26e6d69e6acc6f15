"""The 0.1 side of `bench.year`, run by it in a child process whose `storage` package is
newsbot 0.1's (`git archive` of the 0.1 release first on PYTHONPATH): the same readers,
subscriptions, stories and daily traffic on 0.1's schema, which deletes nothing, built to
day 7 (once per size: the database is kept in the bench cache); then the same questions
through 0.1's own functions, measured afresh. Not meant to be run by hand."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import year_data as data
from bench.common import builder, cache_dir, cached_record, keep_record
from storage import articles, broadcasts, feeds, outbox, stats  # newsbot 0.1's
from storage.db import Database

GENERATOR_VERSION = 1  # of the database built here: a new one rebuilds the cache


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, int(p / 100 * len(ordered) + 0.999999))) - 1]


def build(path: Path, args: argparse.Namespace) -> dict[str, int]:
    asyncio.run(_migrate(path))
    conn = builder(path)
    sizes: dict[str, int] = {}
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO chats (id, type, created_at, updated_at) VALUES (?, 'private', ?, ?)",
            [(chat, data.START, data.START) for chat in data.readers(args.readers)],
        )
        conn.executemany(
            "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) VALUES (?, ?, ?, ?, ?)",
            ((c, k, v, v, data.START) for c, k, v in data.subscriptions(args.subscriptions, args.readers, args.seed)),
        )
        conn.execute("COMMIT")
        conn.execute("DROP TRIGGER articles_ai")
        batch = []
        for n, title, summary, section, url, published in data.stories(args.articles, args.seed):
            batch.append((f"s{n}", url, title, summary, section, published, published))
            if len(batch) >= 50_000:
                _articles(conn, batch)
        _articles(conn, batch)
        conn.execute("INSERT INTO articles_fts(articles_fts) VALUES ('rebuild')")
        for day in range(7):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (chat_id, article_id, priority, reasons, state, attempts, "
                "next_attempt_at, created_at, sent_at, message_id) VALUES (?, ?, 0, 'section:world', 'sent', 1, ?, ?, ?, 1)",
                ((chat, story, created, created, sent)
                 for chat, story, created, sent in data.day_of_outbox(day, args.per_day, args.readers, args.articles, args.seed)),
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes[str(day + 1)] = sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))
    finally:
        conn.close()
    return sizes


def _articles(conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO articles (id, url, title, summary, section, published_at, fetched_at, matched) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
        batch,
    )
    conn.execute("COMMIT")
    batch.clear()


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    await call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def measure(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    db = await Database.open(path)
    now = data.START + 7 * data.DAY
    try:
        big = await broadcasts.create(db, admin_id=1, admin_chat_id=1, html="x", audience=None, now=now)
        await broadcasts.start(db, big, now=now, expires_before=now - 600)
        rng = random.Random(3)
        story = await articles.get_article(db, f"s{args.articles - 1}")
        assert story is not None
        texts = [" ".join(rng.choices(data.VOCABULARY[:3000], k=2)) for _ in range(50)]

        async def claim_mark() -> None:
            due = await outbox.due_messages(db, now + 30, 1)
            ids = [m.id for m in due]
            claimed = await outbox.claim(db, ids)
            await outbox.mark_sent(db, claimed, 1, time.time())

        fan_out = {story.id: {chat: ("section:world",) for chat in data.readers(min(args.readers, 7000))}}
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            # 0.1 has one queue: the same query serves both.
            "due (broadcast lane)": lambda: outbox.due_messages(db, now + 30, 2000),
            "due (sections lane)": lambda: outbox.due_messages(db, now + 30, 2000),
            "claim + sent mark": claim_mark,
            "/latest": lambda: articles.latest(db, ["sports", "world"], 5),
            "/search": lambda: articles.search(db, rng.choice(texts), 10),
            "/related (text)": lambda: articles.related(db, story.title, 5, exclude_id=story.id),
            "/related (link)": lambda: articles.find_by_url(db, f"https://news.example/x/{rng.randrange(10**9)}"),
            "audience (a section)": lambda: broadcasts.audience_size(db, "sports"),
        }
        queries = {name: percentile(await timed(call, args.runs), 99) for name, call in calls.items()}
        queries["enqueue 7,000 alerts (per poll)"] = percentile(
            await timed(lambda: outbox.enqueue_matches(db, [story.id], fan_out), 5), 99
        )
        stats_p99 = percentile(await timed(lambda: stats.collect(db, now), 10), 99)
        # 0.1's /healthz read the database on the same reader connection /stats used.
        done = asyncio.Event()

        async def stats_loop() -> None:
            while not done.is_set():
                await stats.collect(db, now)

        task = asyncio.create_task(stats_loop())

        async def health() -> None:
            await stats.database_ok(db)
            await feeds.last_success_age(db, now)

        try:
            health_p99 = percentile(await timed(health, 30), 99)
        finally:
            done.set()
            await task
    finally:
        await db.close()
    return {"queries": queries, "stats": stats_p99, "healthz": health_p99}


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("readers", "subscriptions", "articles", "per-day", "seed", "runs"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    path = args.work / "year-v01.db"
    # Built once per size, like 0.2's side (more than half an hour at full size); measured afresh on a copy.
    key = [args.readers, args.subscriptions, args.articles, args.per_day, args.seed]
    cached = cache_dir() / ("year-v01-" + "-".join(map(str, key)) + f"-v{GENERATOR_VERSION}.db")
    record = cached_record(cached, key)
    if record is not None:
        sizes = record["sizes"]
        shutil.copy(cached, path)
    else:
        sizes = build(path, args)
        shutil.copy(path, cached)  # after the last day's TRUNCATE checkpoint: no log to copy
        keep_record(cached, key, sizes=sizes)
    measured = asyncio.run(measure(path, args))
    growth = (sizes["7"] - sizes["1"]) / 6
    args.out.write_text(json.dumps({"sizes": sizes, "growth_per_day": growth, **measured}))


if __name__ == "__main__":
    main()
