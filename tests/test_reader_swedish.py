"""A Swedish reader (Telegram language_code "sv") reads every reply, button, callback answer,
alert frame and inline result in Swedish: named texts first, then a sweep of every reader
command and button that finds no English in anything the bot showed them."""

from __future__ import annotations

import html
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import READER_COMMANDS
from storage.models import Article
from tests.fakes.telegram_api import FakeTelegram, RecordedCall
from tests.simtime import SimClock
from tests.test_reader_handlers import Driver, buttons, driven_bot

SWEDE = 4242
TITLES = ("Drones over Riga", "Storm hits coast", "Harbour reopens")
# Words that only English texts use (story titles, links, command names with their English
# arguments, and the language names on /language's buttons are taken out of the text first).
ENGLISH = re.compile(
    r"\b(the|your|you|and|with|now|no longer|subscriptions?|settings|follow(ing|s)?|alerts?|stor(y|ies)|briefings?"
    r"|quiet|previews?|turn|on|off|tell|me|stay|choose|sections?|my|instant|only|mute|muted|related|more|removed|added"
    r"|saved|already|welcome|usage|example|keywords?|excluded|never|paused|resumed|time zone|hours|nothing|every"
    r"|which|will|not|is|are|of|for|this|that|here|try|again|button|valid|sorry|please)\b",
    re.IGNORECASE,
)
_ids = itertools.count(1)
SWEDISH_DATE = re.compile(r"\d\d [a-zåäö]{3,4}\.? 20\d\d \d\d:\d\d")  # '12 mars 2025 18:20' (English: 'Mar')


@pytest.fixture
async def tg(clock: SimClock) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API with inline mode on, on the test's loop and simulated clock."""
    async with FakeTelegram(supports_inline_queries=True).here(clock) as fake:
        fake.user(SWEDE, first_name="Astrid", language_code="sv")
        yield fake


def story(bot: Driver, title: str, section: str = "world") -> Article:
    at = bot.services.clock.time() - 30
    n = next(_ids)
    return Article(id=f"sv-{n}", url=f"https://news.example/{n}/" + title.replace(" ", "-"), title=title,
                   summary=f"{title}: uppdateras.", section=section, tags=(), published_at=at, fetched_at=at)


async def alert_for(bot: Driver, *stories: Article) -> dict[str, Any]:
    """Publishes `stories` and returns the next message the reader gets."""
    before = len(bot.tg.sent_messages(SWEDE))
    await bot.publish(*stories)
    return (await bot.tg.await_messages(SWEDE, before + 1, timeout=10.0))[before]


def labels(message: dict[str, Any] | None) -> list[str]:
    return [text for text, _data in buttons(message or {})]


