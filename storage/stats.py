"""Figures for admins (/stats) and operators (/healthz, /metrics).

Everything here reads the hourly counters or an index, never a scan that grows with traffic,
and runs on the reports connection, so a /stats never holds up the dispatcher or /healthz.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import chats, counters, due
from storage.db import Database, StorageError

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class NewsroomStats:
    readers: dict[str, int]  # total, active, paused, inactive
    day: counters.Figures  # the last 24 hours (whole hours)
    hourly: dict[int, counters.Figures]  # the same hours' lane and latency counters, by hour
    backlog: due.Backlog
    database_bytes: int

    @property
    def latency_p50(self) -> float | None:
        return self.day.latency_percentile(0.50)

    @property
    def latency_p95(self) -> float | None:
        return self.day.latency_percentile(0.95)


@dataclass(frozen=True, slots=True)
class FeedCounts:
    enabled: int
    failing: int  # enabled feeds whose last poll failed


async def database_ok(db: Database) -> bool:
    """The database answers a query (on the reader connection, which never waits for writes)."""
    return bool(await db.scalar("SELECT 1") == 1)


async def database_writable(db: Database, *, now: float) -> None:
    """One small write, committed: raises StorageError when the disk is full, the file is
    read-only, or it was deleted or replaced under us. Not recorded as the bot's last write
    (`Database.last_write_error`), which the health check reports on its own."""
    problem = db.file_problem()
    if problem is not None:
        raise StorageError(f"storage: {problem}")
    async with db.write(record=False) as conn:
        await conn.execute(
            "INSERT INTO health (id, checked_at) VALUES (1, ?) "
            "ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at",
            (now,),
        )


async def feed_counts(db: Database) -> FeedCounts:
    row = await db.reports.fetchone(
        "SELECT count(*), coalesce(sum(error_count > 0), 0) FROM feeds WHERE enabled = 1"
    )
    assert row is not None
    return FeedCounts(enabled=int(row[0]), failing=int(row[1]))


async def collect(db: Database, now: float) -> NewsroomStats:
    """Everything /stats shows; "24 h" means the hours since the one 24 hours before `now`."""
    return NewsroomStats(
        readers=await chats.chat_counts(db),
        day=await counters.since(db.reports, now - DAY),
        hourly=await counters.by_hour(db.reports, now - DAY),
        backlog=await due.backlog(db),
        database_bytes=await db.size(),
    )
