"""The outbox: one durable row per message to send (chat × article, or chat × broadcast).

Rows are written before any send, so a crash loses nothing; UNIQUE(chat, article) and
UNIQUE(chat, broadcast) make a second enqueue of the same alert a no-op.
States: pending → sending → sent | failed | cancelled | blocked.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiosqlite

from storage.articles import mark_matched, row_to_article
from storage.db import Database
from storage.models import Article

PRIORITY_ALERT = 0
PRIORITY_BROADCAST = 10


async def enqueue_matches(
    db: Database, article_ids: Sequence[str], matches: Mapping[str, Mapping[int, Sequence[str]]]
) -> int:
    """Queue the alerts of these articles and mark them matched, in one transaction.

    `matches` maps article id → {chat id: reasons}. Returns how many rows were queued.
    """
    now = time.time()
    rows = [
        (chat_id, article_id, PRIORITY_ALERT, "|".join(reasons), now, now)
        for article_id, chats in matches.items()
        for chat_id, reasons in chats.items()
    ]
    async with db.write() as conn:
        before = conn.total_changes
        await conn.executemany(
            "INSERT INTO outbox (chat_id, article_id, priority, reasons, next_attempt_at, created_at) "
            "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM chats WHERE id = ?1 AND active = 1) "
            "ON CONFLICT DO NOTHING",
            rows,
        )
        queued = conn.total_changes - before
        await mark_matched(conn, article_ids)
    return queued


async def reset_in_flight(db: Database) -> int:
    """After a restart, rows caught mid-send go back to pending (the documented duplicate bound)."""
    return await db.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")


async def backlog(db: Database) -> int:
    return int(await db.scalar("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')") or 0)


async def queued_for_chat(db: Database, chat_id: int) -> int:
    """Rows of one chat still to go (pending or in flight)."""
    return int(
        await db.scalar(
            "SELECT count(*) FROM outbox WHERE chat_id = ? AND state IN ('pending', 'sending')",
            (chat_id,),
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class DueMessage:
    """A pending row with everything needed to render and send it."""

    id: int
    chat_id: int
    chat_type: str
    combine: bool
    link_previews: bool
    priority: int
    reasons: tuple[str, ...]
    attempts: int
    article: Article | None
    article_rowid: int | None
    broadcast_id: int | None
    broadcast_html: str | None
    next_attempt_at: float = 0.0


_DUE_SQL = """
SELECT o.id, o.chat_id, o.priority, o.reasons, o.attempts, o.broadcast_id, o.next_attempt_at,
       c.type AS chat_type, c.combine, c.link_previews,
       a.rowid AS article_rowid, a.id AS a_id, a.feed_id, a.url, a.title, a.summary, a.section,
       a.tags, a.published_at, a.fetched_at, a.image_url,
       b.html AS broadcast_html
FROM outbox o
JOIN chats c ON c.id = o.chat_id
LEFT JOIN articles a ON a.id = o.article_id
LEFT JOIN broadcasts b ON b.id = o.broadcast_id
WHERE o.state = 'pending' AND o.next_attempt_at <= ? AND c.active = 1
  AND (c.paused = 0 OR o.broadcast_id IS NOT NULL)
