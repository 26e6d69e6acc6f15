"""The broadcasts table: an admin's message to every active reader, or to one section's.

A broadcast's messages are ordinary outbox rows (kind 'broadcast', lane 0, one per chat,
UNIQUE(chat, key)), so the dispatcher sends them in their own lane, with the largest share of
the rate beside alerts (docs/delivery.md), and a restart resumes them. A paid broadcast's
rows go with allow_paid_broadcast at the paid rate until Telegram refuses that (then `paid`
is cleared and `paid_refused` says why); an urgent one ignores quiet hours. States: preview →
sending → done | stopped, and preview → cancelled | expired.

Final counts are kept as a snapshot in `broadcasts.final_counts` when a broadcast ends: a
reader who later uses /stop deletes their outbox rows, and the record of what was sent must
not shrink with them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import aiosqlite

from storage import outbox
from storage.db import Database

ENDED = ("done", "stopped", "cancelled", "expired")


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: int
    admin_id: int
    admin_chat_id: int
    html: str
    audience: str | None  # section slug, None for everyone
    state: str
    preview_message_id: int | None
    progress_message_id: int | None
    total: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    paid: bool = False
    paid_refused: str | None = None
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Counts:
    """Where a broadcast's outbox rows are, by state."""

    total: int
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    cancelled: int = 0

    @property
    def remaining(self) -> int:
        return self.pending + self.sending

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.blocked + self.cancelled


@dataclass(frozen=True, slots=True)
class StartResult:
    """`started` is True only for the call that moved the broadcast from preview to sending."""

    started: bool
    state: str
    total: int = 0


@dataclass(frozen=True, slots=True)
class StopPass:
    """One stop transaction: pending rows cancelled, and how many were still in flight."""

    state: str  # the broadcast's state after the pass ('stopped' when it could be stopped)
    stopped_now: bool  # this pass moved it from sending to stopped
    cancelled: int
    sending: int


