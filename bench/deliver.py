"""Benchmark of the dispatch stage against a limit-enforcing fake Bot API.

    python -m bench.deliver [--messages 3000] [--chats 1000] [--overhead-messages 5000]

Figures:

* delivery rate: the project's `Dispatcher` sends 3,000 alerts to 1,000 private chats
  (three each, combining off, so every alert is its own message) through a real
  python-telegram-bot `ExtBot` (built as the bot builds it) to
  `tests.fakes.telegram_api.FakeTelegram` enforcing 30 messages/s overall and one per
  second per chat, answering a violation with 429 as Telegram does. Sustained rate =
  accepted sends / (last − first accepted send + 1 s), on the server's clock (the extra
  second is the window the first burst of 30 may use, so a perfect 30/s limiter scores
  100 %), as a fraction of 30/s; violations as counted by the fake; lost = (chat, article)
  pairs queued but never accepted, or outbox rows not `sent`; duplicates are reported too.
* the same 3,000 messages sent the usual way: python-telegram-bot's `AIORateLimiter`
  (max_retries=3: it sleeps `retry_after` and retries a 429 three times, then gives up)
  and a loop of `send_message` calls under `asyncio.gather` with a semaphore of
  `send_concurrency` — no outbox, no per-chat limit.
* dispatcher overhead: limits lifted on both sides (`RateLimits(unlimited=True)`, fake not
  enforcing), 5,000 alerts to 5,000 chats (a paid broadcast's shape); messages/s from
  start until the outbox is empty, with the process's CPU seconds. Baseline: the same
  messages through the same `ExtBot` in a bare gather loop (no database at all), i.e. the
  ceiling of python-telegram-bot + httpx on this machine. Floor: the same requests posted by
  one `httpx` client in a gather loop, only each answer's JSON read (no outbox, no limits, no
  Telegram library). Targets: ≥ 1.2× the bare PTB loop and ≥ 0.5× the bare httpx loop.

The fake runs in a child process (the other core), the bot in this one; the database is a
real SQLite file seeded through the storage functions (chats.join,
chats.set_option, articles.store_articles, outbox.enqueue_alerts).
`--profile` prints a cProfile of the overhead run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import io
import logging
import os
import pstats
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import FakeTelegramProcess, Row, bot_settings, figure, print_rows, words

GLOBAL_RATE = 30
TARGET_FRACTION = 97.0
TARGET_OVERHEAD_RATIO = 1.2  # × the bare python-telegram-bot loop, measured in the same run
TARGET_FLOOR_FRACTION = 0.5  # × a bare httpx loop posting the same requests, same run
FIRST_CHAT = 700_000_001
SECTIONS = ("sweden", "living", "world", "business", "sports", "entertainment")
_URL_RE = re.compile(r"https://news\.example/[a-z]+/(\d+)")

WORDS = words(
    "sweden stockholm malmö police government election budget energy storm drone ukraine "
    "nato school hospital court train airport volvo ikea spotify football hockey music film "
    "royal migration pension tax strike union jobs export research wolf forest flood summer"
)


@dataclass
class RunResult:
    """What one sending run did, as the fake saw it."""

    name: str
    queued: int
    wall_s: float
    cpu_s: float = 0.0
    accepted: int = 0
    refused_429: int = 0
    other_errors: int = 0
    violations: int = 0
    violation_kinds: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicates: int = 0
    unsent_rows: int = 0
    sustained_per_s: float = 0.0
    outbox_states: dict[str, int] = field(default_factory=dict)
    gave_up: int = 0

    def detail(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "name"}


def _article(number: int, rng: random.Random) -> Any:
    from storage.models import Article

    section = SECTIONS[number % len(SECTIONS)]
    title = " ".join(w.capitalize() for w in rng.choices(WORDS, k=rng.randint(6, 11)))
    summary = ". ".join(" ".join(rng.choices(WORDS, k=12)).capitalize() for _ in range(4)) + "."
    return Article(
        id=f"https://news.example/{section}/{number}",
        url=f"https://news.example/{section}/{number}",
        title=title,
        summary=summary,
        section=section,
        tags=tuple(w.capitalize() for w in rng.sample(WORDS, 3)),
        published_at=1_760_000_000.0 + number,
        fetched_at=1_760_000_000.0 + number,
    )


async def seed(
    services: Any, *, chats: int, per_chat: int, articles: int, rng: random.Random,
    combine_off: bool,
) -> set[tuple[int, int]]:
    """Chats, articles and their outbox rows (article after article, as enqueued after a
    poll); returns the (chat id, article number) pairs that must arrive."""
    from storage import articles as articles_store
    from storage import chats as chats_store
    from storage import outbox

    db = services.db
    chat_ids = [FIRST_CHAT + i for i in range(chats)]
    for chat_id in chat_ids:
        await chats_store.join(db, chat_id, "private", now=time.time())
        if combine_off:
            await chats_store.set_option(db, chat_id, "combine", False, now=time.time())
    stories = [_article(n, rng) for n in range(articles)]
    async with db.write() as conn:
        stored = await articles_store.store_articles(conn, stories, now=time.time(), seen=True)
    stories = list(stored.new)
    matches: dict[str, dict[int, outbox.Match]] = {a.id: {} for a in stories}
    expected: set[tuple[int, int]] = set()
    for chat_id in chat_ids:
        for number in rng.sample(range(articles), per_chat):
            story = stories[number]
            matches[story.id][chat_id] = outbox.Match((f"section:{story.section}",))
            expected.add((chat_id, number))
    queued = (await outbox.enqueue_alerts(db, stories, matches, now=time.time())).queued
    if queued != len(expected):
        raise RuntimeError(f"queued {queued} outbox rows, expected {len(expected)}")
    return expected


def _tally(
    result: RunResult, fake: FakeTelegramProcess, expected: set[tuple[int, int]]
) -> RunResult:
    sends = fake.command("sends")
    accepted_times: list[float] = []
    seen: Counter[tuple[int, int]] = Counter()
    for chat_id, status, at, text in sends:
        if status == 200:
            accepted_times.append(at)
            found = _URL_RE.search(text)
            seen[(int(chat_id), int(found.group(1)) if found else -1)] += 1
        elif status == 429:
            result.refused_429 += 1
        else:
            result.other_errors += 1
    violations = fake.command("violations")
    result.violations = len(violations)
    result.violation_kinds = dict(Counter(v[0] for v in violations))
    result.accepted = len(accepted_times)
    result.lost = len(expected - set(seen))
    result.duplicates = sum(n - 1 for n in seen.values() if n > 1) + sum(
        n for pair, n in seen.items() if pair not in expected
    )
    if accepted_times:
        # A sliding 1 s window lets the first 30 go at once; counting the run as lasting until
        # the last send's window closes makes a perfect limiter score exactly its limit.
        span = max(accepted_times) - min(accepted_times) + 1.0
        result.sustained_per_s = len(accepted_times) / span
    return result


async def _wait_empty(services: Any, deadline_s: float) -> bool:
    from storage import due

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if (await due.backlog(services.db)).total == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def _outbox_states(services: Any) -> dict[str, int]:
    rows = await services.db.fetchall("SELECT state, count(*) FROM outbox GROUP BY state")
    return {r[0]: int(r[1]) for r in rows}


async def run_dispatcher(
    fake: FakeTelegramProcess,
    db_path: Path,
    *,
    chats: int,
    per_chat: int,
    articles: int,
    unlimited: bool,
    seed_value: int,
    profile: cProfile.Profile | None = None,
) -> tuple[RunResult, list[Any]]:
    """Seed, then let the project's Dispatcher empty the outbox. Returns the result and the
    messages as they were due (for the baseline to send the same)."""
    from bot.context import open_services
    from bot.pipeline.botapi import BotApi
    from bot.pipeline.ratelimit import RateLimits
    from bot.stages.deliver import Dispatcher
    from storage import due, outbox

    settings = bot_settings(fake.api_url, fake.token, db_path)
    services = await open_services(settings)
    api = BotApi(settings.api_url, settings.require_token(), connections=settings.send_concurrency + 2)
    try:
        rng = random.Random(seed_value)
        expected = await seed(
            services, chats=chats, per_chat=per_chat, articles=articles, rng=rng,
            combine_off=True,
        )
        due = [
            m for lane in sorted(outbox.LANE_NAMES)
            for m in await due.due_messages(services.db, lane, time.time() + 1, limit=len(expected) + 10)
        ]
        await api.start()
        fake.command("clear")
        if unlimited:
            fake.command("disable_limits")
        else:
            fake.command("enforce_limits", global_per_second=GLOBAL_RATE, per_chat_interval=1.0)
        limits = RateLimits(unlimited=True) if unlimited else None
        dispatcher = Dispatcher(services, api, limits=limits)
        budget = 60.0 + (len(expected) / 100 if unlimited else 3 * len(expected) / GLOBAL_RATE)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        await dispatcher.start()
        finished = await _wait_empty(services, budget)
        wall = time.perf_counter() - wall0
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - cpu0
        await dispatcher.stop()
        states = await _outbox_states(services)
        result = RunResult(
            name="dispatcher", queued=len(expected), wall_s=wall, cpu_s=cpu,
            outbox_states=states, gave_up=0 if finished else 1,
        )
        result.unsent_rows = len(expected) - states.get("sent", 0)
        _tally(result, fake, expected)
        result.lost = max(result.lost, result.unsent_rows)
        return result, due
    finally:
        with contextlib.suppress(Exception):
            await api.close()
        await services.close()


async def run_loop(
    fake: FakeTelegramProcess,
    messages: Sequence[Any],
    *,
    concurrency: int,
    rate_limited: bool,
    sections: dict[str, str],
    budget_s: float,
) -> RunResult:
    """The usual bot: send each message in a gather loop (optionally with AIORateLimiter)."""
    import zoneinfo

    from telegram import LinkPreviewOptions
    from telegram.constants import ParseMode
    from telegram.error import RetryAfter, TelegramError
    from telegram.ext import AIORateLimiter, ApplicationBuilder

    from bot.render import alert

    builder = ApplicationBuilder().token(fake.token).base_url(fake.api_url)
    if rate_limited:
        builder = builder.rate_limiter(AIORateLimiter(max_retries=3))
    bot = builder.build().bot
    await bot.initialize()
    fake.command("clear")
    if rate_limited:
        fake.command("enforce_limits", global_per_second=GLOBAL_RATE, per_chat_interval=1.0)
    else:
        fake.command("disable_limits")
    zone = zoneinfo.ZoneInfo("Europe/Stockholm")
    rendered = [
        (m.chat_id, shown.html, shown.keyboard)
        for m in messages
        for shown in [alert(m.article, m.reasons, sections, zone, row_id=m.id)]
    ]
    expected = set()
    for m in messages:
        found = _URL_RE.search(m.article.url)
        expected.add((m.chat_id, int(found.group(1)) if found else -1))
    slots = asyncio.Semaphore(concurrency)
    failed: Counter[str] = Counter()
    preview = LinkPreviewOptions(is_disabled=True)

    async def one(chat_id: int, text: str, keyboard: Any) -> None:
        async with slots:
            try:
                await bot.send_message(
                    chat_id, text, parse_mode=ParseMode.HTML, reply_markup=keyboard,
                    link_preview_options=preview,
                )
            except RetryAfter:
                failed["429 after retries"] += 1
            except TelegramError as exc:
                failed[type(exc).__name__] += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    gave_up = 0
    tasks = [asyncio.create_task(one(*r)) for r in rendered]
    _, pending = await asyncio.wait(tasks, timeout=budget_s)
    for task in pending:
        task.cancel()
        gave_up += 1
    if pending:
        await asyncio.wait(pending, timeout=5)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    with contextlib.suppress(Exception):
        await bot.shutdown()
    result = RunResult(
        name="AIORateLimiter loop" if rate_limited else "bare loop",
        queued=len(messages), wall_s=wall, cpu_s=cpu, gave_up=gave_up,
        outbox_states=dict(failed),
    )
    _tally(result, fake, expected)
    result.unsent_rows = len(messages) - result.accepted
    return result


async def run_httpx_loop(
    fake: FakeTelegramProcess, messages: Sequence[Any], *, concurrency: int, sections: dict[str, str],
) -> RunResult:
    """The floor of a send: the same sendMessage requests (rendered as the bare loop renders
    them) posted by one httpx client in a gather loop, each answer's JSON read, nothing else."""
    import zoneinfo

    import httpx

    from bot.render import alert

    fake.command("clear")
    fake.command("disable_limits")
    zone = zoneinfo.ZoneInfo("Europe/Stockholm")
    bodies = []
    expected = set()
    for m in messages:
        shown = alert(m.article, m.reasons, sections, zone, row_id=m.id)
        body: dict[str, Any] = {
            "chat_id": m.chat_id, "text": shown.html, "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if shown.keyboard is not None:
            body["reply_markup"] = shown.keyboard.to_dict()
        bodies.append(body)
        found = _URL_RE.search(m.article.url)
        expected.add((m.chat_id, int(found.group(1)) if found else -1))
    url = f"{fake.api_url}{fake.token}/sendMessage"
    slots = asyncio.Semaphore(concurrency)
    failed: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def one(body: dict[str, Any]) -> None:
            async with slots:
                answer = (await client.post(url, json=body)).json()
                if not answer.get("ok"):
                    failed[str(answer.get("error_code"))] += 1

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    result = RunResult(name="bare httpx loop", queued=len(messages), wall_s=wall, cpu_s=cpu,
                       outbox_states=dict(failed))
    _tally(result, fake, expected)
    result.unsent_rows = len(messages) - result.accepted
    return result


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # AIORateLimiter logs every retry and a traceback for each message it gives up on; the
    # counts are in the table.
    quiet = {"telegram": logging.CRITICAL, "httpx": logging.WARNING}
    saved = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def _bench(args: argparse.Namespace, fake: FakeTelegramProcess, work: Path) -> list[Row]:
    sections = {slug: slug.capitalize() for slug in SECTIONS}
    settings = bot_settings(fake.api_url, fake.token, work / "unused.db")
    concurrency = settings.send_concurrency
    per_chat = max(1, args.messages // args.chats)

    ours, due = await run_dispatcher(
        fake, work / "deliver.db", chats=args.chats, per_chat=per_chat,
        articles=args.articles, unlimited=False, seed_value=args.seed,
    )
    print(f"dispatcher: {ours.accepted} sent in {ours.wall_s:.1f} s, "
          f"{ours.sustained_per_s:.2f}/s, violations {ours.violations}", flush=True)
    if importlib.util.find_spec("aiolimiter") is not None:
        base: RunResult | None = await run_loop(
            fake, due, concurrency=concurrency, rate_limited=True, sections=sections,
            budget_s=args.baseline_budget or 60 + 4 * len(due) / GLOBAL_RATE,
        )
        print(f"AIORateLimiter: {base.accepted} sent in {base.wall_s:.1f} s, "
              f"{base.sustained_per_s:.2f}/s, violations {base.violations}", flush=True)
    else:
        base = None
        print("AIORateLimiter baseline skipped: aiolimiter is not installed "
              "(pip install 'python-telegram-bot[rate-limiter]')", flush=True)

    profile = cProfile.Profile() if args.profile else None
    fast, fast_due = await run_dispatcher(
        fake, work / "overhead.db", chats=args.overhead_messages, per_chat=1,
        articles=max(1, args.overhead_messages // 250), unlimited=True,
        seed_value=args.seed + 1, profile=profile,
    )
    bare = await run_loop(
        fake, fast_due, concurrency=concurrency, rate_limited=False, sections=sections,
        budget_s=60 + len(fast_due) / 50,
    )
    floor = await run_httpx_loop(fake, fast_due, concurrency=concurrency, sections=sections)
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())

    fraction = 100.0 * ours.sustained_per_s / GLOBAL_RATE
    ok_rate = ours.accepted > 0 and ours.violations == 0 and ours.lost == 0
    overhead = fast.queued / fast.wall_s if fast.wall_s else 0.0
    bare_rate = bare.queued / bare.wall_s if bare.wall_s else 0.0
    floor_rate = floor.queued / floor.wall_s if floor.wall_s else 0.0
    n = ours.queued
    missing = "n/a (aiolimiter not installed)"
    if base is not None:
        base_fraction: float | None = 100.0 * base.sustained_per_s / GLOBAL_RATE
        base_rate_text = f"{base_fraction:.1f} % ({base.sustained_per_s:.2f}/s)"
        base_violations_text = _kinds(base.violations, base.violation_kinds)
        base_lost_text = f"{base.lost} (duplicates {base.duplicates})"
        base_note = (f"baseline = AIORateLimiter(max_retries=3) + gather loop (semaphore "
                     f"{concurrency}), {base.wall_s:.1f} s")
    else:
        base_fraction = None
        base_rate_text = base_violations_text = base_lost_text = missing
        base_note = "baseline not run: aiolimiter is not installed"
    return [
        figure(
            "deliver_rate",
            f"delivery: sustained rate, fraction of {GLOBAL_RATE}/s ({n:,} msgs → {args.chats:,} chats)",
            fraction, "%", baseline=base_fraction,
            target=f"≥ {TARGET_FRACTION:g} %",
            passed=fraction >= TARGET_FRACTION and ok_rate,
            value_text=f"{fraction:.1f} % ({ours.sustained_per_s:.2f}/s)",
            baseline_text=base_rate_text, floor=100.0, floor_text=f"the limit, {GLOBAL_RATE}/s",
            detail={
                "ours": ours.detail(), "baseline": base.detail() if base else None,
                "note": (
                    f"{base_note}; ours {ours.wall_s:.1f} s from start to an empty outbox; "
                    f"send_concurrency {concurrency}"
                ),
            },
        ),
        figure(
            "deliver_violations", "delivery: limit violations counted by the fake",
            ours.violations, "", baseline=base.violations if base else None, better="lower",
            target="0", passed=ours.violations == 0,
            value_text=_kinds(ours.violations, ours.violation_kinds),
            baseline_text=base_violations_text,
        ),
        figure(
            "deliver_lost", "delivery: lost messages (queued, never accepted)",
            ours.lost, "", baseline=base.lost if base else None, better="lower", target="0",
            passed=ours.lost == 0 and ours.duplicates == 0,
            value_text=f"{ours.lost} (duplicates {ours.duplicates})",
            baseline_text=base_lost_text,
        ),
        figure(
            "deliver_overhead",
            f"dispatcher overhead, limits lifted ({fast.queued:,} msgs → {fast.queued:,} chats)",
            overhead, "msg/s", baseline=bare_rate,
            target=f"≥ {TARGET_OVERHEAD_RATIO:g}× bare PTB, ≥ {TARGET_FLOOR_FRACTION:g}× floor",
            passed=(
                overhead >= TARGET_OVERHEAD_RATIO * bare_rate and overhead >= TARGET_FLOOR_FRACTION * floor_rate
                and fast.lost == 0 and fast.duplicates == 0 and floor.accepted == floor.queued
            ),
            baseline_text=f"bare PTB loop {bare_rate:,.0f} msg/s", floor=floor_rate,
            floor_text=f"bare httpx loop {floor_rate:,.0f} msg/s",
            detail={
                "ours": fast.detail(), "baseline": bare.detail(), "floor": floor.detail(),
                "cpu_per_message_ms": 1000 * fast.cpu_s / max(1, fast.queued),
                "note": (
                    f"baseline = the same ExtBot in a bare gather loop without any database; floor = "
                    f"the same requests posted by one httpx client in a gather loop (concurrency "
                    f"{concurrency}), only the answer's JSON read; process CPU {fast.cpu_s:.1f} s for "
                    f"{fast.wall_s:.1f} s wall ({1000 * fast.cpu_s / max(1, fast.queued):.2f} ms "
                    f"CPU/message; bare PTB loop {1000 * bare.cpu_s / max(1, bare.queued):.2f} ms, httpx "
                    f"loop {1000 * floor.cpu_s / max(1, floor.queued):.2f} ms); lost {fast.lost}"
                ),
            },
        ),
    ]


def _kinds(total: int, kinds: dict[str, int]) -> str:
    if not kinds:
        return str(total)
    return f"{total} (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.deliver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3_000)
    parser.add_argument("--chats", type=int, default=1_000)
    parser.add_argument("--articles", type=int, default=60, help="stories the alerts are about")
    parser.add_argument("--overhead-messages", type=int, default=5_000)
    parser.add_argument("--baseline-budget", type=float, default=0.0,
                        help="seconds before the baseline loop is stopped (0: automatic)")
    parser.add_argument("--seed", type=int, default=20240602)
    parser.add_argument("--profile", action="store_true", help="cProfile the overhead run")
    args = parser.parse_args(argv)
    if args.messages < args.chats:
        parser.error("--messages must be at least --chats")
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    with _quiet_logs(), tempfile.TemporaryDirectory(prefix="newsbot-bench-deliver-") as tmp, \
            FakeTelegramProcess() as fake:
        rows = asyncio.run(_bench(args, fake, Path(tmp)))
    print_rows(rows, "delivery")
    return rows


if __name__ == "__main__":
    main()
