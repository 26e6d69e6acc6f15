"""A year at 100,000 readers: the database after a long run, its size and its hot queries —
every figure beside the same figure on the database at day 7, measured in the same run.

    python -m bench.year [--readers 100000] [--subscriptions 1000000] [--articles 1000000]
                         [--rate 30] [--days 30] [--outbox-days 7] [--runs 200]

The databases (readers, subscriptions, a million archived stories, then `--days` days of
traffic at `--rate` messages a second with 0.2's retention at the end of every day) are built
by bench/year_build.py and cached, the one at day 7 included; every figure is measured afresh
on copies. Once retention is steady (day 7) nothing should cost more as the database ages:
each figure at the last day is compared with the same figure at day 7 (its floor), the two
databases open side by side and every query timed on each in turn, so that both meet the same
moments of a busy machine. On each, with a broadcast to everyone pending (the worst moment):

* the file's size at days 7, 14 and 30 (file + write-ahead log), and the told memory
  (storage.told: which message each chat got for each story, kept while the story can be
  corrected or is still listed): its rows and bytes;
* p99 of every hot query, through the storage functions the bot calls: due rows per lane,
  a claim and a sent mark, /latest, /search, /related by text and by link, the broadcast
  audience, /stats (`bot.newsroom.figures`, the matcher loaded with every subscription), and
  `/healthz` (`bot.health.check_health`) asked while /stats runs in a loop beside it; each
  timing the best of three calls back to back (a moment the process waits for a core is the
  machine's, not the query's);
* enqueueing a poll's alerts: a story for 7,000 readers (`storage.outbox.enqueue_alerts`,
  new rows every time), median of nine, beside its own floor: one `executemany` of the same
  rows into the same table (same shape, same indexes) on a bare sqlite3 connection;
* the dispatcher's throughput with limits lifted (an in-process Telegram answering at once):
  the same broadcast to 5,000 chats on each database and on an empty one.

Each figure stands beside the same figure for newsbot 0.1, measured in the same run by
`bench/year_v01.py` in a child process on 0.1's own code (`git archive` of the 0.1 release)
and schema. 0.1 deletes nothing, so it is built to day 7 only: its size at day 14 and 30 is
that day-7 figure's daily growth carried on (said so in the table).

Targets: size flat after day 7 (±10 %); every other figure ≤ 1.1× its day-7 value (the
dispatcher: ≥ 1/1.1 of its day-7 rate); the enqueue ≤ 1.5× its executemany floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
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

from bench import year_build as build
from bench import year_data as data
from bench.common import REPO, Row, bot_settings, child_env, figure, percentile, print_rows
from bot.clock import RealClock
from bot.context import Services, open_services
from bot.health import check_health
from bot.newsroom import figures as newsroom_figures
from bot.pipeline.botapi import Answer
from bot.pipeline.ratelimit import RateLimits
from bot.stages.deliver import LOAD_PER_LANE, Dispatcher
from storage import articles, broadcasts, due, outbox
from storage.outbox import Match, SentBatch

V01 = "dac7ac3"  # the 0.1 release
QUERY_RUNS = 200  # timed runs of each hot query (--runs); /stats a quarter, /healthz half
FAN_OUT = 7_000  # readers of one story in the enqueue figure
AGE_RATIO = 1.1  # a figure at the last day may cost this many times its day-7 value
FLOOR_RATIO = 1.5  # the enqueue against one executemany of the same rows
REFERENCE = build.REFERENCE_DAY
BEST_OF = 3
# Enqueues timed on each database (each one a transaction of FAN_OUT new rows): their median
# is the figure, as a p99 of a few big transactions is the slowest checkpoint among them.
ENQUEUES = 9
DISPATCHES = 2


# --------------------------------------------------------------------------- measuring


class InstantTelegram:
    """Telegram answering at once: the dispatcher's own cost, limits lifted. `done` is set at
    the `expected`-th message."""

    def __init__(self, expected: int) -> None:
        self.sent = 0
        self.expected = expected
        self.done = asyncio.Event()

    async def call(self, method: str, params: dict[str, Any]) -> Answer:
        self.sent += 1
        if self.sent >= self.expected:
            self.done.set()
        await asyncio.sleep(0)
        return Answer(True, 200, result={"message_id": self.sent})


class ShiftedClock(RealClock):
    """The real clock, its wall time moved to the simulated day the database ends on: /stats
    reads the counters of the last hours, the dispatcher's due times are the database's."""

    def __init__(self, now: float) -> None:
        self.offset = now - time.time()

    def time(self) -> float:
        return super().time() + self.offset


async def dispatcher_rate(services: Services, messages: int) -> float:
    """Messages/s sending a broadcast of `messages` rows with limits lifted."""
    now = services.clock.time()
    broadcast_id = await broadcasts.create(services.db, admin_id=1, admin_chat_id=1, html="<b>x</b>", audience=None, now=now)
    async with services.db.write() as conn:
        await conn.executemany(
            "INSERT OR IGNORE INTO outbox (chat_id, kind, key, lane, broadcast_id, next_attempt_at, created_at) "
            "VALUES (?, 'broadcast', ?, 0, ?, ?, ?)",
            [(chat, f"b:{broadcast_id}", broadcast_id, now, now) for chat in data.readers(messages)],
        )
        await conn.execute("UPDATE broadcasts SET state = 'sending' WHERE id = ?", (broadcast_id,))
    telegram = InstantTelegram(messages)
    dispatcher = Dispatcher(services, telegram, limits=RateLimits(unlimited=True))
    started = time.perf_counter()
    await dispatcher.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(telegram.done.wait(), timeout=300)
        elapsed = time.perf_counter() - started
    finally:
        await dispatcher.stop(timeout=5)
    return telegram.sent / elapsed


class Side:
    """One database under measurement (the last day's or day 7's): its services and calls."""

    def __init__(self, name: str, services: Services, now: float, readers: int, stories: int) -> None:
        self.name = name
        self.services = services
        self.now = now
        self.readers = readers
        self.stories = stories
        self.rng = random.Random(3)
        self.texts = [" ".join(self.rng.choices(data.VOCABULARY[:3000], k=2)) for _ in range(50)]
        self.story: Any = None
        self.big = 0
        self.enqueued = 0

    async def prepare(self) -> None:
        db, now = self.services.db, self.now
        # The worst moment for the due queries: a broadcast to everyone waiting.
        self.big = await broadcasts.create(db, admin_id=1, admin_chat_id=1, html="x", audience=None, now=now)
        await broadcasts.start(db, self.big, now=now, expires_before=now - 600)
        self.story = await articles.get_article(db, f"s{self.stories - 1}")
        assert self.story is not None

    def calls(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        db, now, story, rng = self.services.db, self.now, self.story, self.rng

        async def claim_mark() -> None:
            rows = await due.due_messages(db, 0, now + 30, 1)
            ids = [m.id for m in rows]
            async with db.write() as conn:
                await outbox.claim_in(conn, ids)
                await outbox.mark_sent_in(conn, SentBatch(tuple(ids), 1, "broadcast"), self.services.clock.time())

        return {
            "due (broadcast lane)": lambda: due.due_messages(db, 0, now + 30, LOAD_PER_LANE),
            "due (sections lane)": lambda: due.due_messages(db, 2, now + 30, LOAD_PER_LANE),
            "claim + sent mark": claim_mark,
            "/latest": lambda: articles.latest(db, ["sports", "world"], 5),
            "/search": lambda: articles.search(db, rng.choice(self.texts), 10),
            "/related (text)": lambda: articles.related(db, story.title, 5, exclude_id=story.id),
            "/related (link)": lambda: articles.find_by_url(db, f"https://news.example/x/{rng.randrange(10**9)}"),
            "audience (a section)": lambda: broadcasts.audience_size(db, "sports"),
            "/stats": lambda: newsroom_figures(self.services),
        }

    def fan_out(self, story_id: str) -> dict[str, dict[int, Match]]:
        return {story_id: {chat: Match(("section:world",)) for chat in data.readers(min(self.readers, FAN_OUT))}}

    async def enqueue(self) -> float:
        """A poll's alerts for a story no one was told of yet (new rows every time), in ms."""
        self.enqueued += 1
        story = await articles.get_article(self.services.db, f"s{self.stories - 100 - self.enqueued}")
        assert story is not None
        fan_out = self.fan_out(story.id)
        started = time.perf_counter()
        await outbox.enqueue_alerts(self.services.db, [story], fan_out, now=self.now)
        return (time.perf_counter() - started) * 1000

    def enqueue_floor(self, conn: sqlite3.Connection) -> float:
        """The same rows (for another story: the outbox takes one row per chat and story) in
        one executemany into the outbox itself, through a bare sqlite3 connection, in ms."""
        self.enqueued += 1
        story_id = f"s{self.stories - 100 - self.enqueued}"
        rows = [(chat, "alert", "a:" + story_id, outbox.LANE_SECTION, story_id, "section:world", None,
                 "pending", self.now, self.now) for chat in data.readers(min(self.readers, FAN_OUT))]
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO outbox (chat_id, kind, key, lane, article_id, reasons, thread_id, state, "
            "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
        )
        conn.execute("COMMIT")
        return (time.perf_counter() - started) * 1000


