"""storage.counters: hourly newsroom figures, written by the same transactions that change
what they count, on a real SQLite file."""

from __future__ import annotations

import time

import pytest

from storage import articles, chats, counters, outbox
from storage.counters import LATENCY_BUCKETS, Figures, latencies, latency_bucket
from storage.db import Database
from storage.models import Article
from storage.outbox import Match, SentBatch

HOUR = 3600.0
T0 = 1_774_000_800.0  # on the hour


def story(n: int, published: float) -> Article:
    return Article(
        id=f"c-{n}", url=f"https://news.example/c/{n}", title=f"Story {n}", summary="",
        section="world", tags=(), published_at=published, fetched_at=published,
    )


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0, "latency_le_10"), (10, "latency_le_10"), (10.5, "latency_le_30"), (60, "latency_le_60"),
     (86400, "latency_le_86400"), (86401, "latency_inf")],
)  # fmt: skip
def test_latency_buckets(seconds: float, bucket: str) -> None:
    assert latency_bucket(seconds) == bucket


def test_latencies_count_negative_as_immediate() -> None:
    assert latencies([-5, 5, 45, 45, 4000]) == {
        "latency_le_10": 2, "latency_le_60": 2, "latency_le_10800": 1,
    }  # fmt: skip


def test_percentiles_read_the_bucket_bounds() -> None:
    figures = Figures({"latency_le_10": 50, "latency_le_60": 45, "latency_le_3600": 4, "latency_inf": 1})
    assert figures.latency_percentile(0.5) == 10.0
    assert figures.latency_percentile(0.95) == 60.0
    assert figures.latency_percentile(0.99) == 3600.0
    assert figures.latency_percentile(1.0) == float(LATENCY_BUCKETS[-1])
    assert Figures({}).latency_percentile(0.5) is None
    assert figures.get("alert_sent") == 0


async def test_counts_add_up_per_hour_and_since_sums_whole_hours(db: Database) -> None:
    async with db.write() as conn:
        await counters.add(conn, T0 + 10, {"alert_sent": 2, "articles": 0})
        await counters.add(conn, T0 + 3000, {"alert_sent": 3})
        await counters.add(conn, T0 + HOUR, {"alert_sent": 4})
    rows = await db.fetchall("SELECT hour, name, n FROM counters ORDER BY hour")
    assert [tuple(r) for r in rows] == [
        (int(T0 // HOUR), "alert_sent", 5), (int(T0 // HOUR) + 1, "alert_sent", 4),
    ]  # fmt: skip
    assert (await counters.since(db.reports, T0)).get("alert_sent") == 9
    assert (await counters.since(db.reports, T0 + HOUR + 1800)).get("alert_sent") == 4
    assert (await counters.since(db.reports, T0 + 2 * HOUR)).totals == {}
    async with db.write() as conn:
        assert await counters.prune(conn, T0 + HOUR) == 1
    assert (await counters.since(db.reports, 0)).get("alert_sent") == 4


async def test_every_final_state_is_counted_where_it_happens(db: Database) -> None:
    """Stored stories, sent alerts with their latency, failures, blocks and cancellations:
    each write adds to its hour's counters in its own transaction."""
    now = time.time()
    for chat_id in (1, 2, 3, 4):
        await chats.join(db, chat_id, "private", now=time.time())
    stories = [story(n, now - 20) for n in range(4)]
    async with db.write() as conn:
        stored = await articles.store_articles(conn, stories, now=time.time())
    await outbox.enqueue_alerts(
        db, stored.new, {a.id: {c: Match(("section:world",)) for c in (1, 2, 3, 4)} for a in stored.new}, now=time.time()
    )
    rows = {(r[0], r[1]): r[2] for r in await db.fetchall("SELECT chat_id, article_id, id FROM outbox")}
    async with db.write() as conn:
        ids = [rows[(1, "c-0")], rows[(1, "c-1")]]
        await outbox.claim_in(conn, ids)
        await outbox.mark_sent_in(conn, SentBatch(tuple(ids), 77, "alert", (now - 20, now - 200)), now)
    async with db.write() as conn:
        await outbox.claim_in(conn, [rows[(2, "c-0")]])
    failed = await outbox.retry_later(
        db, [rows[(2, "c-0")]], at=now, error="400", count_attempt=True, max_attempts=1, now=time.time()
    )
    assert failed == [rows[(2, "c-0")]]
    await outbox.mark_failed(db, [rows[(2, "c-1")]], "400 Bad Request", now=time.time())
    assert await outbox.block_chat(db, 3, "Forbidden: bot was blocked by the user", now=time.time()) == (True, 4)
    await chats.set_option(db, 4, "paused", True, now=time.time())
    await outbox.hold_pending(db, 4)
    await db.execute("UPDATE outbox SET created_at = ? WHERE chat_id = 4", (now - 50 * HOUR,))
    assert await outbox.release_held(db, 4, now=now) == (0, 4)

    figures = await counters.since(db.reports, now - HOUR)
    assert figures.get("articles") == 4
    assert figures.get("alert_sent") == 2
    assert figures.get("latency_le_30") == 1 and figures.get("latency_le_300") == 1
    assert figures.get("alert_failed") == 2
    assert figures.get("alert_blocked") == 4
    assert figures.get("alert_cancelled") == 4
    # A row retried (not failed yet) counts nothing.
    async with db.write() as conn:
        await outbox.claim_in(conn, [rows[(1, "c-2")]])
    assert await outbox.retry_later(
        db, [rows[(1, "c-2")]], at=now, error="timeout", count_attempt=True, max_attempts=5, now=time.time()
    ) == []
    assert (await counters.since(db.reports, now - HOUR)).get("alert_failed") == 2


async def test_a_story_stored_again_is_not_counted_twice(db: Database) -> None:
    batch = [story(n, T0) for n in range(3)]
    for _ in range(2):
        async with db.write() as conn:
            await articles.store_articles(conn, batch, now=time.time())
    assert (await counters.since(db.reports, 0)).get("articles") == 3
