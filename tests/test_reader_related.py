"""Related stories on the sample feed: a story about Russian/North Korean drones must bring
Russia, Ukraine and drone stories first, and nothing about Greenland or sports."""

from __future__ import annotations

import html
import re
from pathlib import Path

from storage import articles
from storage.db import Database
from storage.models import Article
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import store_sample
from tests.simtime import SimClock
from tests.test_reader_handlers import READER, Driver, driven_bot, html_of

KIM = "Reports: Kim and Putin Bet on New Drones"
TOPIC = {"russia", "ukraine", "drones", "north korea"}


def on_topic(article: Article) -> bool:
    return bool(TOPIC & {t.casefold() for t in article.tags})


def linked_titles(message_html: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<a href="[^"]*">(.*?)</a>', message_html)]


async def test_related_to_a_story_ranks_every_on_topic_story_first(sample_db: Database) -> None:
    story = await articles.find_by_title(sample_db, KIM)
    assert story is not None and story.title == KIM
    everything = await articles.latest(sample_db, None, limit=100)
    wanted = {a.id for a in everything if on_topic(a) and a.id != story.id}
    assert len(wanted) >= 10

    found = await articles.related(sample_db, story.title, limit=50, exclude_id=story.id, phrases=story.tags)
    ids = [a.id for a in found]
    assert story.id not in ids
    # Every on-topic story is found, and all of them come before anything else.
    assert set(ids[: len(wanted)]) == wanted
    assert found[0].title == "Ukraine: The massive attack is meant to intimidate Putin"  # drones + Russia + Ukraine + Putin
    # The tag "North Korea" is a phrase: stories about the North Sea are not related.
    assert not any("North Sea" in a.summary for a in found)


async def test_headline_lookup_is_exact_but_forgiving(sample_db: Database) -> None:
    for text in (KIM, KIM.upper(), "reports kim and putin bet on new drones!", f"  {KIM}  "):
        found = await articles.find_by_title(sample_db, text)
        assert found is not None and found.title == KIM, text
    assert (await articles.find_by_title(sample_db, "Malmo FF signs a new striker before the season")) is not None
    assert await articles.find_by_title(sample_db, "Kim and Putin Bet on New Drones") is None  # part of a title
    assert await articles.find_by_title(sample_db, "Putin drones") is None  # too few words to be a headline
    assert await articles.find_by_title(sample_db, '" AND OR NEAR( c++ x') is None


async def test_related_words_and_plurals(sample_db: Database) -> None:
    found = await articles.related(sample_db, "drone russia")
    assert found and all(on_topic(a) for a in found)
    assert found[0].title in {KIM, "Ukraine: The massive attack is meant to intimidate Putin"}
    # /search reads "drone" as "drone or drones" too.
    titles = {a.title for a in await articles.search(sample_db, "drone")}
    assert KIM in titles and "Ukraine: The massive attack is meant to intimidate Putin" in titles


async def test_related_command_and_button_agree(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, tg, tmp_path) as bot:
        by_title = await bot.reply(READER, f"/related {KIM}")
        assert by_title["text"].startswith(f"Related to: {KIM}")
        titles = linked_titles(html_of(by_title, tg))
        assert len(titles) == 5 and KIM not in titles
        assert titles[0] == "Ukraine: The massive attack is meant to intimidate Putin"
        await assert_on_topic(bot, titles)

        story = await articles.find_by_title(bot.services.db, KIM)
        assert story is not None
        rowid = story.rowid
        before = len(tg.sent_messages(READER))
        answer = await bot.press(READER, by_title["message_id"], f"rel:{rowid}")
        assert "text" not in answer  # the list is the answer
        (by_button,) = tg.sent_messages(READER)[before:]
        assert by_button["text"] == by_title["text"]

        by_link = await bot.reply(READER, f"/related {story.url}?utm_source=x")
        assert by_link["text"] == by_title["text"]

        # Quoted words are one phrase, as with /follow: "North Korea" is not the North Sea.
        words = await bot.reply(READER, '/related drones from "North Korea"')
        assert words["text"].startswith('Related: drones from "North Korea"')
        assert linked_titles(html_of(words, tg))[0] == KIM
        await assert_on_topic(bot, linked_titles(html_of(words, tg)))
        words = await bot.reply(READER, "/related russia, drone")
        await assert_on_topic(bot, linked_titles(html_of(words, tg)))


async def assert_on_topic(bot: Driver, titles: list[str]) -> None:
    stored = {a.title: a for a in await articles.latest(bot.services.db, None, limit=100)}
    off_topic = [t for t in titles if not on_topic(stored[t])]
    assert off_topic == []
    assert not any("Greenland" in t or stored[t].section == "sports" for t in titles)
