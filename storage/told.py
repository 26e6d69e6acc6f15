"""What each chat was told: for every story, the chats that got it and in which message.

The outbox keeps message bodies and is pruned after NEWSBOT_OUTBOX_DAYS; this memory is what
keeps a story matched again (a correction, a second section) from reaching a chat twice as
new. A row is four integers (about 30 bytes with its key). It is kept for as long as the
story can still be corrected (storage.outbox.EDIT_HOURS after it was sent) and while it is
still listed in its feed, whatever the retention settings (`prune`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from storage import identity

# Stories looked at per pruning pass.
PRUNE_STORIES = 500


async def record(conn: aiosqlite.Connection, rows: Iterable[tuple[int, int, int, float]]) -> None:
    """(story rowid, chat id, message id, sent at): inside the transaction that marks the
    messages sent. A story told twice to one chat (an edit's new section) keeps its first."""
    await conn.executemany(
        "INSERT OR IGNORE INTO told (story, chat_id, message_id, sent_at) VALUES (?, ?, ?, ?)",
        [(story, chat_id, message_id, int(sent_at)) for story, chat_id, message_id, sent_at in rows],
    )


async def chats_told(conn: aiosqlite.Connection, story: int) -> dict[int, tuple[int, int]]:
    """chat id → (message id, sent at) for every chat told about `story`."""
    rows = await conn.execute_fetchall(
        "SELECT chat_id, message_id, sent_at FROM told WHERE story = ?", (story,)
    )
    return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def prune(conn: aiosqlite.Connection, *, corrected_before: float, limit: int = PRUNE_STORIES) -> int:
    """Forget the stories that can no longer be corrected and have left their feed: fetched
    before `corrected_before` (every message about them is older than the correction window)
    and not listed by their feed since — or gone from the archive. Oldest stories first, at
    most `limit` of them a call, each found by one probe of the key. Returns rows deleted."""
    forget: list[int] = []
    after = -1
    for _ in range(limit):
        row = await _one(conn, "SELECT min(story) FROM told WHERE story > ?", (after,))
        if row is None or row[0] is None:
            break
        story = after = int(row[0])
        article = await _one(
            conn,
            f"SELECT a.fetched_at, {identity.LAST_LISTED_SQL} FROM articles a "  # noqa: S608
            "LEFT JOIN feeds f ON f.id = a.feed_id WHERE a.rowid = ?",
            (story,),
        )
        if article is None:
            forget.append(story)  # gone from the archive
        elif float(article[0]) >= corrected_before:
            break  # stories come in rowid order: every later one is newer still
        elif float(article[1]) < corrected_before:
            forget.append(story)  # and not listed by a feed since (storage.identity)
    return await _forget(conn, forget)


async def _one(conn: aiosqlite.Connection, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
    rows = list(await conn.execute_fetchall(sql, params))
    return tuple(rows[0]) if rows else None


async def _forget(conn: aiosqlite.Connection, stories: Sequence[int]) -> int:
    if not stories:
        return 0
    cursor = await conn.execute(
        f"DELETE FROM told WHERE story IN ({','.join('?' * len(stories))})",  # noqa: S608
        tuple(stories),
    )
    return cursor.rowcount
