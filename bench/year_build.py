"""Building `bench.year`'s databases: the base (readers, subscriptions, a million archived
stories) and the days of traffic after it, each cached in the bench cache directory by size.

A day is written straight through sqlite3 as the dispatcher leaves it: the sent alerts' outbox
rows (with the hash of what each message shows), their hourly counters and the memory of who
was told (storage.told: one row per sent alert). The stories sent on a day are fetched that
day (their `fetched_at` moves to the day), so the told memory keeps them for the correction
window and then forgets them, as it does in the bot. 0.2's retention
(`storage.maintenance.prune`, then `Database.maintain`: incremental vacuum and a checkpoint)
runs at the end of every day, as the bot's maintenance job does every minute.

The database after day 7 is cached too: it is the reference every later figure is compared
with (cost must not grow with age), and a longer run starts from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench import year_data as data
from bench.common import (
    BUILD_CACHE_PRAGMA,
    builder,
    cache_dir,
    cached_record,
    keep_record,
    remove_db,
)
from storage import counters, maintenance, words
from storage.db import Database

# Of the generated databases: a new one rebuilds the caches. 2: schema 8 (the told memory),
# told rows, messages' ids and shown hashes, stories fetched on the day they are sent.
GENERATOR_VERSION = 2
SIZE_DAYS = (7, 14, 30)
REFERENCE_DAY = 7  # retention is steady from here on: later figures are compared with it
STORIES_PER_DAY = 500  # day_of_outbox sends stories day × 500 … day × 500 + 499


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
    key = [readers, subscriptions, stories, seed]
    path = cache_dir() / f"year-{readers}-{subscriptions}-{stories}-{seed}-v{GENERATOR_VERSION}.db"
    if cached_record(path, key) is not None:
        return path, None
    built = build_base(path, readers, subscriptions, stories, seed)
    keep_record(path, key)
    return path, built


def add_day(path: Path, day: int, per_day: int, readers: int, stories: int, seed: int) -> None:
    """One day of sent alerts, their hourly counters and who was told, as the dispatcher
    leaves them; the day's stories are fetched that day."""
    conn = builder(path)
    rng = random.Random(seed * 7919 + day)
    try:
        first = (day * STORIES_PER_DAY) % stories + 1
        last = min(stories, first + STORIES_PER_DAY - 1)
        conn.execute("BEGIN")
        conn.execute(
            "UPDATE articles SET fetched_at = ? WHERE rowid BETWEEN ? AND ?", (data.START + day * data.DAY, first, last)
        )
        conn.execute("COMMIT")
        hours: dict[tuple[int, str], int] = {}
        sent_today: dict[int, int] = {}
        chunk: list[tuple[Any, ...]] = []
        told: list[tuple[int, int, int, int]] = []

        def flush() -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (chat_id, kind, key, lane, article_id, reasons, state, attempts, "
                "next_attempt_at, created_at, sent_at, done_at, message_id, shown_hash) "
                "VALUES (?, 'alert', ?, 2, ?, 'section:world', 'sent', 1, ?, ?, ?, ?, ?, ?)",
                chunk,
            )
            conn.executemany("INSERT OR IGNORE INTO told (story, chat_id, message_id, sent_at) VALUES (?, ?, ?, ?)", told)
            conn.execute("COMMIT")
            chunk.clear()
            told.clear()

        for chat, story, created, sent in data.day_of_outbox(day, per_day, readers, stories, seed):
            # A chat's messages are numbered in order, as Telegram numbers them: a day holds
            # fewer than 1,000 for any one reader at these rates.
            count = sent_today[chat] = sent_today.get(chat, 0) + 1
            message_id = day * 1000 + count
            chunk.append((chat, "a:" + story, story, created, created, sent, sent, message_id, rng.getrandbits(63)))
            told.append((int(story[1:]) + 1, chat, message_id, int(sent)))
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


