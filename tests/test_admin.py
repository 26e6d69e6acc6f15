"""Admin commands other than the broadcast fan-out: who may use them, /stats, /feeds,
/addfeed, /removefeed, the command menus, and the text rules of a broadcast."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Message, MessageEntity

from bot.broadcast import is_telegram_html, reader_html
from bot.commands.admin import REFUSAL, _broadcast_input
from bot.services import DEFAULT_SECTIONS
from storage import articles, stats
from storage.db import Database
from storage.models import Article
from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram, validate_telegram_html
from tests.harness import ask, bot_settings, running_bot, write_feeds_file

ADMIN = 9001
STRANGER = 555
NOW = time.time()

TINY_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Tiny wire</title>
<item><title>One story</title><link>https://wire.example/1</link><guid>wire-1</guid></item>
</channel></rss>"""


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


# --- who is an admin ------------------------------------------------------------------------


async def test_non_admins_are_refused_and_nothing_changes(tg: FakeTelegram, tmp_path: Path) -> None:
    feeds_file = write_feeds_file(tmp_path, ["http://127.0.0.1:9/feed.xml"])
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file))
    async with running_bot(settings):
        for command in ("/broadcast Hello everyone", "/stats", "/addfeed https://example.com/rss sports",
                        "/removefeed 1", "/feeds", "/broadcasts"):
            answer = await ask(tg, STRANGER, command)
            assert answer["text"] == REFUSAL, command

        # Admin commands are only in the admins' menus.
        menus = {
            str((c.params.get("scope") or {}).get("chat_id", "default")): [x["command"] for x in c.params["commands"]]
            for c in tg.calls("setMyCommands")
        }
        assert "broadcast" not in menus["default"] and "start" in menus["default"]
        for admin in ("9001", "9002"):
            assert {"broadcast", "stats", "feeds", "addfeed", "removefeed", "start"} <= set(menus[admin])

    assert rows(settings.db_path, "SELECT count(*) FROM broadcasts") == [(0,)]
    assert rows(settings.db_path, "SELECT id, enabled FROM feeds") == [(1, 1)]
    assert rows(settings.db_path, "SELECT count(*) FROM outbox") == [(0,)]


# --- /stats ---------------------------------------------------------------------------------


def story(n: int, fetched_at: float, published_at: float | None = None) -> Article:
    return Article(
        id=f"story-{n}", url=f"https://news.example/{n}", title=f"Story {n}", summary="", section="world",
        tags=(), published_at=published_at if published_at is not None else fetched_at, fetched_at=fetched_at,
    )


async def seed_newsroom(db_path: Path) -> None:
    """5 active readers, 2 paused, 1 inactive; 4 stories from the last day, 2 older; alerts
    sent 10, 20, 30, 40 and 100 s after publication, one sent two days ago, 2 failed, 3 queued."""
    db = await Database.open(db_path)
    try:
        chat_rows = [(i, 1, 0) for i in (11, 12, 13, 14, 15)] + [(21, 1, 1), (22, 1, 1), (31, 0, 0)]
        await db.executemany(
            "INSERT INTO chats (id, active, paused, created_at, updated_at) VALUES (?, ?, ?, 0, 0)", chat_rows
        )
        subs = [(11, "section", "sports"), (12, "section", "sports"), (13, "section", "sports"),
                (11, "section", "world"), (21, "section", "world"), (31, "section", "world"),
                (11, "keyword", "drones"), (12, "keyword", "drones"), (14, "keyword", "drones"),
                (13, "keyword", "malmö"), (15, "keyword", "election")]  # fmt: skip
        await db.executemany(
            "INSERT INTO subscriptions (chat_id, kind, value, display, created_at) VALUES (?, ?, ?, ?, 0)",
            [(c, k, v, v) for c, k, v in subs],
        )
        recent = [story(n, NOW - 3600 * n, NOW - 3600 * n - 50) for n in range(1, 5)]
        old = [story(n, NOW - 3 * 86400) for n in (5, 6)]
        async with db.write() as conn:
            await articles.insert_new_articles(conn, recent + old, seen=True)
        outbox = []
        for chat_id, delay in zip((11, 12, 13, 14, 15), (10, 20, 30, 40, 100), strict=True):
            published = NOW - 3600 - 50
            outbox.append((chat_id, "story-1", "sent", published + delay, NOW - 3600, NOW))
        outbox.append((11, "story-5", "sent", NOW - 2 * 86400, NOW - 3 * 86400, NOW))
        outbox += [(12, "story-2", "failed", None, NOW - 600, NOW), (13, "story-2", "failed", None, NOW - 600, NOW)]
        # Queued for paused readers and far in the future: the running bot leaves them alone.
        outbox += [(21, "story-3", "pending", None, NOW, NOW + 10**6), (22, "story-3", "pending", None, NOW, NOW + 10**6),
                   (21, "story-4", "pending", None, NOW, NOW + 10**6)]  # fmt: skip
        await db.executemany(
            "INSERT INTO outbox (chat_id, article_id, state, sent_at, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            outbox,
        )
    finally:
        await db.close()


