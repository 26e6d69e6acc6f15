"""The articles table and its FTS5 index: store only what is new; latest, search, related."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence

import aiosqlite

from storage.db import Database
from storage.models import Article

_COLUMNS = "id, feed_id, url, title, summary, section, tags, published_at, fetched_at, image_url"

# Words that say nothing about what a story is about; they only slow FTS5 OR queries down.
STOPWORDS = frozenset(
    """a about after again against all an and any are as at be been before being but by can
    could did do does for from had has have he her his how i if in into is it its just more
    most new no not now of off on once only or other our out over says said she so some such
    than that the their them then there these they this those through to too under up very
    was we were what when where which while who why will with would you your""".split()  # noqa: SIM905
)
# Runs of letters and digits: unicode61 also splits on `_` and other punctuation.
_WORD_RE = re.compile(r"[^\W_]+")
_MAX_RELATED_TERMS = 8
_PLURALS_UP_TO = 4
_MIN_TITLE_WORDS = 3
_MAX_TITLE_WORDS = 64


def _tags_text(tags: Iterable[str]) -> str:
    return "|".join(t.replace("|", "/") for t in tags)


def row_to_article(row: sqlite3.Row, *, id_column: str = "id") -> Article:
    """An Article from a row with the articles columns (`id_column` where a join renamed id)."""
    tags = row["tags"]
    return Article(
        id=row[id_column],
        url=row["url"],
        title=row["title"],
        summary=row["summary"],
        section=row["section"],
        tags=tuple(tags.split("|")) if tags else (),
        published_at=row["published_at"],
        fetched_at=row["fetched_at"],
        image_url=row["image_url"],
        feed_id=row["feed_id"],
    )


# Rows per INSERT: SQLite allows 32,766 bound values (11 per row); one statement per few
# hundred rows costs one round trip to the database thread instead of three per article.
_INSERT_BATCH = 500


async def insert_new_articles(
    conn: aiosqlite.Connection, articles: Sequence[Article], *, seen: bool = False
) -> list[Article]:
    """Insert inside the caller's transaction; return only the articles that were new.

    `seen=True` stores them as already matched (a feed's first poll), so they never alert.
    """
    new: list[Article] = []
    for start in range(0, len(articles), _INSERT_BATCH):
        batch = articles[start : start + _INSERT_BATCH]
        values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * len(batch))
        params = [
            value
            for a in batch
            for value in (
                a.id, a.feed_id, a.url, a.title, a.summary, a.section, _tags_text(a.tags),
                a.published_at, a.fetched_at, a.image_url, 1 if seen else 0,
            )
        ]  # fmt: skip
        cursor = await conn.execute(
            f"INSERT INTO articles ({_COLUMNS}, matched) VALUES {values} "  # noqa: S608
            "ON CONFLICT(id) DO NOTHING RETURNING id",
            params,
        )
        inserted = {row[0] for row in await cursor.fetchall()}
        await cursor.close()
        # A story twice in one batch is stored once: the first copy is the new one.
        for article in batch:
            if article.id in inserted:
                inserted.discard(article.id)
                new.append(article)
    return new


async def unmatched_articles(db: Database, limit: int = 1000) -> list[Article]:
    """Articles stored but whose alerts were not yet enqueued (e.g. after a crash)."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM articles WHERE matched = 0 ORDER BY rowid LIMIT ?",  # noqa: S608
        (limit,),
    )
    return [row_to_article(r) for r in rows]


async def get_article(db: Database, article_id: str) -> Article | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM articles WHERE id = ?", (article_id,))  # noqa: S608
    return row_to_article(row) if row else None


async def get_article_by_rowid(db: Database, rowid: int) -> Article | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM articles WHERE rowid = ?", (rowid,))  # noqa: S608
    return row_to_article(row) if row else None


async def article_rowid(db: Database, article_id: str) -> int | None:
    value = await db.scalar("SELECT rowid FROM articles WHERE id = ?", (article_id,))
    return int(value) if value is not None else None


async def find_by_url(db: Database, url: str) -> Article | None:
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM articles WHERE url = ? OR id = ? LIMIT 1", (url, url)  # noqa: S608
    )
    return row_to_article(row) if row else None


async def latest(db: Database, sections: Sequence[str] | None = None, limit: int = 5) -> list[Article]:
    """Newest first; `sections` None means every section."""
    if sections is None:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM articles ORDER BY published_at DESC LIMIT ?", (limit,)  # noqa: S608
        )
    elif not sections:
        return []
    else:
        marks = ",".join("?" * len(sections))
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM articles WHERE section IN ({marks}) "  # noqa: S608
            "ORDER BY published_at DESC LIMIT ?",
            (*sections, limit),
        )
    return [row_to_article(r) for r in rows]


def _fold_words(text: str) -> list[str]:
    """Words as the FTS5 tokenizer sees them: casefolded, accents dropped, `_` a separator."""
    if not text.isascii():
        # NFC again afterwards, so Hangul and other composed letters stay one character.
        stripped = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
        text = unicodedata.normalize("NFC", stripped)
    return _WORD_RE.findall(text.casefold())


def _quote(phrase: str) -> str:
    return '"' + phrase.replace('"', '""') + '"'


def _with_plural(word: str) -> str:
    """`word` and its simple plural or singular as one FTS5 group, so `drone` finds "drones".

    The index has no stemmer; matching both forms covers the plurals readers actually type
    without the cost (and false hits) of prefix queries.
    """
    if not (word.isascii() and word.isalpha()) or len(word) < 3:
        return _quote(word)
    if word.endswith("s"):
        if len(word) < 4 or word.endswith(("ss", "us", "is")):
            return _quote(word)
        other = word[:-1]
    else:
        other = word + "s"
    return f"({_quote(word)} OR {_quote(other)})"


