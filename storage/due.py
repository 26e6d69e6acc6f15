"""Reading what is due: the outbox rows ready to send, with everything needed to render and
send them (the chat, the story, the broadcast), in the order the due index keeps them.

The writes — enqueueing, claiming, marking — are storage.outbox's.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from storage.articles import row_to_article
from storage.chats import row_to_chat
from storage.db import Database
from storage.models import Article, Chat
from storage.outbox import LANES


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: dict[int, int]  # lane → rows waiting
    held: int

    @property
    def total(self) -> int:
        return sum(self.pending.values())


async def backlog(db: Database) -> Backlog:
    """Rows waiting per lane (from the due index alone) and rows held for paused chats."""
    rows = await db.reports.fetchall(
        "SELECT lane, count(*) FROM outbox WHERE state = 'pending' GROUP BY lane"
    )
    # Through the held rows' own index: left to itself, SQLite counts along a whole-outbox one.
    held = await db.reports.scalar("SELECT count(*) FROM outbox INDEXED BY outbox_held WHERE state = 'held'")
    return Backlog({int(r[0]): int(r[1]) for r in rows}, int(held or 0))


@dataclass(frozen=True, slots=True)
class DueMessage:
    """A pending row with everything needed to render and send it."""

    id: int
    chat: Chat
    kind: str
    lane: int
    reasons: tuple[str, ...]
    attempts: int
    article: Article | None
    broadcast_id: int | None
    broadcast_html: str | None
    paid: bool = False
    urgent: bool = False
    target_id: int | None = None
    thread_id: int | None = None
    digest: str | None = None
    key: str = ""
    next_attempt_at: float = 0.0
    created_at: float = 0.0
    sent_at: float | None = None
    shown_revision: int = 0  # the version of its story a sent alert showed
    shown_hash: int | None = None  # what a sent alert's message shows now (storage.outbox._show)

    @property
    def shows_old_version(self) -> bool:
        """A sent alert whose story was corrected since the version it showed."""
        return bool(self.sent_at and self.article and self.article.revision > self.shown_revision)

    @property
    def chat_id(self) -> int:
        return self.chat.id


_DUE_SQL = """
SELECT o.id, o.kind, o.key, o.lane, o.reasons, o.attempts, o.broadcast_id, o.target_id,
       o.thread_id, o.digest, o.next_attempt_at, o.created_at, o.sent_at, o.shown_revision,
       o.shown_hash,
       c.id AS c_id, c.type AS c_type, c.title AS c_title, c.active AS c_active,
       c.paused AS c_paused, c.link_previews AS c_link_previews, c.combine AS c_combine,
       c.inactive_reason AS c_inactive_reason, c.timezone AS c_timezone,
       c.quiet_start AS c_quiet_start, c.quiet_end AS c_quiet_end, c.quiet_mode AS c_quiet_mode,
       c.briefings AS c_briefings, c.next_briefing_at AS c_next_briefing_at,
       c.last_briefing_at AS c_last_briefing_at, c.nothing_new AS c_nothing_new,
       c.language AS c_language,
       a.rowid AS rowid, a.id AS a_id, a.feed_id, a.url, a.title, a.summary, a.section,
       a.sections, a.tags, a.published_at, a.fetched_at, a.image_url, a.revision, a.revised_at,
       b.html AS broadcast_html, b.paid, b.urgent
FROM outbox o
JOIN chats c ON c.id = o.chat_id
LEFT JOIN articles a ON a.id = o.article_id
LEFT JOIN broadcasts b ON b.id = o.broadcast_id
"""


def _due(row: sqlite3.Row) -> DueMessage:
    return DueMessage(
        id=row["id"],
        chat=row_to_chat(row, prefix="c_"),
        kind=row["kind"],
        lane=row["lane"],
        reasons=tuple(r for r in row["reasons"].split("|") if r),
        attempts=row["attempts"],
        article=row_to_article(row, id_column="a_id") if row["a_id"] is not None else None,
        broadcast_id=row["broadcast_id"],
        broadcast_html=row["broadcast_html"],
        paid=bool(row["paid"]),
        urgent=bool(row["urgent"]),
        target_id=row["target_id"],
        thread_id=row["thread_id"],
        digest=row["digest"],
        key=row["key"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        shown_revision=row["shown_revision"],
        shown_hash=row["shown_hash"],
    )


async def due_messages(db: Database, lane: int, until: float, limit: int = 2000) -> list[DueMessage]:
    """Pending rows of one lane due by `until`, oldest first (straight from the due index:
    no sort)."""
    rows = await db.fetchall(
        _DUE_SQL + "WHERE o.state = 'pending' AND o.lane = ? AND o.next_attempt_at <= ? "
        "AND c.active = 1 ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (lane, until, limit),
    )
    return [_due(r) for r in rows]


async def due_alerts_for_chat(
    db: Database, chat_id: int, thread_id: int | None, until: float, limit: int
) -> list[DueMessage]:
    """One chat's pending alerts (for one forum topic, or none) due by `until`, oldest first:
    what may go together with an alert that waited (the view holds only each lane's oldest)."""
    rows = await db.fetchall(
        _DUE_SQL + "WHERE o.chat_id = ? AND o.state = 'pending' AND o.kind = 'alert' "
        "AND o.next_attempt_at <= ? AND o.thread_id IS ? AND c.active = 1 "
        "ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (chat_id, until, thread_id, limit),
    )
    return [_due(r) for r in rows]


async def next_due_at(db: Database) -> float | None:
    """When the earliest pending row comes due (one index probe per lane)."""
    union = " UNION ALL ".join(
        "SELECT min(next_attempt_at) AS t FROM outbox WHERE state = 'pending' AND lane = ?" for _ in LANES
    )
    value = await db.scalar(f"SELECT min(t) FROM ({union})", LANES)  # noqa: S608 - fixed text
    return None if value is None else float(value)


async def message_rows(db: Database, chat_id: int, message_id: int) -> list[DueMessage]:
    """The rows one sent message carried, in the order they were sent (to render it again)."""
    rows = await db.fetchall(
        _DUE_SQL + "WHERE o.chat_id = ? AND o.message_id = ? AND o.state = 'sent' "
        "AND o.kind IN ('alert', 'post') ORDER BY o.id",
        (chat_id, message_id),
    )
    return [_due(r) for r in rows]
