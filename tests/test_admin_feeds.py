"""The running bot's feeds as admins see them: a failing feed in /feeds, its Try now button,
/addfeed on a feed already polled, and feed URLs with secrets in replies and logs.

On simulated time, with the fakes on the test's loop (the feeds' intervals are long, and
every fetch is one the test asks for).
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.commands.admin import BUTTON_REFUSAL
from storage import broadcasts
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot, write_feeds_file
from tests.simtime import SimClock

ADMIN = 9001
STRANGER = 555
READER = 100


def feed_xml(*stories: int) -> bytes:
    items = "".join(
        f"<item><title>Wire story {n}</title><link>https://wire.example/{n}</link><guid>wire-{n}</guid>"
        '<category domain="section">World</category></item>'
        for n in stories
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Tiny wire</title>{items}</channel></rss>'.encode()



def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def keyboard(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


async def test_a_failing_feed_in_feeds_and_its_try_now_button(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, server = sim_tg, sim_feeds
    server.status("/wire.xml", 500)
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [server.url_for("/wire.xml")])),
        NEWSBOT_POLL_SECONDS="600",
    )
    async with running_bot(settings, clock=clock):
        await tg.await_for(lambda: rows(settings.db_path, "SELECT error_count FROM feeds") == [(1,)], timeout=10, interval=0.05)
        listing = await ask(tg, ADMIN, "/feeds")
        text = str(listing["text"])
        assert text.startswith("Feeds: 1 polled, 1 failing"), text
        assert "⚠ failing since " in text and "1 try in a row; last error: fetch: HTTP 500 from" in text
        assert "next try in 10 min" in text
        assert keyboard(listing) == [("Try #1 now", "feed:try:1")]

        # Not for readers: refused, answered, nothing fetched.
        refused = await press(tg, ADMIN, int(listing["message_id"]), "feed:try:1", user_id=STRANGER)
        assert refused["text"] == BUTTON_REFUSAL and refused.get("show_alert") is True
        for data in ("feed:try:x", "feed:try:1234567890123456789", "feed:go:1"):
            odd = await press(tg, ADMIN, int(listing["message_id"]), data)
            assert odd["text"] == "This button is no longer valid.", data
        assert len(server.requests("/wire.xml")) == 1

        server.clear("/wire.xml")
        server.serve("/wire.xml", feed_xml(1))
        answer = await press(tg, ADMIN, int(listing["message_id"]), "feed:try:1")
        assert answer["text"] == "Fetching feed #1 now. /feeds shows how it went."
        await tg.await_for(
            lambda: rows(settings.db_path, "SELECT error_count, primed FROM feeds") == [(0, 1)], timeout=10,
            interval=0.05,
        )
        assert len(server.requests("/wire.xml")) == 2
        healthy = await ask(tg, ADMIN, "/feeds")
        assert str(healthy["text"]).startswith("Feeds: 1 polled, 0 failing")
        assert "last error (since recovered): fetch: HTTP 500" in str(healthy["text"])
        assert keyboard(healthy) == []

        await ask(tg, ADMIN, "/removefeed 1")
        gone = await press(tg, ADMIN, int(listing["message_id"]), "feed:try:1")
        assert gone["text"] == "Feed #1 is not polled (removed?). /feeds lists the feeds."
    assert len(server.requests("/wire.xml")) == 2


async def test_addfeed_on_a_feed_already_polled_changes_nothing(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """It used to make the feed's next poll a priming one: the stories published next were
    stored as seen and never alerted. Now it says the feed is polled and leaves it be; a
    removed feed added back still primes (what it published while removed is history)."""
    tg, server = sim_tg, sim_feeds
    server.serve("/wire.xml", feed_xml(1))
    url = server.url_for("/wire.xml")
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [url])), NEWSBOT_POLL_SECONDS="600")
    async with running_bot(settings, clock=clock) as runtime:
        await ask(tg, READER, "/start")
        tg.callback_query(READER, tg.sent_messages(READER)[0]["message_id"], "sec:world")
        await tg.await_calls("answerCallbackQuery", 1, timeout=10)
        await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds") == [(1,)], timeout=10, interval=0.05)
        before = rows(settings.db_path, "SELECT url, rule, primed, etag, next_poll_at FROM feeds")

        answer = str((await ask(tg, ADMIN, f"/addfeed {url} sports"))["text"])
        assert answer == f"Feed #1 {url} is already polled (section from the category (domain “section”), else World). Nothing was changed."
        assert rows(settings.db_path, "SELECT url, rule, primed, etag, next_poll_at FROM feeds") == before
        assert len(server.requests("/wire.xml")) == 1  # not even fetched

        # Its next story is news: alerted.
        server.serve("/wire.xml", feed_xml(1, 2))
        assert runtime.services.feed_schedule.try_now(1)
        [alert] = (await tg.await_messages(READER, 2, timeout=10))[1:]
        assert "Wire story 2" in str(alert["text"])

        await ask(tg, ADMIN, "/removefeed 1")
        server.serve("/wire.xml", feed_xml(1, 2, 3))
        back = str((await ask(tg, ADMIN, f"/addfeed {url} world"))["text"])
        assert back.startswith("Added back feed #1: Tiny wire — RSS/Atom feed, 3 items, section World.")
        await tg.await_for(lambda: rows(settings.db_path, "SELECT primed FROM feeds") == [(1,)], timeout=10, interval=0.05)
        assert rows(settings.db_path, "SELECT count(*) FROM articles WHERE id = 'wire-3'") == [(1,)]
    assert len(tg.sent_messages(READER)) == 2  # story 3 came while the feed was removed: no alert


async def test_secrets_in_feed_urls_show_nowhere(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key under any parameter name (``?pw=``, ``?k=``) is hidden in /feeds, in /addfeed's
    answers and errors, and in the log; parameters named safe (``lang``) are shown."""
    tg, server = sim_tg, sim_feeds
    caplog.set_level(logging.DEBUG)
    server.serve("/keyed.xml", feed_xml(1))
    server.status("/broken.xml", 500)
    keyed = server.url_for("/keyed.xml") + "?pw=opensesame9&lang=en"
    broken = server.url_for("/broken.xml") + "?k=zx81spectrum#sig=qwertyuiop"
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [keyed, broken])))
    async with running_bot(settings, clock=clock):
        await tg.await_for(lambda: rows(settings.db_path, "SELECT count(*) FROM feeds WHERE error_count > 0") == [(1,)], timeout=10, interval=0.05)
        listing = str((await ask(tg, ADMIN, "/feeds"))["text"])
        assert "?pw=***&lang=en" in listing and "?k=***#sig=***" in listing
        refused = str((await ask(tg, ADMIN, f"/addfeed {server.url_for('/missing.xml')}?token2=hunter2hunter world"))["text"])
        assert "Could not add that feed" in refused and "token2=***" in refused
        again = str((await ask(tg, ADMIN, f"/addfeed {keyed} world"))["text"])
        assert "is already polled" in again and "pw=***" in again
    # The bot's own log, at every level (bot.logs keeps httpx's and aiosqlite's chatter out).
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("bot", "storage", "newsbot")]
    said = [str(m["text"]) for m in tg.sent_messages(ADMIN)] + ours
    for secret in ("opensesame9", "zx81spectrum", "qwertyuiop", "hunter2hunter"):
        assert not [line for line in said if secret in line], secret


