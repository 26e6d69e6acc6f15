"""The chats table: readers and groups, whether they can be reached, and their options."""

from __future__ import annotations

import sqlite3
import time

from storage.db import Database
from storage.models import Chat

OPTIONS = ("paused", "link_previews", "combine")


def _row_to_chat(row: sqlite3.Row) -> Chat:
    return Chat(
        id=row["id"],
        type=row["type"],
        title=row["title"],
        active=bool(row["active"]),
        paused=bool(row["paused"]),
        link_previews=bool(row["link_previews"]),
        combine=bool(row["combine"]),
        inactive_reason=row["inactive_reason"],
    )


async def ensure_chat(db: Database, chat_id: int, chat_type: str, title: str | None = None) -> Chat:
    """Create the chat, or make it reachable again (a reader who comes back is active)."""
    now = time.time()
    await db.execute(
        "INSERT INTO chats (id, type, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET active = 1, inactive_reason = NULL, type = excluded.type, "
        "title = coalesce(excluded.title, title), updated_at = excluded.updated_at",
        (chat_id, chat_type, title, now, now),
    )
    chat = await get_chat(db, chat_id)
    assert chat is not None
    return chat


async def get_chat(db: Database, chat_id: int) -> Chat | None:
    row = await db.fetchone("SELECT * FROM chats WHERE id = ?", (chat_id,))
    return _row_to_chat(row) if row else None


async def set_option(db: Database, chat_id: int, option: str, value: bool) -> bool:
    if option not in OPTIONS:
        raise ValueError(f"unknown chat option {option!r}")
    changed = await db.execute(
        f"UPDATE chats SET {option} = ?, updated_at = ? WHERE id = ?",  # noqa: S608 - fixed names
        (1 if value else 0, time.time(), chat_id),
    )
    return changed > 0


async def deactivate_chat(db: Database, chat_id: int, reason: str) -> bool:
    """Blocked, kicked or gone: mark inactive and cancel everything still queued for it.

    Returns True if the chat was active before.
    """
    async with db.write() as conn:
        cursor = await conn.execute(
            "UPDATE chats SET active = 0, inactive_reason = ?, updated_at = ? "
            "WHERE id = ? AND active = 1",
            (reason[:200], time.time(), chat_id),
        )
        was_active = cursor.rowcount > 0
        await conn.execute(
            "UPDATE outbox SET state = 'blocked', last_error = ? "
            "WHERE chat_id = ? AND state IN ('pending', 'sending')",
            (reason[:200], chat_id),
        )
    return was_active


async def delete_chat(db: Database, chat_id: int) -> bool:
    """Forget the chat: its subscriptions and queued messages go with it (ON DELETE CASCADE)."""
    return await db.execute("DELETE FROM chats WHERE id = ?", (chat_id,)) > 0


async def migrate_chat(db: Database, old_id: int, new_id: int) -> None:
    """A group became a supergroup: the chat, its subscriptions and queue move to the new id."""
    async with db.write() as conn:
        cursor = await conn.execute("SELECT 1 FROM chats WHERE id = ?", (new_id,))
        exists = await cursor.fetchone() is not None
        await cursor.close()
        if exists:
            # Both ids known: keep the new chat, move what it lacks, drop the old one.
            await conn.execute(
                "UPDATE OR IGNORE subscriptions SET chat_id = ? WHERE chat_id = ?", (new_id, old_id)
            )
            await conn.execute(
                "UPDATE OR IGNORE outbox SET chat_id = ? WHERE chat_id = ?", (new_id, old_id)
            )
            await conn.execute("DELETE FROM chats WHERE id = ?", (old_id,))
        else:
            await conn.execute(
                "UPDATE chats SET id = ?, type = 'supergroup', updated_at = ? WHERE id = ?",
                (new_id, time.time(), old_id),
            )


async def silenced_chat_ids(db: Database) -> list[int]:
    """Chats that must get no alerts: paused or unreachable."""
    rows = await db.fetchall("SELECT id FROM chats WHERE active = 0 OR paused = 1")
    return [r[0] for r in rows]


async def active_chat_ids(db: Database, section: str | None = None) -> list[int]:
    """Everyone reachable (for a broadcast); with `section`, only that section's readers."""
    if section is None:
        rows = await db.fetchall("SELECT id FROM chats WHERE active = 1 ORDER BY id")
    else:
        rows = await db.fetchall(
            "SELECT c.id FROM chats c JOIN subscriptions s ON s.chat_id = c.id "
            "WHERE c.active = 1 AND s.kind = 'section' AND s.value = ? ORDER BY c.id",
            (section,),
        )
    return [r[0] for r in rows]


async def chat_counts(db: Database) -> dict[str, int]:
    row = await db.fetchone(
        "SELECT count(*) AS total, "
        "coalesce(sum(active = 1 AND paused = 0), 0) AS active, "
        "coalesce(sum(active = 1 AND paused = 1), 0) AS paused, "
        "coalesce(sum(active = 0), 0) AS inactive FROM chats"
    )
    assert row is not None
    return {k: int(row[k]) for k in ("total", "active", "paused", "inactive")}