async def _open(path: Path, work: Path, name: str, now: float, readers: int, stories: int) -> Side:
    settings = bot_settings("http://127.0.0.1:9/bot", "123456:YEAR-token", path, NEWSBOT_FEEDS=str(_feeds(work)))
    side = Side(name, await open_services(settings, clock=ShiftedClock(now)), now, readers, stories)
    await side.prepare()
    return side


async def _in_turn(
    sides: list[Side], calls: list[Callable[[], Awaitable[Any]]], runs: int, budget: float = 0.0
) -> list[list[float]]:
    """Each call on each side in turn (their order swapped every run), after one warm run;
    `runs` times, or more (up to ten times as many) while they fit in `budget` seconds. A
    run's time is the best of BEST_OF calls back to back: on a shared machine a few calls in
    a hundred land on a moment the process waits for a core, and a p99 of single calls
    measures those moments, not the query."""
    started = time.perf_counter()
    for call in calls:
        await call()
    warm = time.perf_counter() - started
    if budget > 0 and warm > 0:
        runs = max(runs, min(10 * runs, int(budget / (BEST_OF * warm))))
    times: list[list[float]] = [[] for _ in sides]
    for run in range(runs):
        order = range(len(sides)) if run % 2 == 0 else reversed(range(len(sides)))
        for n in order:
            best = math.inf
            for _ in range(BEST_OF):
                started = time.perf_counter()
                await calls[n]()
                best = min(best, (time.perf_counter() - started) * 1000)
            times[n].append(best)
    return times


