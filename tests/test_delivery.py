"""Alert delivery end to end: the real bot and dispatcher, a real SQLite file, and the fake Bot
API server on loopback enforcing Telegram's flood limits and failing on demand.

Every test counts what the fake server recorded, per (chat, story), and what the outbox says,
so "exactly once" means exactly once on the wire and 'sent' in the database.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import logging
import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.clock import Clock
from bot.config import Settings
from bot.context import Services, open_services
from bot.pipeline.botapi import BotApi
from bot.pipeline.lanes import Planner
from bot.pipeline.ratelimit import RateLimits
from bot.stages.deliver import Dispatcher
from bot.stages.poll import enqueue_alerts
from storage import articles, broadcasts, chats, outbox, subscriptions
from storage.db import Database
from storage.models import Article
from storage.outbox import Match
from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot, write_feeds_file
from tests.simtime import SimClock

STORY_RE = re.compile(r"Story (\d{4})")


# --- seeding and counting --------------------------------------------------------------------


def story(n: int, *, summary: str | None = None, section: str = "world") -> Article:
    return Article(
        id=f"story-{n:04d}",
        url=f"https://news.example/story-{n:04d}",
        title=f"Story {n:04d} from the newsroom",
        summary=summary if summary is not None else f"What happened in story {n}.",
        section=section,
        tags=(),
        published_at=1_741_800_000.0 + n,
        fetched_at=1_741_800_000.0 + n,
    )


def chat_type(chat_id: int) -> str:
    return "private" if chat_id > 0 else "group"


async def seed(
    db_path: Path,
    plan: Mapping[int, Iterable[int]],
    *,
    combine: bool = True,
    summary: str | None = None,
    section: str = "world",
    reason: str | None = None,
) -> int:
    """Chats following `section`, and one queued alert per (chat, story number) in `plan`.

    Everything goes through the storage functions the bot itself uses: the stories are
    stored as already matched (so the bot's start-up does not match them again) and their
    alerts queued for exactly the chats of the plan. Returns the number of alerts queued.
    """
    db = await Database.open(db_path)
    try:
        why = reason or f"section:{section}"
        wanted: dict[int, dict[int, Match]] = {}
        for chat_id, numbers in plan.items():
            await chats.join(db, chat_id, chat_type(chat_id), None if chat_id > 0 else "A group", now=time.time())
            await subscriptions.add_subscription(db, chat_id, "section", section, section.title(), limit=50, now=time.time())
            if not combine:
                await chats.set_option(db, chat_id, "combine", False, now=time.time())
            for n in numbers:
                wanted.setdefault(n, {})[chat_id] = Match((why,))
        stories = [story(n, summary=summary, section=section) for n in sorted(wanted)]
        async with db.write() as conn:
            await articles.store_articles(conn, stories, seen=True, now=time.time())
        queued = await outbox.enqueue_alerts(db, stories, {story(n).id: m for n, m in wanted.items()}, now=time.time())
        return queued.queued
    finally:
        await db.close()


def delivered(tg: FakeTelegram) -> Counter[tuple[int, int]]:
    """(chat id, story number) → how many times it reached the chat (combined messages too)."""
    seen: Counter[tuple[int, int]] = Counter()
    for message in tg.sent_messages():
        for number in STORY_RE.findall(message.get("text", "")):
            seen[(message["chat"]["id"], int(number))] += 1
    return seen


def expected(plan: Mapping[int, Iterable[int]]) -> set[tuple[int, int]]:
    return {(chat_id, n) for chat_id, numbers in plan.items() for n in numbers}


def query(db_path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def outbox_states(db_path: Path) -> dict[int, Counter[str]]:
    """chat id → Counter of its outbox rows' states."""
    states: dict[int, Counter[str]] = {}
    for chat_id, state in query(db_path, "SELECT chat_id, state FROM outbox"):
        states.setdefault(chat_id, Counter())[state] += 1
    return states


async def settle(services: Services, timeout: float = 90.0) -> None:  # noqa: ASYNC109
    """Until nothing is pending or in flight."""
    await until(lambda: _empty(services), timeout)


async def _empty(services: Services) -> bool:
    left = await services.db.scalar("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")
    return left == 0


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:  # noqa: ASYNC109
    """Until check() is true, looking every 50 ms; `timeout` on the loop's clock (simulated
    time in a test on the `clock` fixture)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


def counter(services: Services, name: str, **labels: str) -> float:
    return services.metrics.value(name, **labels)


def settings_for(tg: FakeTelegram, tmp_path: Path, **env: str) -> Settings:
    return bot_settings(tg, tmp_path, **env)


@asynccontextmanager
async def dispatching(
    settings: Settings,
    *,
    clock: Clock | None = None,
    planner: Planner | None = None,
    limits: RateLimits | None = None,
) -> AsyncIterator[tuple[Services, Dispatcher]]:
    """The dispatcher alone, built the way bot.runner builds it but with the given clock,
    planner or limits: the real services, database and Bot API client, no handlers."""
    services = await open_services(settings, clock=clock)
    api = BotApi(settings.api_url, settings.require_token(), connections=settings.send_concurrency + 2)
    dispatcher = Dispatcher(services, api, limits=limits, planner=planner)
    try:
        await dispatcher.start()
        yield services, dispatcher
    finally:
        await dispatcher.stop()
        await api.close()
        await services.close()


# --- 1. limits ---------------------------------------------------------------------------------


async def test_thousand_alerts_to_300_chats_within_limits_exactly_once(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg = sim_tg
    # 280 readers and 20 groups; 3 alerts each and a 4th for every third chat: 1,000 alerts.
    ids = [1000 + i for i in range(280)] + [-2000 - i for i in range(20)]
    plan = {c: [(i + k) % 12 for k in range(4 if i % 3 == 0 else 3)] for i, c in enumerate(ids)}
    assert sum(len(v) for v in plan.values()) == 1000
    settings = settings_for(tg, tmp_path)
    # Combining is off so that every alert is its own message: 1,000 sends at 30/s.
    assert await seed(settings.db_path, plan, combine=False) == 1000
    tg.enforce_limits(global_per_second=30, per_chat_interval=1.0, group_per_minute=20)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await settle(services, timeout=120)
        assert counter(services, "newsbot_messages_sent_total", kind="alert") == 1000

    # Over half a minute of steady sending, the jobs included (maintenance runs at 30 s):
    # nothing went wrong anywhere.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    assert tg.violations == []
    assert [c for c in tg.calls("sendMessage") if not c.ok] == []
    seen = delivered(tg)
    assert set(seen) == expected(plan)
    assert max(seen.values()) == 1
    assert len(tg.sent_messages()) == 1000
    assert {c: dict(s) for c, s in outbox_states(settings.db_path).items()} == {
        c: {"sent": len(v)} for c, v in plan.items()
    }


# --- 2. a bad day at Telegram ----------------------------------------------------------------


async def test_storm_blocked_server_errors_and_slow_answers_lose_nothing(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    readers = [3000 + i for i in range(80)]
    plan: dict[int, list[int]] = {c: [1, 2] for c in readers}
    plan.update({-3100: [1, 2], -3101: [1, 2]})
    storm = readers[:12]
    stubborn = readers[12]  # 429 five times in a row: never given up on
    blocked = readers[20:25]
    gone = {readers[25]: "chat not found", readers[26]: "Forbidden: user is deactivated"}
    flaky = readers[30:35]  # one 502 each
    flakier = readers[35]  # two 503s in a row
    slow = [*readers[40:45], -3101]

    settings = settings_for(tg, tmp_path, NEWSBOT_MAX_ATTEMPTS="3")
    assert await seed(settings.db_path, plan) == 2 * len(plan)
    tg.enforce_limits(global_per_second=30, per_chat_interval=1.0, group_per_minute=20)
    tg.rate_limit_chats(storm, retry_after=2)
    tg.rate_limit_chat(stubborn, retry_after=1, times=5)
    for chat_id in blocked:
        tg.block_chat(chat_id)
    tg.chat_not_found(readers[25])
    tg.fail_chat(readers[26], 403, "Forbidden: user is deactivated")
    for chat_id in flaky:
        tg.server_error_chat(chat_id)
    tg.server_error_chat(flakier, 503, "Service Unavailable", times=2)
    for chat_id in slow:
        tg.set_delay(1.5, chat_id)

    unreachable = {*blocked, *gone}
    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await settle(services, timeout=90)
        # The matcher no longer offers unreachable chats anything; the others still get World.
        matched = set(services.matcher.match(story(99)))
        assert matched & unreachable == set()
        assert matched == set(plan) - unreachable
        metrics = {
            "sent": counter(services, "newsbot_messages_sent_total", kind="alert"),
            "blocked": counter(services, "newsbot_messages_blocked_total"),
            "failed": counter(services, "newsbot_messages_failed_total"),
            "429": counter(services, "newsbot_telegram_errors_total", kind="429"),
        }

    seen = delivered(tg)
    reachable = {k for k in expected(plan) if k[0] not in unreachable}
    assert set(seen) == reachable
    assert max(seen.values()) == 1
    # The stubborn chat was answered 429 five times and still got both alerts.
    assert sum(1 for c in tg.calls("sendMessage") if c.chat_id == stubborn and c.status == 429) == 5
    assert tg.violations == []

    states = outbox_states(settings.db_path)
    for chat_id in plan:
        if chat_id in unreachable:
            assert states[chat_id] == {"blocked": 2}, chat_id
        else:
            assert states[chat_id] == {"sent": 2}, chat_id
    with sqlite3.connect(settings.db_path) as conn:
        inactive = {r[0] for r in conn.execute("SELECT id FROM chats WHERE active = 0")}
    assert inactive == unreachable
    assert metrics["sent"] == len(reachable)
    assert metrics["blocked"] == 2 * len(unreachable)
    assert metrics["failed"] == 0
    assert metrics["429"] >= len(storm) + 5


# --- broadcasts first -----------------------------------------------------------------------


async def test_broadcast_overtakes_the_queued_alerts(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    readers = [8000 + i for i in range(150)]
    fans = [8500 + i for i in range(40)]
    settings = settings_for(tg, tmp_path)
    await seed(settings.db_path, {c: [1] for c in readers})
    await seed(settings.db_path, {c: [] for c in fans}, section="sports")
    tg.enforce_limits(global_per_second=30, per_chat_interval=1.0, group_per_minute=20)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await tg.await_for(lambda: len(tg.sent_messages()) >= 40, timeout=30)
        db = services.db
        broadcast_id = await broadcasts.create(
            db, admin_id=9001, admin_chat_id=9001, html="<b>Breaking:</b> polls close early",
            audience="sports", now=clock.time(),
        )
        started = await broadcasts.start(db, broadcast_id, now=clock.time(), expires_before=0.0)
        assert started.total == len(fans)
        queued_at = len(tg.calls("sendMessage"))
        services.outbox_wake.set()
        await settle(services, timeout=60)
        sent_broadcasts = counter(services, "newsbot_messages_sent_total", kind="broadcast")

    calls = tg.calls("sendMessage")
    later = calls[queued_at:]
    last = max(i for i, c in enumerate(later) if c.chat_id in fans)
    # Before the broadcast is out, only the alerts already in flight when it was queued (and
    # a few started before the dispatcher saw it) and the section lane's share (2 sends for
    # every 16 of the broadcast lane) may land.
    alerts_between = [c.chat_id for c in later[:last] if c.chat_id in readers]
    share = math.ceil(len(fans) * 2 / 16)
    assert len(alerts_between) <= 2 * settings.send_concurrency + share, alerts_between
    got = Counter(c.chat_id for c in calls if c.ok and "polls close early" in c.params["text"])
    assert got == Counter({c: 1 for c in fans})
    assert sent_broadcasts == len(fans)
    assert sorted(c for c, n in delivered(tg).items() if n == 1) == sorted((c, 1) for c in readers)
    assert tg.violations == []


# --- combined messages -------------------------------------------------------------------------


async def test_bursts_become_one_combined_message(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    few, many, three, separate = 401, 402, 403, 404
    long_summary = "A long account of what happened, with every detail the newsroom had. " * 7
    settings = settings_for(tg, tmp_path)
    await seed(settings.db_path, {few: range(1, 13), three: range(1, 4)})
    await seed(settings.db_path, {separate: range(1, 6)}, combine=False)
    await seed(settings.db_path, {many: range(100, 160)}, summary=long_summary)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await settle(services, timeout=60)

    [combined] = tg.sent_messages(few)
    assert combined["text"].startswith("12 new stories for you")
    assert sorted(int(n) for n in STORY_RE.findall(combined["text"])) == list(range(1, 13))

    [big] = tg.sent_messages(many)
    text = big["text"]
    shown = STORY_RE.findall(text)
    assert len(text) <= 4096
    assert text.startswith("60 new stories for you")
    # What does not fit is counted, and the reason closes the message.
    more = re.search(r"…and (\d+) more — /latest\n\nBecause you follow World\.$", text)
    assert more is not None, text[-200:]
    assert len(shown) + int(more.group(1)) == 60
    call = next(c for c in tg.calls("sendMessage") if c.chat_id == many)
    assert len(call.params["text"]) <= 4096

    # Three at once is not a burst; and a reader who turned combining off gets each alone.
    assert len(tg.sent_messages(three)) == 3
    assert len(tg.sent_messages(separate)) == 5
    states = outbox_states(settings.db_path)
    assert states[few] == {"sent": 12} and states[many] == {"sent": 60}


async def test_an_alert_that_waited_takes_along_its_chats_alerts_beyond_the_view(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Behind a fan-out longer than the dispatcher's view (2,000 rows a lane), a reader's
    second alert is far down the queue when the first, which waited two minutes, goes: the
    two go as one message, and every other reader still gets theirs once."""
    tg = sim_tg
    reader, crowd = 501, range(10_000, 12_500)
    settings = settings_for(tg, tmp_path)
    db = await Database.open(settings.db_path)
    try:
        for chat_id in (reader, *crowd):
            await chats.join(db, chat_id, "private", now=time.time())
        first, fan_out, second = story(1), story(2), story(3)
        async with db.write() as conn:
            await articles.store_articles(conn, [first, fan_out, second], seen=True, now=time.time())
        world = Match(("section:world",))
        now = clock.time()
        await outbox.enqueue_alerts(db, [first], {first.id: {reader: world}}, now=now - 120)
        await outbox.enqueue_alerts(db, [fan_out], {fan_out.id: dict.fromkeys(crowd, world)}, now=now - 100)
        await outbox.enqueue_alerts(db, [second], {second.id: {reader: world}}, now=now - 90)
    finally:
        await db.close()

    async with dispatching(settings, clock=clock, limits=RateLimits(unlimited=True)) as (services, _):
        await settle(services, timeout=120)

    [message] = tg.sent_messages(reader)
    assert sorted(int(n) for n in STORY_RE.findall(message["text"])) == [1, 3]
    assert message["text"].startswith("2 new stories for you"), message["text"][:80]
    seen = delivered(tg)
    assert all(seen[(chat_id, 2)] == 1 for chat_id in crowd)
    assert sum(seen.values()) == len(crowd) + 2
    assert outbox_states(settings.db_path)[reader] == {"sent": 2}


# --- migration -----------------------------------------------------------------------------------


async def test_group_migrated_to_supergroup_gets_the_alert_at_its_new_id(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    old, new = -500, -1_000_000_000_500
    settings = settings_for(tg, tmp_path)
    await seed(settings.db_path, {old: [1], 501: [1]})
    tg.migrate_chat(old, new)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await settle(services, timeout=30)
        assert delivered(tg)[(new, 1)] == 1
        # The live matcher follows the move: the next story goes straight to the new id.
        later = story(2)
        async with services.db.write() as conn:
            stored = await articles.store_articles(conn, [later], now=clock.time())
        assert (await enqueue_alerts(services, stored.new)).queued == 2
        await settle(services, timeout=30)

    seen = delivered(tg)
    assert seen == Counter({(new, 1): 1, (new, 2): 1, (501, 1): 1, (501, 2): 1})
    refused = [c for c in tg.calls("sendMessage") if not c.ok]
    assert [(c.chat_id, c.status) for c in refused] == [(old, 400)]
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("SELECT type FROM chats WHERE id = ?", (new,)).fetchone() == ("supergroup",)
        assert conn.execute("SELECT count(*) FROM chats WHERE id = ?", (old,)).fetchone() == (0,)
        subs = conn.execute("SELECT chat_id, value FROM subscriptions WHERE chat_id IN (?, ?)", (old, new))
        assert subs.fetchall() == [(new, "world")]
    assert outbox_states(settings.db_path)[new] == {"sent": 2}


# --- permanent errors ----------------------------------------------------------------------------


async def test_refused_messages_fail_once_and_unknown_refusals_after_max_attempts(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Only an answer about the message or the chat can fail it: one Telegram will refuse
    again whatever the wait fails at once; a refusal it has not explained is tried
    NEWSBOT_MAX_ATTEMPTS times. (A 5xx never fails a message: tests/test_delivery_outage.py.)"""
    tg = sim_tg
    refused, puzzling, fine = 601, 602, 603
    settings = settings_for(tg, tmp_path, NEWSBOT_MAX_ATTEMPTS="3")
    await seed(settings.db_path, {refused: [1, 2], puzzling: [3], fine: [1, 2, 3]})
    tg.fail_chat(refused, 400, 'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0')
    tg.fail_chat(puzzling, 400, "Bad Request: something Telegram never said before", times=None)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await tg.await_messages(fine, 3, timeout=60)
        # Time for any retry storm to show itself: an hour.
        await clock.run_for(3600)
        failed = counter(services, "newsbot_messages_failed_total")
        errors_400 = counter(services, "newsbot_telegram_errors_total", kind="400")

    calls = Counter(c.chat_id for c in tg.calls("sendMessage"))
    assert calls[refused] == 2  # one try per message, never again
    assert calls[puzzling] == 3  # NEWSBOT_MAX_ATTEMPTS
    assert len(tg.sent_messages(fine)) == 3
    assert failed == 3 and errors_400 == 5
    states = outbox_states(settings.db_path)
    assert states[refused] == {"failed": 2} and states[puzzling] == {"failed": 1}
    with sqlite3.connect(settings.db_path) as conn:
        # A refused message says nothing about the chat: it stays active.
        assert conn.execute("SELECT active FROM chats WHERE id = ?", (refused,)).fetchone() == (1,)
        row = conn.execute("SELECT attempts, last_error FROM outbox WHERE chat_id = ?", (puzzling,)).fetchone()
    assert row[0] == 3 and "never said before" in row[1]


# --- 4. from the feed to the reader ----------------------------------------------------------

NEW_STORY = """<item><title>Russia launches new drones at Kyiv</title>
<link>https://swedenherald.com/article/russia-launches-new-drones-at-kyiv</link>
<guid isPermaLink="false">sh-drones-delivery</guid><pubDate>{date}</pubDate>
<category domain="section">World</category><category>Ukraine</category>
<description>Ukraine says Russia sent dozens of drones overnight.</description></item>"""


def _buttons(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


async def _choose_sections(tg: FakeTelegram, chat_id: int, *slugs: str) -> None:
    welcome = await ask(tg, chat_id, "/start")
    for slug in slugs:
        await press(tg, chat_id, welcome["message_id"], f"sec:{slug}")


async def test_new_story_reaches_every_subscriber_within_a_poll_interval(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    poll_seconds = 2.0
    world, drones, both, paused, sports = 701, 702, 703, 704, 705
    sample = SAMPLE_FEED.read_text()
    feeds.serve("/rss.xml", sample.encode())
    settings = settings_for(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [feeds.url_for("/rss.xml")])),
        NEWSBOT_POLL_SECONDS=f"{poll_seconds:g}",
    )
    async with running_bot(settings, clock=clock):
        await tg.await_for(lambda: len(feeds.requests("/rss.xml")) >= 1, timeout=15, interval=0.05)
        await _choose_sections(tg, world, "world")
        await ask(tg, drones, "/start")
        await ask(tg, drones, "/follow drones")
        await _choose_sections(tg, both, "world")
        await ask(tg, both, "/follow drones")
        await _choose_sections(tg, paused, "world")
        await ask(tg, paused, "/pause")
        await _choose_sections(tg, sports, "sports")
        before = {c: len(tg.sent_messages(c)) for c in (world, drones, both, paused, sports)}

        # Published just after a poll: the worst case, a whole interval until the next one.
        polls = len(feeds.requests("/rss.xml"))
        await tg.await_for(lambda: len(feeds.requests("/rss.xml")) > polls, timeout=15, interval=0.05)
        published = clock.monotonic()
        # Dated now: stories older than NEWSBOT_ALERT_MAX_AGE are stored without an alert.
        fresh = NEW_STORY.format(date=email.utils.formatdate(clock.time(), usegmt=True))
        feeds.serve("/rss.xml", sample.replace("<item>", fresh + "\n<item>", 1).encode())
        alerts = {}
        for chat_id in (world, drones, both):
            messages = await tg.await_messages(chat_id, before[chat_id] + 1, timeout=30)
            alerts[chat_id] = messages[before[chat_id]]
        # Long enough for a second round of polling and sending to have happened.
        await clock.run_for(poll_seconds + 1.5)
        after = {c: len(tg.sent_messages(c)) for c in before}

    arrived = {
        c.chat_id: c.monotonic for c in tg.calls("sendMessage") if c.ok and c.monotonic > published
    }
    for chat_id in (world, drones, both):
        assert "Russia launches new drones at Kyiv" in alerts[chat_id]["text"]
        assert arrived[chat_id] - published <= poll_seconds + 2.0, (chat_id, arrived[chat_id] - published)
    assert after == {c: n + (1 if c in (world, drones, both) else 0) for c, n in before.items()}
    assert "because you follow World" in alerts[world]["text"]
    assert "because you follow drones" in alerts[drones]["text"]
    assert "because you follow World and drones" in alerts[both]["text"]
    mutes = [text for text, _ in _buttons(alerts[both]) if text.startswith("Mute")]
    assert mutes == ["Mute World", "Mute drones"]


# --- promises kept from 0.1: 429s, and history is not news ------------------------------------


async def test_a_429s_retry_after_is_waited_for(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """The retry of a message refused with 429 goes no sooner than retry_after, on the
    server's clock, and the 429 costs no attempt."""
    tg = sim_tg
    chat_id = 30_001
    settings = settings_for(tg, tmp_path)
    await seed(settings.db_path, {chat_id: [1]})
    tg.rate_limit_chat(chat_id, retry_after=3)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        await settle(rt.services, timeout=30)

    refused, retried = tg.calls("sendMessage")
    assert (refused.status, retried.status) == (429, 200)
    assert retried.monotonic - refused.monotonic >= 3.0
    assert query(settings.db_path, "SELECT state, attempts FROM outbox") == [("sent", 1)]


async def test_a_chat_held_after_a_429_gets_nothing_until_the_hold_ends(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Not the refused message, not the chat's other alerts, not a broadcast: the chat's
    whole queue waits for retry_after, while other chats go on."""
    tg = sim_tg
    held, other = 30_011, 30_012
    settings = settings_for(tg, tmp_path)
    await seed(settings.db_path, {held: [1, 2, 3], other: [1, 2, 3]}, combine=False)
    tg.rate_limit_chat(held, retry_after=4)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        services = rt.services
        await tg.await_for(lambda: any(c.status == 429 for c in tg.calls("sendMessage")), timeout=30)
        broadcast_id = await broadcasts.create(
            services.db, admin_id=9001, admin_chat_id=9001, html="Held back", audience=None, now=clock.time()
        )
        await broadcasts.start(services.db, broadcast_id, now=clock.time(), expires_before=0.0)
        services.outbox_wake.set()
        await settle(services, timeout=60)

    calls = [c for c in tg.calls("sendMessage") if c.chat_id == held]
    refused = calls[0]
    assert refused.status == 429
    assert all(c.ok and c.monotonic - refused.monotonic >= 4.0 for c in calls[1:]), [
        (c.status, round(c.monotonic - refused.monotonic, 2)) for c in calls
    ]
    assert len(calls) == 1 + 4  # three alerts and the broadcast, each once
    before_hold_ends = [
        c for c in tg.calls("sendMessage") if c.chat_id == other and c.monotonic < refused.monotonic + 4.0
    ]
    assert before_hold_ends, "the other chat waited for a hold that was not its own"
    assert outbox_states(settings.db_path)[held] == {"sent": 4}


async def test_429s_from_several_chats_pause_every_send(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Three chats answered 429 within moments: the bot as a whole is over the limit, and no
    new send starts, to any chat, until retry_after has passed."""
    tg = sim_tg
    storm = [30_021, 30_022, 30_023]
    others = [30_100 + i for i in range(60)]
    settings = settings_for(tg, tmp_path)
    # The storm's chats come first in the queue: their 429s are the first answers.
    await seed(settings.db_path, {c: [1] for c in [*storm, *others]})
    tg.rate_limit_chats(storm, retry_after=3)

    async with running_bot(settings, polling=False, clock=clock) as rt:
        await settle(rt.services, timeout=60)

    calls = tg.calls("sendMessage")
    third = [c for c in calls if c.status == 429][2]
    during = [c for c in calls if c.chat_id in others and third.monotonic < c.monotonic < third.monotonic + 3.0]
    # Only sends already in flight when the third 429 came back (and a few started while it
    # was on its way) may land during the pause; without it, all 60 would.
    assert len(during) <= 2 * settings.send_concurrency, len(during)
    assert set(delivered(tg)) == expected({c: [1] for c in [*storm, *others]})
    assert max(delivered(tg).values()) == 1


@dataclass(frozen=True)
class FeedItem:
    """One <item> of an RSS document served by the loopback feed server."""

    guid: str
    title: str
    section: str = "World"
    published: float = 0.0  # 0: an hour ago
    link: str = ""
    summary: str = "What happened, in a sentence."


def rss(items: Iterable[FeedItem], *, title: str = "The Herald") -> bytes:
    now = time.time()
    body = []
    for item in items:
        link = item.link or f"https://herald.example/{item.guid}"
        date = email.utils.formatdate(item.published or now - 3600, usegmt=True)
        body.append(
            f"<item><title>{html.escape(item.title)}</title><link>{html.escape(link)}</link>"
            f'<guid isPermaLink="false">{item.guid}</guid><pubDate>{date}</pubDate>'
            f'<category domain="section">{item.section}</category>'
            f"<description>{html.escape(item.summary)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{html.escape(title)}</title><link>https://herald.example/</link>"
        "<description>Test feed</description>" + "".join(body) + "</channel></rss>"
    ).encode()


def backlog(prefix: str, count: int) -> list[FeedItem]:
    """Recent stories (within NEWSBOT_ALERT_MAX_AGE): only priming keeps them from alerting."""
    now = time.time()
    return [FeedItem(f"{prefix}-{i}", f"{prefix} story number {i}", published=now - 600 - i) for i in range(count)]


def alerts_to(tg: FakeTelegram, chat_id: int, since: int = 0) -> list[str]:
    """Texts of the messages a chat got after its first `since` (while it sends no command,
    its alerts)."""
    return [m["text"] for m in tg.sent_messages(chat_id)[since:]]


async def polled(feeds: FeedServer, path: str, times: int, *, status: tuple[int, ...] = (200, 304)) -> None:
    """Until `times` more requests for `path` were answered with one of `status`."""
    loop = asyncio.get_running_loop()
    start = sum(1 for r in feeds.requests(path) if r.status in status)
    deadline = loop.time() + 30
    while sum(1 for r in feeds.requests(path) if r.status in status) < start + times:
        if loop.time() > deadline:
            raise TimeoutError(f"{path} not polled {times} more times")
        await asyncio.sleep(0.05)


async def test_a_feeds_first_poll_after_a_restart_or_a_re_add_is_history(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, feeds = sim_tg, sim_feeds
    reader, admin = 30_201, 9001
    url = feeds.url_for("/world.xml")
    settings = settings_for(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [url])), NEWSBOT_POLL_SECONDS="2"
    )
    # The first run never reads the feed: it is down.
    feeds.status("/world.xml", 503)
    async with running_bot(settings, clock=clock):
        await _choose_sections(tg, reader, "world")
        await polled(feeds, "/world.xml", 1, status=(503,))
    seen = len(tg.sent_messages(reader))

    # The next run's first successful poll finds 30 recent stories: stored, not pushed.
    items = backlog("Backlog", 30)
    feeds.clear("/world.xml")
    feeds.serve("/world.xml", rss(items))
    async with running_bot(settings, clock=clock):
        await polled(feeds, "/world.xml", 2)
        assert query(settings.db_path, "SELECT count(*) FROM articles") == [(30,)]
        assert alerts_to(tg, reader, seen) == []
        items.insert(0, FeedItem("fresh-1", "Fresh story after the restart"))
        feeds.serve("/world.xml", rss(items))
        await tg.await_messages(reader, seen + 1, timeout=30)
        await polled(feeds, "/world.xml", 1)
        assert [t.split("\n")[0] for t in alerts_to(tg, reader, seen)] == [
            "World · Fresh story after the restart"
        ]
        seen = len(tg.sent_messages(reader))

        # Removed, and back after it published ten more: those are history too.
        removed = await ask(tg, admin, "/removefeed 1")
        assert removed["text"].startswith("Removed feed #1")
        items[:0] = backlog("While-away", 10)
        feeds.serve("/world.xml", rss(items))
        added = await ask(tg, admin, f"/addfeed {url} world")
        assert "41 items" in added["text"]
        await polled(feeds, "/world.xml", 2)
        assert alerts_to(tg, reader, seen) == []
        items.insert(0, FeedItem("fresh-2", "Fresh story after the re-add"))
        feeds.serve("/world.xml", rss(items))
        await tg.await_messages(reader, seen + 1, timeout=30)
        await polled(feeds, "/world.xml", 1)
        assert [t.split("\n")[0] for t in alerts_to(tg, reader, seen)] == [
            "World · Fresh story after the re-add"
        ]
