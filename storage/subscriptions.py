"""The subscriptions table: which chat follows which section or keyword, and which words it
never wants (kind 'exclude'); per subscription, instant alerts or the briefing only."""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass

from storage.db import Database
from storage.models import Subscription, SubscriptionKind, SubscriptionMode


class AddResult(enum.Enum):
    ADDED = "added"
    EXISTS = "exists"
    LIMIT = "limit"
    REPLACED = "replaced"  # added, and the opposite choice for the same word removed
    NO_CHAT = "no chat"  # the chat was deleted (/stop) meanwhile: nothing added


@dataclass(frozen=True, slots=True)
class Added:
    result: AddResult
    subscription: Subscription | None = None


def _row_to_sub(row: sqlite3.Row) -> Subscription:
    return Subscription(
        id=row["id"], chat_id=row["chat_id"], kind=row["kind"], value=row["value"],
        display=row["display"], mode=row["mode"], thread_id=row["thread_id"],
    )


# Following a word replaces excluding it, and the other way round.
_OPPOSITE: dict[str, str] = {"keyword": "exclude", "exclude": "keyword"}


async def add_subscription(
    db: Database,
    chat_id: int,
    kind: SubscriptionKind,
    value: str,
    display: str,
    *,
    limit: int,
    now: float,
    mode: SubscriptionMode = "instant",
    thread_id: int | None = None,
) -> Added:
    """Add one subscription unless the chat already has it or is at its limit (checked
    atomically). Sections and keywords share `limit`; exclusions have a limit of their own.
    A keyword that was excluded (or an exclusion of a followed keyword) replaces the old
    choice. A chat without a row (deleted by /stop meanwhile) gets nothing."""
    opposite = _OPPOSITE.get(kind)
    counted = ("exclude",) if kind == "exclude" else ("section", "keyword")
    async with db.write() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FILTER (WHERE kind IN (?2, ?3)), "
            "coalesce(sum(kind = ?4 AND value = ?5), 0), coalesce(sum(kind = ?6 AND value = ?5), 0), "
            "EXISTS (SELECT 1 FROM chats WHERE id = ?1) "
            "FROM subscriptions WHERE chat_id = ?1",
            (chat_id, counted[0], counted[-1], kind, value, opposite),
        )
        row = await cursor.fetchone()
        await cursor.close()
        assert row is not None
        if not row[3]:
            return Added(AddResult.NO_CHAT)
        if row[1]:
            return Added(AddResult.EXISTS)
        replaced = bool(row[2])
        if row[0] >= limit:
            return Added(AddResult.LIMIT)
        if replaced:
            await conn.execute(
                "DELETE FROM subscriptions WHERE chat_id = ? AND kind = ? AND value = ?",
                (chat_id, opposite, value),
            )
        cursor = await conn.execute(
            "INSERT INTO subscriptions (chat_id, kind, value, display, mode, thread_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (chat_id, kind, value, display, mode, thread_id, now),
        )
        new = await cursor.fetchone()
        await cursor.close()
    assert new is not None
    sub = Subscription(
        chat_id=chat_id, kind=kind, value=value, display=display, id=int(new[0]), mode=mode,
        thread_id=thread_id,
    )
    return Added(AddResult.REPLACED if replaced else AddResult.ADDED, sub)


async def remove_subscription(db: Database, chat_id: int, kind: SubscriptionKind, value: str) -> bool:
    return (
        await db.execute(
            "DELETE FROM subscriptions WHERE chat_id = ? AND kind = ? AND value = ?",
            (chat_id, kind, value),
        )
        > 0
    )


async def set_mode(db: Database, sub_id: int, chat_id: int, mode: SubscriptionMode) -> bool:
    return await db.execute(
        "UPDATE subscriptions SET mode = ? WHERE id = ? AND chat_id = ?", (mode, sub_id, chat_id)
    ) > 0


async def set_thread(db: Database, chat_id: int, kind: SubscriptionKind, value: str, thread_id: int | None) -> bool:
    """The forum topic a subscription's alerts go to; False when it had that one already
    (or does not exist)."""
    return await db.execute(
        "UPDATE subscriptions SET thread_id = ? WHERE chat_id = ? AND kind = ? AND value = ? "
        "AND thread_id IS NOT ?",
        (thread_id, chat_id, kind, value, thread_id),
    ) > 0


async def get_subscription(db: Database, sub_id: int) -> Subscription | None:
    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub_id,))
    return _row_to_sub(row) if row else None


async def subscriptions_for_chat(db: Database, chat_id: int) -> list[Subscription]:
    """Sections first, then keywords, then exclusions, each in the order they were added."""
    # Sorted here: the (chat, kind, value) index gives the chat's few rows, not their order.
    rows = await db.fetchall("SELECT * FROM subscriptions WHERE chat_id = ?", (chat_id,))
    return sorted((_row_to_sub(r) for r in rows), key=lambda s: (_KIND_ORDER[s.kind], s.id))


_KIND_ORDER = {"section": 0, "keyword": 1, "exclude": 2}


async def iter_subscriptions(db: Database, batch: int = 50_000) -> AsyncIterator[Subscription]:
    """Every subscription, in batches, for loading the matcher's index."""
    last = 0
    while True:
        rows = await db.fetchall(
            "SELECT id, chat_id, kind, value, display, mode, thread_id FROM subscriptions "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (last, batch),
        )
        if not rows:
            return
        for row in rows:
            yield _row_to_sub(row)
        last = rows[-1]["id"]
