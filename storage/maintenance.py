"""Retention: what every table keeps, and the small batches that prune the rest.

| table | kept | pruned by |
| --- | --- | --- |
| outbox | rows to send; final rows for `outbox_days` after they ended, and never less than the correction window (48 h: a sent alert is what its edit is rendered from) | `prune` |
| outbox ('held') | the newest 48 h of a paused chat's alerts | `prune` |
| articles (+ index) | `archive_days` (0 = forever) after a feed last listed the story, and never less than the 48 h a story can be corrected in: /search and /related read them | `prune` |
| articles_recent_fts | the newest `articles.RECENT_STORIES` stories' index, where /search and /related rank | `prune` |
| seen | a story's identities (id within its feed, link) once it left the archive: two rows of about 45 bytes, kept `identity.SEEN_DAYS` (30) after a feed last listed it, and for as long as a feed still lists it | `prune` |
| told | which chats got each story, while it can be corrected or is still listed in its feed | `prune` |
| counters | 400 days of hourly figures | `prune` |
| chats, subscriptions | until /stop (deleted at once) | — |
| feeds, broadcasts, audit | for good (a few rows a day at most) | — |
| websub | one row per feed that declares a hub (replaced when it subscribes anew) | — |

Each call does bounded work (a few thousand rows per table), so it can run on a timer beside
the dispatcher without holding the writer for long; freed pages go back to the file system
with incremental vacuum and the write-ahead log is checkpointed (`Database.maintain`).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import articles, counters, identity, outbox, told
from storage.db import Database

DAY = 24 * 3600.0
COUNTERS_DAYS = 400
BATCH = 5000


@dataclass(frozen=True, slots=True)
class Pruned:
    outbox: int = 0
    held: int = 0
    articles: int = 0
    recent: int = 0
    told: int = 0
    counters: int = 0
    seen: int = 0

    @property
    def total(self) -> int:
        return self.outbox + self.held + self.articles + self.recent + self.told + self.counters + self.seen


async def prune(
    db: Database, *, outbox_days: float, archive_days: float, now: float,
    batch: int = BATCH,
) -> Pruned:
    """One round of retention, each table at most `batch` rows, each in its own short
    transaction. Rows still to send (held, pending, sending) are never touched here."""
    async with db.write() as conn:
        kept = max(outbox_days * DAY, outbox.EDIT_HOURS * 3600.0)
        done = await outbox.prune_done(conn, now - kept, batch)
    async with db.write() as conn:
        held = await outbox.drop_stale_held(conn, now)
    stories = 0
    if archive_days > 0:
        # Counted from the last poll that listed the story, and never inside the window in
        # which a correction of it still edits its alerts.
        cutoff = min(now - archive_days * DAY, now - outbox.EDIT_HOURS * 3600.0)
        async with db.write() as conn:
            stories = await articles.delete_older_than(conn, cutoff, batch)
    async with db.write() as conn:
        unseen = await identity.forget(conn, now - identity.SEEN_DAYS * DAY, batch)
    async with db.write() as conn:
        trimmed = await articles.trim_recent(conn, batch)
    async with db.write() as conn:
        forgotten = await told.prune(conn, corrected_before=now - outbox.EDIT_HOURS * 3600.0)
    async with db.write() as conn:
        old = await counters.prune(conn, now - COUNTERS_DAYS * DAY)
    return Pruned(
        outbox=done, held=held, articles=stories, recent=trimmed, told=forgotten, counters=old, seen=unseen
    )