ORDER BY o.priority DESC, o.next_attempt_at, o.id
LIMIT ?
"""


def _due(row: sqlite3.Row) -> DueMessage:
    article = row_to_article(row, id_column="a_id") if row["a_id"] is not None else None
    return DueMessage(
        id=row["id"],
        chat_id=row["chat_id"],
        chat_type=row["chat_type"],
        combine=bool(row["combine"]),
        link_previews=bool(row["link_previews"]),
        priority=row["priority"],
        reasons=tuple(r for r in row["reasons"].split("|") if r),
        attempts=row["attempts"],
        article=article,
        article_rowid=row["article_rowid"],
        broadcast_id=row["broadcast_id"],
        broadcast_html=row["broadcast_html"],
        next_attempt_at=row["next_attempt_at"],
    )


async def due_messages(db: Database, now: float, limit: int = 2000) -> list[DueMessage]:
    """Pending rows due by `now`, highest priority first, oldest first."""
    return [_due(r) for r in await db.fetchall(_DUE_SQL, (now, limit))]


async def next_due_at(db: Database) -> float | None:
    value = await db.scalar(
        "SELECT min(o.next_attempt_at) FROM outbox o JOIN chats c ON c.id = o.chat_id "
        "WHERE o.state = 'pending' AND c.active = 1 AND (c.paused = 0 OR o.broadcast_id IS NOT NULL)"
    )
    return None if value is None else float(value)


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


async def claim(db: Database, ids: Sequence[int]) -> list[int]:
    """pending → sending, just before the send. Rows cancelled meanwhile are not returned."""
    async with db.write() as conn:
        return await claim_in(conn, ids)


async def claim_in(conn: aiosqlite.Connection, ids: Sequence[int]) -> list[int]:
    """`claim` inside the caller's transaction."""
    cursor = await conn.execute(
        f"UPDATE outbox SET state = 'sending' WHERE id IN ({_marks(ids)}) "  # noqa: S608
        "AND state = 'pending' RETURNING id",
        tuple(ids),
    )
    claimed = [int(r[0]) for r in await cursor.fetchall()]
    await cursor.close()
    return claimed


async def mark_sent(db: Database, ids: Sequence[int], message_id: int, now: float) -> None:
    async with db.write() as conn:
        await mark_sent_in(conn, ids, message_id, now)


async def mark_sent_in(
    conn: aiosqlite.Connection, ids: Sequence[int], message_id: int, now: float
) -> None:
    """`mark_sent` inside the caller's transaction."""
    await conn.execute(
        f"UPDATE outbox SET state = 'sent', sent_at = ?, message_id = ?, "  # noqa: S608
        f"attempts = attempts + 1, last_error = NULL WHERE id IN ({_marks(ids)})",
        (now, message_id, *ids),
    )


async def retry_later(
    db: Database, ids: Sequence[int], *, at: float, error: str, count_attempt: bool, max_attempts: int
) -> list[int]:
    """Back to pending for another try at `at`; rows out of attempts become failed (returned).

    Without `count_attempt` (429, migration) a row never becomes failed: those answers say
    "later", not "never".
    """
    inc = 1 if count_attempt else 0
    async with db.write() as conn:
        cursor = await conn.execute(
            f"UPDATE outbox SET attempts = attempts + ?, last_error = ?, next_attempt_at = ?, "  # noqa: S608
            "state = CASE WHEN ? AND attempts + ? >= ? THEN 'failed' ELSE 'pending' END "
            f"WHERE id IN ({_marks(ids)}) AND state = 'sending' RETURNING id, state",
            (inc, error[:300], at, inc, inc, max_attempts, *ids),
        )
        failed = [int(r[0]) for r in await cursor.fetchall() if r[1] == "failed"]
        await cursor.close()
    return failed


async def mark_failed(db: Database, ids: Sequence[int], error: str) -> None:
    await db.execute(
        f"UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ? "  # noqa: S608
        f"WHERE id IN ({_marks(ids)})",
        (error[:300], *ids),
    )


async def get_reasons(db: Database, outbox_id: int, chat_id: int) -> tuple[str, ...] | None:
    """The reasons of one of this chat's alerts (for its Mute button)."""
    value = await db.scalar("SELECT reasons FROM outbox WHERE id = ? AND chat_id = ?", (outbox_id, chat_id))
    return None if value is None else tuple(r for r in str(value).split("|") if r)


async def delivery_counts(db: Database, since: float) -> dict[str, int]:
    rows = await db.fetchall(
        "SELECT state, count(*) FROM outbox WHERE coalesce(sent_at, created_at) >= ? GROUP BY state",
        (since,),
    )
    return {r[0]: int(r[1]) for r in rows}