async def test_stats_figures(tmp_path: Path) -> None:
    await seed_newsroom(tmp_path / "n.db")
    db = await Database.open(tmp_path / "n.db")
    try:
        figures = await stats.collect(db, NOW)
        empty = await stats.collect(db, NOW + 10 * 86400)
    finally:
        await db.close()
    assert figures.readers == {"total": 8, "active": 5, "paused": 2, "inactive": 1}
    assert figures.sections == {"sports": 3, "world": 2}
    assert figures.top_keywords[0] == ("drones", 3)
    assert (figures.articles_24h, figures.alerts_sent_24h, figures.alerts_failed_24h) == (4, 5, 2)
    assert (figures.latency_p50, figures.latency_p95, figures.backlog) == (30.0, 100.0, 3)
    assert (empty.latency_p50, empty.latency_p95, empty.alerts_sent_24h) == (None, None, 0)


async def test_stats_command(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = bot_settings(tg, tmp_path)
    await seed_newsroom(settings.db_path)
    async with running_bot(settings):
        text = (await ask(tg, ADMIN, "/stats"))["text"]
    assert "Readers: 5 active, 2 paused, 1 inactive" in text
    assert "Sports 3" in text and "World 2" in text and "Business 0" in text
    assert "Top keywords: drones (3), election (1), malmö (1)" in text
    assert "Last 24 h: 4 articles stored, 5 alerts sent, 2 failed" in text
    assert "p50 30 s, p95 1 min 40 s" in text
    assert "Outbox backlog: 3" in text


# --- /feeds, /addfeed, /removefeed ------------------------------------------------------------


async def test_feed_commands_and_removal_surviving_a_restart(tg: FakeTelegram, tmp_path: Path) -> None:
    reader = 100
    with FeedServer() as server:
        server.serve("/wire.xml", TINY_FEED)
        server.serve("/sports/rss.xml", SAMPLE_FEED.read_bytes())
        server.html("/sports/", [server.url_for("/sports/rss.xml")], title="Sports")
        feeds_file = write_feeds_file(tmp_path, [server.url_for("/wire.xml")])
        settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_POLL_SECONDS="1")
        async with running_bot(settings):
            await ask(tg, reader, "/start")
            tg.callback_query(reader, tg.sent_messages(reader)[0]["message_id"], "sec:sports")
            await tg.await_calls("answerCallbackQuery", 1, timeout=10)

            listing = (await ask(tg, ADMIN, "/feeds"))["text"]
            assert listing.startswith("Feeds: 1 polled, 0 failing")
            assert f"#1 {server.url_for('/wire.xml')}" in listing
            assert "section from the category (domain “section”), else World" in listing

            for command, expected in [
                ("/addfeed", "Usage: /addfeed"),
                ("/addfeed notaurl sports", "is not an http(s) URL"),
                (f"/addfeed {server.url_for('/sports/')} cooking", "Unknown section “cooking”"),
                (f"/addfeed {server.url_for('/missing.xml')} sports", "Could not add that feed — fetch:"),
                (f"/addfeed {server.url_for('/')} sports", "Could not add that feed"),
            ]:
                answer = (await ask(tg, ADMIN, command))["text"]
                assert expected in answer, (command, answer)
                assert "Usage: /addfeed" in answer

            # A section page: its feed is found through <link rel="alternate">.
            added = (await ask(tg, ADMIN, f"/addfeed {server.url_for('/sports/')} sports"))["text"]
            assert added.startswith("Added feed #2: Sweden Herald (sample) — 50 items, section Sports.")
            assert server.url_for("/sports/rss.xml") in added
            listing = (await ask(tg, ADMIN, "/feeds"))["text"]
            assert f"#2 {server.url_for('/sports/rss.xml')}" in listing and "section Sports" in listing

            # Its first poll stores its 50 stories as seen: the sports reader gets no flood.
            await tg.await_for(lambda: len(server.requests("/sports/rss.xml")) >= 2, timeout=15)
            await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds WHERE id = 2") == [(1,)], timeout=10)
            assert len(tg.sent_messages(reader)) == 1

            for command, expected in [
                ("/removefeed 2", f"Removed feed #2 {server.url_for('/sports/rss.xml')}."),
                ("/removefeed 2", "Feed #2 was already removed."),
                ("/removefeed 99", "There is no feed #99."),
                ("/removefeed two", "Usage: /removefeed"),
                ("/removefeed 1", "Removed feed #1"),
            ]:
                answer = (await ask(tg, ADMIN, command))["text"]
                assert answer.startswith(expected), (command, answer)

        # The feeds file still lists feed 1: a restart does not bring it back.
        async with running_bot(settings):
            listing = (await ask(tg, ADMIN, "/feeds"))["text"]
            assert listing.startswith("Feeds: 0 polled")
            assert f"#1 {server.url_for('/wire.xml')}" in listing and "(removed)" in listing
    assert rows(settings.db_path, "SELECT id, enabled, source FROM feeds ORDER BY id") == [(1, 0, "file"), (2, 0, "command")]
    assert all(c.ok for c in tg.calls("sendMessage"))


