"""A reader's journey end to end: getUpdates → bot → sendMessage/editMessage/answerCallbackQuery,
all through the fake Bot API server on loopback, a loopback feed server and a real SQLite file."""

from __future__ import annotations

import sqlite3
from email.utils import formatdate
from pathlib import Path
from typing import Any

from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot, write_feeds_file
from tests.simtime import SimClock

READER = 100
OTHER = 101
ADMIN = 9001


def new_story(slug: str, title: str, published_at: float) -> str:
    """A World story about drones, dated `published_at` (alerts are only sent for recent ones)."""
    return f"""<item><title>{title}</title>
<link>https://swedenherald.com/article/{slug}</link>
<guid isPermaLink="false">sh-{slug}</guid><pubDate>{formatdate(published_at)}</pubDate>
<category domain="section">World</category><category>Ukraine</category><category>Drones</category>
<description>Ukraine says Russia sent dozens of drones overnight.</description></item>"""


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


def rows(db_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


async def broadcast(tg: FakeTelegram, text: str) -> int:
    """The admin writes a broadcast and presses Send; returns its id."""
    tg.user_message(ADMIN, f"/broadcast {text}")
    # The admin's chat also gets progress reports of earlier broadcasts: find the preview.
    preview = await tg.await_for(
        lambda: next((m for m in tg.sent_messages(ADMIN) if m["text"].startswith("Preview") and text in m["text"]), None),
        timeout=10,
    )
    send = next(data for label, data in buttons(preview) if data.startswith("bc:send:"))
    answer = await press(tg, ADMIN, preview["message_id"], send)
    assert answer["text"].startswith("Sending to")
    return int(send.rsplit(":", 1)[1])


async def test_reader_journey(clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path) -> None:
    tg, feeds = sim_tg, sim_feeds
    sample = SAMPLE_FEED.read_text()
    feeds.serve("/rss.xml", sample.encode())
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [feeds.url_for("/rss.xml")])),
        NEWSBOT_POLL_SECONDS="1",
    )
    db_path = Path(settings.db_path)

    def publish(*items: str) -> None:
        feeds.serve("/rss.xml", sample.replace("<item>", "\n".join(items) + "\n<item>", 1).encode())

    async with running_bot(settings, clock=clock):
        # The first poll stores the feed's 50 stories as history: no alerts.
        await tg.await_for(lambda: rows(db_path, "SELECT primed FROM feeds") == [(1,)], timeout=10, interval=0.05)

        welcome = await ask(tg, READER, "/start")
        assert "Welcome" in welcome["text"]
        assert ("Sports", "sec:sports") in buttons(welcome)

        await press(tg, READER, welcome["message_id"], "sec:sports")
        await press(tg, READER, welcome["message_id"], "sec:world")
        edited = tg.message(READER, welcome["message_id"])
        assert edited is not None
        labels = [text for text, _ in buttons(edited)]
        assert "✅ Sports" in labels and "✅ World" in labels and "Living" in labels

        followed = await ask(tg, READER, "/follow drones")
        assert "Following drones" in followed["text"]

        latest = await ask(tg, READER, "/latest sports")
        assert "Latest in Sports" in latest["text"]
        assert "Sweden beats Norway in the handball qualifier" in latest["text"]
        assert "Huthi" not in latest["text"]

        found = await ask(tg, READER, "/search ukraine")
        assert "Attack on Ukraine after proposal for ceasefire" in found["text"]

        # A new story on the feed → one alert naming both reasons, with Related and Mute.
        before = len(tg.sent_messages(READER))
        first = new_story("drones-kyiv", "Russia launches new drones at Kyiv", clock.time() - 60)
        publish(first)
        messages = await tg.await_messages(READER, before + 1, timeout=15)
        alert = messages[before]
        assert "Russia launches new drones at Kyiv" in alert["text"]
        assert "because you follow" in alert["text"] and "World" in alert["text"] and "drones" in alert["text"]
        alert_buttons = buttons(alert)
        assert alert_buttons[0][0] == "Related" and alert_buttons[0][1].startswith("rel:")
        assert any(text.startswith("Mute") for text, _ in alert_buttons)

        before = len(tg.sent_messages(READER))
        await press(tg, READER, alert["message_id"], alert_buttons[0][1])
        related = (await tg.await_messages(READER, before + 1))[before]
        assert "Related to: Russia launches new drones at Kyiv" in related["text"]
        assert "Ukraine" in related["text"]

        # Paused: the next story is kept, and /resume brings it as one message.
        assert "Alerts paused" in (await ask(tg, READER, "/pause"))["text"]
        publish(new_story("drones-odesa", "Drones strike the port of Odesa", clock.time() - 30), first)
        held_sql = "SELECT count(*) FROM outbox WHERE chat_id = ? AND state = 'held'"
        await tg.await_for(lambda: rows(db_path, held_sql, READER) == [(1,)], timeout=15, interval=0.05)
        before = len(tg.sent_messages(READER))
        resumed = await ask(tg, READER, "/resume")
        assert "While you were away: 1 story" in resumed["text"]
        away = (await tg.await_messages(READER, before + 2, timeout=10))[before + 1]
        assert away["text"].startswith("While you were away: 1 story")
        assert "Drones strike the port of Odesa" in away["text"]

        subs = await ask(tg, READER, "/mysubs")
        assert "Sections: World, Sports" in subs["text"] or "Sections: Sports, World" in subs["text"]
        assert "Keywords: drones" in subs["text"]
        remove = next(data for text, data in buttons(subs) if text == "✖ drones")
        answer = await press(tg, READER, subs["message_id"], remove)
        assert answer.get("text") == "Removed drones"
        updated = tg.message(READER, subs["message_id"])
        assert updated is not None and "drones" not in updated["text"]

        bye = await ask(tg, READER, "/stop")
        assert "deleted" in bye["text"]
        # Reading afterwards works, and makes nobody a reader again.
        assert "Latest news" in (await ask(tg, READER, "/latest"))["text"]
        assert rows(db_path, "SELECT count(*) FROM chats WHERE id = ?", READER) == [(0,)]

        # A broadcast reaches the readers there are, not the one who stopped.
        await ask(tg, OTHER, "/start")
        first_id = await broadcast(tg, "First notice")
        await tg.await_for(lambda: any("First notice" in m["text"] for m in tg.sent_messages(OTHER)), timeout=10)
        assert rows(db_path, "SELECT chat_id FROM outbox WHERE broadcast_id = ?", first_id) == [(OTHER,)]

        # /start makes the reader one again: the next broadcast reaches them.
        await ask(tg, READER, "/start")
        await broadcast(tg, "Second notice")
        await tg.await_for(lambda: any("Second notice" in m["text"] for m in tg.sent_messages(READER)), timeout=10)
        assert not any("First notice" in m["text"] for m in tg.sent_messages(READER))

        # Every reply the bot sent was accepted by the (strict) fake: valid HTML, ≤ 4096.
        refused = [c for c in tg.calls() if not c.ok and c.method != "getUpdates"]
        assert refused == []

    assert rows(db_path, "SELECT count(*) FROM subscriptions WHERE chat_id = ?", READER) == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM articles") == [(52,)]