async def test_a_swedish_reader_gets_help_lists_settings_errors_and_alerts_in_swedish(
    clock: SimClock, tg: FakeTelegram, tmp_path: Path
) -> None:
    async with driven_bot(clock, tg, tmp_path) as bot:
        async def say(text: str) -> str:
            bot.calm()
            return str((await bot.reply(SWEDE, text))["text"])

        bot.calm()
        welcome = await bot.reply(SWEDE, "/start")
        assert welcome["text"].startswith("Välkommen till newsbot! Välj de sektioner")
        assert labels(welcome)[:3] == ["Sweden", "Living", "World"]
        help_text = await say("/help")
        assert help_text.startswith("newsbot skickar nyheterna du väljer, så fort de publiceras.")
        assert "/follow nyckelord — notiser för ett ord eller ”en fras”" in help_text
        assert "fler än 3 notiser på en gång kommer som ett meddelande" in help_text
        assert "För administratörer" not in help_text  # a reader, not an admin

        bot.calm()
        assert (await bot.press(SWEDE, welcome["message_id"], "sec:world"))["text"] == "Lade till World"
        assert "✅ World" in labels(bot.tg.message(SWEDE, welcome["message_id"]))
        assert await say("/follow drones, nato") == (
            "Du följer nu drones, nato. Du får en notis för varje ny artikel som nämner drones eller nato.")
        assert await say("/follow nato") == "Du följer redan nato."
        assert await say("/exclude fotboll") == (
            "Du utesluter nu fotboll: ingen notis, rad i sammanfattningen eller artikel i /latest om det, inte ens från "
            "dina sektioner. /include ångrar det.")
        assert await say("/follow x") == "”x” är för kort: nyckelord måste vara 2 till 64 tecken långa."
        assert await say("/follow ?!") == (
            "Ett nyckelord behöver minst en bokstav eller siffra och måste vara 2 till 64 tecken långt.")
        assert (await say("/follow")).startswith("Användning: /follow nyckelord[, nyckelord…]\nExempel:")
        assert await say("/unfollow nato") == "Du följer inte längre nato."
        assert await say("/unfollow mars") == "Du följer inte: mars. Se /mysubs."

        bot.calm()
        subs = await bot.reply(SWEDE, "/mysubs")
        assert subs["text"].startswith("Dina prenumerationer (2 av 50)\nSektioner: World\nNyckelord: drones\n"
                                       "Aldrig om: fotboll\n✖ tar bort en;")
        assert labels(subs) == ["✖ World", "⚡ Direkt", "✖ drones", "⚡ Direkt", "✖ inte fotboll"]

        # The alert's frame: the time in Swedish, why it came, and its buttons.
        alert = await alert_for(bot, story(bot, "Drones over Riga"))
        assert SWEDISH_DATE.search(alert["text"]), alert["text"]
        assert alert["text"].endswith("eftersom du följer World och drones")
        assert labels(alert) == ["Relaterat", "Tysta World", "Tysta drones"]
        bot.calm()
        mute = next(data for text, data in buttons(alert) if text == "Tysta drones")
        assert (await bot.press(SWEDE, alert["message_id"], mute))["text"] == "Du har tystat drones. /mysubs visar vad som är kvar."

        bot.calm()
        latest = await bot.reply(SWEDE, "/latest")
        assert latest["text"].startswith("Senaste i dina sektioner\n\n1. World · Drones over Riga")
        assert labels(latest) == ["Relaterat 1"]
        assert (await say("/search zebra")).startswith("Sökning: zebra\n\nInget hittades.")
        assert (await say("/latest 99")).startswith("Ange ett tal från 1 till 20.\nAnvändning: /latest")

        bot.calm()
        settings = await bot.reply(SWEDE, "/settings")
        for line in ("Inställningar", "Notiser: på", "Tidszon: Europe/Stockholm (klockan är ", "Tysta timmar: av",
                     "Sammanfattningar: av", "En sammanfattning utan något nytt: skickas inte",
                     "Slå ihop notiser: på — fler än 3 notiser på en gång kommer som ett meddelande",
                     "Länkförhandsvisning: av", "Du följer 1 sektion, 0 nyckelord; 1 uteslutet ord (/mysubs)."):
            assert line in settings["text"], line
        assert labels(settings) == [
            "Pausa notiser", "Förhandsvisning: slå på", "Slå ihop: stäng av",
            "✅ Stockholm", "London", "Berlin", "New York", "Tokyo", "UTC",
            "Tyst 22:00–07:00", "Tyst 23:00–06:00", "Inga tysta timmar", "Tysta timmar: håll inne → ljudlöst",
            "Sammanfattning 07:00", "Sammanfattning 07:30", "Sammanfattning 18:00", "Inga sammanfattningar",
            "Inget nytt: säg till", "Välj sektioner", "Mina prenumerationer",
        ]

        # Inline mode: the result's description (with its date) and its button.
        bot.calm()
        await bot.process(tg.inline_query(SWEDE, "riga", push=False))
        (answer,) = tg.inline_answers()
        (result,) = answer["results"]
        assert SWEDISH_DATE.search(result["description"]), result["description"]
        assert result["reply_markup"]["inline_keyboard"] == [[{"text": "Mer från newsbot", "url": "https://t.me/newsbot_test_bot?start=world"}]]

        # Paused, then resumed: the reply counts what was held.
        assert (await say("/pause")).startswith("Notiserna är pausade.")
        await bot.publish(story(bot, "Storm hits coast"))
        bot.calm()
        before = len(tg.sent_messages(SWEDE))
        await bot.process(tg.user_message(SWEDE, "/resume", push=False))
        resumed, held = (await tg.await_messages(SWEDE, before + 2, timeout=10.0))[before:]
        assert resumed["text"] == "Notiserna är igång igen. Medan du var borta: 1 artikel — den kommer i ett meddelande."
        assert held["text"].startswith("Medan du var borta: 1 artikel\n\n1. World · Storm hits coast")
        assert held["text"].endswith("Eftersom du följer World.")

        assert await say("/timezone Mars/Base") == (
            "”Mars/Base” är ingen tidszon jag känner till. Använd ett IANA-namn, t.ex. /timezone Europe/Stockholm "
            "eller /timezone America/New_York.")
        assert re.fullmatch(r"Tidszon: Europe/London\. Klockan är \d\d:\d\d (GMT|BST) där; från och med nu visar "
                            r"jag alla tider i den\.", await say("/timezone Europe/London"))
        assert await say("/quiet 25-99") == (
            "Jag kunde inte läsa ”25-99” som tysta timmar.\n"
            "Användning: /quiet från-till | off | hold | silent\nExempel: /quiet 22:00-07:00")
        assert (await say("/quiet 22:00-07:00")).startswith(
            "Tysta timmar: 22:00–07:00 (Europe/London), notiserna hålls inne och skickas som ett meddelande när de "
            "är slut.")
        assert await say("/quiet off") == "Tysta timmar avstängda: notiserna kommer när artiklarna publiceras."
        assert (await say("/briefing 7:3x")).startswith("Jag kunde inte läsa ”7:3x” som en tid.\nAnvändning: /briefing")
        assert await say("/briefing 07:00 08:00 09:00 10:00") == (
            "Högst tre sammanfattningar om dagen.\n"
            "Användning: /briefing tid [tid tid] | off\nExempel: /briefing 07:30 (upp till tre om dagen)")
        assert re.fullmatch(r"Sammanfattningar kl\. 07:30 \(Europe/London\): ett meddelande med dina artiklar sedan "
                            r"den förra\. Nästa kl\. 07:30 (GMT|BST)\. I /mysubs väljer ⚡/📰 vilka prenumerationer som "
                            r"också ger notiser direkt\.", await say("/briefing 07:30"))
        assert await say("/briefing off") == "Sammanfattningarna är avstängda."