def days_key(args: argparse.Namespace, days: int) -> list[Any]:
    return [args.readers, args.subscriptions, args.articles, args.seed, args.rate, days, args.outbox_days]


def cached_days(args: argparse.Namespace, days: int) -> tuple[Path, dict[str, Any] | None]:
    """The database after `days` simulated days, built once per size (like the base): the
    days take most of an hour at full size and are the same every run."""
    key = days_key(args, days)
    name = "year-" + "-".join(f"{k:g}" if isinstance(k, float) else str(k) for k in key)
    path = cache_dir() / f"{name}-v{GENERATOR_VERSION}-days.db"
    return path, cached_record(path, key)


def told_figures(path: Path) -> dict[str, float]:
    """The told memory's rows and bytes (its b-tree pages, from dbstat)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = int(conn.execute("SELECT count(*) FROM told").fetchone()[0])
        size = int(conn.execute("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = 'told'").fetchone()[0])
        outbox_rows = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    return {"told_rows": rows, "told_bytes": size, "outbox_rows": outbox_rows}


def _keep(path: Path, args: argparse.Namespace, day: int, sizes: dict[int, int]) -> dict[str, Any]:
    cached, _ = cached_days(args, day)
    figures = told_figures(path)
    shutil.copy(path, cached)  # after retention's TRUNCATE checkpoint: no log to copy
    keep_record(cached, days_key(args, day), sizes={str(d): s for d, s in sizes.items()}, **figures)
    record = cached_record(cached, days_key(args, day))
    assert record is not None
    return record


def _wait_for_another_builder(work: Path, log: Any, quiet_s: float = 120.0) -> bool:
    """Wait while another run builds the same database (its work file or log written in the
    last `quiet_s` seconds); say whether there was one. A work file left by a run that died is
    older than that, and the caller builds over it."""
    waited = False
    while True:
        times = [os.path.getmtime(f"{work}{s}") for s in ("", "-wal") if os.path.exists(f"{work}{s}")]
        if not times or time.time() - max(times) > quiet_s:
            return waited
        if not waited:
            log(f"year: another run is building {work.name}; waiting for it")
        waited = True
        time.sleep(15)


def ensure_days(args: argparse.Namespace, days: int, log: Any = print) -> tuple[Path, dict[str, Any]]:
    """The cached database after `days` days (and after REFERENCE_DAY on the way), built from
    the latest cached day before it when there is one."""
    path, record = cached_days(args, days)
    if record is not None:
        return path, record
    work = cache_dir() / f"{path.name}.building"
    if _wait_for_another_builder(work, log):
        path, record = cached_days(args, days)
        if record is not None:
            return path, record
    start_day, sizes = 0, {}
    reference, reference_record = cached_days(args, REFERENCE_DAY)
    if days > REFERENCE_DAY and reference_record is not None:
        shutil.copy(reference, work)
        start_day = REFERENCE_DAY
        sizes = {int(d): s for d, s in reference_record["sizes"].items()}
        log(f"year: from the cached day {REFERENCE_DAY} ({reference})")
    else:
        base, built = cached_base(args.readers, args.subscriptions, args.articles, args.seed)
        if built:
            log(f"year: base database built in {built:.0f} s")
        shutil.copy(base, work)
    per_day = int(args.rate * data.DAY)
    started = time.perf_counter()
    try:
        for day in range(start_day, days):
            add_day(work, day, per_day, args.readers, args.articles, args.seed)
            asyncio.run(retention(work, data.START + (day + 1) * data.DAY, args.outbox_days))
            if day + 1 in SIZE_DAYS or day + 1 == days:
                sizes[day + 1] = file_size(work)
                log(f"year: day {day + 1}: {sizes[day + 1] / 2**20:,.0f} MB ({time.perf_counter() - started:.0f} s)")
            if day + 1 == REFERENCE_DAY and days > REFERENCE_DAY:
                _keep(work, args, REFERENCE_DAY, sizes)
        record = _keep(work, args, days, sizes)
    finally:
        remove_db(work)
    return path, record
