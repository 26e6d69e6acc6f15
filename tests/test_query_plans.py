"""Every query the bot runs at start, per message, per poll or per command uses an index.

A database with realistic proportions (20,000 readers, 100,000 subscriptions, 50,000 stories,
200,000 outbox rows with a 20,000-chat broadcast pending, a month of counters) is built with
the project's own schema; then each operation runs through the storage functions the bot
calls, with SQLite's trace callback on all four connections recording every statement as
executed. Each recorded statement's EXPLAIN QUERY PLAN must not scan a large table (outbox,
articles, subscriptions, chats) except through a partial index (the rows in one state; a scan
of a whole index reads the whole table's worth, and only WHOLE_SCANS may), and must not sort a large table in a
temporary B-tree where an index should give the order. No ANALYZE is run: the plans have to be
right without statistics, as on a new database.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from storage import (
    articles,
    broadcasts,
    chats,
    counters,
    due,
    identity,
    maintenance,
    outbox,
    stats,
    subscriptions,
    words,
)
from storage.db import Database
from storage.models import Article
from storage.outbox import Match, SentBatch

NOW = 1_790_000_000.0
READERS = 20_000
STORIES = 50_000
BIG = ("outbox", "articles", "subscriptions", "chats", "seen")
SEEN = 100_000
# Indexes a hot query may read from end to end, and why.
WHOLE_SCANS = {"chats_audience": "/stats counts the audience: one index entry per chat, in index order"}
SECTIONS = ("sweden", "living", "world", "business", "sports", "entertainment")
VOCAB = [f"word{n}" for n in range(3000)]


def build(path: Path) -> None:
    """The file, filled straight through sqlite3 (the schema is the migrations')."""
    rng = random.Random(5)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO chats (id, type, paused, created_at, updated_at) VALUES (?, 'private', ?, ?, ?)",
            [(1000 + n, int(n % 50 == 0), NOW, NOW) for n in range(READERS)],
        )
        subs = []
        for n in range(READERS):
            chat = 1000 + n
            for section in rng.sample(SECTIONS, 2):
                subs.append((chat, "section", section, section, NOW))
            for word in rng.sample(VOCAB, 3):
                subs.append((chat, "keyword", word, word, NOW))
        conn.executemany(
            "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) VALUES (?, ?, ?, ?, ?)", subs
        )
        rows, fts = [], []
        for n in range(STORIES):
            title = " ".join(rng.choices(VOCAB, k=8))
            summary = " ".join(rng.choices(VOCAB, k=20))
            section = rng.choice(SECTIONS)
            at = NOW - (STORIES - n) * 60.0
            rows.append((n + 1, f"s{n}", f"https://news.example/{n}", title, summary, section, section, at, at,
                         words.title_key(title), 1))
            fts.append((n + 1, words.index_text(title), words.index_text(summary), ""))
        conn.executemany(
            "INSERT INTO feeds (id, url, rule, primed, created_at) VALUES (?, ?, '{}', 1, ?)",
            [(1, "https://news.example/rss", NOW), (2, "https://elsewhere.example/rss", NOW)],
        )
        conn.executemany(
            "INSERT INTO articles (rowid, id, url, title, summary, section, sections, published_at, fetched_at, "
            "title_key, feed_id, matched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            rows,
        )
        # The memory of stories that left the archive: a month of them.
        conn.executemany(
            "INSERT INTO seen (feed_id, key, listed_at) VALUES (?, ?, ?)",
            [(n % 2, identity.key("id", f"gone{n}"), int(NOW) - n * 26) for n in range(SEEN)],
        )
        conn.executemany("INSERT INTO articles_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)", fts)
        conn.execute(
            "INSERT INTO broadcasts (id, admin_id, admin_chat_id, html, state, total, created_at) "
            "VALUES (1, 1, 1, 'x', 'sending', ?, ?)",
            (READERS, NOW),
        )
        out = []
        for n in range(180_000):
            chat = 1000 + n % READERS
            story = f"s{STORIES - 1 - n // READERS}"
            out.append((chat, "alert", f"a:{story}", 2, story, None, "section:world", "sent", 1,
                        NOW - 3600, NOW - 3600, NOW - 3500, NOW - 3500, n + 1))
        for n in range(READERS):
            out.append((1000 + n, "broadcast", "b:1", 0, None, 1, "", "pending", 0, NOW, NOW, None, None, None))
        conn.executemany(
            "INSERT INTO outbox (chat_id, kind, key, lane, article_id, broadcast_id, reasons, state, attempts, "
            "next_attempt_at, created_at, sent_at, done_at, message_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            out,
        )
        conn.executemany(
            "INSERT INTO counters (hour, name, n) VALUES (?, ?, ?)",
            [(int(NOW // 3600) - h, name, 100) for h in range(24 * 30) for name in ("alert_sent", "articles", "latency_le_60")],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


class Recorder:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, sql: str) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            self.statements.append(sql)


async def exercise(db: Database) -> None:
    """What the bot does at start, per message, per poll and per command."""
    story = Article(
        id="new-story", url="https://news.example/new", title="Storm word1 word2 closes the bridge",
        summary="word3 word4", section="world", tags=("Storm",), published_at=NOW, fetched_at=NOW,
    )
    # Per poll, a feed's document: a story corrected under its own id, one under a rotated guid
    # (its link), one re-published (headline and date), one that left the archive (`seen`),
    # another feed's guid (stored scoped), and a new one.
    known = await articles.get_article(db, "s100")
    republished = await articles.get_article(db, "s200")
    assert known is not None and republished is not None
    document = [
        replace(known, title="Corrected title", rowid=None),
        replace(known, id="rotated-guid", rowid=None),
        replace(republished, id="new-guid", url="https://news.example/moved", rowid=None),
        replace(story, id="gone7", url="https://news.example/gone"),
        replace(story, id="s300", url="https://elsewhere.example/300", feed_id=2),
        replace(story, id="another-new", url="https://news.example/another"),
    ]
    async with db.write() as conn:
        first = await articles.store_articles(conn, [replace(a, feed_id=a.feed_id or 1) for a in document[:4]], now=NOW)
        second = await articles.store_articles(conn, document[4:], now=NOW)
    assert first.new == [] and len(first.corrected) == 1
    assert len(second.new) == 2 and second.renamed == {"s300": identity.scoped_id(2, "s300")}
    # At start: the rows caught mid-send go back to pending before the first message goes.
    await outbox.reset_in_flight(db)
    # Per poll: store, match, enqueue, and the unmatched retry.
    async with db.write() as conn:
        stored = await articles.store_articles(conn, [story], now=time.time())
    await outbox.enqueue_alerts(db, stored.new, {story.id: {1000 + n: Match(("section:world",)) for n in range(3000)}}, now=NOW)
    await articles.unmatched_articles(db)
    # Per message: the due rows of each lane, a claim, a sent mark, a retry, a failure.
    for lane in outbox.LANES:
        await due.due_messages(db, lane, NOW + 30, 2000)
    await due.next_due_at(db)
    await due.due_alerts_for_chat(db, 1005, None, NOW + 30, 100)
    rows = await due.due_messages(db, 0, NOW + 30, 5)
    ids = [m.id for m in rows]
    async with db.write() as conn:
        await outbox.claim_in(conn, ids[:2])
        await outbox.mark_sent_in(conn, SentBatch(tuple(ids[:1]), 77, "broadcast"), NOW)
    await outbox.retry_later(db, ids[1:2], at=NOW + 5, error="x", count_attempt=True, max_attempts=5, now=time.time())
    await outbox.get_reasons(db, 5, 1005)
    await due.message_rows(db, 1005, 6)
    await outbox.block_chat(db, 1007, "blocked", now=time.time())
    await outbox.hold_pending(db, 1009)
    await outbox.release_held(db, 1009, now=NOW)
    # Per command.
    await chats.get_chat(db, 1010)
    await subscriptions.subscriptions_for_chat(db, 1010)
    await articles.latest(db, None, 5)
    await articles.latest(db, ["sports", "world"], 5, excluded=[("word1",)])
    await articles.search(db, "word7 word8", 10)
    await articles.related(db, "word9 word10 word11", 5, exclude_id="s10", phrases=("word12 word13",))
    await articles.find_by_url(db, "https://news.example/123")
    await articles.find_by_title(db, "word1 word2 word3 word4")
    await articles.get_article_by_rowid(db, 10)
    await articles.matching_since(db.reports, NOW - 86400, sections=["world"], keywords=["word5"])
    await broadcasts.audience_size(db, None)
    await broadcasts.audience_size(db, "sports")
    await broadcasts.counts(db, 1)
    await stats.collect(db, NOW)
    await counters.since(db.reports, NOW - 86400)
    await chats.briefings_due(db, NOW)
    # The retention job.
    await maintenance.prune(db, outbox_days=7, archive_days=30, now=NOW + 40 * 86400, batch=1000)


_SCAN = re.compile(r"\bSCAN (\w+)")
_THROUGH = re.compile(r"USING (?:COVERING )?INDEX (\w+)")
_TEMP = re.compile(r"USE TEMP B-TREE FOR (ORDER BY|GROUP BY|DISTINCT|RIGHT PART OF ORDER BY)")


def plan_of(conn: sqlite3.Connection, sql: str) -> list[str]:
    """The steps of EXPLAIN QUERY PLAN for `sql`."""
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


def problems(conn: sqlite3.Connection, sql: str) -> list[str]:
    try:
        plan = plan_of(conn, sql)
    except sqlite3.Error:
        return []  # statements EXPLAIN cannot take (some DDL); nothing to judge
    found = []
    big_involved = any(re.search(rf"\b{table}\b", sql) for table in BIG)
    # Ranking full-text matches is a sort by score by nature: no index can give that order.
    # It is bounded by the recency windows of storage.articles (bench/queries.py measures it):
    # the newest RANKED_MATCHES matches in the index of the newest stories.
    ranked = re.search(r"\barticles_(recent_)?fts MATCH", sql) is not None
    partial = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'")}
    for detail in plan:
        scan = _SCAN.search(detail)
        if scan and scan.group(1) in BIG:
            # A scan is a search of nothing: only a partial index (the rows in one state)
            # bounds it.
            through = _THROUGH.search(detail)
            if through is None or through.group(1) not in partial | WHOLE_SCANS.keys():
                found.append(detail)
        if big_involved and not ranked and _TEMP.search(detail):
            found.append(detail)
    return found


@pytest.fixture
async def big_db(tmp_path: Path) -> Database:
    path = tmp_path / "big.db"
    db = await Database.open(path)
    await db.close()
    build(path)
    return await Database.open(path)


async def test_every_hot_query_uses_an_index(big_db: Database) -> None:
    db = big_db
    recorder = Recorder()
    connections = (db._writer, db._reader.conn, db.reports.conn)
    await db.fetchall_here("SELECT 1")  # opens the connection of reads run in place
    here = db._here
    assert here is not None
    try:
        here.set_trace_callback(recorder)
        for conn in connections:
            await conn.set_trace_callback(recorder)
        started = time.perf_counter()
        await exercise(db)
        assert time.perf_counter() - started > 0
    finally:
        here.set_trace_callback(None)
        for conn in connections:
            await conn.set_trace_callback(None)
        await db.close()
    assert len(recorder.statements) > 40
    plain = sqlite3.connect(db.path)
    try:
        report = {}
        for sql in dict.fromkeys(recorder.statements):
            found = problems(plain, sql)
            if found:
                report[sql[:300]] = found
    finally:
        plain.close()
    assert not report, "\n\n".join(f"{sql}\n  → {found}" for sql, found in report.items())


def test_the_checker_catches_a_scan_and_a_sort(tmp_path: Path) -> None:
    """The plan check itself: an unindexed filter and an unindexed ORDER BY are caught."""
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, chat_id INTEGER, created_at REAL)")
    try:
        assert problems(conn, "SELECT * FROM outbox WHERE chat_id = 5")
        assert problems(conn, "SELECT id FROM outbox ORDER BY created_at LIMIT 5")
        conn.execute("CREATE INDEX outbox_chat ON outbox(chat_id, created_at)")
        assert not problems(conn, "SELECT * FROM outbox WHERE chat_id = 5 ORDER BY created_at")
        # Reading a whole index is a scan all the same; a partial one bounds it.
        assert problems(conn, "SELECT count(*) FROM outbox WHERE created_at = 5")
        conn.execute("CREATE INDEX outbox_late ON outbox(chat_id) WHERE created_at > 100")
        assert not problems(conn, "SELECT count(*) FROM outbox WHERE created_at > 100")
    finally:
        conn.close()


async def test_a_sections_audience_is_counted_from_the_index_alone(tmp_path: Path) -> None:
    """The broadcast preview counts a section's followers without reading a subscription row
    (tens of thousands of them at full size), meeting their chats in id order."""
    db = await Database.open(tmp_path / "n.db")
    recorder = Recorder()
    try:
        await db.reports.conn.set_trace_callback(recorder)
        await broadcasts.audience_size(db, "sports")
    finally:
        await db.reports.conn.set_trace_callback(None)
        await db.close()
    (sql,) = recorder.statements
    plain = sqlite3.connect(db.path)
    try:
        plan = plan_of(plain, sql)
    finally:
        plain.close()
    assert any("COVERING INDEX subscriptions_kind_value" in step for step in plan), plan