def _row(row: sqlite3.Row) -> Broadcast:
    return Broadcast(
        id=row["id"],
        admin_id=row["admin_id"],
        admin_chat_id=row["admin_chat_id"],
        html=row["html"],
        audience=row["audience"],
        state=row["state"],
        preview_message_id=row["preview_message_id"],
        progress_message_id=row["progress_message_id"],
        total=row["total"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        paid=bool(row["paid"]),
        paid_refused=row["paid_refused"],
        urgent=bool(row["urgent"]),
    )


def _counts(total: int, rows: list[sqlite3.Row]) -> Counts:
    by_state = {str(r[0]): int(r[1]) for r in rows}
    return Counts(
        total=total,
        pending=by_state.get("pending", 0),
        sending=by_state.get("sending", 0),
        sent=by_state.get("sent", 0),
        failed=by_state.get("failed", 0),
        blocked=by_state.get("blocked", 0),
        cancelled=by_state.get("cancelled", 0),
    )


_COUNTS_SQL = "SELECT state, count(*) FROM outbox WHERE broadcast_id = ? GROUP BY state"
# The audience: chats that started the bot or subscribed and have not stopped, blocked or
# left (channels are never an audience); for a section (?1), those following it.
_READERS = "c.active = 1 AND c.type <> 'channel'"
_AUDIENCE_SQL = (
    f"FROM chats c WHERE {_READERS} AND (?1 IS NULL OR EXISTS ("  # noqa: S608
    "SELECT 1 FROM subscriptions s WHERE s.chat_id = c.id AND s.kind = 'section' AND s.value = ?1))"
)
# The same count, driven from the section's subscriptions (a fraction of the chats) rather
# than asking every chat in the audience (CROSS JOIN keeps SQLite to that order).
_SECTION_AUDIENCE_SQL = (
    "FROM subscriptions s CROSS JOIN chats c ON c.id = s.chat_id "
    f"WHERE s.kind = 'section' AND s.value = ?1 AND {_READERS}"
)


async def create(
    db: Database, *, admin_id: int, admin_chat_id: int, html: str, audience: str | None, now: float
) -> int:
    """A new broadcast in state 'preview'; returns its id."""
    async with db.write() as conn:
        cursor = await conn.execute(
            "INSERT INTO broadcasts (admin_id, admin_chat_id, html, audience, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (admin_id, admin_chat_id, html, audience, now),
        )
        broadcast_id = cursor.lastrowid
        await cursor.close()
    assert broadcast_id is not None
    return int(broadcast_id)


async def get(db: Database, broadcast_id: int) -> Broadcast | None:
    row = await db.fetchone("SELECT * FROM broadcasts WHERE id = ?", (broadcast_id,))
    return _row(row) if row else None


async def recent(db: Database, limit: int = 10) -> list[Broadcast]:
    rows = await db.fetchall("SELECT * FROM broadcasts ORDER BY id DESC LIMIT ?", (limit,))
    return [_row(r) for r in rows]


async def set_preview_message(db: Database, broadcast_id: int, message_id: int) -> None:
    await db.execute(
        "UPDATE broadcasts SET preview_message_id = ? WHERE id = ?", (message_id, broadcast_id)
    )


async def set_progress_message(db: Database, broadcast_id: int, message_id: int) -> None:
    await db.execute(
        "UPDATE broadcasts SET progress_message_id = ? WHERE id = ?", (message_id, broadcast_id)
    )


async def audience_size(db: Database, audience: str | None) -> int:
    """How many chats a broadcast to `audience` would reach right now."""
    source = _AUDIENCE_SQL if audience is None else _SECTION_AUDIENCE_SQL
    return int(await db.reports.scalar(f"SELECT count(*) {source}", (audience,)) or 0)


async def start(
    db: Database, broadcast_id: int, *, now: float, expires_before: float, paid: bool = False,
    urgent: bool = False,
) -> StartResult:
    """preview → sending, with one outbox row per active chat of the audience.

    The state check, the rows and the new state are one transaction, so a second press of
    Send (or the same press redelivered after a restart) queues nothing. A preview created
    before `expires_before` becomes 'expired' instead. An empty audience ends as 'done'.
    """
    async with db.write() as conn:
        cursor = await conn.execute(
            "SELECT state, created_at, audience FROM broadcasts WHERE id = ?", (broadcast_id,)
        )
        row = await cursor.fetchone()
        await cursor.close()
        if row is None:
            return StartResult(False, "unknown")
        if row["state"] != "preview":
            return StartResult(False, str(row["state"]))
        if row["created_at"] < expires_before:
            await conn.execute(
                "UPDATE broadcasts SET state = 'expired', finished_at = ? WHERE id = ?",
                (now, broadcast_id),
            )
            return StartResult(False, "expired")
        before = conn.total_changes
        await conn.execute(
            "INSERT INTO outbox (chat_id, kind, key, lane, broadcast_id, next_attempt_at, created_at) "
            f"SELECT c.id, 'broadcast', 'b:' || ?2, ?3, ?2, ?4, ?4 {_AUDIENCE_SQL} ORDER BY c.id "
            "ON CONFLICT DO NOTHING",
            (row["audience"], broadcast_id, outbox.LANE_BROADCAST, now),
        )
        total = conn.total_changes - before
        state = "sending" if total else "done"
        await conn.execute(
            "UPDATE broadcasts SET state = ?, total = ?, started_at = ?, paid = ?, urgent = ?, "
            "finished_at = CASE WHEN ? = 'done' THEN ? END WHERE id = ?",
            (state, total, now, int(paid), int(urgent), state, now, broadcast_id),
        )
        if not total:
            await _save_counts(conn, broadcast_id, Counts(total=0))
    return StartResult(True, state, total)


async def cancel_preview(db: Database, broadcast_id: int, *, now: float) -> str:
    """preview → cancelled; returns the state found (only 'preview' means it was cancelled)."""
    async with db.write() as conn:
        if await _changed(
            conn, "UPDATE broadcasts SET state = 'cancelled', finished_at = ? "
            "WHERE id = ? AND state = 'preview' RETURNING id", (now, broadcast_id),
        ):
            return "preview"
        cursor = await conn.execute("SELECT state FROM broadcasts WHERE id = ?", (broadcast_id,))
        row = await cursor.fetchone()
        await cursor.close()
    return "unknown" if row is None else str(row[0])


async def _changed(conn: aiosqlite.Connection, sql: str, params: tuple[object, ...]) -> bool:
    """Whether an UPDATE … RETURNING changed a row."""
    rows = list(await conn.execute_fetchall(sql, params))
    return bool(rows)


async def counts(db: Database, broadcast_id: int) -> Counts:
    """Live counts from the outbox while sending; the saved snapshot once it has ended."""
    record = await get(db, broadcast_id)
    if record is None:
        return Counts(total=0)
    if record.state in ENDED:
        saved = await db.scalar("SELECT final_counts FROM broadcasts WHERE id = ?", (broadcast_id,))
        if saved is not None:
            return Counts(**json.loads(saved))
    return _counts(record.total, await db.fetchall(_COUNTS_SQL, (broadcast_id,)))


async def _conn_counts(conn: aiosqlite.Connection, broadcast_id: int) -> Counts:
    cursor = await conn.execute("SELECT total FROM broadcasts WHERE id = ?", (broadcast_id,))
    row = await cursor.fetchone()
    await cursor.close()
    cursor = await conn.execute(_COUNTS_SQL, (broadcast_id,))
    rows = list(await cursor.fetchall())
    await cursor.close()
    return _counts(int(row[0]) if row else 0, rows)


async def _save_counts(conn: aiosqlite.Connection, broadcast_id: int, snapshot: Counts) -> None:
    value = json.dumps(
        {
            "total": snapshot.total, "pending": snapshot.pending, "sending": snapshot.sending,
            "sent": snapshot.sent, "failed": snapshot.failed, "blocked": snapshot.blocked,
            "cancelled": snapshot.cancelled,
        }
    )  # fmt: skip
    await conn.execute("UPDATE broadcasts SET final_counts = ? WHERE id = ?", (value, broadcast_id))


async def finish_if_complete(db: Database, broadcast_id: int, *, now: float) -> Counts | None:
    """sending → done when no row is pending or in flight; returns the final counts, else None."""
    async with db.write() as conn:
        snapshot = await _conn_counts(conn, broadcast_id)
        if snapshot.remaining:
            return None
        if not await _changed(
            conn, "UPDATE broadcasts SET state = 'done', finished_at = ? "
            "WHERE id = ? AND state = 'sending' RETURNING id", (now, broadcast_id),
        ):
            return None
        await _save_counts(conn, broadcast_id, snapshot)
    return snapshot


async def stop_pass(db: Database, broadcast_id: int, *, now: float, force: bool = False) -> StopPass:
    """Cancel every pending row of a sending (or stopping) broadcast, in one UPDATE.

    The dispatcher claims a row (pending → sending) in a transaction of its own, so once a
    pass finds no row in 'sending', nothing of this broadcast can be sent any more. A row the
    dispatcher puts back to pending (a 429 on a row in flight) is cancelled by the next pass.
    `force` cancels rows still in flight too: their sends may still arrive.
    """
    states = "('pending', 'sending')" if force else "('pending')"
    async with db.write() as conn:
        cursor = await conn.execute("SELECT state FROM broadcasts WHERE id = ?", (broadcast_id,))
        row = await cursor.fetchone()
        await cursor.close()
        if row is None:
            return StopPass("unknown", False, 0, 0)
        state = str(row[0])
        if state not in ("sending", "stopped"):
            return StopPass(state, False, 0, 0)
        cancelled = await outbox.close_rows_in(
            conn, f"broadcast_id = ? AND state IN {states}", (broadcast_id,),
            state="cancelled", error="stopped by an admin", now=now,
        )
        if state == "sending":
            await conn.execute(
                "UPDATE broadcasts SET state = 'stopped', finished_at = ? WHERE id = ?",
                (now, broadcast_id),
            )
        snapshot = await _conn_counts(conn, broadcast_id)
        await _save_counts(conn, broadcast_id, snapshot)
    return StopPass("stopped", state == "sending", cancelled, snapshot.sending)


async def unfinished(db: Database) -> tuple[list[int], list[int]]:
    """(sending, stopped) broadcasts that still have rows to send or in flight, in one read:
    what a start has to resume or to settle."""
    rows = await db.fetchall(
        "SELECT b.id, b.state FROM broadcasts b WHERE b.state = 'sending' OR (b.state = 'stopped' "
        "AND EXISTS (SELECT 1 FROM outbox o WHERE o.broadcast_id = b.id "
        "AND o.state IN ('pending', 'sending'))) ORDER BY b.id"
    )
    return [r[0] for r in rows if r[1] == "sending"], [r[0] for r in rows if r[1] == "stopped"]


async def settle_stopped(db: Database, broadcast_ids: list[int], *, now: float) -> int:
    """At start, before the dispatcher runs: rows of these stopped broadcasts caught in flight
    by a crash are cancelled, not resent. Returns how many."""
    cancelled = 0
    async with db.write() as conn:
        for broadcast_id in broadcast_ids:
            cancelled += await outbox.close_rows_in(
                conn, "broadcast_id = ?", (broadcast_id,), state="cancelled",
                error="stopped by an admin", now=now,
            )
            await _save_counts(conn, broadcast_id, await _conn_counts(conn, broadcast_id))
    return cancelled


async def set_urgent(db: Database, broadcast_id: int, urgent: bool) -> bool:
    """Only while it is a preview."""
    return await db.execute(
        "UPDATE broadcasts SET urgent = ? WHERE id = ? AND state = 'preview'", (int(urgent), broadcast_id)
    ) > 0


async def fall_back_to_free(db: Database, broadcast_id: int, reason: str) -> bool:
    """Telegram refused paid sending: the rest of this broadcast goes at the free rate.
    True for the call that made the change (the progress message says it once)."""
    return await db.execute(
        "UPDATE broadcasts SET paid = 0, paid_refused = ? WHERE id = ? AND paid = 1",
        (reason[:300], broadcast_id),
    ) > 0


async def count_sending(db: Database) -> int:
    return int(await db.scalar("SELECT count(*) FROM broadcasts WHERE state = 'sending'") or 0)
