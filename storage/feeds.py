"""The feeds table: what to poll, when, and how each feed has been doing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

import aiosqlite

from storage.db import Database
from storage.models import Feed, SectionRule


def rule_to_json(rule: SectionRule) -> str:
    return json.dumps(
        {
            "kind": rule.kind,
            "section": rule.section,
            "domain": rule.domain,
            "segment": rule.segment,
            "mapping": [list(pair) for pair in rule.mapping],
        },
        sort_keys=True,
    )


def rule_from_json(text: str) -> SectionRule:
    data = json.loads(text)
    return SectionRule(
        kind=data.get("kind", "fixed"),
        section=data.get("section"),
        domain=data.get("domain"),
        segment=int(data.get("segment", 0)),
        mapping=tuple((str(k), str(v)) for k, v in data.get("mapping", [])),
    )


def _row_to_feed(row: sqlite3.Row) -> Feed:
    return Feed(
        id=row["id"],
        url=row["url"],
        rule=rule_from_json(row["rule"]),
        title=row["title"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        last_success_at=row["last_success_at"],
        last_error=row["last_error"],
        error_count=row["error_count"],
        next_poll_at=row["next_poll_at"],
        primed=bool(row["primed"]),
        enabled=bool(row["enabled"]),
        source=row["source"],
        capped=row["capped"],
        failing_since=row["failing_since"],
    )


async def seed_feeds(db: Database, feeds: Iterable[tuple[str, SectionRule]], *, now: float) -> int:
    """Add the feeds file's feeds that the table does not know yet; return how many.

    A feed removed by command stays removed (disabled), and one changed by command keeps its
    change: the file only seeds.
    """
    added = 0
    async with db.write() as conn:
        for url, rule in feeds:
            cursor = await conn.execute(
                "INSERT INTO feeds (url, rule, source, created_at) VALUES (?, ?, 'file', ?) "
                "ON CONFLICT(url) DO NOTHING",
                (url, rule_to_json(rule), now),
            )
            added += cursor.rowcount
    return added


async def add_feed(db: Database, url: str, rule: SectionRule, *, now: float, title: str | None = None) -> Feed:
    """Add (or re-enable) a feed by command."""
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO feeds (url, rule, title, source, created_at) VALUES (?, ?, ?, 'command', ?) "
            # Re-adding a removed feed primes it again: what it published while it was off
            # is history, not news.
            "ON CONFLICT(url) DO UPDATE SET enabled = 1, rule = excluded.rule, "
            "source = 'command', next_poll_at = 0, primed = 0, etag = NULL, last_modified = NULL",
            (url, rule_to_json(rule), title, now),
        )
    feed = await get_feed_by_url(db, url)
    assert feed is not None
    return feed


async def disable_feed(db: Database, feed_id: int) -> bool:
    return await db.execute("UPDATE feeds SET enabled = 0 WHERE id = ? AND enabled = 1", (feed_id,)) > 0


async def get_feed(db: Database, feed_id: int) -> Feed | None:
    row = await db.fetchone("SELECT * FROM feeds WHERE id = ?", (feed_id,))
    return _row_to_feed(row) if row else None


async def get_feed_by_url(db: Database, url: str) -> Feed | None:
    row = await db.fetchone("SELECT * FROM feeds WHERE url = ?", (url,))
    return _row_to_feed(row) if row else None


async def list_feeds(db: Database, *, enabled_only: bool = True) -> list[Feed]:
    sql = "SELECT * FROM feeds WHERE enabled = 1 OR ? = 0 ORDER BY id"
    return [_row_to_feed(r) for r in await db.fetchall(sql, (int(enabled_only),))]


async def record_not_modified(db: Database, feed_id: int, *, now: float, next_poll_at: float) -> None:
    await db.execute(
        "UPDATE feeds SET last_success_at = ?, error_count = 0, failing_since = NULL, next_poll_at = ? "
        "WHERE id = ?",
        (now, next_poll_at, feed_id),
    )


async def record_success(
    conn: aiosqlite.Connection,
    feed_id: int,
    *,
    now: float,
    next_poll_at: float,
    etag: str | None,
    last_modified: str | None,
    title: str | None,
    primed: bool,
    capped: int = 0,
) -> None:
    """Inside the transaction that stored the feed's articles, so both land or neither.

    `primed`: the feed has shown what it holds (a first poll with no items primes nothing:
    its first non-empty poll is still history). `capped`: new stories this poll stored
    without alerting (the per-poll cap).
    """
    await conn.execute(
        "UPDATE feeds SET last_success_at = ?, parsed_at = ?, error_count = 0, failing_since = NULL, "
        "next_poll_at = ?, etag = ?, last_modified = ?, title = coalesce(?, title), primed = max(primed, ?), "
        "capped = ? "
        "WHERE id = ?",
        (now, now, next_poll_at, etag, last_modified, title, int(primed), capped, feed_id),
    )


async def record_failure(
    db: Database, feed_id: int, error: str, *, now: float, next_poll_at: float
) -> None:
    await db.execute(
        "UPDATE feeds SET last_error = ?, last_error_at = ?, error_count = error_count + 1, "
        "failing_since = coalesce(failing_since, ?), next_poll_at = ? WHERE id = ?",
        (error[:500], now, now, next_poll_at, feed_id),
    )


async def repair_schedule(db: Database) -> int:
    """Feeds whose next poll time is not a finite, sane time (a past setting like an infinite
    interval) are due again. Returns how many were repaired."""
    return await db.execute(
        "UPDATE feeds SET next_poll_at = 0 WHERE NOT (next_poll_at BETWEEN -1e12 AND 1e12) "
        "OR next_poll_at IS NULL"
    )


async def last_success_age(db: Database, now: float) -> float | None:
    value = await db.scalar("SELECT max(last_success_at) FROM feeds WHERE enabled = 1")
    return None if value is None else max(0.0, now - float(value))
