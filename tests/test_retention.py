"""Retention (storage/maintenance.py) on a real SQLite file: what each table keeps, what it
lets go, in small batches, and a database that stops growing once retention is steady."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from storage import articles, chats, counters, identity, maintenance, outbox
from storage.db import Database
from storage.models import Article
from storage.outbox import Match, SentBatch

DAY = 24 * 3600.0
T0 = 1_774_000_000.0
READER = 10


def story(n: int, at: float, *, section: str = "world") -> Article:
    return Article(
        id=f"s-{n}", url=f"https://news.example/s/{n}", title=f"Story number {n} about kw{n}",
        summary=f"What happened to item {n} on day {int((at - T0) // DAY)}. " * 3, section=section,
        tags=("News", f"Tag {n % 13}"), published_at=at, fetched_at=at,
    )


async def add_stories(db: Database, batch: list[Article]) -> list[Article]:
    async with db.write() as conn:
        return (await articles.store_articles(conn, batch, now=time.time())).new


async def queue(db: Database, stories: list[Article], at: float, chat_ids: tuple[int, ...] = (READER,)) -> None:
    matches = {a.id: {c: Match(("section:world",)) for c in chat_ids} for a in stories}
    await outbox.enqueue_alerts(db, stories, matches, now=at)


async def send_all(db: Database, at: float) -> int:
    """Every pending row claimed and marked sent at `at`, as the dispatcher records a send:
    each chat's rows as one combined message."""
    rows = await db.fetchall("SELECT o.id, o.chat_id, a.published_at FROM outbox o LEFT JOIN articles a "
                             "ON a.id = o.article_id WHERE o.state = 'pending' ORDER BY o.id")  # fmt: skip
    async with db.write() as conn:
        claimed = set(await outbox.claim_in(conn, [r[0] for r in rows]))
        by_chat: dict[int, list[tuple[int, float]]] = {}
        for row_id, chat_id, published in rows:
            if row_id in claimed:
                by_chat.setdefault(chat_id, []).append((row_id, published))
        for number, sent in enumerate(by_chat.values()):
            ids, published = zip(*sent, strict=True)
            await outbox.mark_sent_in(conn, SentBatch(ids, 1000 + number, "alert", published), at)
    return len(claimed)


async def states(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT state, count(*) FROM outbox GROUP BY state")
    return {r[0]: r[1] for r in rows}


async def test_final_rows_go_after_outbox_days_in_batches_and_rows_to_send_never(db: Database) -> None:
    await chats.join(db, READER, "private", now=time.time())
    await chats.join(db, 11, "private", now=time.time())
    await chats.join(db, 12, "private", now=time.time())
    old = await add_stories(db, [story(n, T0) for n in range(25)])
    await queue(db, old, T0)
    assert await send_all(db, T0) == 25
    # Rows still to go, all created long ago: pending, in flight, held.
    waiting = await add_stories(db, [story(n, T0) for n in range(100, 103)])
    await queue(db, waiting, T0, chat_ids=(11, 12))
    async with db.write() as conn:
        await outbox.claim_in(conn, [r[0] for r in await db.fetchall(
            "SELECT id FROM outbox WHERE chat_id = 11 AND state = 'pending' LIMIT 1")])  # fmt: skip
    await chats.set_option(db, 12, "paused", True, now=time.time())
    await outbox.hold_pending(db, 12)
    assert await states(db) == {"sent": 25, "pending": 2, "sending": 1, "held": 3}

    now = T0 + 8 * DAY
    first = await maintenance.prune(db, outbox_days=7, archive_days=0, now=now, batch=10)
    assert first.outbox == 10
    second = await maintenance.prune(db, outbox_days=7, archive_days=0, now=now, batch=10)
    third = await maintenance.prune(db, outbox_days=7, archive_days=0, now=now, batch=10)
    assert (second.outbox, third.outbox) == (10, 5)
    # Held rows are dropped after 48 hours (cancelled: final from now on, pruned later).
    assert first.held == 3 and second.held == third.held == 0
    assert await states(db) == {"pending": 2, "sending": 1, "cancelled": 3}
    later = await maintenance.prune(db, outbox_days=7, archive_days=0, now=now + 8 * DAY, batch=10)
    assert later.outbox == 3
    assert await states(db) == {"pending": 2, "sending": 1}


async def test_final_rows_younger_than_outbox_days_stay(db: Database) -> None:
    await chats.join(db, READER, "private", now=time.time())
    stories = await add_stories(db, [story(n, T0) for n in range(5)])
    await queue(db, stories, T0)
    await send_all(db, T0)
    pruned = await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + 6.9 * DAY)
    assert pruned.total == 0 and await states(db) == {"sent": 5}


