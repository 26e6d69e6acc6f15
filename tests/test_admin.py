"""Admin commands other than the broadcast fan-out: who may use them, /stats, /feeds,
/addfeed, /removefeed, the command menus, and the text rules of a broadcast."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from telegram import Message, MessageEntity

from bot.broadcast import is_telegram_html, reader_html
from bot.commands.admin import REFUSAL, _broadcast_input
from bot.pipeline.parse import parse_feed
from storage import articles, broadcasts, chats, counters, outbox, subscriptions
from storage.db import Database
from storage.models import Article, Section
from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram, validate_telegram_html
from tests.harness import SAMPLE_RULE, ask, bot_settings, running_bot, write_feeds_file
from tests.simtime import SimClock

ADMIN = 9001
STRANGER = 555
SECTIONS = (Section("sports", "Sports"), Section("world", "World"))
NOW = time.time()

TINY_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Tiny wire</title>
<item><title>One story</title><link>https://wire.example/1</link><guid>wire-1</guid></item>
</channel></rss>"""


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


# --- who is an admin ------------------------------------------------------------------------


async def test_non_admins_are_refused_and_nothing_changes(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    feeds_file = write_feeds_file(tmp_path, ["http://127.0.0.1:9/feed.xml"])
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file))
    async with running_bot(settings, clock=clock):
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
        id=f"story-{n}", url=f"https://news.example/{n}", title=f"Story {n}", summary="",
        section="world", tags=(), published_at=published_at if published_at is not None else fetched_at,
        fetched_at=fetched_at,
    )


FAR = NOW + 10**6  # queued, but not due while the test runs


async def seed_newsroom(db_path: Path) -> None:
    """5 active readers (one of them with an alert due now), 2 paused, 1 blocked, 1 that only
    changed a setting; the last day's counters (4 stories, 5 alerts sent 10-100 s after
    publication, 2 failed, 1 correction) and two days ago's; a Sports broadcast, 2 keyword
    alerts and 2 section alerts queued for later; 2 alerts held for paused readers."""
    db = await Database.open(db_path)
    try:
        for chat_id in (11, 12, 13, 14, 15, 21, 22, 31):
            await chats.join(db, chat_id, "private", now=time.time())
        for chat_id in (21, 22):
            await chats.set_option(db, chat_id, "paused", True, now=time.time())
        await outbox.block_chat(db, 31, "blocked the bot", now=time.time())
        await chats.remember(db, 41, "private", now=time.time())
        subs = [(11, "section", "sports"), (12, "section", "sports"), (13, "section", "sports"),
                (11, "section", "world"), (21, "section", "world"), (31, "section", "world"),
                (11, "keyword", "drones"), (12, "keyword", "drones"), (14, "keyword", "drones"),
                (13, "keyword", "malmo"), (15, "keyword", "election")]  # fmt: skip
        for chat_id, kind, value in subs:
            await subscriptions.add_subscription(db, chat_id, kind, value, value, limit=50, now=time.time())  # type: ignore[arg-type]
        async with db.write() as conn:
            stored = await articles.store_articles(conn, [story(n, NOW - 3600 * n) for n in range(1, 5)], seen=True, now=time.time())
            await counters.add(conn, NOW - 3600, {
                "alert_sent": 5, "alert_failed": 2, "edit_sent": 1,
                **counters.latencies([10, 20, 30, 40, 100]),
            })
            await counters.add(conn, NOW - 2 * 86400, {"alert_sent": 7, "articles": 9})
        one, two, three, _ = stored.new
        section, keyword = outbox.Match(("section:world",)), outbox.Match(("keyword:drones",))
        await outbox.enqueue_alerts(db, [one], {one.id: {11: section}}, now=NOW)
        await outbox.enqueue_alerts(db, [two], {two.id: {12: keyword, 14: keyword, 21: section}}, now=FAR)
        await outbox.enqueue_alerts(db, [three], {three.id: {13: section, 15: section, 22: section}}, now=FAR)
        broadcast_id = await broadcasts.create(db, admin_id=ADMIN, admin_chat_id=ADMIN, html="Later", audience="sports", now=FAR)
        await broadcasts.start(db, broadcast_id, now=FAR, expires_before=0)
    finally:
        await db.close()


def recorded_as_sent(db_path: Path, chat_id: int) -> bool:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return bool(conn.execute("SELECT 1 FROM outbox WHERE chat_id = ? AND state = 'sent'", (chat_id,)).fetchall())


