"""One story, one identity: which stored story a feed item is, decided here and nowhere else.

The rule (docs/delivery.md, "Identity"):

* An item's id is its guid, else its canonical link, else a hash of its title and summary
  (`item_id`), and it counts *within its feed*: (feed, id). Found again under it, it is the
  same story, and only then can it be corrected (a new title or link).
* Two feeds share a story only through its canonical link: an item carrying the link of a
  stored story is that story (one story in two feeds; a feed that rotates its guids).
* Within one feed, an item with the headline (`words.title_key`) and the publication time of
  a stored story is that story (re-published under a new guid and link).
* Nothing else: a headline alone never makes two stories one, and an item from another feed
  never edits, replaces or suppresses a story it does not share a link with.

A story is stored under its item id (`articles.id`, which the outbox and /related use), unless
another feed's story holds that id already: then under `scoped_id` (feed and id).

That a story was seen is kept twice over. In the archive, `articles.listed_at` says when a
poll last listed it, and archive retention counts from there: a story still listed is never
deleted. When retention does delete one, `remember` keeps its identities (its id within its
feed, and its link) in `seen`, compact rows that a poll listing the story again keeps alive;
`forget` lets them go SEEN_DAYS after the story was last listed.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import aiosqlite

from storage import words
from storage.models import Article

# Longer ids (some feeds use whole URLs with state in them) are stored as their hash.
ID_MAX = 512
# A deleted story's identities are kept this long after a poll last listed it: the longest
# NEWSBOT_ALERT_MAX_AGE there is, so a story that comes back later is too old to alert by its
# date (when it has one) even if it were taken for new.
SEEN_DAYS = 30
# `articles.listed_at` is rewritten at most this often per story: retention counts in days,
# and a poll need not rewrite every row it lists.
LISTED_STEP = 3600.0
# Rows per statement: SQLite allows 32,766 bound values, and each item binds up to three.
BATCH = 500
# Feed 0 in `seen`: a link (shared by every feed), or a story stored without a feed.
ANY_FEED = 0


def content_id(text: str) -> str:
    return "sha1:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def item_id(guid: str, link: str, title: str, summary: str) -> str | None:
    """An item's id within its feed: its guid, else its (canonical) link, else a hash of its
    title and summary; None when it has none of them."""
    if guid:
        found = guid
    elif link:
        found = link
    elif title or summary:
        found = content_id(f"{title}\n{summary}")
    else:
        return None
    return found if len(found) <= ID_MAX else content_id(found)


def scoped_id(feed_id: int | None, article_id: str) -> str:
    """The id a feed's story is stored under when another feed's story holds its item id."""
    scoped = f"{article_id}@feed{feed_id or ANY_FEED}"
    return scoped if len(scoped) <= ID_MAX else content_id(scoped)


def key(kind: str, value: str) -> int:
    """64 bits of a hash of one identity ("id" or "url"), as `seen` keeps it."""
    digest = hashlib.blake2b(f"{kind}\0{value}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def seen_keys(feed_id: int | None, stored_id: str, url: str) -> list[tuple[int, int]]:
    """(feed, key) of each identity of a story stored under `stored_id`."""
    keys = [(feed_id or ANY_FEED, key("id", stored_id))]
    if url:
        keys.append((ANY_FEED, key("url", url)))
    return keys


@dataclass(slots=True)
class Recognised:
    """What one batch of items is, by position in the batch."""

    stories: dict[int, tuple[int, bool]] = field(default_factory=dict)  # → (rowid, own identity)
    remembered: set[int] = field(default_factory=set)  # seen, and gone from the archive
    repeats: set[int] = field(default_factory=set)  # another item of the batch is this story
    taken: set[int] = field(default_factory=set)  # its id is another feed's: store it scoped


async def _rows(conn: aiosqlite.Connection, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, params))


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


async def recognise(conn: aiosqlite.Connection, batch: Sequence[Article]) -> Recognised:
    """Which stored story each item of `batch` (at most BATCH) is, in at most five
    statements whatever the batch holds; stories found are marked as listed now."""
    found = Recognised()
    listed: dict[int, float | None] = {}
    await _by_own_id(conn, batch, found, listed)
    await _by_link(conn, batch, found, listed)
    await _by_title_and_date(conn, batch, found, listed)
    await _by_memory(conn, batch, found)
    _repeats(batch, found)
    await _mark_listed(conn, batch, listed)
    return found


async def _by_own_id(
    conn: aiosqlite.Connection, batch: Sequence[Article], found: Recognised, listed: dict[int, float | None]
) -> None:
    ids = sorted({i for a in batch for i in (a.id, scoped_id(a.feed_id, a.id))})
    rows = {
        r["id"]: r
        for r in await _rows(
            conn, f"SELECT rowid, id, feed_id, listed_at FROM articles WHERE id IN ({_marks(ids)})", ids  # noqa: S608
        )
    }
    for n, article in enumerate(batch):
        row: sqlite3.Row | None = rows.get(article.id)
        if row is not None and row["feed_id"] != article.feed_id:
            found.taken.add(n)
            row = rows.get(scoped_id(article.feed_id, article.id))
        if row is not None:
            found.stories[n] = (row["rowid"], True)
            listed[row["rowid"]] = row["listed_at"]


async def _by_link(
    conn: aiosqlite.Connection, batch: Sequence[Article], found: Recognised, listed: dict[int, float | None]
) -> None:
    urls = sorted({a.url for n, a in enumerate(batch) if n not in found.stories and a.url})
    if not urls:
        return
    by_url: dict[str, list[sqlite3.Row]] = {}
    for row in await _rows(
        conn,
        f"SELECT rowid, url, feed_id, listed_at FROM articles WHERE url IN ({_marks(urls)})",  # noqa: S608
        urls,
    ):
        by_url.setdefault(row["url"], []).append(row)
    for n, article in enumerate(batch):
        rows = by_url.get(article.url) if n not in found.stories else None
        if rows:
            # Its own feed's story first (a feed that rotates its guids), else the oldest.
            row = min(rows, key=lambda r: (r["feed_id"] != article.feed_id, r["rowid"]))
            found.stories[n] = (row["rowid"], False)
            listed[row["rowid"]] = row["listed_at"]


async def _by_title_and_date(
    conn: aiosqlite.Connection, batch: Sequence[Article], found: Recognised, listed: dict[int, float | None]
) -> None:
    titles = {n: words.title_key(a.title) for n, a in enumerate(batch) if n not in found.stories}
    wanted = sorted({(title, batch[n].published_at) for n, title in titles.items() if title})
    if not wanted:
        return
    rows = await _rows(
        conn,
        f"SELECT a.rowid, a.title_key, a.published_at, a.feed_id, a.listed_at FROM (VALUES {','.join(['(?, ?)'] * len(wanted))}) v "  # noqa: S608
        "JOIN articles a ON a.title_key = v.column1 AND a.published_at = v.column2 AND a.title_key <> ''",
        [value for pair in wanted for value in pair],
    )
    by_title: dict[tuple[str, float, int | None], sqlite3.Row] = {}
    for row in sorted(rows, key=lambda r: -int(r["rowid"])):  # the oldest story last, and kept
        by_title[(row["title_key"], row["published_at"], row["feed_id"])] = row
    for n, title in titles.items():
        article = batch[n]
        same = by_title.get((title, article.published_at, article.feed_id))
        if same is not None:
            found.stories[n] = (same["rowid"], False)
            listed[same["rowid"]] = same["listed_at"]


async def _by_memory(conn: aiosqlite.Connection, batch: Sequence[Article], found: Recognised) -> None:
    """Items whose story left the archive but not `seen`: known, and listed again."""
    keys: dict[tuple[int, int], list[int]] = {}
    for n, article in enumerate(batch):
        if n in found.stories:
            continue
        for stored_id in (article.id, scoped_id(article.feed_id, article.id)):
            for pair in seen_keys(article.feed_id, stored_id, article.url):
                keys.setdefault(pair, []).append(n)
    if not keys:
        return
    feeds = sorted({f for f, _ in keys})
    values = sorted({k for _, k in keys})
    at = int(max(a.fetched_at for a in batch))
    for row in await _rows(
        conn,
        f"UPDATE seen SET listed_at = max(listed_at, ?) WHERE feed_id IN ({_marks(feeds)}) "  # noqa: S608
        f"AND key IN ({_marks(values)}) RETURNING feed_id, key",
        [at, *feeds, *values],
    ):
        found.remembered.update(keys.get((row[0], row[1]), ()))


def _repeats(batch: Sequence[Article], found: Recognised) -> None:
    """Items of one batch that are one story (one id, link, or headline and date): the first
    is the story, the others repeats."""
    claimed: set[tuple[object, ...]] = set()
    for n, article in enumerate(batch):
        if n in found.stories or n in found.remembered:
            continue
        title = words.title_key(article.title)
        marks: list[tuple[object, ...]] = [("id", article.feed_id, article.id)]
        if article.url:
            marks.append(("url", article.url))
        if title:
            marks.append(("title", article.feed_id, title, article.published_at))
        if claimed.intersection(marks):
            found.repeats.add(n)
        claimed.update(marks)


async def _mark_listed(conn: aiosqlite.Connection, batch: Sequence[Article], listed: dict[int, float | None]) -> None:
    """One statement for every story listed again (and none when all were marked within the
    last LISTED_STEP)."""
    if not listed or not batch:
        return
    at = int(max(a.fetched_at for a in batch))
    stale = sorted(rowid for rowid, was in listed.items() if was is None or was < at - LISTED_STEP)
    if stale:
        await conn.execute(
            f"UPDATE articles SET listed_at = ? WHERE rowid IN ({_marks(stale)})", (at, *stale)  # noqa: S608
        )


# When a stored story (`a`, its feed `f` LEFT JOINed) was last listed: the last document of
# a feed that listed it, or, while it was in its feed's latest document, the feed's last
# answer, a 304 included. "In the latest document" is read off its mark, which a document
# sets to within LISTED_STEP of its time: a story that left its feed less than LISTED_STEP
# after it was last listed counts as listed until the feed's next document (kept, not lost).
LAST_LISTED_SQL = (
    "max(coalesce(a.listed_at, a.fetched_at), CASE WHEN a.listed_at >= f.parsed_at - "
    f"{LISTED_STEP:.0f} THEN coalesce(f.last_success_at, 0) ELSE 0 END)"
)


async def remember(conn: aiosqlite.Connection, stories: Iterable[tuple[int | None, str, str, float]]) -> None:
    """Keep the identities of stories leaving the archive: (feed id, stored id, link, last
    listed) each."""
    rows = [
        (feed, k, int(listed_at))
        for feed_id, stored_id, url, listed_at in stories
        for feed, k in seen_keys(feed_id, stored_id, url)
    ]
    await conn.executemany(
        "INSERT INTO seen (feed_id, key, listed_at) VALUES (?, ?, ?) "
        "ON CONFLICT (feed_id, key) DO UPDATE SET listed_at = max(listed_at, excluded.listed_at)",
        rows,
    )


async def forget(conn: aiosqlite.Connection, before: float, limit: int) -> int:
    """Up to `limit` identities of stories not listed since `before` are forgotten."""
    cursor = await conn.execute(
        "DELETE FROM seen WHERE (feed_id, key) IN ("
        "SELECT feed_id, key FROM seen WHERE listed_at < ? ORDER BY listed_at LIMIT ?)",
        (int(before), limit),
    )
    return cursor.rowcount
