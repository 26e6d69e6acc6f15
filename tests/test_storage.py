"""Storage on a real SQLite file: migrations, new-only inserts, FTS, chats, outbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import articles, chats, feeds, outbox, subscriptions
from storage.db import Database, StorageError
from storage.models import Article, SectionRule
from tests.conftest import REPO


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
        first = await articles.insert_new_articles(conn, [art(1), art(2)])
    async with db.write() as conn:
        second = await articles.insert_new_articles(conn, [art(2), art(3)])
    assert [a.id for a in first] == ["id-1", "id-2"]
    assert [a.id for a in second] == ["id-3"]
    assert await articles.count_articles(db) == 3
    assert [a.id for a in await articles.unmatched_articles(db)] == ["id-1", "id-2", "id-3"]


async def test_large_insert_with_repeats_stores_each_story_once(db: Database) -> None:
    batch = [art(i) for i in range(1200)] + [art(7), art(1100)]
    async with db.write() as conn:
        first = await articles.insert_new_articles(conn, batch)
    async with db.write() as conn:
        again = await articles.insert_new_articles(conn, [art(5), art(1300)])
    assert [a.id for a in first] == [f"id-{i}" for i in range(1200)]
    assert [a.id for a in again] == ["id-1300"]
    assert await articles.count_articles(db) == 1201
    assert await db.scalar("SELECT count(*) FROM articles_fts") == 1201


async def test_seen_articles_never_wait_for_matching(db: Database) -> None:
    async with db.write() as conn:
        await articles.insert_new_articles(conn, [art(1)], seen=True)
    assert await articles.unmatched_articles(db) == []


async def test_failed_transaction_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await articles.insert_new_articles(conn, [art(1)])
            raise RuntimeError("crash mid-way")
    assert await articles.count_articles(db) == 0


async def test_latest_search_related(db: Database) -> None:
    async with db.write() as conn:
        await articles.insert_new_articles(
            conn,
            [
                art(1, "Drones over Ukraine", tags=("Ukraine", "Drones"), summary="Russia sends drones"),
                art(2, "Malmö wins the cup", section="sports", tags=("Football",)),
                art(3, "New drone rules in Sweden", section="sweden", tags=("Drones",)),
                art(4, "c++ conference & more", section="business"),
            ],
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
    assert await feeds.seed_feeds(db, [("https://a.example/rss", rule)]) == 1
    (feed,) = await feeds.list_feeds(db)
    assert await feeds.disable_feed(db, feed.id)
    assert await feeds.seed_feeds(db, [("https://a.example/rss", rule)]) == 0
    assert await feeds.list_feeds(db) == []
    assert len(await feeds.list_feeds(db, enabled_only=False)) == 1
    await feeds.record_failure(db, feed.id, "fetch: HTTP 500", now=10.0, next_poll_at=70.0)
    failed = await feeds.get_feed(db, feed.id)
    assert failed is not None and failed.error_count == 1 and failed.last_error == "fetch: HTTP 500"
    assert failed.rule == rule
    async with db.write() as conn:
        await feeds.record_success(conn, feed.id, now=1.0, next_poll_at=2.0, etag='"e"', last_modified=None, title="A")
    readded = await feeds.add_feed(db, "https://a.example/rss", rule)
    assert readded.id == feed.id and readded.enabled and readded.source == "command"
    assert not readded.primed and readded.etag is None  # its backlog will be stored as seen


async def test_chats_subscriptions_and_outbox(db: Database) -> None:
    await chats.ensure_chat(db, 10, "private")
    await chats.ensure_chat(db, 20, "private")
    add = subscriptions.add_subscription
    assert await add(db, 10, "keyword", "drones", "Drones", limit=2) is subscriptions.AddResult.ADDED
    assert await add(db, 10, "keyword", "drones", "drones", limit=2) is subscriptions.AddResult.EXISTS
    assert await add(db, 10, "section", "world", "world", limit=2) is subscriptions.AddResult.ADDED
    assert await add(db, 10, "section", "sports", "sports", limit=2) is subscriptions.AddResult.LIMIT
    async with db.write() as conn:
        await articles.insert_new_articles(conn, [art(1)])
    queued = await outbox.enqueue_matches(db, ["id-1"], {"id-1": {10: ["keyword:drones"], 20: ["section:world"]}})
    assert queued == 2
    again = await outbox.enqueue_matches(db, ["id-1"], {"id-1": {10: ["keyword:drones"]}})
    assert again == 0  # UNIQUE(chat, article): never twice
    assert await outbox.backlog(db) == 2
    assert await chats.deactivate_chat(db, 20, "Forbidden: bot was blocked by the user")
    assert await outbox.backlog(db) == 1
    assert await chats.silenced_chat_ids(db) == [20]
    await chats.ensure_chat(db, 20, "private")  # /start again reactivates
    assert await chats.silenced_chat_ids(db) == []
    await chats.migrate_chat(db, 10, -100123)
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
                await articles.insert_new_articles(conn, [art(1)])
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert await articles.count_articles(db) == 0
    async with db.write() as conn:  # usable again once the lock is gone
        await articles.insert_new_articles(conn, [art(1)])
    assert await articles.count_articles(db) == 1
    await db.close()


def test_storage_imports_neither_telegram_nor_feedparser() -> None:
    code = (
        "import sys, storage.db, storage.articles, storage.feeds, storage.chats, "
        "storage.subscriptions, storage.outbox, storage.models\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('telegram', 'feedparser', 'bot', 'httpx')]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_bot_does_nothing(tmp_path: Path) -> None:
    """No config read, no file or connection opened at import time."""
    code = (
        "import bot.app, bot.__main__, bot.config, bot.render, bot.services\n"
        "import bot.pipeline.poll\n"
        "print('ok')"
    )
    env = {**os.environ, "NEWSBOT_TOKEN": "garbage", "NEWSBOT_DB": str(tmp_path / "x" / "n.db"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.stdout.strip() == "ok", out.stderr
    assert list(tmp_path.iterdir()) == []


async def test_search_reaches_old_stories_beyond_the_recent_window(db: Database) -> None:
    n = articles.FTS_WINDOWS[0] + 2000
    batch = [art(i, f"Common story {i}", summary="common words only") for i in range(2, n)]
    async with db.write() as conn:
        await articles.insert_new_articles(conn, [art(1, "Zanzibar ferry news", summary="island")])
        await articles.insert_new_articles(conn, batch)
    assert [a.id for a in await articles.search(db, "zanzibar")] == ["id-1"]
    common = await articles.search(db, "common", limit=10)
    assert len(common) == 10
    # Among equally good matches the newest win.
    assert [a.id for a in common] == [f"id-{i}" for i in range(n - 1, n - 11, -1)]