async def test_stats_command(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    settings = bot_settings(tg, tmp_path)
    await seed_newsroom(settings.db_path)
    async with running_bot(settings, clock=clock):
        # The alert due now goes out: there is a send rate to estimate the backlog with. Telegram
        # has it a moment before the bot has recorded it as sent (and counted it).
        await tg.await_messages(11, 1, timeout=10)
        await tg.await_for(lambda: recorded_as_sent(settings.db_path, 11), timeout=10, interval=0.05)
        answer = await ask(tg, ADMIN, "/stats")
        text = str(answer.get("caption") or answer.get("text"))
    assert "Readers: 5 active, 2 paused, 1 inactive" in text
    assert "Sports 3" in text and "World 2" in text and "Business 0" in text
    assert "Top keywords: drones (3), election (1), malmo (1)" in text
    assert "Last 24 h: 4 articles stored, 6 alerts sent (2 failed, 0 to readers gone)" in text
    assert "1 correction sent" in text
    assert "half within 30 s" in text
    # The broadcast reaches the 3 Sports readers; paused readers' alerts are held, not queued.
    assert re.search(r"broadcasts 3 \(≈ [^)]+\); personal 2 \(≈ [^)]+\); sections 2 \(≈ [^)]+\)", text), text
    assert "2 alerts held for paused readers" in text
    assert re.search(r"Database: [0-9.,]+ (KB|MB)", text), text


async def test_stats_of_a_quiet_newsroom(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    settings = bot_settings(tg, tmp_path)
    async with running_bot(settings, clock=clock):
        answer = await ask(tg, ADMIN, "/stats")
        text = str(answer.get("caption") or answer.get("text"))
    assert "Readers: 0 active, 0 paused, 0 inactive" in text
    assert "0 articles stored, 0 alerts sent" in text and "0 corrections sent" in text
    assert "no alerts sent in the last 24 h" in text
    assert "Outbox: empty" in text


# --- /feeds, /addfeed, /removefeed ------------------------------------------------------------


async def test_feed_commands_and_removal_surviving_a_restart(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, server = sim_tg, sim_feeds
    reader = 100
    server.serve("/wire.xml", TINY_FEED)
    server.serve("/sports/rss.xml", SAMPLE_FEED.read_bytes())
    server.html("/sports/", [server.url_for("/sports/rss.xml")], title="Sports")
    feeds_file = write_feeds_file(tmp_path, [server.url_for("/wire.xml")])
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_POLL_SECONDS="1")
    async with running_bot(settings, clock=clock):
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
        assert added.startswith("Added feed #2: Sweden Herald (sample) — RSS/Atom feed, 50 items, section Sports.")
        assert server.url_for("/sports/rss.xml") in added
        listing = (await ask(tg, ADMIN, "/feeds"))["text"]
        assert f"#2 {server.url_for('/sports/rss.xml')}" in listing and "section Sports" in listing

        # Its first poll stores its 50 stories as seen: the sports reader gets no flood.
        await tg.await_for(lambda: len(server.requests("/sports/rss.xml")) >= 2, timeout=15, interval=0.05)
        await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds WHERE id = 2") == [(1,)], timeout=10, interval=0.05)
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
    async with running_bot(settings, clock=clock):
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
    parsed = _broadcast_input(_message(text, entities), SECTIONS)
    assert not isinstance(parsed, str)
    assert (parsed.audience, parsed.plain) == ("sports", "Goal! Sweden leads <3")
    assert reader_html(parsed.plain, parsed.formatted) == "<b>Goal!</b> Sweden leads &lt;3"


def test_broadcast_input_falls_back_to_plain_text_when_formatting_spans_the_command() -> None:
    text = "/broadcast Breaking & big"
    parsed = _broadcast_input(_message(text, [MessageEntity("bold", 0, len(text))]), SECTIONS)
    assert not isinstance(parsed, str)
    assert parsed.formatted is None
    assert reader_html(parsed.plain, parsed.formatted) == "Breaking &amp; big"


# --- feeds: edge cases and secrets ---------------------------------------------------------------


async def test_no_feeds_is_said_plainly(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    async with running_bot(bot_settings(tg, tmp_path), clock=clock):
        listing = (await ask(tg, ADMIN, "/feeds"))["text"]
        assert listing.startswith("No feeds are configured: nothing is polled.")
        assert "/addfeed" in listing
        for number in ("99999999999999999999999", "-1", "0x10", "#"):
            answer = (await ask(tg, ADMIN, f"/removefeed {number}"))["text"]
            assert answer.startswith("Usage: /removefeed"), (number, answer)


async def test_a_10_kb_feed_url_breaks_nothing(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, server = sim_tg, sim_feeds
    path = "/" + "long-" * 2048 + ".xml"
    server.serve(path, TINY_FEED)
    long_url = server.url_for(path)
    assert len(long_url) > 10_000
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [long_url])))
    async with running_bot(settings, clock=clock):
        listing = await ask(tg, ADMIN, "/feeds")
        assert listing["text"].startswith("Feeds: 1 polled") and len(listing["text"]) < 1000
        added = await ask(tg, ADMIN, f"/addfeed {long_url}?again=1 sports")
        assert added["text"].startswith("Added feed #2: Tiny wire — RSS/Atom feed, 1 item, section Sports.")
        assert len(added["text"]) < 1000
        listing = await ask(tg, ADMIN, "/feeds")
        assert "#1 " in listing["text"] and "#2 " in listing["text"] and len(listing["text"]) < 2000
        removed = await ask(tg, ADMIN, "/removefeed 2")
        assert removed["text"].startswith("Removed feed #2 ") and len(removed["text"]) < 1000
    assert all(c.ok for c in tg.calls("sendMessage"))
    assert rows(settings.db_path, "SELECT length(url) > 10000 FROM feeds ORDER BY id") == [(1,), (1,)]


async def test_feed_credentials_and_secrets_never_appear_in_replies(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, server = sim_tg, sim_feeds
    server.serve("/private.xml", TINY_FEED)
    server.require_auth("/private.xml", "newsroom", "hunter2pass")
    server.serve("/keyed.xml", TINY_FEED)
    keyed = server.url_for("/keyed.xml") + "?api_key=sekritvalue&lang=en"
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [keyed])))
    private = server.url_for("/private.xml").replace("http://", "http://newsroom:hunter2pass@")
    async with running_bot(settings, clock=clock):
        refused = await ask(tg, ADMIN, f"/addfeed {private.replace('hunter2pass', 'wrongpass99')} world")
        assert "Could not add that feed" in refused["text"]
        added = await ask(tg, ADMIN, f"/addfeed {private} world")
        assert added["text"].startswith("Added feed #2: Tiny wire — RSS/Atom feed, 1 item, section World.")
        listing = await ask(tg, ADMIN, "/feeds")
        assert "lang=en" in listing["text"]
        removed = await ask(tg, ADMIN, "/removefeed 2")
        assert removed["text"].startswith("Removed feed #2")
        for message in tg.sent_messages(ADMIN):
            for secret in ("hunter2pass", "wrongpass99", "sekritvalue"):
                assert secret not in message["text"], message["text"]
    # The stored URL keeps the credentials, and the fetch used them.
    assert rows(settings.db_path, "SELECT url FROM feeds WHERE id = 2") == [(private,)]
    statuses = [r.status for r in server.requests("/private.xml")]
    assert 401 in statuses and 200 in statuses