# --- the sweep ----------------------------------------------------------------------------------

ARGUMENTS = {  # typical arguments of each reader command (each is also sent without one)
    "start": ["world", "kw-drones", "moon"],
    "follow": ["drones, nato", "x", "?!", "drones", "a1 b2 c3 d4 e5", "fotboll"],
    "unfollow": ["nato", "moon", "world"],
    "exclude": ["fotboll", "drones", "fotboll", "q"],
    "include": ["fotboll", "moon"],
    "latest": ["world 3", "moon", "99", "world sports", "3"],
    "search": ["storm", "zebra", "?!"],
    "related": ["storm", "Drones over Riga", "https://nowhere.example/x"],
    "quiet": ["22:00-07:00", "silent", "hold", "23:00-06:00", "nonsense", "off", "silent"],
    "briefing": ["07:30", "25:00", "07:00 08:00 09:00 10:00", "07:30 18:00", "off"],
    "timezone": ["Mars/Base", "Europe/London", "tokyo", "default"],
    "sections": ["extra"],
}
LAST = ("stop",)  # run after the others (and the ones before it again after it)


def shown(call: RecordedCall) -> list[str]:
    """What a Bot API call showed the reader: message text (tags dropped), button labels,
    callback answers, inline results."""
    params = call.params
    texts = []
    if call.method in ("sendMessage", "editMessageText") and "text" in params:
        texts.append(html.unescape(re.sub(r"<[^>]+>", "", str(params["text"]))))
    if call.method == "answerCallbackQuery" and params.get("text"):
        texts.append(str(params["text"]))
    markup = params.get("reply_markup")
    if isinstance(markup, str):
        markup = json.loads(markup)
    if isinstance(markup, dict):
        texts += [str(b["text"]) for row in markup.get("inline_keyboard", []) for b in row]
    if call.method == "answerInlineQuery":
        results = params["results"]
        for result in json.loads(results) if isinstance(results, str) else results:
            texts += [str(result.get("description", ""))]
            texts += [str(b["text"]) for row in result.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
    return texts


def english_in(text: str) -> list[str]:
    for title in TITLES:
        text = text.replace(title, " ")
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"(?:/[a-z_]+(?:@\w+)?|\|)(?: (?:off|hold|silent|default)\b)?", " ", text)  # commands, arguments
    text = text.replace("English", " ")  # /language's button for the other language
    return [m.group(0) for m in ENGLISH.finditer(text)]


