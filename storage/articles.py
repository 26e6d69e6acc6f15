"""The articles table and its search index: one row per story; latest, search, related.

Which stored story a feed item is, is storage/identity.py's rule. Found again, an item is the
same story: a new section is added to it, and a changed title or link under its own identity
is a correction. Only stories never seen before come back as new, and only those become
alerts.

Why one module: the store and every query of the archive read the same row (its columns, its
search index), and split apart each half would carry a copy of it.

The search index (`articles_fts`) holds each field's word stems (`storage.words`), written
here beside the row, so a word that matching finds, search finds; the newest stories' stems
are in a second index too (`articles_recent_fts`), where /search and /related rank.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiosqlite

from storage import counters, identity, stopwords, words
from storage import related as ranking
from storage.db import Database, Reader
from storage.models import Article

_COLUMNS = (
    "rowid, id, feed_id, url, title, summary, section, sections, tags, published_at, "
    "fetched_at, image_url, revision, revised_at"
)
_A_COLUMNS = ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))

# Words that say nothing about what a story is about (every shipped language's: see
# storage/stopwords); they only slow FTS5 OR queries down.
STOPWORDS = stopwords.ALL
_MIN_TITLE_WORDS = 3
_MAX_TITLE_WORDS = 64
# /latest looks for a section's stories under their second and later sections among this many
# of the newest stories published in several sections.
SECONDARY_WINDOW = 1000


def _tags_text(tags: Iterable[str]) -> str:
    return "|".join(t.replace("|", "/") for t in tags)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(filter(None, value.split("|"))) if value else ()


def _article(row: Sequence[Any]) -> Article:
    """An Article from a row of exactly `_COLUMNS` (or `_A_COLUMNS`), by position: the reader
    queries build a few of these each, and a lookup by name walks the row's column names."""
    (rowid, article_id, feed_id, url, title, summary, section, sections, tags, published_at, fetched_at,
     image_url, revision, revised_at) = row  # fmt: skip
    return Article(
        id=article_id, url=url, title=title, summary=summary, section=section, tags=_split(tags),
        published_at=published_at, fetched_at=fetched_at, image_url=image_url, feed_id=feed_id,
        sections=_split(sections), rowid=rowid, revision=revision, revised_at=revised_at,
    )


def row_to_article(row: sqlite3.Row, *, id_column: str = "id") -> Article:
    """An Article from a row with the articles columns (`id_column` where a join renamed id)."""
    return Article(
        id=row[id_column],
        url=row["url"],
        title=row["title"],
        summary=row["summary"],
        section=row["section"],
        tags=_split(row["tags"]),
        published_at=row["published_at"],
        fetched_at=row["fetched_at"],
        image_url=row["image_url"],
        feed_id=row["feed_id"],
        sections=_split(row["sections"]),
        rowid=row["rowid"],
        revision=row["revision"],
        revised_at=row["revised_at"],
    )


@dataclass(frozen=True, slots=True)
class Correction:
    """A stored story whose title or link changed under the same id."""

    article: Article  # as stored now
    old_title: str
    old_url: str


@dataclass(slots=True)
class Stored:
    """What one store did: stories never seen before, corrections, and stories that gained a
    section. Corrected and re-sectioned stories are matched again (`matched` reset): their
    sent alerts get an edit, readers of a new section an alert."""

    new: list[Article] = field(default_factory=list)
    corrected: list[Correction] = field(default_factory=list)
    gained: list[Article] = field(default_factory=list)
    repeated: int = 0  # items that another item of the same call already was
    refused: int = 0  # new stories whose id was taken within the batch: not stored
    # Item id → the id a new story was stored under, where another feed's story held its own.
    renamed: dict[str, str] = field(default_factory=dict)