async def test_held_rows_younger_than_48_hours_stay_held(db: Database) -> None:
    await chats.join(db, READER, "private", now=time.time())
    await chats.set_option(db, READER, "paused", True, now=time.time())
    stories = await add_stories(db, [story(n, T0) for n in range(4)])
    await queue(db, stories, T0)
    assert await states(db) == {"held": 4}
    assert (await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + 47 * 3600)).held == 0
    assert (await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + 49 * 3600)).held == 4
    assert await states(db) == {"cancelled": 4}


async def test_the_archive_keeps_stories_still_to_be_sent(db: Database) -> None:
    await chats.join(db, READER, "private", now=time.time())
    sent = await add_stories(db, [story(n, T0) for n in range(10)])
    await queue(db, sent, T0)
    await send_all(db, T0)
    pending = await add_stories(db, [story(n, T0) for n in range(10, 13)])
    await queue(db, pending, T0)
    fresh = await add_stories(db, [story(n, T0 + 20 * DAY) for n in range(20, 22)])
    assert [a.id for a in await articles.search(db, "kw3")] == ["s-3"]

    pruned = await maintenance.prune(db, outbox_days=7, archive_days=10, now=T0 + 21 * DAY, batch=4)
    assert pruned.articles == 4
    while (await maintenance.prune(db, outbox_days=7, archive_days=10, now=T0 + 21 * DAY, batch=4)).articles:
        pass
    kept = {r[0] for r in await db.fetchall("SELECT id FROM articles")}
    assert kept == {a.id for a in pending + fresh}
    # The search index lost exactly the stories that left.
    assert await db.scalar("SELECT count(*) FROM articles_fts") == len(kept)
    indexed = {r[0] for r in await db.fetchall("SELECT rowid FROM articles_fts")}
    assert indexed == {a.rowid for a in pending + fresh}
    assert await articles.search(db, "kw3") == []
    assert [a.id for a in await articles.search(db, "kw11")] == ["s-11"]
    assert await states(db) == {"pending": 3}


async def test_archive_days_zero_keeps_every_story(db: Database) -> None:
    await add_stories(db, [story(n, T0) for n in range(5)])
    assert (await maintenance.prune(db, outbox_days=1, archive_days=0, now=T0 + 3650 * DAY)).articles == 0
    assert await articles.count_articles(db) == 5


async def test_counters_survive_retention_and_a_readers_stop(db: Database) -> None:
    await chats.join(db, READER, "private", now=time.time())
    await chats.join(db, 11, "private", now=time.time())
    stories = await add_stories(db, [replace(story(n, T0), published_at=T0 - 45) for n in range(6)])
    await queue(db, stories, T0, chat_ids=(READER, 11))
    assert await send_all(db, T0) == 12
    before = await counters.since(db.reports, 0)
    assert before.get("alert_sent") == 12 and before.get("latency_le_60") == 12
    assert before.get("articles") == 6

    await maintenance.prune(db, outbox_days=1, archive_days=1, now=T0 + 3 * DAY)
    assert await states(db) == {} and await articles.count_articles(db) == 0
    assert await chats.delete_chat(db, 11)
    after = await counters.since(db.reports, 0)
    assert after.get("alert_sent") == 12 and after.get("latency_le_60") == 12
    assert after.latency_percentile(0.5) == 60.0
    # Only counters older than COUNTERS_DAYS go.
    aged = await maintenance.prune(
        db, outbox_days=1, archive_days=1, now=T0 + (maintenance.COUNTERS_DAYS + 1) * DAY
    )
    assert aged.counters > 0
    assert (await counters.since(db.reports, 0)).get("alert_sent") == 0


async def test_the_database_stops_growing_once_retention_is_steady(tmp_path: Path) -> None:
    """Fifty simulated days of 400 stories and 800 alerts a day, retention and vacuum after
    each: once every table is at its steady size (the archive keeps 4 days, the memory of
    what was seen 30 days after a story was last listed), the file at day 50 is within 10 % of
    its size at day 37."""
    db = await Database.open(tmp_path / "steady.db")
    try:
        for chat_id in (READER, 11):
            await chats.join(db, chat_id, "private", now=time.time())
        sizes: dict[int, int] = {}
        per_day = 400
        for day in range(1, 51):
            at = T0 + day * DAY
            stories = await add_stories(
                db, [story(day * per_day + n, at - 3600 + n) for n in range(per_day)]
            )
            await queue(db, stories, at, chat_ids=(READER, 11))
            await send_all(db, at)
            while (await maintenance.prune(db, outbox_days=2, archive_days=4, now=at, batch=1000)).total:
                pass
            await db.maintain(free_pages=100_000)
            sizes[day] = await db.size()
        assert await articles.count_articles(db) == 4 * per_day  # archive_days = 4
        # Two identities (id, link) of every story deleted in the last 30 days after its listing.
        assert await db.scalar("SELECT count(*) FROM seen") == 2 * per_day * (identity.SEEN_DAYS - 4)
        assert await db.scalar("PRAGMA freelist_count") == 0
    finally:
        await db.close()
    assert abs(sizes[50] - sizes[37]) <= 0.10 * sizes[37], sizes