def fts_terms(
    text: str,
    *,
    drop_stopwords: bool = False,
    limit: int = 16,
    plurals: bool = False,
    min_len: int = 2,
) -> list[str]:
    """Words of free text, each quoted for FTS5 so `c++` or `AND` are never syntax."""
    words = []
    seen = set()
    for word in _fold_words(text):
        if word in seen or (drop_stopwords and (word in STOPWORDS or len(word) < min_len)):
            continue
        seen.add(word)
        words.append(_with_plural(word) if plurals else _quote(word))
        if len(words) >= limit:
            break
    return words


async def search(db: Database, text: str, limit: int = 10) -> list[Article]:
    """Best match first (bm25 is negative: ascending), newer first among equals.

    Every word (or its plural/singular) must appear; if nothing has them all, any will do.
    """
    # Words like "the" match nearly every story and say nothing about what is wanted.
    terms = fts_terms(text, plurals=True, drop_stopwords=True, min_len=1)
    if not terms:
        return []
    found = await _fts_query(db, " AND ".join(terms), limit, exclude_rowid=None)
    if not found and len(terms) > 1:
        found = await _fts_query(db, " OR ".join(terms), limit, exclude_rowid=None)
    return found


async def related(
    db: Database,
    text: str,
    limit: int = 5,
    *,
    exclude_id: str | None = None,
    phrases: Sequence[str] = (),
) -> list[Article]:
    """Stories sharing the most with `text` (a story's title, or a reader's words).

    `phrases` (a story's tags) are matched as whole phrases: the tag "North Korea" must not
    pull in every story about the North Sea. Each term counts once, so a word in both the
    title and the tags does not outweigh the rest.
    """
    keys: list[str] = []
    for phrase in phrases:
        key = " ".join(w for w in _fold_words(phrase) if len(w) >= 2)
        if key and key not in keys:
            keys.append(key)
    for word in _fold_words(text):
        if word not in keys and word not in STOPWORDS and len(word) >= 2:
            keys.append(word)
    keys = keys[:_MAX_RELATED_TERMS]
    if not keys:
        return []
    # A reader's few words also match their plural or singular; a story's title and tags
    # are enough as they are, and every extra term makes this OR query slower.
    few = len(keys) <= _PLURALS_UP_TO
    terms = [_with_plural(k) if few and " " not in k else _quote(k) for k in keys]
    exclude = await article_rowid(db, exclude_id) if exclude_id else None
    return await _fts_query(db, " OR ".join(terms), limit, exclude_rowid=exclude)


async def find_by_title(db: Database, text: str) -> Article | None:
    """The newest story whose title has exactly the words of `text` (case and accents aside)."""
    words = _fold_words(text)
    # Fewer words are more likely a topic than a headline, and as a phrase they would match
    # too many titles to check.
    if not _MIN_TITLE_WORDS <= len(words) <= _MAX_TITLE_WORDS:
        return None
    cols = ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))
    # The phrase query finds the candidates through the index; comparing the words
    # afterwards drops titles that only contain the phrase.
    rows = await db.fetchall(
        f"SELECT {cols} FROM articles_fts f JOIN articles a ON a.rowid = f.rowid "  # noqa: S608
        "WHERE articles_fts MATCH ? ORDER BY a.published_at DESC LIMIT 20",
        ("title : " + _quote(" ".join(words)),),
    )
    for row in rows:
        if _fold_words(row["title"]) == words:
            return row_to_article(row)
    return None


# Recency windows (in newest rowids) tried in turn: ranking every story that contains a common
# word among a million costs a second, ranking it among the newest 5,000 a few milliseconds.
# A wider window is tried only while the narrower one found fewer than wanted, so rare words
# still reach the whole archive (their few matches are cheap to rank).
FTS_WINDOWS = (5_000, 50_000, None)


async def _fts_query(
    db: Database, match: str, limit: int, *, exclude_rowid: int | None
) -> list[Article]:
    cols = ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))
    newest = int(await db.scalar("SELECT coalesce(max(rowid), 0) FROM articles") or 0)
    rows: list[sqlite3.Row] = []
    for window in FTS_WINDOWS:
        floor = 0 if window is None else newest - window
        # Rank inside the FTS index alone (newer rowids first among equal scores) and join
        # only the winners: joining every match to `articles` costs more than the ranking.
        rows = await db.fetchall(
            f"SELECT {cols} FROM (SELECT rowid, bm25(articles_fts, 3.0, 1.0, 2.0) AS score "  # noqa: S608
            "FROM articles_fts WHERE articles_fts MATCH ? AND rowid > ? AND rowid IS NOT ? "
            "ORDER BY score, rowid DESC LIMIT ?) f JOIN articles a ON a.rowid = f.rowid "
            "ORDER BY f.score, a.published_at DESC",
            (match, floor, exclude_rowid, limit),
        )
        if len(rows) >= limit or floor <= 0:
            break
    return [row_to_article(r) for r in rows]


async def count_since(db: Database, since: float) -> int:
    return int(await db.scalar("SELECT count(*) FROM articles WHERE fetched_at >= ?", (since,)) or 0)


async def count_articles(db: Database) -> int:
    return int(await db.scalar("SELECT count(*) FROM articles") or 0)


async def mark_matched(conn: aiosqlite.Connection, article_ids: Sequence[str]) -> None:
    await conn.executemany("UPDATE articles SET matched = 1 WHERE id = ?", [(i,) for i in article_ids])
