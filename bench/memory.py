"""Benchmark of memory: the running bot with 100,000 readers and 1,000,000 subscriptions.

    python -m bench.memory [--readers 100000] [--subscriptions 1000000]

A SQLite file with the project's schema holds 100,000 private chats (2 % paused), one
section subscription each and keyword subscriptions up to 1,000,000 in all, drawn like
`bench.match` draws them (Zipf-like popularity over a 50,000-word vocabulary, 5 % phrases).
It is written with `sqlite3.executemany` and cached (`$TMPDIR/newsbot-bench`, or
NEWSBOT_BENCH_CACHE) by size and seed.

Figures:

* bot RSS: `python -m bot run` in a subprocess against the fake Bot API
  (`tests.fakes.telegram_api.FakeTelegram`) with that database; once it polls for updates
  (start-up done: services open, matcher index loaded, dispatcher running) its resident
  size is sampled for a few seconds (psutil) and the largest value reported;
* the same bot with an empty database (what the index costs is the difference);
* baseline: a Python process holding the same subscriptions the way a naive bot does, one
  object per subscription in a list (a plain dataclass with chat id, kind, value, display),
  read from the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, cache_dir, child_env, figure, print_rows, remove_db

TARGET_MB = 300.0
GENERATOR_VERSION = 1
MB = 1024 * 1024


async def _apply_migrations(path: Path) -> None:
    from storage.db import Database

    db = await Database.open(path)
    await db.close()


def build_database(path: Path, readers: int, subscriptions: int, seed: int) -> float:
    from bench.match import make_workload

    started = time.perf_counter()
    remove_db(path)
    asyncio.run(_apply_migrations(path))
    keywords = max(0, subscriptions - readers)
    work = make_workload(
        random.Random(seed), keywords=keywords, chats=readers, articles=0, vocabulary=50_000
    )
    paused = set(work.silenced)
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO chats (id, type, paused, created_at, updated_at) VALUES (?, 'private', ?, ?, ?)",
            [(s.chat_id, int(s.chat_id in paused), now, now) for s in work.section_subs],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO subscriptions (chat_id, kind, value, display, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                (s.chat_id, s.kind, s.value, s.display, now)
                for s in [*work.section_subs, *work.keyword_subs]
            ),
        )
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "INSERT OR REPLACE INTO bench_meta (key, value) VALUES ('bench_subscriptions', ?)",
            (str(subscriptions),),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


def cached_database(readers: int, subscriptions: int, seed: int) -> tuple[Path, float | None]:
    path = cache_dir() / f"memory-{readers}-{subscriptions}-{seed}-v{GENERATOR_VERSION}.db"
    if path.exists():
        try:
            conn = sqlite3.connect(path)
            try:
                done = conn.execute(
                    "SELECT value FROM bench_meta WHERE key = 'bench_subscriptions'"
                ).fetchone()
            finally:
                conn.close()
            if done and int(done[0]) == subscriptions:
                return path, None
        except sqlite3.Error:
            pass
    return path, build_database(path, readers, subscriptions, seed)


def _counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        chats = conn.execute("SELECT count(*) FROM chats").fetchone()[0]
        subs = conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0]
        keywords = conn.execute(
            "SELECT count(DISTINCT value) FROM subscriptions WHERE kind = 'keyword'"
        ).fetchone()[0]
    finally:
        conn.close()
    return {"chats": int(chats), "subscriptions": int(subs), "distinct_keywords": int(keywords)}


def bot_rss(db_path: Path, work: Path, *, sample_s: float, timeout_s: float) -> dict[str, Any]:
    """Start `python -m bot run` against a fake Bot API; its RSS once start-up is done."""
    import psutil

    from tests.fakes.telegram_api import FakeTelegram

    with FakeTelegram("123456:MEMORY-bench") as tg:
        # The fake records a call when it answers it, and a long poll with nothing to deliver
        # is answered after 30 s. One update waiting (a paid media purchase, which no handler
        # takes) has the bot's first getUpdates answered at once: its answer marks the end of
        # start-up, as the bot asks for updates last.
        tg.push_update({"purchased_paid_media": {
            "from": {"id": 1, "is_bot": False, "first_name": "Bench"}, "paid_media_payload": "ready",
        }})
        env = child_env({
            **tg.bot_env(),
            "NEWSBOT_DB": str(db_path),
            "NEWSBOT_LOG_LEVEL": "WARNING",
            "NEWSBOT_POLL_SECONDS": "3600",
        })
        env.pop("NEWSBOT_FEEDS", None)
        log = (work / f"bot-{db_path.stem}.log").open("w+")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], cwd=work, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            process = psutil.Process(proc.pid)
            ready_s = None
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and proc.poll() is None:
                if tg.calls("getUpdates"):
                    ready_s = time.perf_counter() - started
                    break
                time.sleep(0.05)
            if ready_s is None:
                log.seek(0)
                raise RuntimeError(f"bot did not start (exit {proc.poll()}): {log.read()[-2000:]}")
            peak = 0
            samples = 0
            end = time.monotonic() + sample_s
            while time.monotonic() < end:
                peak = max(peak, int(process.memory_info().rss))
                samples += 1
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            log.close()
    return {"rss_mb": peak / MB, "ready_s": ready_s, "samples": samples,
            "exit_code": proc.returncode}


@dataclass
class NaiveSubscription:
    chat_id: int
    kind: str
    value: str
    display: str


def _naive_child(db_path: str) -> None:
    """Child: hold every subscription as one object in a list; print RSS as JSON."""
    import psutil

    conn = sqlite3.connect(db_path)
    subs = [
        NaiveSubscription(chat_id, kind, value, display)
        for chat_id, kind, value, display in conn.execute(
            "SELECT chat_id, kind, value, display FROM subscriptions ORDER BY id"
        )
    ]
    conn.close()
    rss = psutil.Process().memory_info().rss
    print(json.dumps({"rss_mb": rss / MB, "objects": len(subs)}))


def naive_rss(db_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "naive-child", str(db_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=child_env(), check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> list[Row]:
    if argv is None:
        argv = sys.argv[1:]
    if len(argv) == 2 and argv[0] == "naive-child":
        _naive_child(argv[1])
        return []
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--sample-seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="start-up limit, seconds")
    args = parser.parse_args(argv)
    if args.subscriptions < args.readers:
        parser.error("--subscriptions must be at least --readers (one section each)")

    path, built = cached_database(args.readers, args.subscriptions, args.seed)
    if built is not None:
        print(f"generated {args.subscriptions:,} subscriptions in {built:.1f} s: {path}", flush=True)
    counts = _counts(path)
    with tempfile.TemporaryDirectory(prefix="newsbot-bench-memory-") as tmp:
        work = Path(tmp)
        empty = work / "empty.db"
        asyncio.run(_apply_migrations(empty))
        idle = bot_rss(empty, work, sample_s=args.sample_seconds, timeout_s=args.timeout)
        loaded = bot_rss(path, work, sample_s=args.sample_seconds, timeout_s=args.timeout)
    naive = naive_rss(path)
    print(f"bot {loaded['rss_mb']:.0f} MB (idle {idle['rss_mb']:.0f} MB), "
          f"naive {naive['rss_mb']:.0f} MB", flush=True)
    size = f"{counts['chats']:,} readers, {counts['subscriptions']:,} subscriptions"
    rows = [
        figure(
            "memory_bot", f"memory: bot RSS after start-up ({size})",
            loaded["rss_mb"], "MB", baseline=naive["rss_mb"], better="lower",
            target=f"< {TARGET_MB:,.0f} MB", passed=loaded["rss_mb"] < TARGET_MB,
            floor=idle["rss_mb"], floor_text=f"empty database: {idle['rss_mb']:,.0f} MB",
            detail={
                **counts, "bot": loaded, "idle_bot": idle, "naive": naive,
                "note": (
                    f"`python -m bot run` (PTB application, services, matcher index, "
                    f"dispatcher) ready in {loaded['ready_s']:.1f} s; the same bot with an "
                    f"empty database {idle['rss_mb']:.0f} MB; baseline = a bare Python "
                    f"process holding the {naive['objects']:,} subscriptions as one dataclass "
                    f"object each (no bot at all)"
                ),
            },
        ),
        figure(
            "memory_index", "memory: index cost (bot RSS − same bot with an empty database)",
            loaded["rss_mb"] - idle["rss_mb"], "MB", target="—", passed=None,
        ),
    ]
    print_rows(rows, "memory")
    return rows


if __name__ == "__main__":
    main()
