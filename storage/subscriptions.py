"""The subscriptions table: which chat follows which section or keyword."""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import AsyncIterator

from storage.db import Database
from storage.models import Subscription, SubscriptionKind


class AddResult(enum.Enum):
    ADDED = "added"
    EXISTS = "exists"
    LIMIT = "limit"


def _row_to_sub(row: sqlite3.Row) -> Subscription:
    return Subscription(
        id=row["id"], chat_id=row["chat_id"], kind=row["kind"], value=row["value"], display=row["display"]
    )


async def add_subscription(
    db: Database, chat_id: int, kind: SubscriptionKind, value: str, display: str, *, limit: int
) -> AddResult:
    """Add one subscription unless the chat already has it or is at its limit (checked atomically)."""
    async with db.write() as conn:
        cursor = await conn.execute(
            "SELECT count(*), coalesce(sum(kind = ? AND value = ?), 0) FROM subscriptions "
            "WHERE chat_id = ?",
            (kind, value, chat_id),
        )
        row = await cursor.fetchone()
        await cursor.close()
        assert row is not None
        if row[1]:
            return AddResult.EXISTS
        if row[0] >= limit:
            return AddResult.LIMIT
        await conn.execute(
            "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (chat_id, kind, value, display, time.time()),
        )
    return AddResult.ADDED


async def remove_subscription(db: Database, chat_id: int, kind: SubscriptionKind, value: str) -> bool:
    return (
        await db.execute(
            "DELETE FROM subscriptions WHERE chat_id = ? AND kind = ? AND value = ?",
            (chat_id, kind, value),
        )
        > 0
    )


async def get_subscription(db: Database, sub_id: int) -> Subscription | None:
    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub_id,))
    return _row_to_sub(row) if row else None


async def subscriptions_for_chat(db: Database, chat_id: int) -> list[Subscription]:
    rows = await db.fetchall(
        "SELECT * FROM subscriptions WHERE chat_id = ? ORDER BY kind DESC, id", (chat_id,)
    )
    return [_row_to_sub(r) for r in rows]


async def iter_subscriptions(db: Database, batch: int = 50_000) -> AsyncIterator[Subscription]:
    """Every subscription, in batches, for loading the matcher's index."""
    last = 0
    while True:
        rows = await db.fetchall(
            "SELECT id, chat_id, kind, value, display FROM subscriptions WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (last, batch),
        )
        if not rows:
            return
        for row in rows:
            yield _row_to_sub(row)
        last = rows[-1]["id"]


async def section_counts(db: Database) -> dict[str, int]:
    rows = await db.fetchall(
        "SELECT s.value, count(*) FROM subscriptions s JOIN chats c ON c.id = s.chat_id "
        "WHERE s.kind = 'section' AND c.active = 1 GROUP BY s.value ORDER BY count(*) DESC"
    )
    return {r[0]: int(r[1]) for r in rows}


async def top_keywords(db: Database, limit: int = 10) -> list[tuple[str, int]]:
    rows = await db.fetchall(
        "SELECT s.value, count(*) AS n FROM subscriptions s JOIN chats c ON c.id = s.chat_id "
        "WHERE s.kind = 'keyword' AND c.active = 1 GROUP BY s.value ORDER BY n DESC, s.value LIMIT ?",
        (limit,),
    )
    return [(r[0], int(r[1])) for r in rows]
