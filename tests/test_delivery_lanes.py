"""Priority lanes end to end: a section fan-out, keyword alerts and a broadcast share the
send rate the way bot.pipeline.lanes promises, against the fake Bot API enforcing the limits.

The same queue is sent twice, once with the lanes and once with `Planner(fifo=True)` (0.1's
single queue), and positions are counted in sends on the server, not in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bot.context import Services
from bot.pipeline.lanes import Planner
from storage import articles, broadcasts, chats, outbox
from storage.db import Database
from storage.outbox import Match
from tests.fakes.telegram_api import FakeTelegram, RecordedCall
from tests.simtime import SimClock
from tests.test_delivery import delivered, dispatching, seed, settings_for, settle, story

RATE = 60  # messages per second, for the bot and the fake alike
SECTION_READERS = [42_000 + i for i in range(300)]
FANS = [43_000 + i for i in range(200)]
KEYWORD_READERS = (41_001, 41_002)
# The lanes' documented weights (bot/pipeline/lanes.py): broadcasts 16, personal 8, sections 2.
BROADCAST_WEIGHT, SECTION_WEIGHT = 16, 2


@dataclass(frozen=True)
class Positions:
    first_keyword: int  # sends after it was queued until it went (itself excluded)
    second_keyword: int  # the same, queued while the broadcast was going out
    broadcast_done: int  # sends after the broadcast was queued until its last message went
    sections_mid_broadcast: int  # section alerts between its 50th and 150th message
    sent: int
    violations: int


def ok_sends(tg: FakeTelegram) -> list[RecordedCall]:
    return [c for c in tg.calls("sendMessage") if c.ok]


def position(calls: list[RecordedCall], mark: int, chat_id: int) -> int:
    return next(i for i, c in enumerate(calls[mark:]) if c.chat_id == chat_id)


async def queue_keyword_alert(services: Services, tg: FakeTelegram, chat_id: int, number: int) -> int:
    """Queue a keyword alert as the poll job does; returns the sends so far (the mark)."""
    article = story(number)
    async with services.db.write() as conn:
        await articles.store_articles(conn, [article], seen=True, now=services.clock.time())
    queued = await outbox.enqueue_alerts(
        services.db, [article], {article.id: {chat_id: Match(("keyword:drones",))}}, now=services.clock.time()
    )
    assert queued.queued == 1
    mark = len(ok_sends(tg))
    services.outbox_wake.set()
    return mark


async def send_everything(tmp_path: Path, planner: Planner, clock: SimClock) -> Positions:
    async with FakeTelegram().here(clock) as tg:
        settings = settings_for(tg, tmp_path, NEWSBOT_RATE_GLOBAL=str(RATE))
        await seed(settings.db_path, {c: [1] for c in SECTION_READERS})
        await seed(settings.db_path, {c: [] for c in FANS}, section="sports")
        db = await Database.open(settings.db_path)
        for chat_id in KEYWORD_READERS:
            await chats.join(db, chat_id, "private", now=clock.time())
        await db.close()
        tg.enforce_limits(global_per_second=RATE, per_chat_interval=1.0, group_per_minute=20)

        async with dispatching(settings, clock=clock, planner=planner) as (services, _):
            await tg.await_for(lambda: len(ok_sends(tg)) >= 40, timeout=30)
            keyword_mark = await queue_keyword_alert(services, tg, KEYWORD_READERS[0], 900)
            await tg.await_for(lambda: len(ok_sends(tg)) >= keyword_mark + 30, timeout=30)

            broadcast_id = await broadcasts.create(
                services.db, admin_id=9001, admin_chat_id=9001, html="Polls close early",
                audience="sports", now=clock.time(),
            )
            started = await broadcasts.start(services.db, broadcast_id, now=clock.time(), expires_before=0.0)
            assert started.total == len(FANS)
            broadcast_mark = len(ok_sends(tg))
            services.outbox_wake.set()
            await tg.await_for(lambda: len(ok_sends(tg)) >= broadcast_mark + 40, timeout=30)
            second_mark = await queue_keyword_alert(services, tg, KEYWORD_READERS[1], 901)
            await settle(services, timeout=60)

        calls = ok_sends(tg)
        last_broadcast = max(i for i, c in enumerate(calls) if c.chat_id in FANS)
        fans_at = [i for i, c in enumerate(calls) if c.chat_id in FANS]
        # The middle of the broadcast: what was in flight when it was queued has landed, and
        # its own last messages are not yet out.
        middle = calls[fans_at[49] : fans_at[149]]
        seen = delivered(tg)
        assert len(calls) == len(SECTION_READERS) + len(FANS) + 2
        assert all(n == 1 for n in seen.values())
    return Positions(
            first_keyword=position(calls, keyword_mark, KEYWORD_READERS[0]),
            second_keyword=position(calls, second_mark, KEYWORD_READERS[1]),
            broadcast_done=last_broadcast - broadcast_mark + 1,
            sections_mid_broadcast=sum(1 for c in middle if c.chat_id in SECTION_READERS),
            sent=len(calls),
            violations=tg.violation_count,
        )


async def test_keyword_alerts_and_broadcasts_overtake_a_section_fan_out_and_no_lane_starves(
    clock: SimClock, tmp_path: Path,
) -> None:
    (tmp_path / "lanes").mkdir()
    (tmp_path / "fifo").mkdir()
    lanes = await send_everything(tmp_path / "lanes", Planner(), clock)
    fifo = await send_everything(tmp_path / "fifo", Planner(fifo=True), clock)
    # Sends already in flight when something is queued land first whatever the order
    # (NEWSBOT_SEND_CONCURRENCY of them), and a few more may start before the dispatcher
    # reloads its view of the queue.
    few = 2 * 8

    assert lanes.violations == 0 and fifo.violations == 0
    # A reader's keyword alert waits behind a few sends, not behind the 260 section alerts
    # still queued for other chats, which is where 0.1 left it.
    assert lanes.first_keyword <= few, lanes
    assert fifo.first_keyword >= 100, fifo
    # The same while a broadcast is going out: the personal lane still gets its share.
    assert lanes.second_keyword <= few, lanes
    assert fifo.second_keyword >= 100, fifo
    # Broadcasts first: 16 of every 18 sends while section alerts wait too (the second
    # keyword alert went in between)…
    share = math.ceil(len(FANS) * SECTION_WEIGHT / BROADCAST_WEIGHT)
    assert lanes.broadcast_done <= len(FANS) + share + few, lanes
    assert fifo.broadcast_done <= len(FANS) + few, fifo
    # …but the section lane does not starve meanwhile: about 1 send in 9 (12 in the middle
    # 100 broadcast messages) where FIFO sends it nothing at all.
    assert lanes.sections_mid_broadcast >= 6, lanes
    assert fifo.sections_mid_broadcast == 0, fifo
