"""Read-only figures for admins (/stats) and operators (/healthz, /metrics)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from storage import articles, chats, outbox, subscriptions
from storage.db import Database

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class NewsroomStats:
    readers: dict[str, int]  # total, active, paused, inactive
    sections: dict[str, int]  # section slug → active chats following it
    top_keywords: list[tuple[str, int]]
    articles_24h: int
    alerts_sent_24h: int
    alerts_failed_24h: int
    backlog: int
    latency_p50: float | None  # seconds from publication to alert, over the last 24 h
    latency_p95: float | None


@dataclass(frozen=True, slots=True)
class FeedCounts:
    enabled: int
    failing: int  # enabled feeds whose last poll failed


async def database_ok(db: Database) -> bool:
    """The database answers a query (on the reader connection, which never waits for writes)."""
    return bool(await db.scalar("SELECT 1") == 1)


async def feed_counts(db: Database) -> FeedCounts:
    row = await db.fetchone(
        "SELECT count(*), coalesce(sum(error_count > 0), 0) FROM feeds WHERE enabled = 1"
    )
    assert row is not None
    return FeedCounts(enabled=int(row[0]), failing=int(row[1]))


_SENT_ALERTS = (
    "FROM outbox o JOIN articles a ON a.id = o.article_id "
    "WHERE o.state = 'sent' AND o.sent_at >= ?"
)


async def _percentile(db: Database, since: float, n: int, p: float) -> float | None:
    """Nearest-rank percentile of (sent_at - published_at), sorted by SQLite rather than
    loaded into Python: a busy day holds millions of alert rows."""
    if n == 0:
        return None
    rank = max(1, math.ceil(p * n))
    value = await db.scalar(
        f"SELECT max(0.0, o.sent_at - a.published_at) AS d {_SENT_ALERTS} "
        "ORDER BY d LIMIT 1 OFFSET ?",
        (since, rank - 1),
    )
    return None if value is None else float(value)


async def collect(db: Database, now: float) -> NewsroomStats:
    """Everything /stats shows; "24 h" means the 24 hours before `now`."""
    since = now - DAY
    sent = int(await db.scalar(f"SELECT count(*) {_SENT_ALERTS}", (since,)) or 0)
    # A failed row has no time of failure; it counts on the day it was queued.
    failed = int(
        await db.scalar(
            "SELECT count(*) FROM outbox WHERE state = 'failed' AND article_id IS NOT NULL "
            "AND created_at >= ?",
            (since,),
        )
        or 0
    )
    return NewsroomStats(
        readers=await chats.chat_counts(db),
        sections=await subscriptions.section_counts(db),
        top_keywords=await subscriptions.top_keywords(db, limit=10),
        articles_24h=await articles.count_since(db, since),
        alerts_sent_24h=sent,
        alerts_failed_24h=failed,
        backlog=await outbox.backlog(db),
        latency_p50=await _percentile(db, since, sent, 0.50),
        latency_p95=await _percentile(db, since, sent, 0.95),
    )
