"""Storage on a real SQLite file: migrations, what a store recognises, FTS, chats, outbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot.pipeline.parse import parse_feed
from storage import articles, broadcasts, chats, due, feeds, outbox, subscriptions
from storage.db import Database, StorageError
from storage.models import Article, SectionRule
from tests.conftest import REPO, SAMPLE_FEED

SAMPLE_RULE = SectionRule(kind="category", domain="section", section="world")
SAMPLE_FETCHED_AT = 1_741_800_000.0
DAY = 24 * 3600.0


def art(n: int, title: str = "", *, section: str = "world", tags: tuple[str, ...] = (), summary: str = "") -> Article:
    return Article(
        id=f"id-{n}",
        url=f"https://news.example/a/{n}",
        title=title or f"Story number {n}",
        summary=summary or f"Summary of story {n}",
        section=section,
        tags=tags,
        published_at=1_700_000_000 + n,
        fetched_at=1_700_000_000 + n,
    )


async def test_schema_is_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    latest = max(int(p.name[:4]) for p in (REPO / "storage" / "migrations").glob("*.sql"))
    db = await Database.open(path)
    assert await db.scalar("PRAGMA user_version") == latest >= 2
    assert await db.scalar("PRAGMA journal_mode") == "wal"
    await db.close()
    db = await Database.open(path)  # second open applies nothing and keeps data
    assert await db.scalar("PRAGMA user_version") == latest
    await db.close()


async def test_insert_returns_only_new_articles(db: Database) -> None:
    async with db.write() as conn:
        first = await articles.store_articles(conn, [art(1), art(2)], now=time.time())
    async with db.write() as conn:
        second = await articles.store_articles(conn, [art(2), art(3)], now=time.time())
    assert [a.id for a in first.new] == ["id-1", "id-2"]
    assert [a.id for a in second.new] == ["id-3"]
    assert not second.corrected and not second.gained
    assert await articles.count_articles(db) == 3
    assert [a.id for a in await articles.unmatched_articles(db)] == ["id-1", "id-2", "id-3"]


async def test_large_insert_with_repeats_stores_each_story_once(db: Database) -> None:
    batch = [art(i) for i in range(1200)] + [art(7), art(1100)]
    async with db.write() as conn:
        first = await articles.store_articles(conn, batch, now=time.time())
    async with db.write() as conn:
        again = await articles.store_articles(conn, [art(5), art(1300)], now=time.time())
    assert [a.id for a in first.new] == [f"id-{i}" for i in range(1200)]
    assert [a.id for a in again.new] == ["id-1300"]
    assert await articles.count_articles(db) == 1201
    assert await db.scalar("SELECT count(*) FROM articles_fts") == 1201


async def test_seen_articles_never_wait_for_matching(db: Database) -> None:
    async with db.write() as conn:
        await articles.store_articles(conn, [art(1)], seen=True, now=time.time())
    assert await articles.unmatched_articles(db) == []


async def test_failed_transaction_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await articles.store_articles(conn, [art(1)], now=time.time())
            raise RuntimeError("crash mid-way")
    assert await articles.count_articles(db) == 0


async def test_latest_search_related(db: Database) -> None:
    async with db.write() as conn:
        await articles.store_articles(
            conn,
            [
                art(1, "Drones over Ukraine", tags=("Ukraine", "Drones"), summary="Russia sends drones"),
                art(2, "Malmö wins the cup", section="sports", tags=("Football",)),
                art(3, "New drone rules in Sweden", section="sweden", tags=("Drones",)),
                art(4, "c++ conference & more", section="business"),
            ], now=time.time()
        )
    latest = await articles.latest(db, ["sports", "sweden"], limit=5)
    assert [a.id for a in latest] == ["id-3", "id-2"]
    assert [a.id for a in await articles.latest(db, None, limit=2)] == ["id-4", "id-3"]
    assert [a.id for a in await articles.search(db, "malmo")] == ["id-2"]  # diacritics folded
    assert [a.id for a in await articles.search(db, "c++")] == ["id-4"]  # no FTS syntax error
    assert await articles.search(db, '" AND OR NEAR(') == []
    found = await articles.search(db, "drones ukraine")
    assert found[0].id == "id-1"
    related = await articles.related(db, "Drones over Ukraine Ukraine Drones", exclude_id="id-1")
    assert "id-1" not in [a.id for a in related]
    assert related and related[0].id == "id-3"
    got = await articles.get_article(db, "id-1")
    assert got is not None and got.tags == ("Ukraine", "Drones")


async def test_feeds_seed_does_not_undo_commands(db: Database) -> None:
    rule = SectionRule(kind="fixed", section="world")
    assert await feeds.seed_feeds(db, [("https://a.example/rss", rule)], now=time.time()) == 1
    (feed,) = await feeds.list_feeds(db)
    assert await feeds.disable_feed(db, feed.id)
    assert await feeds.seed_feeds(db, [("https://a.example/rss", rule)], now=time.time()) == 0
    assert await feeds.list_feeds(db) == []
    assert len(await feeds.list_feeds(db, enabled_only=False)) == 1
    await feeds.record_failure(db, feed.id, "fetch: HTTP 500", now=10.0, next_poll_at=70.0)
    failed = await feeds.get_feed(db, feed.id)
    assert failed is not None and failed.error_count == 1 and failed.last_error == "fetch: HTTP 500"
    assert failed.rule == rule
    async with db.write() as conn:
        await feeds.record_success(conn, feed.id, now=1.0, next_poll_at=2.0, etag='"e"', last_modified=None, title="A", primed=True)
    primed = await feeds.get_feed(db, feed.id)
    assert primed is not None and primed.primed and primed.etag == '"e"'
    readded = await feeds.add_feed(db, "https://a.example/rss", rule, now=time.time())
    assert readded.id == feed.id and readded.enabled and readded.source == "command"
    assert not readded.primed and readded.etag is None  # its backlog will be stored as seen


async def test_chats_subscriptions_and_outbox(db: Database) -> None:
    await chats.join(db, 10, "private", now=time.time())
    await chats.join(db, 20, "private", now=time.time())
    add = subscriptions.add_subscription
    AddResult = subscriptions.AddResult
    assert (await add(db, 10, "keyword", "drones", "Drones", limit=2, now=time.time())).result is AddResult.ADDED
    assert (await add(db, 10, "keyword", "drones", "drones", limit=2, now=time.time())).result is AddResult.EXISTS
    assert (await add(db, 10, "section", "world", "world", limit=2, now=time.time())).result is AddResult.ADDED
    assert (await add(db, 10, "section", "sports", "sports", limit=2, now=time.time())).result is AddResult.LIMIT
    # Excluding a followed word replaces following it; exclusions have a limit of their own.
    replaced = await add(db, 10, "exclude", "drones", "drones", limit=1, now=time.time())
    assert replaced.result is AddResult.REPLACED
    assert {(s.kind, s.value) for s in await subscriptions.subscriptions_for_chat(db, 10)} == {
        ("section", "world"), ("exclude", "drones")
    }
    async with db.write() as conn:
        await articles.store_articles(conn, [art(1)], now=time.time())
    story = await articles.get_article(db, "id-1")
    assert story is not None
    matches = {"id-1": {10: outbox.Match(("keyword:drones",)), 20: outbox.Match(("section:world",))}}
    queued = await outbox.enqueue_alerts(db, [story], matches, now=time.time())
    assert (queued.queued, queued.held) == (2, 0)
    again = await outbox.enqueue_alerts(db, [story], {"id-1": {10: outbox.Match(("keyword:drones",))}}, now=time.time())
    assert again.queued == 0  # UNIQUE(chat, key): never twice
    assert (await due.backlog(db)).pending == {outbox.LANE_PERSONAL: 1, outbox.LANE_SECTION: 1}
    assert await outbox.block_chat(db, 20, "Forbidden: bot was blocked by the user", now=time.time()) == (True, 1)
    assert (await due.backlog(db)).total == 1
    assert await chats.inactive_chat_ids(db) == [20]
    await chats.join(db, 20, "private", now=time.time())  # /start again reactivates
    assert await chats.inactive_chat_ids(db) == []
    await chats.migrate_chat(db, 10, -100123, now=time.time())
    moved = await subscriptions.subscriptions_for_chat(db, -100123)
    assert {s.value for s in moved} == {"drones", "world"}
    assert await chats.delete_chat(db, -100123)
    assert await subscriptions.subscriptions_for_chat(db, -100123) == []


async def test_unwritable_path_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError) as info:
        await Database.open(blocker / "sub" / "newsbot.db")
    assert str(info.value).startswith("storage: cannot create directory")
    if os.geteuid() != 0:  # root can write anywhere; the directory case above covers it
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(StorageError):
            await Database.open(ro / "newsbot.db")


async def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="storage: cannot"):
        await Database.open(path)


async def test_locked_database_is_one_clear_error_and_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    db = await Database.open(path, busy_timeout=0.2)
    holder = subprocess.Popen(  # noqa: ASYNC220 - a plain child holding a lock, not awaited
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError, match="database is locked"):
            async with db.write() as conn:
                await articles.store_articles(conn, [art(1)], now=time.time())
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert await articles.count_articles(db) == 0
    async with db.write() as conn:  # usable again once the lock is gone
        await articles.store_articles(conn, [art(1)], now=time.time())
    assert await articles.count_articles(db) == 1
    await db.close()


async def test_search_reaches_old_stories_beyond_the_recent_window(db: Database) -> None:
    n = articles.FTS_WINDOWS[0] + 2000
    batch = [art(i, f"Common story {i}", summary="common words only") for i in range(2, n)]
    async with db.write() as conn:
        await articles.store_articles(conn, [art(1, "Zanzibar ferry news", summary="island")], now=time.time())
        await articles.store_articles(conn, batch, now=time.time())
    assert [a.id for a in await articles.search(db, "zanzibar")] == ["id-1"]
    common = await articles.search(db, "common", limit=10)
    assert len(common) == 10
    # Among equally good matches the newest win.
    assert [a.id for a in common] == [f"id-{i}" for i in range(n - 1, n - 11, -1)]


# --- what a store recognises as the same story ------------------------------------------------


def sample() -> list[Article]:
    """The 50 stories of the sample feed, as the poller parses them."""
    return list(
        parse_feed(
            SAMPLE_FEED.read_bytes(), url="https://swedenherald.com/rss", rule=SAMPLE_RULE,
            fetched_at=SAMPLE_FETCHED_AT,
        ).articles
    )


def sample_story(story_id: str) -> Article:
    return next(a for a in sample() if a.id == story_id)


async def store(db: Database, batch: list[Article], *, seen: bool = False) -> articles.Stored:
    async with db.write() as conn:
        return await articles.store_articles(conn, batch, seen=seen, now=time.time())


async def matched(db: Database, story_id: str) -> int:
    return int(await db.scalar("SELECT matched FROM articles WHERE id = ?", (story_id,)))


async def test_the_sample_feed_is_fifty_stories_and_once_only(db: Database) -> None:
    """Its titles (several about Ukraine, Greenland, Syria, Gaza within days) are fifty
    different stories; the same ids again add no row."""
    first = await store(db, sample())
    assert len(first.new) == 50 == await articles.count_articles(db)
    again = await store(db, sample())
    assert again.new == [] and again.corrected == [] and again.gained == []
    assert await articles.count_articles(db) == 50
    assert await db.scalar("SELECT count(*) FROM articles_fts") == 50


async def test_a_rotated_guid_with_the_same_link_is_the_same_story(db: Database) -> None:
    await store(db, sample(), seen=True)
    # New guids, and headlines edited too: only the link says it is the same story.
    rotated = [
        replace(a, id="rotated-" + a.id, title=a.title + " (video)", fetched_at=a.fetched_at + 3600)
        for a in sample()
    ]
    stored = await store(db, rotated)
    assert stored.new == [] and stored.corrected == []
    assert await articles.count_articles(db) == 50
    assert await articles.get_article(db, "rotated-sh-1003") is None


async def test_the_same_title_and_date_is_the_same_story_and_a_title_alone_is_not(db: Database) -> None:
    """A re-published story (new guid, new link, same headline, same publication time) is the
    one stored; the same headline at another time, even an hour later, is another story."""
    original = sample_story("sh-1012")  # "Tram collided with tanker truck – one dead"
    await store(db, [original])
    again = replace(original, id="republished", url=original.url + "-2")
    assert (await store(db, [again])).new == []
    later = replace(again, id="an-hour-later", url=original.url + "-3", published_at=original.published_at + 3600)
    assert [a.id for a in (await store(db, [later])).new] == ["an-hour-later"]
    # Within one batch, the same rule.
    twins = [
        replace(again, id="twin-1", url=original.url + "-4", published_at=original.published_at + 7200),
        replace(again, id="twin-2", url=original.url + "-5", published_at=original.published_at + 7200),
        replace(again, id="third", url=original.url + "-6", published_at=original.published_at + 9000),
    ]
    stored = await store(db, twins)
    assert [a.id for a in stored.new] == ["twin-1", "third"] and stored.repeated == 1


async def test_an_updated_title_merges_and_similar_titles_do_not(db: Database) -> None:
    stories = sample()
    await store(db, stories)
    tram = sample_story("sh-1012")
    updated = replace(tram, id="sh-1012-u", url=tram.url + "-updated", title=tram.title + " – Updated")
    assert (await store(db, [updated])).new == []
    # Different stories of one week whose titles share most words stay apart.
    pairs = [
        ("Attack on Ukraine after proposal for ceasefire", "Ukraine expected to propose limited ceasefire"),
        ("Israel confirms attack on Gaza target", "Syria: Israeli Attack on Daraa"),
        ("Why Greenland is so hot right now", "Greenland heads to the polls – focus on independence"),
    ]
    titles = {a.title for a in stories}
    assert {t for pair in pairs for t in pair} <= titles
    # A headline that only adds a word is another story too.
    again = replace(tram, id="sh-1012-again", url=tram.url + "-again", title=tram.title + " again")
    assert [a.id for a in (await store(db, [again])).new] == ["sh-1012-again"]
    assert await articles.count_articles(db) == 51


async def test_one_feed_repeating_a_story_in_a_batch_stores_it_once(db: Database) -> None:
    tram = sample_story("sh-1012")
    twice = [tram, replace(tram, id="other-guid"), replace(tram, id="third", url=tram.url + "?page=2")]
    assert [a.id for a in (await store(db, twice)).new] == ["sh-1012"]


async def test_a_story_in_a_second_section_gains_it_and_is_matched_again(db: Database) -> None:
    await store(db, sample())
    await store(db, sample(), seen=True)
    async with db.write() as conn:
        await articles.mark_matched(conn, [a.id for a in sample()])
    attack = sample_story("sh-1003")
    assert attack.section == "world"
    stored = await store(db, [replace(attack, section="sweden")])
    assert stored.new == [] and [a.sections for a in stored.gained] == [("world", "sweden")]
    got = await articles.get_article(db, "sh-1003")
    assert got is not None and got.sections == ("world", "sweden") and got.section == "world"
    assert await matched(db, "sh-1003") == 0
    assert [a.id for a in await articles.unmatched_articles(db)] == ["sh-1003"]
    # A further poll of either section changes nothing.
    again = await store(db, [replace(attack, section="sweden"), attack])
    assert again.gained == [] and again.new == []


async def test_a_changed_title_under_the_same_id_is_a_correction(db: Database) -> None:
    await store(db, sample())
    async with db.write() as conn:
        await articles.mark_matched(conn, [a.id for a in sample()])
    captain = sample_story("sh-1008")  # "The captain of the ship Solong was arrested"
    assert [a.id for a in await articles.search(db, "solong")] == ["sh-1008"]
    fixed = replace(captain, title="The captain of the tanker Stena Immaculate was released", fetched_at=captain.fetched_at + 600)
    stored = await store(db, [fixed])
    assert stored.new == [] and len(stored.corrected) == 1
    correction = stored.corrected[0]
    assert correction.old_title == captain.title
    assert correction.article.revision == 1 and correction.article.revised_at == fixed.fetched_at
    got = await articles.get_article(db, "sh-1008")
    assert got is not None and got.title == fixed.title and got.revision == 1
    assert await matched(db, "sh-1008") == 0
    # The index follows the new text: the new words are found, the old ones no longer.
    assert [a.id for a in await articles.search(db, "immaculate")] == ["sh-1008"]
    assert await articles.search(db, "solong") == []
    assert await db.scalar("SELECT count(*) FROM articles_fts") == 50
    # The same title again is no further correction; a first poll (seen) takes none.
    assert (await store(db, [fixed])).corrected == []
    assert (await store(db, [replace(fixed, title="Other words")], seen=True)).corrected == []


async def test_migrated_schema_has_no_meta_table(db: Database) -> None:
    tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "meta" not in tables
    assert {"articles", "articles_fts", "outbox", "counters", "chats", "subscriptions"} <= tables


async def test_the_same_id_is_the_same_story_whatever_else_changed(db: Database) -> None:
    """No link and a new headline: the id alone says it is the stored story (a correction,
    no new row)."""
    first = replace(art(1, "Council meets on Monday"), url="")
    await store(db, [first])
    stored = await store(db, [replace(first, title="Council meets on Tuesday", published_at=first.published_at + 9 * DAY)])
    assert stored.new == [] and [c.article.id for c in stored.corrected] == ["id-1"]
    assert await articles.count_articles(db) == 1


async def test_latest_of_a_section_shows_stories_it_is_the_second_section_of(db: Database) -> None:
    """A story in Sports and World is one row (indexed under Sports): /latest world lists it
    once, and /latest for both sections lists it once."""
    await store(db, [art(1, section="world"), art(2, section="sports"), art(3, section="business")])
    await store(db, [replace(art(2), section="world")])
    world = await articles.latest(db, ["world"], 5)
    assert [a.id for a in world] == ["id-2", "id-1"]
    both = await articles.latest(db, ["world", "sports"], 5)
    assert [a.id for a in both] == ["id-2", "id-1"]
    assert [a.id for a in await articles.latest(db, ["business"], 5)] == ["id-3"]


def test_a_process_that_never_closed_its_database_still_exits(tmp_path: Path) -> None:
    """A crash that skips `close()` must not leave a process that neither runs nor exits
    (a supervisor restarts a process that exited, not one that hangs)."""
    code = (
        "import asyncio, sys\n"
        "from storage.db import Database\n"
        "async def main():\n"
        "    db = await Database.open(sys.argv[1])\n"
        "    await db.fetchall('SELECT count(*) FROM chats')\n"
        "asyncio.run(main())\n"
        "print('done')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "left-open.db")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"


async def test_a_sections_audience_count_is_the_rows_its_broadcast_queues(db: Database) -> None:
    """The preview's count (from the section's subscriptions) and the rows Send queues (from
    the chats) are one audience: readers of the section, not channels, not gone."""
    for chat_id, kind in ((1, "private"), (2, "private"), (3, "group"), (4, "private"), (-5, "channel"), (6, "private")):
        await chats.join(db, chat_id, kind, now=time.time())
        if chat_id != 6:
            await subscriptions.add_subscription(db, chat_id, "section", "sports", "Sports", limit=50, now=time.time())
    await subscriptions.add_subscription(db, 6, "section", "world", "World", limit=50, now=time.time())
    await outbox.block_chat(db, 4, "blocked", now=time.time())
    assert await broadcasts.audience_size(db, "sports") == 3
    assert await broadcasts.audience_size(db, None) == 4
    broadcast_id = await broadcasts.create(db, admin_id=1, admin_chat_id=1, html="x", audience="sports", now=1.0)
    await broadcasts.start(db, broadcast_id, now=1.0, expires_before=0.0)
    queued = await db.fetchall("SELECT chat_id FROM outbox WHERE broadcast_id = ? ORDER BY chat_id", (broadcast_id,))
    assert [r[0] for r in queued] == [1, 2, 3]