async def test_times_shown_to_an_admin_are_in_the_admins_own_zone(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    """An admin who chose Tokyo reads /broadcasts and /feeds in Tokyo time, not the newsroom's."""
    tg, server = sim_tg, sim_feeds
    clock.step(datetime(2027, 1, 14, 7, 0, tzinfo=UTC).timestamp() - clock.time())
    server.status("/wire.xml", 500)
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [server.url_for("/wire.xml")])),
        NEWSBOT_POLL_SECONDS="600", NEWSBOT_TIMEZONE="Europe/Stockholm",
    )
    async with running_bot(settings, clock=clock) as runtime:
        db = runtime.services.db
        broadcast_id = await broadcasts.create(db, admin_id=ADMIN, admin_chat_id=ADMIN, html="Roads closed", audience=None, now=clock.time())
        await broadcasts.start(db, broadcast_id, now=clock.time(), expires_before=0)
        await tg.await_for(lambda: rows(settings.db_path, "SELECT error_count FROM feeds") == [(1,)], timeout=10, interval=0.05)
        before = str((await ask(tg, ADMIN, "/broadcasts"))["text"])
        assert "14 Jan 2027 08:00 CET" in before  # the newsroom's zone while the admin has none
        assert "Time zone: Asia/Tokyo" in str((await ask(tg, ADMIN, "/timezone Asia/Tokyo"))["text"])
        listing = str((await ask(tg, ADMIN, "/broadcasts"))["text"])
        feeds = str((await ask(tg, ADMIN, "/feeds"))["text"])
    assert f"#{broadcast_id} · 14 Jan 2027 16:00 JST" in listing, listing
    assert "⚠ failing since 14 Jan 2027 16:00 JST" in feeds, feeds