async def measure(
    paths: dict[str, Path], nows: dict[str, float], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Every figure on each database (`paths`: name → file), timed in turn."""
    readers, runs = args.readers, args.runs
    sides = [await _open(path, work, name, nows[name], readers, args.articles) for name, path in paths.items()]
    results: dict[str, Any] = {side.name: {"queries": {}} for side in sides}
    try:
        named = [side.calls() for side in sides]
        for query in named[0]:
            count = max(1, runs // 4) if query == "/stats" else runs
            times = await _in_turn(sides, [calls[query] for calls in named], count, args.budget)
            for side, found in zip(sides, times, strict=True):
                results[side.name]["queries"][query] = percentile(found, 99)
        for side, found in zip(sides, await _health_during_stats(sides, max(1, runs // 2)), strict=True):
            results[side.name]["healthz"] = percentile(found, 99)
        enqueued: dict[str, tuple[list[float], list[float]]] = {side.name: ([], []) for side in sides}
        bare = {side.name: sqlite3.connect(side.services.db.path, isolation_level=None, timeout=30) for side in sides}
        try:
            for side in sides:
                bare[side.name].execute("PRAGMA synchronous = NORMAL")  # as the bot's connections (storage.db)
                await side.enqueue()  # warm
            for _ in range(ENQUEUES):
                for side in sides:
                    ours, floor = enqueued[side.name]
                    ours.append(await side.enqueue())
                    floor.append(side.enqueue_floor(bare[side.name]))
        finally:
            for conn in bare.values():
                conn.close()
        for side in sides:
            ours, floor = enqueued[side.name]
            results[side.name]["enqueue"] = {
                "ours": percentile(ours, 50), "floor": percentile(floor, 50),
                "ours_max": max(ours), "floor_max": max(floor),
            }
        for side in sides:
            # The dispatcher's figure is its own broadcast: the one to everyone (there for the
            # due queries) and the enqueued alerts are stopped first, and the log they wrote is
            # checkpointed, as the bot's maintenance does every minute.
            db = side.services.db
            async with db.write() as conn:
                await conn.execute("UPDATE outbox SET state = 'cancelled' WHERE state = 'pending'")
                await conn.execute("UPDATE broadcasts SET state = 'done' WHERE id = ?", (side.big,))
            await db.maintain()
        for _ in range(DISPATCHES):  # in turn, the best of each: a rate of a few seconds
            for side in sides:
                rate = await dispatcher_rate(side.services, min(readers, 5000))
                results[side.name]["dispatcher"] = max(rate, results[side.name].get("dispatcher", 0.0))
    finally:
        for side in sides:
            await side.services.close()
    empty_path = work / "empty.db"
    empty = await open_services(bot_settings("http://127.0.0.1:9/bot", "123456:YEAR-token", empty_path,
                                             NEWSBOT_FEEDS=str(_feeds(work))))
    try:
        async with empty.db.write() as conn:
            await conn.executemany(
                "INSERT INTO chats (id, type, created_at, updated_at) VALUES (?, 'private', ?, ?)",
                [(chat, data.START, data.START) for chat in data.readers(min(readers, 5000))],
            )
        results["empty_dispatcher"] = await dispatcher_rate(empty, min(readers, 5000))
    finally:
        await empty.close()
    return results


async def _health_during_stats(sides: list[Side], runs: int) -> list[list[float]]:
    done = asyncio.Event()

    async def stats_loop(side: Side) -> None:
        while not done.is_set():
            await newsroom_figures(side.services)

    for side in sides:
        side.services.status.phase = "starting"  # only the database part of the checks matters here
    tasks = [asyncio.create_task(stats_loop(side)) for side in sides]
    try:
        return await _in_turn(sides, [lambda s=side: check_health(s.services, s.services.clock.time()) for side in sides], runs)
    finally:
        done.set()
        await asyncio.gather(*tasks)


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
    last, record = build.ensure_days(args, args.days, log=lambda line: print(line, flush=True))
    paths = {"last": work / "year.db"}
    shutil.copy(last, paths["last"])
    nows = {"last": data.START + args.days * data.DAY}
    reference: dict[str, Any] | None = None
    if args.days > REFERENCE:
        seventh, reference = build.cached_days(args, REFERENCE)
        assert reference is not None  # ensure_days keeps it on the way
        paths["day7"] = work / "year-day7.db"
        shutil.copy(seventh, paths["day7"])
        nows["day7"] = data.START + REFERENCE * data.DAY
    measured = asyncio.run(measure(paths, nows, work, args))
    sizes = {int(day): size for day, size in record["sizes"].items()}
    return {"sizes": sizes, "record": record, "reference": reference, **measured}


NOT_RUN = "0.1: not run (--without-v01)"


def _old_text(old: dict[str, Any] | None, value: float | None, unit: str = "ms") -> str:
    if old is None:
        return NOT_RUN
    if value is None:
        return "—"
    return f"0.1: {value:,.1f} {unit}" if value < 100 else f"0.1: {value:,.0f} {unit}"


def rows_of(new: dict[str, Any], old: dict[str, Any] | None, args: argparse.Namespace) -> list[Row]:
    """The table; without `old` (0.1's figures) its baselines say they were not run."""
    rows: list[Row] = []
    sizes = new["sizes"]
    last, seventh = new["last"], new.get("day7")
    steady = [d for d in build.SIZE_DAYS if d in sizes]
    flat = all(abs(sizes[d] - sizes[steady[0]]) <= 0.1 * sizes[steady[0]] for d in steady)
    record = new["record"]
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
            passed=flat if d == steady[-1] else None, baseline_text=old_text,
            floor=sizes[steady[0]] / 2**20 if d != steady[0] else None,
            detail={"note": (f"{record['outbox_rows']:,} outbox rows kept at the end; 0.1 keeps every row")}
            if d == steady[-1] else None,
        ))
    told_per = record["told_bytes"] / max(1, record["told_rows"])
    ref = new.get("reference") or {}
    ref_per = ref.get("told_bytes", 0) / max(1, ref.get("told_rows", 0)) if ref else None
    rows.append(figure(
        "year_told", f"year: who was told (storage.told) at day {args.days}, bytes per sent message it remembers",
        told_per, "B", better="lower", target="— (its share of the size is in the size rows)", passed=None,
        value_text=f"{told_per:.1f} B ({record['told_rows']:,} rows, {record['told_bytes'] / 2**20:,.0f} MB "
                   f"of {sizes[steady[-1]] / 2**20:,.0f} MB)",
        baseline_text="0.1: none (a pruned outbox forgot who was told)" if old is not None else NOT_RUN,
        floor=ref_per, floor_text=f"day 7: {ref_per:.1f} B ({ref.get('told_rows', 0):,} rows)" if ref_per else None,
        detail={"note": (
            "one row per sent alert (story, chat, message id, time), kept while its story can be corrected "
            "(48 h after it was sent) or is still listed in its feed: the alerts of about the last two to "
            "three days; bytes are the told table's b-tree pages (dbstat) over its rows")},
    ))
    for name, value in last["queries"].items():
        old_value = None if old is None else old["queries"].get(name) if name != "/stats" else old.get("stats")
        ref_value = seventh["queries"][name] if seventh else None
        rows.append(_aged(f"year_query_{name}", f"year: {name} p99" + (
            f" (a load: up to {LOAD_PER_LANE:,} rows)" if name.startswith("due") else ""),
            value, ref_value, old, old_value))
    rows.append(_aged("year_healthz", "year: /healthz p99 while /stats runs", last["healthz"],
                      seventh["healthz"] if seventh else None, old, None if old is None else old["healthz"]))
    enqueue = last["enqueue"]
    old_enqueue = None if old is None else old["queries"].get("enqueue 7,000 alerts (per poll)")
    rows.append(figure(
        "year_enqueue", f"year: enqueue a poll's {min(args.readers, FAN_OUT):,} alerts (median), against one "
        "executemany of the same rows",
        enqueue["ours"], "ms", baseline=old_enqueue, better="lower",
        target=f"≤ {FLOOR_RATIO:g}× floor", passed=enqueue["ours"] <= FLOOR_RATIO * enqueue["floor"],
        baseline_text=_old_text(old, old_enqueue), floor=enqueue["floor"],
        floor_text=f"executemany {enqueue['floor']:,.1f} ms",
        detail={"note": (f"new rows each time (a story no one was told of), {ENQUEUES} times; floor = the same "
                         "rows for another story in one executemany into the same outbox (its shape and indexes) "
                         "through a bare sqlite3 connection (synchronous = NORMAL, as the bot's), one transaction, "
                         f"timed in turn with ours; slowest of each: {enqueue['ours_max']:,.1f} ms and "
                         f"{enqueue['floor_max']:,.1f} ms")},
    ))
    if seventh:
        rows.append(_aged("year_enqueue_aged", f"year: enqueue a poll's {min(args.readers, FAN_OUT):,} alerts (median)", enqueue["ours"],
                          seventh["enqueue"]["ours"], old, old_enqueue))
    rate, empty = last["dispatcher"], new["empty_dispatcher"]
    ref_rate = seventh["dispatcher"] if seventh else None
    rows.append(figure(
        "year_dispatcher", f"year: dispatcher msg/s, limits lifted ({min(args.readers, 5000):,} messages, best of "
        f"{DISPATCHES})", rate, "msg/s",
        baseline=empty, target=f"≥ 1/{AGE_RATIO:g} of day 7's",
        passed=ref_rate is not None and rate >= ref_rate / AGE_RATIO,
        baseline_text=f"empty database: {empty:,.0f} msg/s",
        floor=ref_rate, floor_text=f"day 7: {ref_rate:,.0f} msg/s" if ref_rate else None,
    ))
    return rows


