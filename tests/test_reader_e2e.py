"""A reader's journey end to end: getUpdates → bot → sendMessage/editMessage/answerCallbackQuery,
all through the fake Bot API server on loopback, a loopback feed server and a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot, write_feeds_file

READER = 100

NEW_STORY = """<item><title>Russia launches new drones at Kyiv</title>
<link>https://swedenherald.com/article/russia-launches-new-drones-at-kyiv</link>
<guid isPermaLink="false">sh-drones-new</guid><pubDate>Thu, 13 Mar 2025 08:00:00 +0000</pubDate>
<category domain="section">World</category><category>Ukraine</category><category>Drones</category>
<description>Ukraine says Russia sent dozens of drones overnight.</description></item>"""


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


async def test_reader_journey(tg: FakeTelegram, tmp_path: Path) -> None:
    with FeedServer() as feeds:
        sample = SAMPLE_FEED.read_text()
        feeds.serve("/rss.xml", sample.encode())
        settings = bot_settings(
            tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [feeds.url_for("/rss.xml")])),
            NEWSBOT_POLL_SECONDS="1",
        )
        async with running_bot(settings):
            # The first poll stores the feed's 50 stories as history: no alerts.
            await tg.await_for(lambda: len(feeds.requests("/rss.xml")) >= 1, timeout=10)

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
            feeds.serve("/rss.xml", sample.replace("<item>", NEW_STORY + "\n<item>", 1).encode())
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

            # Every reply the bot sent was accepted by the (strict) fake: valid HTML, ≤ 4096.
            refused = [c for c in tg.calls() if not c.ok and c.method != "getUpdates"]
            assert refused == []

    with sqlite3.connect(tmp_path / "newsbot.db") as conn:
        assert conn.execute("SELECT count(*) FROM chats WHERE id = ?", (READER,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM subscriptions WHERE chat_id = ?", (READER,)).fetchone()[0] == 0
        sent = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
    assert sent == 51
