"""Feeds → SQLite end to end: the CLI, conditional polls, first-run priming, bad feeds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.context import Services, load_matcher_index, open_services
from bot.stages.poll import poll_due_feeds
from storage import articles, chats, feeds, subscriptions
from tests.conftest import REPO, SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.harness import write_feeds_file
from tests.simtime import SimClock


def newsbot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`newsbot ARGS` with the operator's environment plus `env`, feeds on loopback allowed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**base, "PYTHONPATH": str(REPO), "NEWSBOT_FEED_ALLOW_PRIVATE": "1", **env},
    )


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def test_check_feed_prints_all_fifty_stories_with_sections(tmp_path: Path) -> None:
    """A header naming the zone, one row per story with its section's display name and a
    time that carries its zone, then the count; nothing stored."""
    feeds_file = write_feeds_file(tmp_path, [])
    out = newsbot("check-feed", str(SAMPLE_FEED), env={"NEWSBOT_FEEDS": str(feeds_file)}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    kind, *lines = out.stdout.strip().splitlines()
    assert kind == "kind: RSS/Atom feed"
    assert lines[0] == "id\tsection\tpublished (Europe/Stockholm)\ttitle\tlink"
    assert lines[-1] == "50 stories"
    rows = [line.split("\t") for line in lines[1:-1]]
    assert len(rows) == 50
    assert {r[1] for r in rows} == {"Sweden", "Living", "World", "Business", "Sports", "Entertainment"}
    first = rows[0]
    assert first[0] == "sh-1000"
    assert first[2] == "2025-03-12 21:00 CET"  # 21:00 +0100, in the newsroom's zone
    utc = newsbot(
        "check-feed", str(SAMPLE_FEED), env={"NEWSBOT_FEEDS": str(feeds_file), "NEWSBOT_TIMEZONE": "UTC"},
        cwd=tmp_path,
    )
    assert utc.stdout.splitlines()[1].startswith("id\tsection\tpublished (UTC)\t")
    assert utc.stdout.splitlines()[2].split("\t")[2] == "2025-03-12 20:00 UTC"
    assert first[3] == "Sweden beats Norway in the handball qualifier"
    assert first[4].startswith("https://swedenherald.com/article/")
    assert not (tmp_path / "data").exists()  # nothing stored


def test_check_feed_over_http_and_bad_source(tmp_path: Path, server: FeedServer) -> None:
    server.serve_file("/rss.xml", SAMPLE_FEED)
    out = newsbot("check-feed", server.url_for("/rss.xml"), env={}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("50 stories")
    missing = newsbot("check-feed", server.url_for("/nope.xml"), env={}, cwd=tmp_path)
    assert missing.returncode == 1
    assert "fetch:" in missing.stderr and "404" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_ingest_twice_stores_once_and_second_poll_is_a_304(tmp_path: Path, server: FeedServer) -> None:
    server.serve_file("/rss.xml", SAMPLE_FEED)
    env = {
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, [server.url_for("/rss.xml")])),
        "NEWSBOT_DB": str(tmp_path / "db" / "newsbot.db"),
    }
    first = newsbot("ingest", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "50 items, first poll" in first.stdout
    second = newsbot("ingest", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "not modified" in second.stdout
    assert [r.status for r in server.requests("/rss.xml")] == [200, 304]
    assert server.requests("/rss.xml")[1].header("If-None-Match")
    import sqlite3

    with sqlite3.connect(tmp_path / "db" / "newsbot.db") as conn:
        assert conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 50
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        sections = {r[0] for r in conn.execute("SELECT DISTINCT section FROM articles")}
    assert sections == {"sweden", "living", "world", "business", "sports", "entertainment"}


def test_ingest_without_feeds_file_is_one_clear_line(tmp_path: Path) -> None:
    out = newsbot("ingest", env={"NEWSBOT_FEEDS": ""}, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "newsbot: NEWSBOT_FEEDS: not set (path to the feeds file, e.g. feeds.example.toml)"
    )


def test_unwritable_database_is_one_clear_line(tmp_path: Path, server: FeedServer) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    env = {
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, [server.url_for("/rss.xml")])),
        "NEWSBOT_DB": str(blocker / "newsbot.db"),
    }
    out = newsbot("ingest", env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("newsbot: storage: cannot create ")
    assert str(blocker) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.fixture
async def services(clock: SimClock, sim_feeds: FeedServer, tmp_path: Path) -> AsyncIterator[Services]:
    """The bot's services on the test's simulated clock, its feeds on the loopback server."""
    server = sim_feeds
    paths = ["/good.xml", "/slow.xml", "/500.xml", "/huge.xml", "/page.html", "/loop-a", "/cut.xml"]
    settings = load_settings(
        {
            "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, [server.url_for(p) for p in paths])),
            "NEWSBOT_DB": str(tmp_path / "newsbot.db"),
            "NEWSBOT_FETCH_TIMEOUT": "0.5",
            "NEWSBOT_POLL_SECONDS": "60",
            "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
        },
        env_file=None,
    )
    svc = await open_services(settings, clock=clock)
    yield svc
    await svc.close()


async def test_bad_feeds_fail_with_backoff_and_the_others_go_on(
    clock: SimClock, services: Services, sim_feeds: FeedServer
) -> None:
    server = sim_feeds
    sample = SAMPLE_FEED.read_bytes()
    server.serve("/good.xml", sample)
    server.serve("/slow.xml", sample)
    server.slow("/slow.xml", 5.0)
    server.status("/500.xml", 500)
    server.huge("/huge.xml", 50 * 1024 * 1024)
    server.html("/page.html")
    server.redirect("/loop-a", "/loop-b")
    server.redirect("/loop-b", "/loop-a")
    server.truncated("/cut.xml", sample[: len(sample) // 3], mode="document")

    started = clock.monotonic()
    summary = await poll_due_feeds(services, all_feeds=True)
    assert clock.monotonic() - started < 20  # the slow feed did not hold up the round

    by_url = {o.feed.url.rsplit("/", 1)[1]: o for o in summary.outcomes}
    assert by_url["good.xml"].result == "primed" and by_url["good.xml"].items == 50
    for name in ("slow.xml", "500.xml", "huge.xml", "page.html", "loop-a", "cut.xml"):
        assert by_url[name].result == "error", (name, by_url[name])
    assert "HTTP 500" in (by_url["500.xml"].error or "")
    assert "larger than" in (by_url["huge.xml"].error or "")
    assert "redirect" in (by_url["loop-a"].error or "")

    now = clock.time()
    for feed in await feeds.list_feeds(services.db):
        name = feed.url.rsplit("/", 1)[1]
        if name == "good.xml":
            assert feed.error_count == 0 and feed.last_success_at is not None and feed.primed
        else:
            assert feed.error_count == 1 and feed.last_error, name
            assert feed.next_poll_at > now + 30  # backing off
            assert not feed.primed
    # Everything stored came from the good feed, once.
    assert await articles.count_articles(services.db) == 50
    stored_feeds = await services.db.fetchall("SELECT DISTINCT feed_id FROM articles")
    assert len(stored_feeds) == 1

    # Recovery: the broken feed is fixed and polled again: error count back to 0.
    server.clear("/500.xml")
    server.serve("/500.xml", sample)
    summary = await poll_due_feeds(services, all_feeds=True)
    fixed = next(f for f in await feeds.list_feeds(services.db) if f.url.endswith("/500.xml"))
    assert fixed.error_count == 0 and fixed.primed
    assert await articles.count_articles(services.db) == 50  # same stories: one article each


async def test_only_articles_after_the_first_poll_become_alerts(
    clock: SimClock, services: Services, sim_feeds: FeedServer
) -> None:
    server = sim_feeds
    sample = SAMPLE_FEED.read_text()
    server.serve("/good.xml", sample.encode())
    await chats.join(services.db, 42, "private", now=clock.time())
    await subscriptions.add_subscription(services.db, 42, "section", "sports", "sports", limit=50, now=clock.time())
    await load_matcher_index(services.db, services.matcher)
    for path in ("/slow.xml", "/500.xml", "/huge.xml", "/page.html", "/loop-a", "/cut.xml"):
        server.status(path, 404)
    first = await poll_due_feeds(services, all_feeds=True)
    assert first.queued == 0  # the feed's history is not news

    item = """<item><title>Sweden wins the final</title><link>https://swedenherald.com/article/final</link>
<guid isPermaLink="false">sh-new-1</guid><category domain="section">Sports</category>
<description>New story</description></item>"""
    server.serve("/good.xml", sample.replace("<item>", item + "\n<item>", 1).encode())
    second = await poll_due_feeds(services, all_feeds=True)
    assert second.new_articles == 1 and second.queued == 1
    rows = await services.db.fetchall("SELECT chat_id, article_id, reasons FROM outbox")
    assert [tuple(r) for r in rows] == [(42, "sh-new-1", "section:sports")]