async def _rows(conn: aiosqlite.Connection, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
    # One trip to the database thread (execute, fetch and close would be three).
    return list(await conn.execute_fetchall(sql, params))


async def store_articles(
    conn: aiosqlite.Connection, articles: Sequence[Article], *, now: float, seen: bool = False
) -> Stored:
    """Store inside the caller's transaction; say what was new, corrected or re-sectioned.

    Which stored story an item is, is `storage.identity`'s rule. `seen=True` stores new
    stories as already matched (a feed's first poll: history, not news), so they never alert,
    and takes no correction from them.
    """
    result = Stored()
    # Stories an item of this call already was: corrected at most once, counted as repeats.
    handled: set[int] = set()
    for start in range(0, len(articles), identity.BATCH):
        batch = articles[start : start + identity.BATCH]
        found = await identity.recognise(conn, batch)
        current = await _by_rowids(conn, sorted({rowid for rowid, _ in found.stories.values()}))
        fresh: list[Article] = []
        for n, article in enumerate(batch):
            if n in found.stories:
                rowid, own = found.stories[n]
                stored = current[rowid]
                if rowid in handled:
                    result.repeated += 1
                # Only the story's own identity corrects it, once a store.
                if own and not seen and rowid not in handled and (
                    stored.title != article.title or (article.url and stored.url != article.url)
                ):
                    result.corrected.append(await _correct(conn, stored, article))
                    stored = current[rowid] = result.corrected[-1].article
                handled.add(rowid)
                section = article.section
                if section and section not in stored.all_sections:
                    stored = current[rowid] = await _add_section(conn, stored, section, seen=seen)
                    result.gained.append(stored)
            elif n in found.repeats:
                result.repeated += 1
            elif n not in found.remembered:
                if n in found.taken:
                    scoped = identity.scoped_id(article.feed_id, article.id)
                    result.renamed[article.id] = scoped
                    article = replace(article, id=scoped)
                fresh.append(article)
        new = await _insert(conn, fresh, seen=seen)
        handled.update(a.rowid for a in new if a.rowid is not None)
        result.refused += len(fresh) - len(new)
        result.new.extend(new)
    await counters.add(conn, now, {"articles": len(result.new)})
    return result


async def _by_rowids(conn: aiosqlite.Connection, rowids: Sequence[int]) -> dict[int, Article]:
    if not rowids:
        return {}
    rows = await _rows(
        conn, f"SELECT {_COLUMNS} FROM articles WHERE rowid IN ({','.join('?' * len(rowids))})", rowids  # noqa: S608
    )
    return {row["rowid"]: row_to_article(row) for row in rows}


async def _insert(conn: aiosqlite.Connection, fresh: Sequence[Article], *, seen: bool) -> list[Article]:
    if not fresh:
        return []
    values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"] * len(fresh))
    params = [
        value
        for a in fresh
        for value in (
            a.id, a.feed_id, a.url, a.title, a.summary, a.section, a.section or "",
            _tags_text(a.tags), a.published_at, a.fetched_at, a.image_url, 1 if seen else 0,
            words.title_key(a.title), int(a.fetched_at),
        )
    ]  # fmt: skip
    rows = await _rows(
        conn,
        "INSERT INTO articles (id, feed_id, url, title, summary, section, sections, tags, "  # noqa: S608
        f"published_at, fetched_at, image_url, matched, title_key, listed_at) VALUES {values} "
        "ON CONFLICT(id) DO NOTHING RETURNING rowid, id",
        params,
    )
    rowids = {row[1]: row[0] for row in rows}
    new = [
        replace(a, rowid=rowids[a.id], sections=(a.section,) if a.section else ())
        for a in fresh
        if a.id in rowids
    ]
    index = [(a.rowid, *_index_fields(a)) for a in new]
    await conn.executemany("INSERT INTO articles_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)", index)
    # REPLACE: an id given back by an emptied archive may still name a story that left it.
    await conn.executemany(
        "INSERT OR REPLACE INTO articles_recent_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)", index
    )
    return new


def _index_fields(article: Article) -> tuple[str, str, str]:
    return (
        words.index_text(article.title),
        words.index_text(article.summary),
        words.index_tags(article.tags),
    )


async def _correct(conn: aiosqlite.Connection, stored: Article, article: Article) -> Correction:
    """A new title or link under the same id: the row and its index follow, and its alerts
    are matched again (see `Stored`)."""
    corrected = replace(
        stored, title=article.title, url=article.url or stored.url, summary=article.summary,
        tags=article.tags, revision=stored.revision + 1, revised_at=article.fetched_at,
    )
    await conn.execute(
        # matched = 0: its sent alerts are to be edited (storage.outbox.enqueue_alerts), and a
        # crash before that only delays the edits to the next poll.
        "UPDATE articles SET title = ?, url = ?, summary = ?, tags = ?, title_key = ?, "
        "revision = revision + 1, revised_at = ?, matched = 0 WHERE rowid = ?",
        (corrected.title, corrected.url, corrected.summary, _tags_text(corrected.tags),
         words.title_key(corrected.title), corrected.revised_at, stored.rowid),
    )  # fmt: skip
    index = (stored.rowid, *_index_fields(corrected))
    await conn.execute("DELETE FROM articles_fts WHERE rowid = ?", (stored.rowid,))
    await conn.execute("INSERT INTO articles_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)", index)
    recent = await conn.execute("DELETE FROM articles_recent_fts WHERE rowid = ?", (stored.rowid,))
    if recent.rowcount:
        await conn.execute("INSERT INTO articles_recent_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)", index)
    return Correction(corrected, old_title=stored.title, old_url=stored.url)


async def _add_section(conn: aiosqlite.Connection, stored: Article, section: str, *, seen: bool) -> Article:
    """The story is also in `section`: its alerts are matched again (matched = 0), so the
    new section's readers hear of it once and everyone's alert names every section."""
    sections = (*stored.all_sections, section)
    await conn.execute(
        "UPDATE articles SET sections = ?, matched = CASE WHEN ? THEN matched ELSE 0 END "
        "WHERE rowid = ?",
        ("|".join(sections), 1 if seen else 0, stored.rowid),
    )
    return replace(stored, sections=sections)


async def unmatched_articles(db: Database, limit: int = 1000) -> list[Article]:
    """Stored stories whose alerts are not queued yet (a failed enqueue, a crash, a new
    section), oldest first."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM articles WHERE matched = 0 ORDER BY rowid LIMIT ?",  # noqa: S608
        (limit,),
    )
    return [row_to_article(r) for r in rows]


async def mark_matched(conn: aiosqlite.Connection, article_ids: Sequence[str]) -> None:
    await conn.executemany("UPDATE articles SET matched = 1 WHERE id = ?", [(i,) for i in article_ids])


async def get_article(db: Database, article_id: str) -> Article | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM articles WHERE id = ?", (article_id,))  # noqa: S608
    return row_to_article(row) if row else None


async def get_article_by_rowid(db: Database, rowid: int) -> Article | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM articles WHERE rowid = ?", (rowid,))  # noqa: S608
    return row_to_article(row) if row else None


async def articles_by_rowid(db: Database, rowids: Sequence[int]) -> dict[int, Article]:
    if not rowids:
        return {}
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM articles WHERE rowid IN ({','.join('?' * len(rowids))})",  # noqa: S608
        tuple(rowids),
    )
    return {row["rowid"]: row_to_article(row) for row in rows}


async def find_by_url(db: Database, url: str) -> Article | None:
    """The story with this (canonical) link, through the url index, or with this id."""
    rows = await db.fetchall_here(
        f"SELECT {_COLUMNS} FROM articles WHERE url = ? "  # noqa: S608
        f"UNION ALL SELECT {_COLUMNS} FROM articles WHERE id = ? LIMIT 1",
        (url, url),
    )
    return _article(rows[0]) if rows else None


def _excluded(article: Article, excluded: Sequence[tuple[str, ...]]) -> bool:
    if not excluded:
        return False
    stems = words.field_stems((article.title, article.summary, *article.tags))
    return any(words.contains(stems, phrase) for phrase in excluded)


async def latest(
    db: Database,
    sections: Sequence[str] | None = None,
    limit: int = 5,
    *,
    excluded: Sequence[tuple[str, ...]] = (),
) -> list[Article]:
    """Newest first; `sections` None means every section. Stories matching one of the
    `excluded` keyword stems are left out."""
    if sections is not None and not sections:
        return []
    found: list[Article] = []
    before = float("inf")
    # Exclusions are checked in Python (the same rule as matching): read a few more than
    # wanted, and more again only if exclusions took too many.
    for _ in range(5):
        want = limit * 2 if excluded else limit
        if sections is None:
            rows = await db.fetchall_here(
                f"SELECT {_COLUMNS} FROM articles WHERE published_at < ? "  # noqa: S608
                "ORDER BY published_at DESC LIMIT ?",
                (before, want),
            )
        else:
            # One index range per section, merged: `section IN (…) ORDER BY` would sort. A story
            # published in several sections is indexed under its first one; under its others it
            # is found in the index of such stories, among those newer than the section's
            # `want`-th newest story under its first (older ones could not make the list) and
            # among the newest SECONDARY_WINDOW of them (a bound for a section with few
            # stories of its own).
            union = " UNION ALL ".join(
                f"SELECT * FROM (SELECT {_COLUMNS} FROM articles WHERE section = ?{3 * n + 2} "  # noqa: S608
                f"AND published_at < ?1 ORDER BY published_at DESC LIMIT ?{3 * n + 3}) "
                f"UNION ALL SELECT * FROM (SELECT {_COLUMNS} FROM articles WHERE instr(sections, '|') > 0 "
                f"AND published_at < ?1 AND published_at > coalesce((SELECT published_at FROM articles "
                f"WHERE section = ?{3 * n + 2} AND published_at < ?1 ORDER BY published_at DESC LIMIT 1 "
                f"OFFSET ?{3 * n + 3} - 1), -1e300) AND published_at >= coalesce((SELECT published_at "
                f"FROM articles WHERE instr(sections, '|') > 0 AND published_at < ?1 ORDER BY "
                f"published_at DESC LIMIT 1 OFFSET ?{3 * n + 4}), -1e300) AND instr('|' || sections || "
                f"'|', '|' || ?{3 * n + 2} || '|') > 1 ORDER BY published_at DESC LIMIT ?{3 * n + 3})"
                for n in range(len(sections))
            )
            params: list[object] = [before]
            for section in sections:
                params += [section, want, SECONDARY_WINDOW - 1]
            rows = await db.fetchall_here(
                f"SELECT * FROM ({union}) ORDER BY published_at DESC LIMIT ?{3 * len(sections) + 2}",  # noqa: S608
                (*params, want),
            )
        wanted = set(sections) if sections is not None else None
        for row in rows:
            article = _article(row)
            if wanted is not None and not wanted.intersection(article.all_sections):
                continue
            if any(a.rowid == article.rowid for a in found):
                continue  # in two of the sections asked for
            if not _excluded(article, excluded):
                found.append(article)
        if len(found) >= limit or len(rows) < want:
            break
        before = rows[-1]["published_at"]
    return found[:limit]


def _terms(text: str, *, drop_stopwords: bool) -> list[tuple[str, ...]]:
    """The distinct words of free text as stem tuples (one each), stopwords dropped."""
    seen: set[tuple[str, ...]] = set()
    terms: list[tuple[str, ...]] = []
    for token in words.tokens(text):
        if drop_stopwords and token in STOPWORDS:
            continue
        stems = (words.stem(token),)
        if stems not in seen:
            seen.add(stems)
            terms.append(stems)
    return terms


def only_stopwords(text: str) -> bool:
    """Whether `text` has words but every one of them is too common to search for ("the")."""
    return bool(words.tokens(text)) and not _terms(text, drop_stopwords=True)


def search_matches(text: str) -> list[str]:
    """The index queries /search asks in turn: every word, then (for several) any of them."""
    terms = _terms(text, drop_stopwords=True)[:16] or _terms(text, drop_stopwords=False)[:16]
    phrases = [words.fts_phrase(t) for t in terms]
    return [" AND ".join(phrases), " OR ".join(phrases)][: min(len(phrases), 2)]


async def search(db: Database, text: str, limit: int = 10) -> list[Article]:
    """Best match first (bm25 is negative: ascending), newer first among equals.

    Every word (as matching sees it: any case, accents or plural) must appear; if nothing
    has them all, any will do. Words like "the" are ignored, unless there is nothing else
    ("the who"): a keyword of common words alerts, so its search finds. The /search handler
    asks nothing for such text and says why (`only_stopwords`).
    """
    found: list[Article] = []
    for match in search_matches(text):
        found = await _fts_query(db, match, limit, exclude_id=None)
        if found:
            break
    return found


async def related_query(
    db: Database, text: str, phrases: Sequence[str] = (), *, story: Article | None = None
) -> ranking.Query | None:
    """What `related` asks for `text` and `phrases` (a story's title and tags, or a reader's
    words and quoted words): their significant terms (`storage.related`), and what marks
    `story` (the story asked about) and its copies. None when nothing is left to ask."""
    found = ranking.terms(text, phrases, summary=story.summary if story else "")
    if not found:
        return None
    docs, size = await ranking.document_counts(db, (s for t in found for s in t.stems), window=RECENT_STORIES)
    return ranking.query(
        text, ranking.significant(found, docs, size), url=story.url if story else None,
        headline=story is not None or len(words.tokens(text)) >= _MIN_TITLE_WORDS, size=size,
    )


async def related(
    db: Database,
    text: str,
    limit: int = 5,
    *,
    exclude_id: str | None = None,
    phrases: Sequence[str] = (),
) -> list[Article]:
    """Stories sharing the most with `text` (a story's title, or a reader's words).

    `phrases` (a story's tags, a reader's quoted words) are matched as whole phrases: the tag
    "North Korea" must not pull in every story about the North Sea. Only stories sharing at
    least one of these significant words or phrases are returned: nothing fills a slot.

    The best `ranking.CANDIDATES` by bm25 among the newest matches (see RANKED_MATCHES) are
    ranked again by `storage.related` (shared tags, then names and places, then other words;
    the newer first among equals); older matches follow, newest first, when those are too
    few. `exclude_id` is the story asked about: neither it, nor a story under its link or
    nearly its headline, is shown.
    """
    story = None
    if exclude_id is not None:
        # By its primary key, in this thread (see Database.fetchall_here).
        own = await db.fetchall_here(f"SELECT {_COLUMNS} FROM articles WHERE id = ?", (exclude_id,))  # noqa: S608
        story = _article(own[0]) if own else None
    query = await related_query(db, text, phrases, story=story)
    if query is None:
        return []
    rows = {
        r[0]: r for r in await db.fetchall(
            _RANKED_SQL, (query.match, RANKED_MATCHES - 1, exclude_id, ranking.CANDIDATES)
        )
    }  # fmt: skip
    found = ranking.rank(query, map(_candidate, rows.values()))
    # As many older matches as wanted and as many again: copies of the story are left out.
    older = await _older_rows(db, query.match, 2 * limit, exclude_id, list(rows)) if len(found) < limit else []
    rows.update((r[0], r) for r in older)
    return [_article(rows[c.rowid]) for c in ranking.fill(query, found, map(_candidate, older), limit)]


def _candidate(row: Sequence[Any]) -> ranking.Candidate:
    """A row of `_A_COLUMNS` as the ranking reads it."""
    return ranking.Candidate(row[0], row[3], row[4], row[5], _split(row[8]), row[9])


async def find_by_title(db: Database, text: str) -> Article | None:
    """The newest story whose title has exactly the words of `text` (case and accents aside)."""
    found = words.tokens(text)
    # Fewer words are more likely a topic than a headline, and as a phrase they would match
    # too many titles to check.
    if not _MIN_TITLE_WORDS <= len(found) <= _MAX_TITLE_WORDS:
        return None
    # The phrase query finds the candidates through the index; comparing the words
    # afterwards drops titles that only contain the phrase.
    rows = await db.fetchall(
        f"SELECT {_A_COLUMNS} FROM articles_fts f JOIN articles a ON a.rowid = f.rowid "  # noqa: S608
        "WHERE articles_fts MATCH ? ORDER BY a.published_at DESC LIMIT 20",
        ("title : " + words.fts_phrase([words.stem(w) for w in found]),),
    )
    for row in rows:
        if words.tokens(row["title"]) == found:
            return row_to_article(row)
    return None


# Ranking reads the index of the newest stories only (articles_recent_fts, migration 0011): bm25
# first counts the stories that hold each word asked, a walk of the word's whole list, so over
# the whole archive a common word costs tens of milliseconds whatever is asked. Among those
# stories the newest RANKED_MATCHES matches are ranked (the rest are older and would rarely
# win); when they are fewer than wanted, older matches from the whole archive follow, newest
# first (a rare word's few old matches). The index is trimmed to RECENT_STORIES by retention.
RECENT_STORIES = 50_000
RANKED_MATCHES = 1_000
# The two recency windows, narrowest first: the newest matches ranked, the newest stories.
FTS_WINDOWS = (RANKED_MATCHES, RECENT_STORIES)

_RANKED_SQL = (
    f"SELECT {_A_COLUMNS} FROM (SELECT rowid, bm25(articles_recent_fts, 3.0, 1.0, 2.0) AS score "  # noqa: S608
    "FROM articles_recent_fts WHERE articles_recent_fts MATCH ?1 "
    "AND rowid IS NOT (SELECT rowid FROM articles WHERE id = ?3) AND rowid >= "
    "coalesce((SELECT rowid FROM articles_recent_fts WHERE articles_recent_fts MATCH ?1 "
    "ORDER BY rowid DESC LIMIT 1 OFFSET ?2), 0) "
    "ORDER BY score, rowid DESC LIMIT ?4) f JOIN articles a ON a.rowid = f.rowid "
    "ORDER BY f.score, a.published_at DESC"
)


async def _fts_query(db: Database, match: str, limit: int, *, exclude_id: str | None) -> list[Article]:
    """Best match first (bm25 is negative: ascending), newer first among equals, among the
    newest stories; then older matches, newest first (see RECENT_STORIES)."""
    rows = await db.fetchall(_RANKED_SQL, (match, RANKED_MATCHES - 1, exclude_id, limit))
    if len(rows) < limit:
        rows += await _older_rows(db, match, limit - len(rows), exclude_id, [row["rowid"] for row in rows])
    return [_article(r) for r in rows]


async def _older_rows(
    db: Database, match: str, limit: int, exclude_id: str | None, found: Sequence[int]
) -> list[sqlite3.Row]:
    """Matches from the whole archive but `found`, newest first."""
    return await db.fetchall(
        f"SELECT {_A_COLUMNS} FROM articles_fts f JOIN articles a ON a.rowid = f.rowid "  # noqa: S608
        "WHERE articles_fts MATCH ? AND a.id IS NOT ? "
        f"AND f.rowid NOT IN ({','.join('?' * len(found))}) ORDER BY f.rowid DESC LIMIT ?",
        (match, exclude_id, *found, limit),
    )


async def trim_recent(conn: aiosqlite.Connection, limit: int) -> int:
    """The ranking index keeps the newest RECENT_STORIES stories: up to `limit` older ones
    leave it (they stay in the archive's index). Returns how many."""
    cursor = await conn.execute(
        "DELETE FROM articles_recent_fts WHERE rowid IN (SELECT rowid FROM articles_recent_fts "
        "WHERE rowid <= (SELECT coalesce(max(rowid), 0) FROM articles) - ? ORDER BY rowid LIMIT ?)",
        (RECENT_STORIES, limit),
    )
    return cursor.rowcount


async def matching_since(
    reader: Reader,
    since: float,
    *,
    sections: Sequence[str],
    keywords: Sequence[str],
    limit: int = 200,
    after_rowid: int | None = None,
) -> tuple[list[tuple[Article, str]], int]:
    """Stories stored after story `after_rowid` (when given; otherwise those fetched after
    `since`) in `sections` or with one of `keywords` (as `normalise_keyword` stores them):
    (story, reason) pairs, keyword matches first, each story once; and the newest rowid
    looked at. Stories stored later have larger rowids: there is one writer, and retention
    removes the oldest stories, so an id could come back only after every story expired."""
    newest = int(await reader.scalar("SELECT coalesce(max(rowid), 0) FROM articles") or 0)
    if after_rowid is None:
        # The first story fetched after `since`, through the fetched_at index.
        after_rowid = int(
            await reader.scalar(
                "SELECT coalesce(min(rowid), ?) - 1 FROM articles WHERE fetched_at > ?", (newest + 1, since)
            )
            or 0
        )
    found: dict[int, tuple[Article, str]] = {}
    for keyword in keywords:
        stems = words.keyword_stems(keyword)
        if not stems:
            continue
        rows = await reader.fetchall(
            f"SELECT {_A_COLUMNS} FROM articles_fts f JOIN articles a ON a.rowid = f.rowid "  # noqa: S608
            "WHERE articles_fts MATCH ? AND f.rowid > ? AND f.rowid <= ? "
            "ORDER BY f.rowid DESC LIMIT ?",
            (words.fts_phrase(stems), after_rowid, newest, limit),
        )
        for row in rows:
            found.setdefault(row["rowid"], (row_to_article(row), "keyword:" + keyword))
    for section in sections:
        rows = await reader.fetchall(
            f"SELECT {_COLUMNS} FROM articles WHERE rowid > ? AND rowid <= ? "  # noqa: S608
            "AND (section = ? OR sections LIKE ?) ORDER BY rowid DESC LIMIT ?",
            (after_rowid, newest, section, f"%{section}%", limit),
        )
        for row in rows:
            article = row_to_article(row)
            if section in article.all_sections:
                found.setdefault(article.rowid or 0, (article, "section:" + section))
    return list(found.values()), newest


async def count_articles(db: Database) -> int:
    return int(await db.scalar("SELECT count(*) FROM articles") or 0)


async def delete_older_than(conn: aiosqlite.Connection, cutoff: float, limit: int) -> int:
    """Up to `limit` stories not listed by a feed since `cutoff` leave the archive with their
    index rows; their identities stay in `seen` (storage.identity). A story still waiting to
    be sent somewhere stays until it is sent.

    Found through the fetch-time index: a story listed since is fetched before it, and the
    stories still listed that are older than `cutoff` (a feed's current items) are passed over."""
    rows = await _rows(
        conn,
        f"SELECT a.rowid, a.id, a.feed_id, a.url, {identity.LAST_LISTED_SQL} AS listed "  # noqa: S608
        "FROM articles a LEFT JOIN feeds f ON f.id = a.feed_id "
        "WHERE a.fetched_at < ? AND listed < ? AND NOT EXISTS ("
        "SELECT 1 FROM outbox o WHERE o.article_id = a.id AND o.state IN ('held', 'pending', 'sending')) "
        "ORDER BY a.fetched_at LIMIT ?",
        (cutoff, cutoff, limit),
    )
    if not rows:
        return 0
    await identity.remember(conn, [(r["feed_id"], r["id"], r["url"], r["listed"]) for r in rows])
    await conn.executemany("DELETE FROM articles_fts WHERE rowid = ?", [(r[0],) for r in rows])
    await conn.executemany("DELETE FROM articles_recent_fts WHERE rowid = ?", [(r[0],) for r in rows])
    await conn.executemany("DELETE FROM articles WHERE rowid = ?", [(r[0],) for r in rows])
    # Deleted entries stay in the index's segments until they are merged. A merge step with a
    # negative budget merges every segment, whatever its level, at most 500 pages a call: the
    # index stays flat instead of swelling by 40 % between FTS5's own level merges.
    await conn.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('merge', -500)")
    return len(rows)


async def known_urls(db: Database, urls: Sequence[str]) -> set[str]:
    """Which of these (canonical) links a stored story has."""
    found: set[str] = set()
    unique = sorted(set(urls))
    for start in range(0, len(unique), 500):
        batch = unique[start : start + 500]
        rows = await db.fetchall(
            f"SELECT url FROM articles WHERE url IN ({','.join('?' * len(batch))})", batch  # noqa: S608
        )
        found.update(row[0] for row in rows)
    return found


async def recent_publication_times(db: Database, feed_id: int, *, since: float, limit: int = 6) -> list[float]:
    """When the feed's newest stored stories were published (its cadence after a start)."""
    rows = await db.fetchall(
        "SELECT published_at FROM articles WHERE feed_id = ? AND published_at >= ? "
        "ORDER BY published_at DESC LIMIT ?",
        (feed_id, since, limit),
    )
    return [float(row[0]) for row in rows]