async def test_nothing_a_swedish_reader_is_shown_is_english(clock: SimClock, tg: FakeTelegram, tmp_path: Path) -> None:
    async with driven_bot(clock, tg, tmp_path) as bot:
        start = len(tg.calls())

        async def send(text: str) -> list[dict[str, Any]]:
            bot.calm()
            return await bot.send(SWEDE, text)

        async def press_all(command: str, keep: set[str] | None = None) -> None:
            """Presses each button of `command`'s reply, on a fresh reply each time."""
            (first,) = await send(command)
            for _label, data in buttons(first):
                if not data or (keep is not None and data.split(":")[0] not in keep):
                    continue
                (message,) = await send(command)
                bot.calm()
                await bot.press(SWEDE, message["message_id"], data)

        commands = [name for name, _description in READER_COMMANDS if name not in LAST]
        for name in commands:
            await send(f"/{name}")
            for argument in ARGUMENTS.get(name, []):
                await send(f"/{name} {argument}")
        await send("/nonsense")
        await send("storm")  # a search
        await send("?!")

        await press_all("/settings")
        await press_all("/sections")
        await press_all("/mysubs", keep={"mode"})
        await press_all("/mysubs")
        (chooser,) = await send("/language")
        bot.calm()
        await bot.press(SWEDE, chooser["message_id"], "lang:sv")
        for stale in ("set:bogus", "sec:moon", "unsub:99999", "mode:99999", "rel:99999", "tz:99", "quiet:1-2", "brief:5"):
            bot.calm()
            await bot.press(SWEDE, chooser["message_id"], stale)

        # Alerts: one, several at once (combined), held while paused; their buttons.
        await send("/quiet off")
        await send("/resume")  # /settings' first button paused the alerts
        await send("/follow drones, storm")
        alert = await alert_for(bot, story(bot, "Drones over Riga"))
        several = await alert_for(bot, story(bot, "Storm hits coast"), story(bot, "Harbour reopens", "sports"),
                                  story(bot, "Drones over Riga", "sports"))
        for message in (alert, several):
            for _label, data in buttons(message):
                bot.calm()
                await bot.press(SWEDE, message["message_id"], data)
        await send("/start world")
        await send("/pause")
        await bot.publish(story(bot, "Storm hits coast"))  # (the Mute buttons above stopped the keywords)
        await send("/resume")
        await tg.await_for(lambda: len(tg.sent_messages(SWEDE)) and "Medan du var borta" in str(tg.sent_messages(SWEDE)[-1].get("text")), timeout=10)

        bot.calm()
        await bot.process(tg.inline_query(SWEDE, "storm", push=False))
        await bot.process(tg.inline_query(SWEDE, "", push=False))

        for name in LAST:
            await send(f"/{name}")
        for name in ("pause", "resume", "settings", "mysubs", "stop", "start"):
            await send(f"/{name}")

        calls = [c for c in tg.calls()[start:] if c.chat_id in (SWEDE, None)]
        texts = [text for call in calls for text in shown(call)]
        assert len(texts) > 250
        english = {text: found for text in texts if (found := english_in(text))}
        assert english == {}


async def test_inline_results_are_written_in_the_readers_own_language_and_zone(
    clock: SimClock, tg: FakeTelegram, tmp_path: Path
) -> None:
    """A reader whose Telegram is Swedish but who chose English and Tokyo gets inline results
    in English with Tokyo's time; Telegram caches them for that reader alone."""
    async with driven_bot(clock, tg, tmp_path) as bot:
        bot.calm()
        chooser = await bot.reply(SWEDE, "/language")
        await bot.press(SWEDE, chooser["message_id"], "lang:en")
        bot.calm()
        await bot.reply(SWEDE, "/timezone Asia/Tokyo")
        await bot.publish(story(bot, "Drones over Riga"))
        bot.calm()
        await bot.process(tg.inline_query(SWEDE, "riga", push=False))
        (answer,) = tg.inline_answers()
        (result,) = answer["results"]
        assert answer["is_personal"] is True
        assert result["description"].startswith("World · ") and result["description"].endswith(
            "JST — Drones over Riga: uppdateras."), result["description"]
        assert re.search(r"\d\d [A-Z][a-z]{2} 20\d\d \d\d:\d\d JST", result["description"]), result["description"]
        assert result["reply_markup"]["inline_keyboard"][0][0]["text"] == "More from newsbot"