def _aged(key: str, name: str, value: float, ref: float | None, old: dict[str, Any] | None, old_value: float | None) -> Row:
    """A figure at the last day beside day 7's (its floor) and 0.1's (its baseline)."""
    return figure(
        key, name, value, "ms", baseline=old_value, better="lower",
        target=f"≤ {AGE_RATIO:g}× day 7", passed=ref is not None and value <= AGE_RATIO * ref,
        baseline_text=_old_text(old, old_value), floor=ref,
        floor_text=f"day 7: {ref:,.3f} ms" if ref is not None and ref < 10 else
        (f"day 7: {ref:,.1f} ms" if ref is not None else None),
    )


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
    parser.add_argument("--runs", type=int, default=QUERY_RUNS, help="timed runs of each hot query (at least)")
    parser.add_argument("--budget", type=float, default=4.0,
                        help="seconds each hot query may take on both databases: quick ones run more often")
    parser.add_argument("--without-v01", action="store_true",
                        help="skip 0.1's figures (its child builds 0.1's database afresh: more than half an hour at full size)")
    args = parser.parse_args(argv)
    if args.articles < build.STORIES_PER_DAY * args.days + 200:
        # The enqueue figure needs stories the days never sent (they send 500 new ones a day).
        parser.error(f"--articles must be at least {build.STORIES_PER_DAY * args.days + 200} for {args.days} days")
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
