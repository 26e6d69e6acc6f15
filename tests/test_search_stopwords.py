"""/search and words sent in a private chat ignore words like "the": a query of nothing else
is answered that it is too common, and never searched for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import articles
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import store_sample
from tests.simtime import SimClock
from tests.test_reader_handlers import READER, Driver, driven_bot

TOO_COMMON = "is too common to search for — try a more specific word."


@pytest.fixture
async def bot(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, sim_tg, tmp_path) as driver:
        yield driver


@pytest.mark.parametrize("text", ["/search the", "/search The of", "the", "THE  and"])
async def test_a_query_of_common_words_only_is_answered_not_searched(bot: Driver, text: str) -> None:
    answer = await bot.reply(READER, text)
    assert TOO_COMMON in answer["text"], answer["text"]
    words = text.removeprefix("/search ").strip()
    assert answer["text"].startswith(f"“{' '.join(words.split())}”")
    # Every sample story holds "the": had it been searched for, stories would be listed.
    assert "<a href" not in (answer.get("text_html") or "") and "1." not in answer["text"]
    assert len(answer["text"].splitlines()) == 1


async def test_common_words_beside_others_are_ignored(bot: Driver) -> None:
    found = await bot.reply(READER, "/search the ukraine")
    assert TOO_COMMON not in found["text"] and "Search: the ukraine" in found["text"]
    plain = await bot.reply(READER, "/search ukraine")
    assert found["text"].split("\n", 1)[1] == plain["text"].split("\n", 1)[1]
    assert articles.search_matches("the ukraine") == articles.search_matches("ukraine")
    text = await bot.reply(READER, "the ukraine")
    assert text["text"].startswith("Searching for “the ukraine”") and TOO_COMMON not in text["text"]
