"""Inline mode: `@newsbot_test_bot words` from anyone, reader or not, through getUpdates and
answerInlineQuery on the fake Bot API server, with the sample stories in a real database."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.flood import FLOOD_UPDATES, SLOW_DOWN
from bot.runner import Runtime
from storage import articles, chats
from tests.fakes.telegram_api import MAX_INLINE_RESULTS, FakeTelegram
from tests.harness import ask, bot_settings, running_bot, store_sample
from tests.simtime import SimClock

PASSER_BY = 777  # never started the bot
GROUP = -1001234567890
BOT_LINK = "https://t.me/newsbot_test_bot"


@pytest.fixture
async def tg(clock: SimClock) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API with inline mode on, on the test's loop and simulated clock."""
    async with FakeTelegram(supports_inline_queries=True).here(clock) as fake:
        yield fake


@asynccontextmanager
async def sample_bot(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Runtime]:
    await store_sample(tmp_path / "newsbot.db")
    async with running_bot(bot_settings(tg, tmp_path), clock=clock) as rt:
        yield rt


async def inline(tg: FakeTelegram, query: str, user_id: int = PASSER_BY) -> dict[str, Any]:
    """The bot's answer to an inline query typed by `user_id`."""
    sent = tg.inline_query(user_id, query)["inline_query"]
    answers = await tg.await_for(lambda: tg.inline_answers(sent["id"]), timeout=10)
    assert len(answers) == 1
    return answers[0]


async def test_an_inline_search_ranks_like_search_and_links_back(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    async with sample_bot(clock, tg, tmp_path) as rt:
        answer = await inline(tg, "ukraine")
        results = answer["results"]
        assert 1 <= len(results) <= 20 <= MAX_INLINE_RESULTS
        expected = await articles.search(rt.services.db, "ukraine", limit=20)
        assert [r["title"] for r in results] == [a.title for a in expected]
        # The first ten are exactly what /search answers, in its order.
        listed = await ask(tg, 4242, "/search ukraine")
        assert re.findall(r"^\d+\. World · (.+)$", listed["text"], flags=re.MULTILINE) == [r["title"] for r in results[:10]]

        by_title = {a.title: a for a in expected}
        for result in results:
            story = by_title[result["title"]]
            assert result["type"] == "article" and result["id"] == str(story.rowid)
            assert result["description"].startswith("World · ")
            assert re.search(r"· \d\d \w{3} 2025 \d\d:\d\d CET — ", result["description"])
            assert story.summary[:40] in result["description"]
            (row,) = result["reply_markup"]["inline_keyboard"]
            assert row == [{"text": "More from newsbot", "url": f"{BOT_LINK}?start=world"}]
            sent_text = result["input_message_content"]["message_text"]
            assert html.escape(story.url) in sent_text
        # The bot chooses how long Telegram may cache the answer (not the server's default).
        (call,) = tg.calls("answerInlineQuery")
        assert int(str(call.params["cache_time"])) == answer["cache_time"] > 0
        assert await chats.get_chat(rt.services.db, PASSER_BY) is None
        assert (await chats.chat_counts(rt.services.db))["total"] == 0  # reading registers nobody


async def test_an_empty_query_lists_the_latest(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    async with sample_bot(clock, tg, tmp_path) as rt:
        answer = await inline(tg, "")
        newest = await articles.latest(rt.services.db, None, limit=50)
        assert len(newest) == 50
        assert [r["title"] for r in answer["results"]] == [a.title for a in newest[:20]]
        sections = {a.section for a in newest}
        assert len(sections) > 1
        links = {r["reply_markup"]["inline_keyboard"][0][0]["url"] for r in answer["results"]}
        assert links == {f"{BOT_LINK}?start={s}" for s in sections}
        # The deep link of a result welcomes its user into that section.
        section = newest[0].section
        welcome = await ask(tg, PASSER_BY, f"/start {section}")
        assert welcome["text"].startswith("Welcome to newsbot!")
        chat = await chats.get_chat(rt.services.db, PASSER_BY)
        assert chat is not None and chat.active


async def test_nothing_found_is_an_empty_answer(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    async with sample_bot(clock, tg, tmp_path):
        answer = await inline(tg, "zyxwvu qwxz")
        assert answer["results"] == []
        assert answer["cache_time"] > 0


async def test_without_inline_mode_the_bot_works_unchanged(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    await store_sample(tmp_path / "newsbot.db")
    async with running_bot(bot_settings(tg, tmp_path), clock=clock):
        found = await ask(tg, 4242, "/search ukraine")
        assert found["text"].startswith("Search: ukraine")
        assert "Welcome" in (await ask(tg, 4242, "/start"))["text"]
        with pytest.raises(RuntimeError, match="inline mode is off"):
            tg.inline_query(PASSER_BY, "ukraine")
    assert tg.calls("answerInlineQuery") == []
    assert [c for c in tg.calls() if not c.ok and c.method != "getUpdates"] == []


async def unanswered(tg: FakeTelegram, query: str, user_id: int) -> str:
    """An inline query the bot leaves unanswered: its id, once the bot has moved on (a later
    query from someone else is answered)."""
    ignored = tg.inline_query(user_id, query)["inline_query"]["id"]
    await inline(tg, "marker", user_id=PASSER_BY + 1)
    return str(ignored)


async def test_inline_queries_and_commands_share_one_flood_count(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    """Ten inline queries and two commands are answered; the thirteenth update in ten seconds
    gets "Slow down", and the user's inline queries then get no answer at all."""
    async with sample_bot(clock, tg, tmp_path):
        for n in range(FLOOD_UPDATES - 2):
            assert (await inline(tg, f"ukraine {n}"))["results"] is not None
        assert (await ask(tg, PASSER_BY, "/help"))["text"].startswith("newsbot sends you")
        assert (await ask(tg, PASSER_BY, "/help"))["text"].startswith("newsbot sends you")
        assert (await ask(tg, PASSER_BY, "/help"))["text"] == SLOW_DOWN
        ignored = await unanswered(tg, "ukraine again", PASSER_BY)
        assert tg.inline_answers(ignored) == []
        assert len(tg.inline_answers()) == FLOOD_UPDATES - 2 + 1  # and the marker's


async def test_an_inline_flooder_is_told_once_on_their_next_command(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    async with sample_bot(clock, tg, tmp_path):
        for n in range(FLOOD_UPDATES):
            await inline(tg, f"drones {n}")
        ignored = await unanswered(tg, "drones over the harbour", PASSER_BY)  # the 13th
        assert tg.inline_answers(ignored) == []
        # The warning an inline answer cannot carry comes with the next command, once.
        assert (await ask(tg, PASSER_BY, "/help"))["text"] == SLOW_DOWN
        before = len(tg.sent_messages(PASSER_BY))
        tg.user_message(PASSER_BY, "/help")
        tg.user_message(GROUP, "/latest", user_id=PASSER_BY, chat_type="supergroup")  # any chat
        await inline(tg, "marker", user_id=PASSER_BY + 1)
        await tg.await_for(lambda: tg.pending_update_count == 0, timeout=10)
        assert len(tg.sent_messages(PASSER_BY)) == before
        assert tg.sent_messages(GROUP) == []
        # Another user is not affected.
        assert (await ask(tg, PASSER_BY + 2, "/help"))["text"].startswith("newsbot sends you")