# --- reader input that is odd, seen from the newsroom ---------------------------------------------


async def test_negative_latest_is_a_bad_number_and_bidi_controls_are_removed(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    settings = bot_settings(tg, tmp_path)
    feed = TINY_FEED.replace(b"One story", "Election \u202eresults\u202c are \u2066in\u2069".encode())
    parsed = parse_feed(feed, url="https://wire.example/rss", rule=SAMPLE_RULE, fetched_at=NOW)
    db = await Database.open(settings.db_path)
    try:
        async with db.write() as conn:
            await articles.store_articles(conn, parsed.articles, seen=True, now=time.time())
    finally:
        await db.close()
    async with running_bot(settings, clock=clock):
        for command in ("/latest -1", "/latest sports -1", "/latest +0"):
            answer = (await ask(tg, 100, command))["text"]
            assert answer.startswith("Give a number from 1 to 20."), (command, answer)
            assert "Unknown section" not in answer
        latest = (await ask(tg, 100, "/latest"))["text"]
        assert "Election results are in" in latest
        echoed = (await ask(tg, 100, "/search \u202eelection\u202c"))["text"]
        assert echoed.startswith("Search: election")
        unknown = (await ask(tg, 100, "/latest \u202emoon"))["text"]
        assert "Unknown section “moon”" in unknown
        texts = [m["text"] for m in tg.sent_messages(100)]
    bidi = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")
    assert not any(bidi.search(t) for t in texts)