# --- the broadcast's text -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "plain", "<b>bold</b> and <i>it</i>", '<a href="https://x.example/?a=1&amp;b=2">link</a>',
        '<span class="tg-spoiler">s</span>', "<pre><code class=\"language-python\">x</code></pre>",
        "<blockquote expandable>q</blockquote>", "a &lt; b &amp; c &#39; &#x27;", "<b><i>nested</i></b>",
    ],
)
def test_valid_telegram_html_is_accepted(text: str) -> None:
    assert is_telegram_html(text)
    assert validate_telegram_html(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "a < b", "fish & chips", "<p>para</p>", "<b>open", "<b><i>x</b></i>", "</b>", "&nbsp;",
        '<a href="javascript:alert(1)">x</a>', "<a>no href</a>", '<b class="x">y</b>',
        '<span class="big">x</span>', "<img src=x>", '<a href="https://x" onclick="y">z</a>',
    ],
)
def test_invalid_html_is_refused_and_escaped_instead(text: str) -> None:
    assert not is_telegram_html(text)
    safe = reader_html(text, text)
    assert validate_telegram_html(safe) is None
    assert safe != text


def _message(text: str, entities: list[MessageEntity]) -> Message:
    from datetime import UTC, datetime

    from telegram import Chat

    return Message(1, datetime.now(UTC), Chat(ADMIN, "private"), text=text, entities=entities)


def test_broadcast_input_keeps_the_admins_formatting() -> None:
    text = "/broadcast @sports Goal! Sweden leads <3"
    entities = [MessageEntity("bot_command", 0, 10), MessageEntity("bold", 19, 5)]
    parsed = _broadcast_input(_message(text, entities), DEFAULT_SECTIONS)
    assert not isinstance(parsed, str)
    assert (parsed.audience, parsed.plain) == ("sports", "Goal! Sweden leads <3")
    assert reader_html(parsed.plain, parsed.formatted) == "<b>Goal!</b> Sweden leads &lt;3"


def test_broadcast_input_falls_back_to_plain_text_when_formatting_spans_the_command() -> None:
    text = "/broadcast Breaking & big"
    parsed = _broadcast_input(_message(text, [MessageEntity("bold", 0, len(text))]), DEFAULT_SECTIONS)
    assert not isinstance(parsed, str)
    assert parsed.formatted is None
    assert reader_html(parsed.plain, parsed.formatted) == "Breaking &amp; big"
