"""What readers must be able to trust in their first hour: /stop means stop, figures stay
true, /pause holds and /resume catches up, alerts come in order and can be followed up,
nothing goes unanswered, times are local, buttons fit, edits do not re-run commands.

Handlers are driven through `application.process_update` (tests.test_reader_handlers'
Driver) while the real dispatcher sends alerts to the fake Bot API server; the feed burst
goes through the loopback feed server and the whole bot.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from bot.commands.choices import COMBINE_RULE
from storage import articles, broadcasts, chats, words
from storage.articles import STOPWORDS
from storage.models import Article
from tests.conftest import SAMPLE_FEED
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, press, running_bot, store_sample, write_feeds_file
from tests.simtime import SimClock
from tests.test_reader_handlers import READER, Driver, buttons, driven_bot, html_of

ADMIN = 9001
OTHER = 4343
STRANGER = 4444
GROUP = -1009876543210


@pytest.fixture
async def bot(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, sim_tg, tmp_path) as driver:
        yield driver


def fresh(
    bot: Driver, title: str, *, ago: float = 60.0, section: str = "world", summary: str = "", tags: tuple[str, ...] = ()
) -> Article:
    """A story published `ago` seconds ago (by the bot's clock)."""
    at = bot.services.clock.time() - ago
    return Article(
        id=f"fresh-{title}", url="https://news.example/" + re.sub(r"\W+", "-", title), title=title,
        summary=summary, section=section, tags=tags, published_at=at, fetched_at=at,
    )


def rows(bot: Driver, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(bot.services.settings.db_path) as conn:
        return conn.execute(sql, params).fetchall()


async def settled(bot: Driver) -> None:
    """Every queued message sent and marked so (the mark follows Telegram's answer)."""
    unfinished = "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"
    await bot.tg.await_for(lambda: rows(bot, unfinished) == [(0,)], timeout=10, interval=0.05)


def texts(tg: FakeTelegram, chat_id: int) -> list[str]:
    return [str(m["text"]) for m in tg.sent_messages(chat_id)]


async def message_with(tg: FakeTelegram, chat_id: int, needle: str) -> dict[str, Any]:
    """The first message to `chat_id` containing `needle`, waited for."""
    found = await tg.await_for(
        lambda: next((m for m in tg.sent_messages(chat_id) if needle in str(m["text"])), None), timeout=10
    )
    assert found is not None
    return found


async def broadcast(bot: Driver, text: str) -> int:
    """The admin writes a broadcast and presses Send; returns how many chats it goes to."""
    preview = await bot.reply(ADMIN, f"/broadcast {text}")
    send = next(data for _, data in buttons(preview) if data.startswith("bc:send:"))
    answer = await bot.press(ADMIN, preview["message_id"], send)
    match = re.match(r"Sending to (\d+) chats?", answer["text"])
    assert match is not None, answer
    return int(match.group(1))


def keyboard_rows(tg: FakeTelegram) -> list[list[dict[str, Any]]]:
    """Every inline keyboard row the bot sent or edited in."""
    found = []
    for call in tg.calls():
        if call.method in ("sendMessage", "editMessageText", "editMessageReplyMarkup"):
            markup = call.params.get("reply_markup") or {}
            found += markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    return found


# --- 1. /stop means stop ---------------------------------------------------------------------


async def test_stop_means_no_alert_no_broadcast_until_start(bot: Driver) -> None:
    tg = bot.tg
    for chat_id in (READER, OTHER):
        await bot.reply(chat_id, "/start world")
        await bot.reply(chat_id, "/follow drones")
    await bot.reply(READER, "/stop")
    assert (await chats.chat_counts(bot.services.db))["active"] == 2 - 1

    await bot.publish(fresh(bot, "Drones over Gotland"))
    await message_with(tg, OTHER, "Drones over Gotland")
    assert await broadcast(bot, "Storm warning for tonight") == 1
    await message_with(tg, OTHER, "Storm warning")
    assert rows(bot, "SELECT count(*) FROM outbox WHERE chat_id = ?", READER) == [(0,)]
    assert not any("Drones over Gotland" in t or "Storm warning" in t for t in texts(tg, READER))

    # A deep link makes the chat a reader again: broadcasts reach it, its new section too.
    welcome = await bot.reply(READER, "/start sports")
    assert "You now get alerts from Sports" in welcome["text"]
    assert await broadcast(bot, "Roads are open again") == 2
    await message_with(tg, READER, "Roads are open again")
    await bot.publish(fresh(bot, "Derby ends in a draw", section="sports"))
    await message_with(tg, READER, "Derby ends in a draw")


async def test_subscribing_after_stop_makes_a_reader_again(bot: Driver) -> None:
    await bot.reply(READER, "/start")
    await bot.reply(READER, "/stop")
    assert await broadcasts.audience_size(bot.services.db, None) == 0
    await bot.reply(READER, "/follow drones")
    assert await broadcasts.audience_size(bot.services.db, None) == 1
    await bot.publish(fresh(bot, "Drones seen over Malmö"))
    await message_with(bot.tg, READER, "Drones seen over Malmö")


async def test_reading_registers_nobody(bot: Driver) -> None:
    """A chat that only ever read is nobody's reader: no row in the audience, no broadcast."""
    await bot.reply(OTHER, "/start")  # someone to broadcast to
    for text in ("/latest", "/latest sports 3", "/search ukraine", "/related drones", "/help",
                 "/sections", "/mysubs", "/settings", "ukraine ceasefire"):
        await bot.reply(STRANGER, text)
    listing = tg_last(bot, STRANGER)
    bot.calm()
    related = next(data for label, data in buttons(listing) if label == "Related 1")
    await bot.press(STRANGER, listing["message_id"], related)
    settings = await bot.reply(STRANGER, "/settings")
    await bot.press(STRANGER, settings["message_id"], "set:link_previews")
    chat = await chats.get_chat(bot.services.db, STRANGER)
    assert chat is None or not chat.active
    assert (await chats.chat_counts(bot.services.db))["active"] == 1
    assert await broadcast(bot, "Only for readers") == 1
    await message_with(bot.tg, OTHER, "Only for readers")
    assert not any("Only for readers" in t for t in texts(bot.tg, STRANGER))


def tg_last(bot: Driver, chat_id: int) -> dict[str, Any]:
    return bot.tg.sent_messages(chat_id)[-1]


# --- 2. figures stay true when readers leave ---------------------------------------------------


async def test_stats_keep_what_was_sent_after_stop(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    await bot.publish(fresh(bot, "Drones over the Baltic", ago=10))
    await message_with(bot.tg, READER, "Drones over the Baltic")
    await settled(bot)
    before = str((await bot.reply(ADMIN, "/stats"))["caption"])
    assert "1 alert sent" in before and "Readers: 1 active" in before
    assert "half within 30 s" in before

    await bot.reply(READER, "/stop")
    after = str((await bot.reply(ADMIN, "/stats"))["caption"])
    assert "Readers: 0 active" in after
    assert "1 alert sent" in after and "half within 30 s" in after

    await bot.reply(OTHER, "/follow nato")
    await bot.publish(fresh(bot, "NATO meets in Brussels", ago=10))
    await message_with(bot.tg, OTHER, "NATO meets in Brussels")
    await settled(bot)
    assert "2 alerts sent" in str((await bot.reply(ADMIN, "/stats"))["caption"])


# --- 3. /pause holds, /resume catches up -------------------------------------------------------


async def test_resume_sends_what_was_held_as_one_message(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    assert "not paused" in (await bot.reply(READER, "/resume"))["text"]
    await bot.reply(READER, "/pause")
    nothing = await bot.reply(READER, "/resume")
    assert "Nothing came for you while you were away" in nothing["text"]

    await bot.reply(READER, "/pause")
    await bot.publish(fresh(bot, "Drones over Kiruna", ago=300), fresh(bot, "Drones over Luleå", ago=200),
                      fresh(bot, "Drones over Umeå", ago=100), fresh(bot, "Drones long ago", ago=400))
    await bot.tg.await_for(lambda: rows(bot, "SELECT count(*) FROM outbox WHERE state = 'held'") == [(4,)], timeout=10, interval=0.05)
    # One of them was held more than 48 hours ago: it is left out.
    rows(bot, "UPDATE outbox SET created_at = created_at - 49 * 3600 WHERE article_id = 'fresh-Drones long ago'")
    sent = len(bot.tg.sent_messages(READER))
    resumed = await bot.reply(READER, "/resume")
    assert "While you were away: 3 stories" in resumed["text"]
    assert "1 older alert than 48 hours left out" in resumed["text"]
    digest = await bot.tg.await_for(lambda: bot.tg.sent_messages(READER)[sent + 1:] or None, timeout=10)
    assert len(digest) == 1  # one message, not three
    assert digest[0]["text"].startswith("While you were away: 3 stories")
    assert [t for t in ("Kiruna", "Luleå", "Umeå", "long ago") if t in digest[0]["text"]] == ["Kiruna", "Luleå", "Umeå"]


# --- 4. publication order ----------------------------------------------------------------------


def burst_item(n: int, published_at: float) -> str:
    return f"""<item><title>Burst story number {n}</title>
<link>https://swedenherald.com/article/burst-{n}</link><guid isPermaLink="false">burst-{n}</guid>
<pubDate>{formatdate(published_at)}</pubDate><category domain="section">World</category>
<description>Story {n} of a burst.</description></item>"""


async def test_a_burst_arrives_in_publication_order(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    """Five new stories in one poll, in scrambled order: a reader who combines bursts gets
    one message listing them oldest first; one who does not gets five, oldest first."""
    tg, server = sim_tg, sim_feeds
    combining, separate = 201, 202
    sample = SAMPLE_FEED.read_text()
    server.serve("/rss.xml", sample.encode())
    settings = bot_settings(
        tg, tmp_path, NEWSBOT_FEEDS=str(write_feeds_file(tmp_path, [server.url_for("/rss.xml")])),
        NEWSBOT_POLL_SECONDS="1",
    )
    async with running_bot(settings, clock=clock):
        for chat_id in (combining, separate):
            await ask(tg, chat_id, "/start world")
        shown = await ask(tg, separate, "/settings")
        await press(tg, separate, shown["message_id"], "set:combine")
        with sqlite3.connect(settings.db_path) as conn:
            await tg.await_for(
                lambda: conn.execute("SELECT primed FROM feeds").fetchall() == [(1,)], timeout=10, interval=0.05
            )

        now = clock.time()
        order = [3, 1, 5, 2, 4]  # story n was published n minutes ago; the feed lists them scrambled
        burst = "\n".join(burst_item(n, now - 60 * n) for n in order)
        server.serve("/rss.xml", sample.replace("<item>", burst + "\n<item>", 1).encode())
        (combined,) = (await tg.await_messages(combining, 2, timeout=15))[1:]
        singles = (await tg.await_messages(separate, 7, timeout=15))[2:]

    assert combined["text"].startswith("5 new stories for you")
    listed = [int(n) for n in re.findall(r"Burst story number (\d)", combined["text"])]
    assert listed == [5, 4, 3, 2, 1]
    assert [int(re.findall(r"number (\d)", m["text"])[0]) for m in singles] == [5, 4, 3, 2, 1]


async def test_held_alerts_come_oldest_first_whatever_order_they_were_matched(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    await bot.reply(READER, "/pause")
    # Matched in two polls, the newer story first: the queue's order is not the news' order.
    await bot.publish(fresh(bot, "Drones newer story", ago=60))
    await bot.publish(fresh(bot, "Drones older story", ago=600))
    await bot.tg.await_for(lambda: rows(bot, "SELECT count(*) FROM outbox WHERE state = 'held'") == [(2,)], timeout=10, interval=0.05)
    await bot.reply(READER, "/resume")
    away = await message_with(bot.tg, READER, "While you were away: 2 stories\n")
    assert away["text"].index("older story") < away["text"].index("newer story")


# --- 5. a combined message, 9. buttons that fit --------------------------------------------------


async def test_combined_message_says_why_once_and_has_buttons(bot: Driver) -> None:
    await bot.reply(READER, "/start world")
    await bot.reply(READER, "/follow drones")
    stories = [fresh(bot, "Budget vote in parliament", ago=500), fresh(bot, "Drones over the arena", ago=400, section="sports"),
               fresh(bot, "Drones and jets over Riga", ago=300), fresh(bot, "Floods in the south", ago=200),
               fresh(bot, "Election date is set", ago=100)]
    stored = await bot.publish(*stories)
    combined = await message_with(bot.tg, READER, "5 new stories for you")
    text = combined["text"]
    assert text.casefold().count("because you follow") == 1
    assert text.rstrip().endswith("Because you follow World and drones.")
    labels = [label for label, _ in buttons(combined)]
    assert labels == ["Related 1", "Related 2", "Related 3", "Related 4", "Related 5", "Mute World", "Mute drones"]
    by_rowid = {f"rel:{a.rowid}" for a in stored}
    assert {data for label, data in buttons(combined) if label.startswith("Related")} == by_rowid
    assert all(len(row) <= 3 for row in combined["reply_markup"]["inline_keyboard"])

    answer = await bot.press(READER, combined["message_id"], next(d for label, d in buttons(combined) if label == "Mute drones"))
    assert answer["text"].startswith("Muted drones")
    assert await bot.keywords(READER) == set()

    help_text = (await bot.reply(READER, "/help"))["text"]
    settings_text = (await bot.reply(READER, "/settings"))["text"]
    assert COMBINE_RULE in help_text and COMBINE_RULE in settings_text


async def test_a_single_reason_alert_names_it_on_its_mute_button(bot: Driver) -> None:
    await bot.reply(READER, "/start sports")
    await bot.publish(fresh(bot, "Sweden wins the relay", section="sports"))
    alert = await message_with(bot.tg, READER, "Sweden wins the relay")
    assert [label for label, _ in buttons(alert)] == ["Related", "Mute Sports"]
    assert "because you follow Sports" in alert["text"]


async def test_every_keyboard_fits_a_phone_and_admin_buttons_refuse_readers(bot: Driver) -> None:
    await bot.reply(READER, "/start world")
    bot.calm()
    await bot.reply(READER, "/follow " + ", ".join(f"word{i}" for i in range(8)))
    await bot.reply(READER, "/mysubs")
    await bot.reply(READER, "/settings")
    await bot.reply(READER, "/latest 20")
    await bot.reply(READER, "/search ukraine")
    await bot.reply(READER, "/sections")
    await bot.publish(*(fresh(bot, f"word{i} story", ago=100 - i) for i in range(8)))
    await message_with(bot.tg, READER, "8 new stories for you")
    assert keyboard_rows(bot.tg) and all(1 <= len(row) <= 3 for row in keyboard_rows(bot.tg))

    preview = await bot.reply(ADMIN, "/broadcast Hello readers")
    send = next(data for _, data in buttons(preview) if data.startswith("bc:send:"))
    # A reader pressing it (a forwarded preview, or forged data) is told it is not for them.
    mine = await bot.reply(READER, "/help")
    answer = await bot.press(READER, mine["message_id"], send)
    assert answer["text"] == "Sorry, that button is for the newsroom's admins." and answer["show_alert"] is True
    record = await broadcasts.get(bot.services.db, int(send.rsplit(":", 1)[1]))
    assert record is not None and record.state == "preview"


# --- 6. every story can be followed up -----------------------------------------------------------


def related_labels(message: dict[str, Any]) -> list[str]:
    return [label for label, _ in buttons(message) if label.startswith("Related")]


def significant(article: Article) -> set[str]:
    found = {words.stem(w) for w in words.tokens(f"{article.title} {article.summary}") if w not in STOPWORDS}
    return found | {t.casefold() for t in article.tags}


async def test_lists_carry_numbered_related_buttons_that_follow_up(bot: Driver) -> None:
    latest = await bot.reply(READER, "/latest 5")
    assert related_labels(latest) == [f"Related {n}" for n in range(1, 6)]
    for command in ("/search ukraine", "/related drones russia", "ukraine"):
        found = await bot.reply(READER, command)
        assert related_labels(found) and related_labels(found)[0] == "Related 1", command

    # "Related 2" is about the second story listed.
    second = re.findall(r'<a href="[^"]*">(.*?)</a>', html_of(latest, bot.tg))[1]
    data = next(d for label, d in buttons(latest) if label == "Related 2")
    await bot.press(READER, latest["message_id"], data)
    answer = bot.tg.sent_messages(READER)[-1]
    assert answer["text"].startswith("Related to: ")
    story = await articles.get_article_by_rowid(bot.services.db, int(data.split(":")[1]))
    assert story is not None and answer["text"].startswith(f"Related to: {story.title}")
    assert second.replace("&amp;", "&").replace("&quot;", '"').replace("&#x27;", "'") == story.title
    # Each related story shares a significant word or a tag with it.
    for rowid in (int(d.split(":")[1]) for label, d in buttons(answer) if label.startswith("Related")):
        other = await articles.get_article_by_rowid(bot.services.db, rowid)
        assert other is not None and significant(other) & significant(story), other.title


async def test_a_story_with_nothing_related_says_so(bot: Driver) -> None:
    (lonely,) = await bot.publish(fresh(bot, "Quokkas photographed on Zyxwv"))
    mine = await bot.reply(READER, "/help")
    await bot.press(READER, mine["message_id"], f"rel:{lonely.rowid}")
    assert "No related stories yet." in bot.tg.sent_messages(READER)[-1]["text"]
    assert "No related stories yet." in (await bot.reply(READER, "/related zyxwvu qwxz"))["text"]


# --- 7. nothing goes unanswered in private ------------------------------------------------------


async def test_plain_text_is_a_search_and_unknown_commands_point_to_help(bot: Driver) -> None:
    found = await bot.reply(READER, "ukraine ceasefire")
    assert found["text"].startswith("Searching for “ukraine ceasefire”")
    assert "Attack on Ukraine after proposal for ceasefire" in found["text"]
    nothing = await bot.reply(READER, "?!")
    assert "/help" in nothing["text"]
    unknown = await bot.reply(READER, "/frobnicate now")
    assert unknown["text"] == "I don't know /frobnicate. /help lists what I can do."
    assert await chats.get_chat(bot.services.db, READER) is None

    # In a group, chatter is not for the bot; commands still are.
    assert await bot.send(GROUP, "ukraine ceasefire", chat_type="supergroup") == []
    assert await bot.send(GROUP, "/frobnicate", chat_type="supergroup") == []
    assert "Searching" not in (await bot.reply(GROUP, "/search ukraine", chat_type="supergroup"))["text"]


# --- 8. times in the newsroom's zone --------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "shown"),
    [("Europe/Stockholm", "12 Mar 2025 18:20 CET"), ("America/New_York", "12 Mar 2025 13:20 EDT"),
     ("Asia/Tokyo", "13 Mar 2025 02:20 JST")],
)
async def test_times_are_in_the_newsrooms_zone(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, zone: str, shown: str
) -> None:
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, sim_tg, tmp_path, NEWSBOT_TIMEZONE=zone) as bot:
        latest = await bot.reply(READER, "/latest sports 1")
        # "Sweden beats Norway in the handball qualifier", stored as published 17:20 UTC.
        assert "Sweden beats Norway" in latest["text"] and shown in latest["text"]
        settings = await bot.reply(READER, "/settings")
        assert f"Time zone: {zone} (now " in settings["text"]


# --- 10. deep links and /help --------------------------------------------------------------------


async def test_keyword_deep_link_welcomes_like_a_section_link(bot: Driver) -> None:
    by_keyword = await bot.reply(READER, "/start kw-drones")
    by_section = await bot.reply(OTHER, "/start sports")
    for welcome in (by_keyword, by_section):
        assert welcome["text"].startswith("Welcome to newsbot!")
        assert ("Sports", "sec:sports") in buttons(welcome) or ("✅ Sports", "sec:sports") in buttons(welcome)
    assert "Following drones." in by_keyword["text"]
    assert await broadcasts.audience_size(bot.services.db, None) == 2


async def test_help_lists_admin_commands_for_admins_only(bot: Driver) -> None:
    reader = (await bot.reply(READER, "/help"))["text"]
    admin = (await bot.reply(ADMIN, "/help"))["text"]
    for command in ("/broadcast", "/stats", "/feeds", "/addfeed", "/removefeed"):
        assert command in admin and command not in reader
    assert admin.startswith(reader)


# --- 11. edits do not re-run commands ------------------------------------------------------------


def edited(update: dict[str, Any], text: str) -> dict[str, Any]:
    """The message of `update`, edited to `text` a minute later."""
    message = {**update["message"], "text": text, "edit_date": update["message"]["date"] + 60}
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"edited_message": message}


async def test_editing_an_old_command_does_not_run_it_again(bot: Driver) -> None:
    follow = bot.tg.user_message(READER, "/follow drones", push=False)
    await bot.process(follow)
    stop = bot.tg.user_message(OTHER, "/start", push=False)
    await bot.process(stop)
    before = len(bot.tg.calls())
    await bot.process(edited(follow, "/follow nato"))
    await bot.process(edited(follow, "/stop"))
    await bot.process(edited(stop, "/stop"))
    await bot.process(edited(follow, "ukraine"))
    assert [c.method for c in bot.tg.calls()[before:]] == []
    assert await bot.keywords(READER) == {"drones"}
    other = await chats.get_chat(bot.services.db, OTHER)
    assert other is not None and other.active
