"""A reader's language: Telegram's language_code at first contact, kept in the database,
changed with /language, and used for replies, buttons, alerts and the command menu; the
newsroom's NEWSBOT_LANGUAGE for chats with none (groups, channels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.app import set_command_menus
from storage import chats
from storage.models import Article
from tests.fakes.telegram_api import FakeTelegram
from tests.simtime import SimClock
from tests.test_reader_handlers import Driver, buttons, driven_bot

SWEDE = 4242
GROUP = -1001234567000


def story(bot: Driver, title: str) -> Article:
    at = bot.services.clock.time() - 30
    return Article(id=f"l-{title}", url="https://news.example/" + title.replace(" ", "-"), title=title,
                   summary="", section="world", tags=(), published_at=at, fetched_at=at)


def labels(message: dict[str, Any]) -> list[str]:
    return [text for text, _data in buttons(message)]


async def test_a_swedish_reader_reads_swedish_until_they_choose_english_and_it_stays(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    sim_tg.user(SWEDE, first_name="Astrid", language_code="sv")
    async with driven_bot(clock, sim_tg, tmp_path) as bot:
        welcome = await bot.reply(SWEDE, "/start")
        assert "Välkommen till" in welcome["text"]
        sections = await bot.reply(SWEDE, "/sections")
        assert sections["text"].startswith("Dina sektioner")
        settings = await bot.reply(SWEDE, "/settings")
        assert "Inställningar" in settings["text"] and "Notiser: på" in settings["text"]
        unknown = await bot.reply(SWEDE, "/nonsense")
        assert unknown["text"].startswith("Jag känner inte till /nonsense")
        await bot.press(SWEDE, welcome["message_id"], "sec:world")
        before = len(bot.tg.sent_messages(SWEDE))
        await bot.publish(story(bot, "Storm hits coast"))
        alert = (await bot.tg.await_messages(SWEDE, before + 1, timeout=10.0))[before]
        assert "eftersom du följer" in alert["text"] and "Relaterat" in labels(alert)
        assert (await chats.get_chat(bot.services.db, SWEDE)).language == "sv"  # type: ignore[union-attr]

        chooser = await bot.reply(SWEDE, "/language")
        assert labels(chooser) == ["English", "✅ Svenska"]
        await bot.press(SWEDE, chooser["message_id"], "lang:en")
        assert (await bot.reply(SWEDE, "/sections"))["text"].startswith("Your sections")
    async with driven_bot(clock, sim_tg, tmp_path) as bot:  # a restart on the same database
        assert (await bot.reply(SWEDE, "/sections"))["text"].startswith("Your sections")


async def test_the_newsrooms_language_is_a_groups_and_telegrams_unknown_codes_fall_back(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    sim_tg.user(777, first_name="Kai", language_code="de")
    async with driven_bot(clock, sim_tg, tmp_path, NEWSBOT_LANGUAGE="sv") as bot:
        group = await bot.reply(GROUP, "/sections", chat_type="supergroup")
        assert group["text"].startswith("Dina sektioner")
        german = await bot.reply(777, "/sections")
        assert german["text"].startswith("Dina sektioner")
    async with driven_bot(clock, sim_tg, tmp_path) as bot:
        assert (await bot.reply(GROUP, "/sections", chat_type="supergroup"))["text"].startswith("Your sections")


async def test_the_command_menu_is_set_in_every_shipped_language(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    async with driven_bot(clock, sim_tg, tmp_path) as bot:
        await set_command_menus(bot.app, bot.services.settings)
        menus = {c.params.get("language_code"): c.params["commands"] for c in bot.tg.calls("setMyCommands")
                 if "chat" not in str(c.params.get("scope"))}
    described = {lang: {c["command"]: c["description"] for c in commands} for lang, commands in menus.items()}
    assert described["sv"]["search"] == "Sök artiklar"
    assert described["en"]["search"] == "Find stories"
    assert described[None]["search"] == "Find stories"  # the newsroom's language: English
    assert "language" in described["sv"]