async def test_a_new_database_gives_freed_pages_back(tmp_path: Path) -> None:
    """Incremental vacuum is on from the first start, and `maintain` returns every freed
    page it is allowed to (a bounded number per call)."""
    db = await Database.open(tmp_path / "fresh.db")
    try:
        assert await db.scalar("PRAGMA auto_vacuum") == 2  # INCREMENTAL
        await add_stories(db, [story(n, T0) for n in range(3000)])
        await db.maintain()
        full = await db.size()
        async with db.write() as conn:
            assert await articles.delete_older_than(conn, T0 + 1, 5000) == 3000
            # Their memory expires too (storage.identity.SEEN_DAYS after they were listed).
            assert await identity.forget(conn, T0 + 1, 10_000) == 6000
        freed = await db.scalar("PRAGMA freelist_count")
        assert freed > 100
        await db.maintain(free_pages=100)
        assert await db.scalar("PRAGMA freelist_count") == freed - 100
        await db.maintain()
        assert await db.scalar("PRAGMA freelist_count") == 0
        assert await db.size() < full / 3
    finally:
        await db.close()
    # A second start changes nothing.
    db = await Database.open(tmp_path / "fresh.db")
    try:
        assert await db.scalar("PRAGMA auto_vacuum") == 2
    finally:
        await db.close()


async def test_the_archive_never_lets_a_story_go_within_the_correction_window(db: Database) -> None:
    """NEWSBOT_ARCHIVE_DAYS=1: a story last listed 30 hours ago can still be corrected (its
    alerts edited for 48 hours), so it stays; after 48 hours it goes, and its identities
    stay in `seen`."""
    await add_stories(db, [story(1, T0)])
    assert (await maintenance.prune(db, outbox_days=7, archive_days=1, now=T0 + 30 * 3600)).articles == 0
    assert await articles.count_articles(db) == 1
    gone = await maintenance.prune(db, outbox_days=7, archive_days=1, now=T0 + 49 * 3600)
    assert gone.articles == 1 and await articles.count_articles(db) == 0
    assert await db.scalar("SELECT count(*) FROM seen") == 2


async def test_a_story_listed_again_counts_from_its_last_listing(db: Database) -> None:
    """Stored on day 0, listed again on day 5 (the same item in a later poll): with a 4-day
    archive it is kept on day 8 and goes on day 10."""
    first = story(1, T0)
    await add_stories(db, [first])
    await add_stories(db, [replace(first, fetched_at=T0 + 5 * DAY)])
    assert (await maintenance.prune(db, outbox_days=7, archive_days=4, now=T0 + 8 * DAY)).articles == 0
    assert (await maintenance.prune(db, outbox_days=7, archive_days=4, now=T0 + 10 * DAY)).articles == 1


async def fts_bytes(db: Database) -> int:
    return int(await db.scalar("SELECT sum(length(block)) FROM articles_fts_data") or 0)


async def test_the_search_index_shrinks_with_the_archive(db: Database, tmp_path: Path) -> None:
    """Stories leaving the archive leave the search index's pages too (the merge step after
    each batch): twenty days of stories pruned to the last two (the 48 hours a story can be corrected in)
    take about the room of those days' stories alone, not the room of all twenty."""
    for day in range(20):
        async with db.write() as conn:
            await articles.store_articles(conn, [story(day * 100 + n, T0 + day * DAY) for n in range(100)], now=T0 + day * DAY)
    full = await fts_bytes(db)
    while (await maintenance.prune(db, outbox_days=7, archive_days=1, now=T0 + 19.5 * DAY, batch=100)).articles:
        pass
    assert await articles.count_articles(db) == 200

    fresh = await Database.open(tmp_path / "fresh.db")
    try:
        for day in (18, 19):
            async with fresh.write() as conn:
                await articles.store_articles(conn, [story(day * 100 + n, T0 + day * DAY) for n in range(100)], now=T0 + day * DAY)
        alone = await fts_bytes(fresh)
    finally:
        await fresh.close()
    pruned = await fts_bytes(db)
    assert pruned < full / 5
    assert pruned <= 1.5 * alone, (pruned, alone, full)
