"""A correction storm: one story followed by every reader, its headline changed at every poll
for an hour, while the news goes on — on a simulated clock.

    python -m bench.storm [--readers 20000] [--minutes 60] [--stories 8]

The real matcher, outbox (a real SQLite file) and dispatcher run on `bench.newsday`'s
VirtualClock against its simulated Telegram (40 ms a request, its limits enforced, violations
counted and refused), extended to keep every message's text and to answer edits as Telegram
does (an edit that changes nothing is refused as "message is not modified").

`--readers` readers follow one to three sections and a few keywords (bench.newsday's readers)
and every one of them the keyword of one story, published at the start: its alert goes to
all of them. Then, at every poll (NEWSBOT_POLL_SECONDS, 60 s) for `--minutes`, its headline
changes, stored as the poller stores it (storage.articles.store_articles finds the
correction) and enqueued as the poller does (bot.stages.poll.enqueue_alerts: an edit for
every message already sent). Meanwhile `--stories` ordinary stories arrive at random times,
each found 0-60 s after it was published. The same readers, stories and times run twice, in
two processes: with the storm, and with the headline never changing (the calm run: the
story's alerts still go to everyone).

Figures: new-story alert delay (publication → sent, every alert but the storm story's) p50 and
p95 with and without the storm (target: p95 with the storm ≤ 1.2× without); edits per
message (every edit of one message at least NEWSBOT_EDIT_INTERVAL after the one before, and
how many each message got); lost and doubled (every queued alert sent exactly once, every
reader told of the storm story in exactly one message, and every such message showing the
last headline when the run ends); limit violations; and, for information, what a correction
costs the writer: the real time of enqueueing one (its edits for up to every reader).
Targets: docs/delivery.md, "Corrections".
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import html
import itertools
import logging
import math
import multiprocessing
import os
import random
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.common import Row, bot_settings, figure, percentile, print_rows
from bench.newsday import (
    DAY_START,
    SECTION_WEIGHTS,
    SECTIONS,
    SimTelegram,
    VirtualClock,
    _feeds_file,
    _settle,
    make_day,
    seed_database,
)
from bot.context import Services, open_services
from bot.pipeline.botapi import Answer
from bot.stages.deliver import Dispatcher
from bot.stages.poll import enqueue_alerts
from storage import articles, due
from storage.models import Article

STORM_KEYWORD = "eclipse"
STORM_URL = "https://news.example/storm.html"
TARGET_DELAY_RATIO = 1.2
_URL_RE = re.compile(r'href="(https://news\.example/[a-z0-9]+\.html)"')


@dataclass
class StormTelegram(SimTelegram):
    """SimTelegram that keeps what each message shows and answers edits."""

    shown: dict[tuple[int, int], str] = field(default_factory=dict)  # (chat, message) → text
    sends: list[tuple[float, int, int, str]] = field(default_factory=list)  # (time, chat, message, text)
    edits: list[tuple[float, int, int, str]] = field(default_factory=list)
    not_modified: int = 0
    unknown_edits: int = 0

    def _arrive(self, method: str, params: dict[str, Any]) -> Answer:
        if method == "editMessageText":
            key = (int(params["chat_id"]), int(params["message_id"]))
            if key not in self.shown:
                self.unknown_edits += 1
                return Answer(False, 400, description="Bad Request: message to edit not found")
            if self.shown[key] == params["text"]:
                self.not_modified += 1
                return Answer(False, 400, description="Bad Request: message is not modified")
        answer = super()._arrive(method, params)
        if not answer.ok or method not in ("sendMessage", "editMessageText"):
            return answer
        now = self.clock.monotonic()
        chat = int(params["chat_id"])
        if method == "sendMessage":
            message = answer.message_id
            self.sends.append((now, chat, message, params["text"]))
        else:
            message = int(params["message_id"])
            self.edits.append((now, chat, message, params["text"]))
            answer = Answer(True, 200, result={"message_id": message})
        self.shown[(chat, message)] = params["text"]
        return answer


@dataclass(frozen=True)
class Plan:
    readers: dict[int, tuple[list[str], list[str]]]
    stories: list[tuple[float, float, Article]]  # (published, found, story): the ordinary ones
    storm: Article
    headlines: list[tuple[float, str]]  # (seconds after the start, headline), the first at 0


def make_plan(readers: int, minutes: float, stories: int, seed: int, poll: float) -> Plan:
    """bench.newsday's readers (every one following the storm's keyword too) and stories,
    the stories at random times during the storm and half an hour after it."""
    day = make_day(readers, stories, seed)
    chats = {chat: (sections, [*keywords, STORM_KEYWORD]) for chat, (sections, keywords) in day.readers.items()}
    rng = random.Random(seed + 1)
    span = (minutes + 30) * 60
    found: list[tuple[float, float, Article]] = []
    for n, (_, _, story) in enumerate(day.stories):
        published = DAY_START + rng.uniform(0, span)
        url = f"https://news.example/s{n}.html"
        found.append((published, published + rng.uniform(0, 60),
                      replace(story, id=url, url=url, published_at=published, fetched_at=published)))
    found.sort(key=lambda item: item[1])
    storm = Article(
        id=STORM_URL, url=STORM_URL, title=f"Total {STORM_KEYWORD} over the north: live", summary="Live report.",
        section=rng.choices(SECTIONS, SECTION_WEIGHTS)[0], tags=(), published_at=DAY_START, fetched_at=DAY_START,
    )
    headlines = [(0.0, storm.title)] + [
        (at, f"Total {STORM_KEYWORD} over the north: update {n}")
        for n, at in enumerate((poll * k for k in range(1, int(minutes * 60 / poll) + 1)), start=1)
    ]
    return Plan(chats, found, storm, headlines)


@dataclass
class RunResult:
    name: str
    delays: list[float] = field(default_factory=list)  # ordinary alerts: publication → sent
    alerts: int = 0
    lost: int = 0
    doubled: int = 0
    storm_messages: int = 0
    storm_readers_told: int = 0
    storm_readers_twice: int = 0
    stale: int = 0  # storm messages not showing the last headline at the end
    edits: int = 0
    edits_per_message: list[int] = field(default_factory=list)
    min_edit_gap: float = math.inf
    violations: int = 0
    not_modified: int = 0
    unknown_edits: int = 0
    correction_ms: list[float] = field(default_factory=list)
    messages: int = 0
    simulated_s: float = 0.0
    wall_s: float = 0.0


async def run(name: str, db_path: Path, plan: Plan, *, storm: bool, work: Path, poll: float) -> RunResult:
    settings = bot_settings(
        "http://127.0.0.1:9/bot", "123456:STORM-token", db_path, NEWSBOT_FEEDS=str(_feeds_file(work)),
    )
    started = time.perf_counter()
    clock = VirtualClock(DAY_START)
    services = await open_services(settings, clock=clock)
    telegram = StormTelegram(clock)
    dispatcher = Dispatcher(services, telegram)
    result = RunResult(name)
    events: list[tuple[float, int, str, Any]] = [(found, 1, "story", story) for _, found, story in plan.stories]
    headlines = plan.headlines if storm else plan.headlines[:1]
    events += [(DAY_START + at, 0, "headline", title) for at, title in headlines]
    events.sort(key=lambda e: (e[0], e[1]))
    await dispatcher.start()
    try:
        steps = 0
        while True:
            await _settle(clock, dispatcher)
            steps += 1
            if not events and steps % 200 == 0 and not dispatcher.in_flight and not await _backlog(services):
                break
            next_event = events[0][0] if events else math.inf
            clock.advance(min(clock.next_deadline(), next_event - DAY_START))
            while events and events[0][0] <= clock.time():
                _, _, kind, payload = events.pop(0)
                if kind == "story":
                    await _publish(services, payload, clock.time())
                else:
                    ms = await _publish(services, replace(plan.storm, title=payload, fetched_at=clock.time()), clock.time())
                    if payload != plan.storm.title:
                        result.correction_ms.append(ms)
        result.simulated_s = clock.monotonic()
        result.wall_s = time.perf_counter() - started
        await _measure(services, telegram, result, plan, headlines[-1][1])
    finally:
        await dispatcher.stop(timeout=1)
        await services.close()
    return result


async def _backlog(services: Services) -> int:
    return (await due.backlog(services.db)).total


async def _publish(services: Services, story: Article, now: float) -> float:
    """Store a story as a poll finds it and queue what it needs (alerts, or the edits of a
    correction); returns the real milliseconds the enqueue took."""
    async with services.db.write() as conn:
        stored = await articles.store_articles(conn, [story], now=now)
    started = time.perf_counter()
    await enqueue_alerts(services, [*stored.new, *(c.article for c in stored.corrected)], now=now)
    return (time.perf_counter() - started) * 1000


async def _measure(services: Services, telegram: StormTelegram, result: RunResult, plan: Plan, last_headline: str) -> None:
    rows = await services.db.fetchall(
        "SELECT o.chat_id, o.state, o.sent_at, a.url, a.published_at FROM outbox o "
        "JOIN articles a ON a.id = o.article_id WHERE o.kind = 'alert'"
    )
    told: Counter[tuple[int, str]] = Counter()
    for _, chat, _, text in telegram.sends:
        for url in set(_URL_RE.findall(text)):
            told[(chat, url)] += 1
    queued: set[tuple[int, str]] = set()
    for row in rows:
        pair = (int(row["chat_id"]), str(row["url"]))
        queued.add(pair)
        if row["state"] != "sent" or told[pair] == 0:
            result.lost += 1
            continue
        if row["url"] != STORM_URL:
            result.alerts += 1
            result.delays.append(float(row["sent_at"]) - float(row["published_at"]))
    result.doubled = sum(n - 1 for n in told.values() if n > 1) + sum(n for pair, n in told.items() if pair not in queued)
    storm_messages = {(chat, message) for _, chat, message, text in telegram.sends if STORM_URL in text}
    result.storm_messages = len(storm_messages)
    per_reader = Counter(chat for chat, _ in storm_messages)
    result.storm_readers_told = len(per_reader)
    result.storm_readers_twice = sum(1 for n in per_reader.values() if n > 1)
    result.lost += len(plan.readers) - len(per_reader)
    shown_title = html.escape(last_headline, quote=False)
    result.stale = sum(1 for key in storm_messages if shown_title not in telegram.shown[key])
    times: dict[tuple[int, int], list[float]] = defaultdict(list)
    for at, chat, message, _ in telegram.edits:
        times[(chat, message)].append(at)
    result.edits = len(telegram.edits)
    result.edits_per_message = [len(times.get(key, ())) for key in storm_messages]
    for stamps in times.values():
        stamps.sort()
        for a, b in itertools.pairwise(stamps):
            result.min_edit_gap = min(result.min_edit_gap, b - a)
    result.violations = telegram.violations
    result.not_modified = telegram.not_modified
    result.unknown_edits = telegram.unknown_edits
    result.messages = len(telegram.sends)


def run_one(name: str, db_path: str, args: argparse.Namespace, storm: bool, work: str) -> RunResult:
    """One run in a process of its own (the figures are in simulated time)."""
    logging.getLogger().setLevel(logging.ERROR)
    plan = make_plan(args.readers, args.minutes, args.stories, args.seed, args.poll)
    return asyncio.run(run(name, Path(db_path), plan, storm=storm, work=Path(work), poll=args.poll))


def bench(args: argparse.Namespace) -> list[Row]:
    plan = make_plan(args.readers, args.minutes, args.stories, args.seed, args.poll)
    work = Path(tempfile.mkdtemp(prefix="newsbot-storm-"))
    try:
        source = work / "readers.db"
        asyncio.run(seed_database(source, _as_day(plan), sections=True))
        runs = {"storm": True, "calm": False}
        copies = {}
        for name in runs:
            copies[name] = work / f"{name}.db"
            shutil.copy(source, copies[name])
        print(f"storm: {args.readers:,} readers, {len(plan.headlines) - 1} corrections, {len(plan.stories)} "
              f"other stories; storm and calm runs side by side …", flush=True)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), mp_context=context) as pool:
            futures = {name: pool.submit(run_one, name, str(copies[name]), args, storm, str(work))
                       for name, storm in runs.items()}
            results = {name: future.result() for name, future in futures.items()}
        for r in results.values():
            print(f"  {r.name}: {r.messages:,} messages, {r.edits:,} edits, {r.simulated_s / 60:.0f} simulated "
                  f"minutes in {r.wall_s:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows_of(results, args)


def _as_day(plan: Plan) -> Any:
    from bench.newsday import Day

    return Day(plan.readers, plan.stories)


def rows_of(results: dict[str, RunResult], args: argparse.Namespace) -> list[Row]:
    storm, calm = results["storm"], results["calm"]
    interval = _edit_interval()
    s50, s95 = _p(storm.delays, 50), _p(storm.delays, 95)
    c50, c95 = _p(calm.delays, 50), _p(calm.delays, 95)
    ratio = s95 / c95 if c95 else math.inf
    rows = [figure(
        "storm_delay",
        f"correction storm ({args.readers:,} readers, a headline changed every poll for {args.minutes:g} min): "
        "new-story alert delay p50 / p95",
        s95, "s", baseline=c95, better="lower",
        target=f"p95 ≤ {TARGET_DELAY_RATIO:g}× without the storm", passed=ratio <= TARGET_DELAY_RATIO,
        value_text=f"{s50:,.0f} / {s95:,.0f} s", baseline_text=f"no storm: {c50:,.0f} / {c95:,.0f} s",
        floor=c95, floor_text=f"no storm: {c95:,.0f} s",
        detail={"note": (
            f"{storm.alerts:,} alerts of {len(_plan_stories(args))} other stories in each run; the storm's "
            f"{len(storm.correction_ms):,} corrections made {storm.edits:,} edits of {storm.storm_messages:,} "
            f"messages; the same readers, stories and times without the corrections give the baseline "
            f"(its p95 is the floor); p95 with the storm = {ratio:.2f}× without")},
    )]
    most = max(storm.edits_per_message, default=0)
    mean = sum(storm.edits_per_message) / max(1, len(storm.edits_per_message))
    gap_ok = storm.min_edit_gap >= interval - 1.0
    rows.append(figure(
        "storm_edits",
        "correction storm: edits per message (mean / most), shortest gap between two edits of one message",
        mean, "", better="lower", target=f"≤ 1 per {interval / 60:g} min (NEWSBOT_EDIT_INTERVAL)",
        passed=gap_ok and storm.not_modified == 0 and storm.unknown_edits == 0,
        value_text=(f"{mean:.2f} / {most} (gap ≥ {storm.min_edit_gap / 60:.1f} min)" if storm.edits
                    else "no edits"),
        baseline_text=f"{len(storm.correction_ms):,} corrections each",
        detail={"note": (f"{storm.edits:,} edits sent; refused as not modified: {storm.not_modified}; of a "
                         f"message Telegram did not know: {storm.unknown_edits}")},
    ))
    bad = {name: r.lost + r.doubled + r.stale + r.storm_readers_twice + r.violations for name, r in results.items()}
    rows.append(figure(
        "storm_clean",
        "correction storm: lost + doubled (alerts, storm messages not showing the last headline), violations",
        float(sum(bad.values())), "", target="0", passed=sum(bad.values()) == 0,
        detail={"note": "; ".join(
            f"{r.name}: lost {r.lost}, doubled {r.doubled} (readers told twice of the storm story "
            f"{r.storm_readers_twice}), stale messages {r.stale}, violations {r.violations}, "
            f"{r.storm_readers_told:,} of {args.readers:,} readers told of the storm story"
            for r in results.values())},
    ))
    cost = storm.correction_ms
    rows.append(figure(
        "storm_correction_cost",
        f"correction storm: enqueueing one correction (edits for up to {args.readers:,} messages), p50 / max",
        _p(cost, 50), "ms", better="lower", passed=None,
        value_text=f"{_p(cost, 50):,.0f} / {max(cost, default=0.0):,.0f} ms",
        detail={"note": "real time of bot.stages.poll.enqueue_alerts for the corrected story (the writer "
                        "is held meanwhile); the simulated clock stands still while it runs"},
    ))
    return rows


def _plan_stories(args: argparse.Namespace) -> range:
    return range(args.stories)


def _p(values: list[float], p: float) -> float:
    return percentile(values, p) if values else 0.0


def _edit_interval() -> float:
    from bot.config import Settings

    return float(Settings.__dataclass_fields__["edit_interval"].default)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the headline keeps changing")
    parser.add_argument("--stories", type=int, default=8, help="other stories, during the storm and 30 min after")
    parser.add_argument("--poll", type=float, default=60.0, help="seconds between two corrections (a poll)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    rows = bench(args)
    print_rows(rows, "correction storm")
    return rows


if __name__ == "__main__":
    main()
