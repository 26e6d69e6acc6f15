"""The chats table: the audience (readers and groups that started the bot or subscribed, and
have not stopped, blocked or left), section channels, and every chat's choices.

A chat that only ever read (/latest, /search, inline queries) has no row: it is nobody's
reader. `active` = 1 is the audience; `type` 'channel' rows are the sections' channels,
never an audience.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from storage.db import Database
from storage.models import Chat

OPTIONS = ("paused", "link_previews", "combine", "nothing_new")


_CHAT_COLUMNS = (
    "id", "type", "title", "active", "paused", "link_previews", "combine", "inactive_reason",
    "timezone", "quiet_start", "quiet_end", "quiet_mode", "briefings", "next_briefing_at",
    "last_briefing_at", "nothing_new", "language",
)
# The column names with each prefix a query gives them (the dispatcher reads thousands of
# rows a load: the names are not built again for each).
_PREFIXED = {prefix: tuple(prefix + name for name in _CHAT_COLUMNS) for prefix in ("", "c_")}


def row_to_chat(row: sqlite3.Row, *, prefix: str = "") -> Chat:
    names = _PREFIXED.get(prefix) or tuple(prefix + name for name in _CHAT_COLUMNS)
    (chat_id, chat_type, title, active, paused, link_previews, combine, inactive_reason, timezone,
     quiet_start, quiet_end, quiet_mode, briefings, next_briefing_at, last_briefing_at, nothing_new, language) = [row[n] for n in names]  # fmt: skip
    return Chat(
        id=int(chat_id),
        type=str(chat_type),
        title=title,
        active=bool(active),
        paused=bool(paused),
        link_previews=bool(link_previews),
        combine=bool(combine),
        inactive_reason=inactive_reason,
        timezone=timezone,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        quiet_mode="silent" if quiet_mode == "silent" else "hold",
        briefings=tuple(int(m) for m in briefings.split(",") if m) if briefings else (),
        next_briefing_at=next_briefing_at,
        last_briefing_at=last_briefing_at,
        nothing_new=bool(nothing_new),
        language=language,
    )


async def join(db: Database, chat_id: int, chat_type: str, title: str | None = None, *, now: float) -> Chat:
    """The chat starts the bot or subscribes: it is (again) part of the audience.

    Only /start (a deep link included), subscribing and a chat coming back after a block
    call this: reading never makes anyone a reader.
    """
    await db.execute(
        "INSERT INTO chats (id, type, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET active = 1, inactive_reason = NULL, type = excluded.type, "
        "title = coalesce(excluded.title, title), updated_at = excluded.updated_at",
        (chat_id, chat_type, title, now, now),
    )
    chat = await get_chat(db, chat_id)
    assert chat is not None
    return chat


NOT_STARTED = "not started"


async def remember(db: Database, chat_id: int, chat_type: str, title: str | None = None, *, now: float) -> Chat:
    """A chat that changes a setting without having started the bot: kept (its choices need
    a row) but not in the audience, so it gets no alert and no broadcast until /start."""
    await db.execute(
        "INSERT INTO chats (id, type, title, active, inactive_reason, created_at, updated_at) "
        "VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
        (chat_id, chat_type, title, NOT_STARTED, now, now),
    )
    chat = await get_chat(db, chat_id)
    assert chat is not None
    return chat


async def get_chat(db: Database, chat_id: int) -> Chat | None:
    row = await db.fetchone("SELECT * FROM chats WHERE id = ?", (chat_id,))
    return row_to_chat(row) if row else None


async def set_option(db: Database, chat_id: int, option: str, value: bool, *, now: float) -> bool:
    if option not in OPTIONS:
        raise ValueError(f"unknown chat option {option!r}")
    changed = await db.execute(
        f"UPDATE chats SET {option} = ?, updated_at = ? WHERE id = ?",  # noqa: S608 - fixed names
        (1 if value else 0, now, chat_id),
    )
    return changed > 0


async def set_timezone(db: Database, chat_id: int, zone: str | None, *, now: float) -> bool:
    return await db.execute(
        "UPDATE chats SET timezone = ?, updated_at = ? WHERE id = ?", (zone, now, chat_id)
    ) > 0


async def set_language(db: Database, chat_id: int, language: str | None, *, now: float) -> bool:
    """The chat's language (None: the newsroom's default)."""
    return await db.execute(
        "UPDATE chats SET language = ?, updated_at = ? WHERE id = ?", (language, now, chat_id)
    ) > 0


async def first_language(db: Database, chat_id: int, language: str) -> bool:
    """The language a chat first spoke in, kept unless it has one already."""
    return await db.execute(
        "UPDATE chats SET language = ? WHERE id = ? AND language IS NULL", (language, chat_id)
    ) > 0


async def set_quiet(
    db: Database, chat_id: int, start: int | None, end: int | None, mode: str | None = None, *,
    now: float,
) -> bool:
    """Quiet hours from `start` to `end` (minutes after local midnight; None: none)."""
    return await db.execute(
        "UPDATE chats SET quiet_start = ?, quiet_end = ?, quiet_mode = coalesce(?, quiet_mode), "
        "updated_at = ? WHERE id = ?",
        (start, end, mode, now, chat_id),
    ) > 0


async def set_briefings(
    db: Database, chat_id: int, times: Sequence[int], next_at: float | None, *, last_at: float | None,
    now: float,
) -> bool:
    return await db.execute(
        "UPDATE chats SET briefings = ?, next_briefing_at = ?, "
        "last_briefing_at = coalesce(last_briefing_at, ?), updated_at = ? WHERE id = ?",
        (",".join(str(t) for t in sorted(set(times))), next_at, last_at, now, chat_id),
    ) > 0


async def briefings_due(db: Database, now: float, limit: int = 5000) -> list[Chat]:
    """Chats whose next briefing time has come, in that order (through the partial index;
    chats out of the audience too — their briefing rows are not queued, their time moves on)."""
    rows = await db.fetchall(
        "SELECT * FROM chats WHERE next_briefing_at <= ? ORDER BY next_briefing_at LIMIT ?",
        (now, limit),
    )
    return [row_to_chat(r) for r in rows]


async def schedule_briefing(db: Database, plans: Sequence[tuple[int, float | None]]) -> None:
    """(chat id, next briefing at) for chats whose briefing was just queued."""
    await db.executemany(
        "UPDATE chats SET next_briefing_at = ? WHERE id = ?", [(at, chat_id) for chat_id, at in plans]
    )


async def briefing_cutoff(db: Database, chat_id: int) -> int | None:
    """The newest story (rowid) the chat's last sent briefing looked at; None before its
    first briefing."""
    value = await db.scalar("SELECT briefed_up_to FROM chats WHERE id = ?", (chat_id,))
    return None if value is None else int(value)


async def note_briefing_looked_at(db: Database, chat_id: int, rowid: int) -> None:
    """A briefing was composed with the stories up to `rowid`: its cut-off once it is sent
    (`set_last_briefing`). One briefing of a chat is sent at a time, so the last one composed
    is the one whose send is answered next."""
    await db.execute("UPDATE chats SET briefing_looked_at = ? WHERE id = ?", (rowid, chat_id))


async def set_last_briefing(db: Database, chat_id: int, at: float) -> None:
    """A briefing was sent (due at `at`): the stories it looked at are briefed."""
    await db.execute(
        "UPDATE chats SET last_briefing_at = ?, briefed_up_to = coalesce(briefing_looked_at, briefed_up_to), "
        "briefing_looked_at = NULL WHERE id = ?",
        (at, chat_id),
    )


STOPPED = "stopped"


async def stop_sending(db: Database, chat_id: int, *, now: float) -> int:
    """/stop, before the chat is deleted: it leaves the audience (nothing more is queued for
    it) and its queued messages are dropped, so the dispatcher can claim none of them (a
    claim takes only 'pending' rows). Returns how many of its messages are in flight; called
    again until none is, it also drops a row put back to 'pending' by a 429 meanwhile."""
    async with db.write() as conn:
        await conn.execute(
            "UPDATE chats SET active = 0, inactive_reason = ?, updated_at = ? WHERE id = ?",
            (STOPPED, now, chat_id),
        )
        await conn.execute(
            "DELETE FROM outbox WHERE chat_id = ? AND state IN ('held', 'pending')", (chat_id,)
        )
        cursor = await conn.execute(
            "SELECT count(*) FROM outbox WHERE chat_id = ? AND state = 'sending'", (chat_id,)
        )
        row = await cursor.fetchone()
        await cursor.close()
    return int(row[0]) if row else 0


async def delete_chat(db: Database, chat_id: int) -> bool:
    """Forget the chat: its subscriptions, settings and queued messages go with it (ON DELETE
    CASCADE); the hourly counters keep what was sent."""
    return await db.execute("DELETE FROM chats WHERE id = ?", (chat_id,)) > 0


async def migrate_chat(db: Database, old_id: int, new_id: int, *, now: float) -> None:
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
                (new_id, now, old_id),
            )


async def inactive_chat_ids(db: Database) -> list[int]:
    """Chats that must get no alerts at all: out of the audience."""
    rows = await db.fetchall("SELECT id FROM chats WHERE active = 0")
    return [r[0] for r in rows]


async def ensure_channel(db: Database, chat_id: int, title: str, *, now: float) -> None:
    """A section's channel: a chat row for its outbox rows, never part of the audience."""
    await db.execute(
        "INSERT INTO chats (id, type, title, created_at, updated_at) VALUES (?, 'channel', ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET type = 'channel', active = 1, title = excluded.title, "
        "updated_at = excluded.updated_at",
        (chat_id, title, now, now),
    )


async def chat_counts(db: Database) -> dict[str, int]:
    """The audience by state (channels are not readers)."""
    # Grouped in the audience index's own order: a count per group, no expression per chat.
    rows = await db.reports.fetchall(
        "SELECT active, type, paused, inactive_reason, count(*) FROM chats "
        "GROUP BY active, type, paused, inactive_reason"
    )
    counts = dict.fromkeys(("total", "active", "paused", "inactive"), 0)
    for active, chat_type, paused, reason, n in rows:
        if chat_type == "channel" or reason == NOT_STARTED:
            continue
        counts["total"] += n
        counts[("paused" if paused else "active") if active else "inactive"] += n
    return counts
