"""The outbox: one durable row per message to send, written before any send.

Kinds: 'alert' (a story for a chat), 'broadcast', 'briefing', 'edit' (a correction of a
sent message) and 'post' (a story for a section's channel). `UNIQUE(chat_id, key)` makes a
second enqueue of the same message a no-op. States:

    held ──(/resume)──► pending ──► sending ──► sent | failed | cancelled | blocked
                                      └──(retry)──► pending

'held' rows were matched while their chat was paused. Every change to a final state sets
`done_at` and adds to the hourly counters in the same transaction; retention deletes final
rows some days after `done_at` (storage.maintenance).

Lanes (docs/delivery.md): 0 broadcasts, 1 personal messages (keyword alerts, briefings,
channel posts), 2 section alerts, 3 corrections.

Edits: one row per sent message ('e:<message id>'), re-armed by each correction and sent at
most once per edit interval (`queue_edit`); what it says is rendered when it goes, so the
newest correction wins and older ones merge into it. Which chats were told about a story
outlives these rows (storage.told).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiosqlite

from storage import counters, told
from storage.articles import mark_matched
from storage.db import Database
from storage.models import Article

LANE_BROADCAST = 0
LANE_PERSONAL = 1
LANE_SECTION = 2
LANE_EDIT = 3
LANES = (LANE_BROADCAST, LANE_PERSONAL, LANE_SECTION, LANE_EDIT)
LANE_NAMES = {
    LANE_BROADCAST: "broadcasts", LANE_PERSONAL: "personal", LANE_SECTION: "sections",
    LANE_EDIT: "corrections",
}


def lane_name(lane: int) -> str:
    """A lane's name for counters and metrics ('personal'…; an unknown lane by its number)."""
    return LANE_NAMES.get(lane, str(lane))
HELD_HOURS = 48  # a paused chat keeps at most this many hours of matched alerts
EDIT_HOURS = 48  # messages older than this are not edited (Telegram refuses many)
FINAL = ("sent", "failed", "cancelled", "blocked")


def alert_lane(reasons: Sequence[str]) -> int:
    """Keyword alerts were asked for by name (and are rare): the personal lane."""
    return LANE_PERSONAL if any(r.startswith("keyword:") for r in reasons) else LANE_SECTION


@dataclass(frozen=True, slots=True)
class Match:
    """One chat should hear about one story, for these reasons, in this forum topic."""

    reasons: tuple[str, ...]
    thread_id: int | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    queued: int = 0  # new rows to send now
    held: int = 0  # new rows kept for paused chats
    updated: int = 0  # rows that gained a reason (a story in a second section)
    edits: int = 0  # corrections of sent messages queued


def _marks(ids: Sequence[object]) -> str:
    return ",".join("?" * len(ids))


async def _rows(conn: aiosqlite.Connection, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
    # One trip to the database thread (execute, fetch and close would be three).
    return list(await conn.execute_fetchall(sql, params))


async def enqueue_alerts(
    db: Database,
    articles: Sequence[Article],
    matches: Mapping[str, Mapping[int, Match]],
    *,
    channels: Mapping[str, Sequence[int]] | None = None,
    now: float,
    edit_interval: float = 0.0,
) -> Enqueued:
    """Queue the alerts of these stories (in publication order) and mark them matched, in
    one transaction.

    `matches` maps story id → {chat id: Match}. A chat told about the story already (its row
    in the outbox, or in storage.told once the row is pruned) gets no second alert: a pending
    row takes the new reasons (the story gained a section), and a message sent within
    EDIT_HOURS gets an edit when its reasons changed or the story is newer than the version
    it showed (`queue_edit`: one per message, at most one per `edit_interval`). `channels`
    maps story id → the channel chats it is posted to. Paused chats get 'held' rows.
    """
    ordered = sorted(articles, key=lambda a: (a.published_at, a.rowid or 0))
    rows: list[tuple[object, ...]] = []
    for article in ordered:
        for chat_id, match in matches.get(article.id, {}).items():
            rows.append(
                (chat_id, "alert", "a:" + article.id, alert_lane(match.reasons), article.id,
                 "|".join(match.reasons), match.thread_id, now)
            )  # fmt: skip
        for channel_id in (channels or {}).get(article.id, ()):
            rows.append((channel_id, "post", "a:" + article.id, LANE_PERSONAL, article.id, "", None, now))
    queued = held = updated = edits = 0
    async with db.write() as conn:
        # Stories matched again (a new section, a correction) may already have been told.
        again = [a for a in ordered if len(a.all_sections) > 1 or a.revision]
        existing = await _existing_alerts(conn, again) if again else {}
        known = {(chat_id, a.id) for a in again if a.rowid is not None for chat_id in await told.chats_told(conn, a.rowid)}
        fresh = [r for r in rows if (r[0], r[2]) not in existing and (r[0], r[4]) not in known]
        for chunk in _chunks(fresh, 500):
            values = ",".join(["(?,?,?,?,?,?,?,?)"] * len(chunk))
            states = await _rows(
                conn,
                f"WITH v(chat_id, kind, key, lane, article_id, reasons, thread_id, at) AS "  # noqa: S608
                f"(VALUES {values}) "
                "INSERT INTO outbox (chat_id, kind, key, lane, article_id, reasons, thread_id, "
                "state, next_attempt_at, created_at) "
                "SELECT v.chat_id, v.kind, v.key, v.lane, v.article_id, v.reasons, v.thread_id, "
                "CASE WHEN c.paused AND v.kind = 'alert' THEN 'held' ELSE 'pending' END, v.at, v.at "
                "FROM v JOIN chats c ON c.id = v.chat_id WHERE c.active = 1 "
                "ON CONFLICT DO NOTHING RETURNING state",
                [value for row in chunk for value in row],
            )
            held += sum(1 for r in states if r[0] == "held")
            queued += sum(1 for r in states if r[0] != "held")
        revision = {a.id: a.revision for a in again}
        reasons_now: list[tuple[object, ...]] = []
        to_edit: list[tuple[int, int, str]] = []
        for row in rows:
            found = existing.get((row[0], row[2]))
            if found is None:
                continue
            row_id, reasons, state, message_id, sent_at, shown = found
            if reasons != row[5]:
                reasons_now.append((row[5], row[3], row_id))
            elif revision[str(row[4])] <= shown:
                continue  # nothing the reader saw has changed
            if state == "sent" and message_id is not None and sent_at >= now - EDIT_HOURS * 3600:
                to_edit.append((int(str(row[0])), message_id, str(row[4])))
        # A story sent to every reader touches a row per reader: one statement for all of them.
        if reasons_now:
            await conn.executemany("UPDATE outbox SET reasons = ?, lane = min(lane, ?) WHERE id = ?", reasons_now)
            updated = len(reasons_now)
        edits = await queue_edits(conn, to_edit, now, edit_interval)
        await mark_matched(conn, [a.id for a in articles])
    return Enqueued(queued=queued, held=held, updated=updated, edits=edits)


def _chunks(rows: list[tuple[object, ...]], size: int) -> Iterable[list[tuple[object, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def _existing_alerts(
    conn: aiosqlite.Connection, articles: Sequence[Article]
) -> dict[tuple[object, object], tuple[int, str, str, int | None, float, int]]:
    found: dict[tuple[object, object], tuple[int, str, str, int | None, float, int]] = {}
    for article in articles:
        for row in await _rows(
            conn, "SELECT id, chat_id, key, reasons, state, message_id, sent_at, shown_revision FROM outbox "
            "WHERE article_id = ? AND kind IN ('alert', 'post')", (article.id,),
        ):  # fmt: skip
            found[(row["chat_id"], row["key"])] = (
                row["id"], row["reasons"], row["state"], row["message_id"], row["sent_at"] or 0.0,
                row["shown_revision"],
            )
    return found


_ARM_EDIT = (
    "INSERT INTO outbox (chat_id, kind, key, lane, article_id, target_id, next_attempt_at, created_at) "
    "VALUES (?, 'edit', 'e:' || ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(chat_id, key) DO UPDATE SET "
    "again = CASE WHEN outbox.state = 'sending' THEN 1 ELSE outbox.again END, "
    "state = CASE WHEN outbox.state = 'sending' THEN 'sending' ELSE 'pending' END, "
    "article_id = excluded.article_id, attempts = 0, last_error = NULL, done_at = NULL, "
    "next_attempt_at = CASE WHEN outbox.state = 'sending' THEN outbox.next_attempt_at "
    "ELSE max(excluded.next_attempt_at, coalesce(outbox.sent_at, 0) + ?) END "
    "WHERE outbox.state NOT IN ('pending', 'held')"
)


async def queue_edit(
    conn: aiosqlite.Connection, chat_id: int, message_id: int, article_id: str, now: float, interval: float
) -> int:
    """The message needs an edit: its one edit row is (re-)armed. A pending edit already
    covers it (it is rendered when it goes, newest text first); one in flight is marked to go
    again after it; after a sent edit the next goes `interval` seconds after that one.
    Returns 1 when a row was armed or marked."""
    return await queue_edits(conn, [(chat_id, message_id, article_id)], now, interval)


async def queue_edits(
    conn: aiosqlite.Connection, messages: Sequence[tuple[int, int, str]], now: float, interval: float
) -> int:
    """`queue_edit` for each (chat id, message id, story id), in one statement run for all.
    Returns how many rows were armed or marked."""
    if not messages:
        return 0
    before = conn.total_changes
    await conn.executemany(
        _ARM_EDIT,
        [(chat_id, message_id, LANE_EDIT, article_id, message_id, now, now, interval)
         for chat_id, message_id, article_id in messages],
    )  # fmt: skip
    return conn.total_changes - before


async def enqueue_briefings(db: Database, items: Sequence[tuple[int, str, float]], *, now: float) -> int:
    """Briefing rows: (chat id, slot, due at). One per chat and slot, whatever restarts."""
    async with db.write() as conn:
        before = conn.total_changes
        await conn.executemany(
            "INSERT INTO outbox (chat_id, kind, key, lane, next_attempt_at, created_at) "
            "SELECT ?, 'briefing', 'br:' || ?, ?, ?, ? FROM chats WHERE id = ?1 AND active = 1 "
            "ON CONFLICT DO NOTHING",
            [(chat_id, slot, LANE_PERSONAL, due, now) for chat_id, slot, due in items],
        )
        return conn.total_changes - before


async def hold_pending(db: Database, chat_id: int) -> int:
    """/pause: alerts already queued wait with the ones to come."""
    return await db.execute(
        "UPDATE outbox SET state = 'held' WHERE chat_id = ? AND state = 'pending' AND kind = 'alert'",
        (chat_id,),
    )


async def release_held(db: Database, chat_id: int, *, now: float) -> tuple[int, int]:
    """/resume: held alerts of the last HELD_HOURS go out as one message ("While you were
    away"); older ones are dropped. Returns (released, dropped)."""
    async with db.write() as conn:
        cursor = await conn.execute(
            "UPDATE outbox SET state = 'cancelled', done_at = ?, last_error = 'held too long' "
            "WHERE chat_id = ? AND state = 'held' AND created_at < ?",
            (now, chat_id, now - HELD_HOURS * 3600),
        )
        dropped = cursor.rowcount
        cursor = await conn.execute(
            "UPDATE outbox SET state = 'pending', digest = 'away', next_attempt_at = ? "
            "WHERE chat_id = ? AND state = 'held'",
            (now, chat_id),
        )
        released = cursor.rowcount
        await counters.add(conn, now, {"alert_cancelled": dropped})
    return released, dropped


async def reset_in_flight(db: Database) -> int:
    """After a restart, rows caught mid-send go back to pending (the documented duplicate bound)."""
    return await db.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")


async def claim_in(conn: aiosqlite.Connection, ids: Sequence[int]) -> list[int]:
    """pending → sending, just before the send. Rows cancelled meanwhile are not returned."""
    rows = await _rows(
        conn,
        f"UPDATE outbox SET state = 'sending' WHERE id IN ({_marks(ids)}) "  # noqa: S608
        "AND state = 'pending' RETURNING id",
        tuple(ids),
    )
    return [int(r[0]) for r in rows]


@dataclass(frozen=True, slots=True)
class SentBatch:
    """What `mark_sent_in` records: the rows, the message, what to count."""

    ids: tuple[int, ...]
    message_id: int
    kind: str
    published: tuple[float, ...] = ()  # publication times of the alerts it carried
    # (row id, reasons, story revision, story sections) as the message showed them.
    shown: tuple[tuple[int, str, int, str], ...] = ()
    text_hash: int | None = None  # of what the message shows now (a send or an edit)
    edit_interval: float = 0.0  # an edit that must go again waits this long after this one


async def mark_sent_in(conn: aiosqlite.Connection, batch: SentBatch, now: float) -> None:
    """sending → sent inside the caller's transaction, with the hour's counters and the
    memory of who was told. A story corrected or given a section while its message was on
    its way gets that message an edit, as it would have once sent (enqueue_alerts only edits
    rows already 'sent'); an edit overtaken by a correction in flight is armed again."""
    cursor = await conn.execute(
        f"UPDATE outbox SET state = 'sent', sent_at = ?, done_at = ?, message_id = ?, "  # noqa: S608
        f"attempts = attempts + 1, last_error = NULL WHERE id IN ({_marks(batch.ids)}) RETURNING lane",
        (now, now, batch.message_id, *batch.ids),
    )
    lanes = Counter(counters.lane_sent(lane_name(int(r[0]))) for r in await cursor.fetchall())
    await cursor.close()
    if revised := [(row[0], row[2]) for row in batch.shown if row[2]]:  # 0 is the default
        await conn.execute(
            f"UPDATE outbox SET shown_revision = v.column2 FROM (VALUES {','.join(['(?,?)'] * len(revised))}) "  # noqa: S608
            "AS v WHERE outbox.id = v.column1",
            [value for pair in revised for value in pair],
        )
    if batch.kind == "edit":
        await conn.execute(
            f"UPDATE outbox SET state = 'pending', again = 0, done_at = NULL, next_attempt_at = ? "  # noqa: S608
            f"WHERE id IN ({_marks(batch.ids)}) AND again = 1",
            (now + batch.edit_interval, *batch.ids),
        )
    if batch.text_hash is not None:
        await _show(conn, batch, now)
    counts: Counter[str] = Counter({f"{batch.kind}_sent": len(batch.ids)})
    counts.update(lanes)
    if batch.kind == "alert":
        counts.update(counters.latencies(now - p for p in batch.published))
    await counters.add(conn, now, counts)
    if not batch.shown:
        return
    shown = {row[0]: row[1:4] for row in batch.shown}
    current = await _rows(
        conn, f"SELECT o.id, o.chat_id, o.article_id, o.reasons, a.rowid AS story, a.revision, a.sections "  # noqa: S608
        f"FROM outbox o JOIN articles a ON a.id = o.article_id WHERE o.id IN ({_marks(list(shown))})", list(shown),
    )  # fmt: skip
    await told.record(conn, [(row["story"], row["chat_id"], batch.message_id, now) for row in current])
    for row in current:
        if (row["reasons"], row["revision"], row["sections"]) != shown[row["id"]]:
            # One edit renders the whole message again.
            await queue_edit(conn, row["chat_id"], batch.message_id, row["article_id"], now, batch.edit_interval)
            break


async def _show(conn: aiosqlite.Connection, batch: SentBatch, now: float) -> None:
    """Remember what the message shows now, on the rows it carries."""
    if batch.kind == "edit":
        await conn.execute(
            "UPDATE outbox SET shown_hash = ? WHERE chat_id = (SELECT chat_id FROM outbox WHERE id = ?) "
            "AND message_id = ? AND kind IN ('alert', 'post')",
            (batch.text_hash, batch.ids[0], batch.message_id),
        )
    else:
        await conn.execute(
            f"UPDATE outbox SET shown_hash = ? WHERE id IN ({_marks(batch.ids)})",  # noqa: S608
            (batch.text_hash, *batch.ids),
        )


async def retry_later(
    db: Database, ids: Sequence[int], *, at: float, error: str, count_attempt: bool, max_attempts: int,
    now: float,
) -> list[int]:
    """Back to pending for another try at `at`; rows out of attempts become failed (returned).

    Without `count_attempt` (429, an outage, a migration) a row never becomes failed: those
    answers say "later", not "never".
    """
    inc = 1 if count_attempt else 0
    async with db.write() as conn:
        cursor = await conn.execute(
            f"UPDATE outbox SET attempts = attempts + ?, last_error = ?, next_attempt_at = ?, "  # noqa: S608
            "state = CASE WHEN ? AND attempts + ? >= ? THEN 'failed' ELSE 'pending' END, "
            "done_at = CASE WHEN ? AND attempts + ? >= ? THEN ? END "
            f"WHERE id IN ({_marks(ids)}) AND state = 'sending' RETURNING id, state, kind",
            (inc, error[:300], at, inc, inc, max_attempts, inc, inc, max_attempts, now, *ids),
        )
        found = list(await cursor.fetchall())
        await cursor.close()
        failed = [r for r in found if r[1] == "failed"]
        await counters.add(conn, now, Counter(f"{r[2]}_failed" for r in failed))
    return [int(r[0]) for r in failed]


async def mark_failed(db: Database, ids: Sequence[int], error: str, *, now: float) -> None:
    async with db.write() as conn:
        cursor = await conn.execute(
            f"UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, "  # noqa: S608
            f"done_at = ? WHERE id IN ({_marks(ids)}) AND state NOT IN ('sent', 'failed') "
            "RETURNING kind",
            (error[:300], now, *ids),
        )
        kinds = Counter(f"{r[0]}_failed" for r in await cursor.fetchall())
        await cursor.close()
        await counters.add(conn, now, kinds)


async def finish_unchanged_edit(db: Database, ids: Sequence[int], *, now: float) -> None:
    """An edit that would leave its message as it is: done without a send (counted as
    'edit_unchanged'). A correction that came meanwhile arms it again at once."""
    async with db.write() as conn:
        await conn.execute(
            f"UPDATE outbox SET state = CASE WHEN again THEN 'pending' ELSE 'cancelled' END, "  # noqa: S608
            f"again = 0, last_error = 'unchanged', next_attempt_at = ?, "
            f"done_at = CASE WHEN again THEN NULL ELSE ? END WHERE id IN ({_marks(ids)}) AND state = 'sending'",
            (now, now, *ids),
        )
        await counters.add(conn, now, {"edit_unchanged": len(ids)})


async def finish_empty_briefing(db: Database, ids: Sequence[int], *, now: float) -> None:
    """A briefing with no story for a reader who asked not to get such: done without a send
    (counted as 'briefing_empty')."""
    async with db.write() as conn:
        await conn.execute(
            f"UPDATE outbox SET state = 'cancelled', last_error = 'nothing new', done_at = ? "  # noqa: S608
            f"WHERE id IN ({_marks(ids)}) AND state = 'sending'",
            (now, *ids),
        )
        await counters.add(conn, now, {"briefing_empty": len(ids)})


async def defer(db: Database, ids: Sequence[int], *, until: float, digest: str | None) -> None:
    """Quiet hours: these rows wait until `until`; held alerts go together then (`digest`)."""
    await db.execute(
        f"UPDATE outbox SET next_attempt_at = ?, digest = coalesce(?, digest) "  # noqa: S608
        f"WHERE id IN ({_marks(ids)}) AND state IN ('pending', 'sending')",
        (until, digest, *ids),
    )


async def move_to_general_topic(db: Database, chat_id: int, thread_id: int) -> None:
    """A deleted forum topic: its rows and subscriptions fall back to the general topic."""
    async with db.write() as conn:
        await conn.execute(
            "UPDATE outbox SET thread_id = NULL WHERE chat_id = ? AND thread_id = ? "
            "AND state IN ('held', 'pending', 'sending')",
            (chat_id, thread_id),
        )
        await conn.execute(
            "UPDATE subscriptions SET thread_id = NULL WHERE chat_id = ? AND thread_id = ?",
            (chat_id, thread_id),
        )


async def get_reasons(db: Database, outbox_id: int, chat_id: int) -> tuple[str, ...] | None:
    """The reasons of one of this chat's alerts (for its Mute button)."""
    value = await db.scalar("SELECT reasons FROM outbox WHERE id = ? AND chat_id = ?", (outbox_id, chat_id))
    return None if value is None else tuple(r for r in str(value).split("|") if r)


async def close_rows_in(
    conn: aiosqlite.Connection, where: str, params: Sequence[object], *, state: str, error: str,
    now: float,
) -> int:
    """Every row matching `where` (a fixed SQL condition) still to go → `state` (blocked or
    cancelled), counted per kind. Returns how many."""
    cursor = await conn.execute(
        f"UPDATE outbox SET state = ?, last_error = ?, done_at = ? WHERE ({where}) "  # noqa: S608
        "AND state IN ('held', 'pending', 'sending') RETURNING kind",
        (state, error[:200], now, *params),
    )
    kinds = Counter(f"{r[0]}_{state}" for r in await cursor.fetchall())
    await cursor.close()
    await counters.add(conn, now, kinds)
    return sum(kinds.values())


async def block_chat(db: Database, chat_id: int, reason: str, *, now: float) -> tuple[bool, int]:
    """Blocked, kicked or gone: the chat leaves the audience at once, and everything still
    queued for it is 'blocked'. Returns (was it active, rows blocked)."""
    async with db.write() as conn:
        cursor = await conn.execute(
            "UPDATE chats SET active = 0, inactive_reason = ?, updated_at = ? "
            "WHERE id = ? AND active = 1",
            (reason[:200], now, chat_id),
        )
        was_active = cursor.rowcount > 0
        blocked = await close_rows_in(
            conn, "chat_id = ?", (chat_id,), state="blocked", error=reason, now=now
        )
    return was_active, blocked


async def prune_done(conn: aiosqlite.Connection, before: float, limit: int) -> int:
    """Up to `limit` rows that reached a final state before `before` are deleted."""
    cursor = await conn.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE done_at < ? "
        "ORDER BY done_at LIMIT ?)",
        (before, limit),
    )
    return cursor.rowcount


async def drop_stale_held(conn: aiosqlite.Connection, now: float) -> int:
    """Held alerts older than HELD_HOURS of chats still paused are dropped."""
    return await close_rows_in(
        conn, "state = 'held' AND created_at < ?", (now - HELD_HOURS * 3600,),
        state="cancelled", error="held too long", now=now,
    )
