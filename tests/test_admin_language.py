"""An admin's language: the admin's own chat's (Telegram's language_code at first contact,
/language), for every admin reply — the /broadcast flow with its buttons, progress and
report, /broadcasts (times in the admin's zone, in Swedish), /stats and its chart, /feeds,
/addfeed, /removefeed — while an English admin of the same newsroom still reads English.
And a catch-all: a Swedish admin running every admin command and pressing every button
meets no English sentence."""

from __future__ import annotations

import ast
import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot import charts, i18n
from bot.commands import admin
from bot.commands.admin import chart_labels
from storage import broadcasts, chats, subscriptions
from storage.counters import Figures
from storage.db import Database
from tests.conftest import REPO
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import SECTIONS_TOML, write_feeds_file
from tests.simtime import SimClock
from tests.test_admin import TINY_FEED
from tests.test_reader_handlers import Driver, buttons, driven_bot
from tests.test_sources import front_page, news_sitemap

SWEDE = 9001  # the admins of bot_settings
BRIT = 9002
READERS = [300, 301, 302]
TOKYO = ZoneInfo("Asia/Tokyo")


async def seed(db_path: Path, readers: list[int], *, long_keywords: bool = False) -> None:
    """Active readers; with `long_keywords`, ten 60-letter keywords: the /stats figures pass a
    photo caption's 1,024 characters, so the chart gets the short caption."""
    db = await Database.open(db_path)
    try:
        for chat_id in readers:
            await chats.join(db, chat_id, "private", now=time.time())
        if long_keywords:
            for n in range(10):
                word = f"{n}" + "x" * 59
                await subscriptions.add_subscription(db, readers[n % len(readers)], "keyword", word, word,
                                                     limit=50, now=time.time())
    finally:
        await db.close()


def labels(message: dict[str, Any]) -> list[str]:
    return [text for text, _data in buttons(message)]


def data_of(message: dict[str, Any], label_start: str) -> str:
    for text, data in buttons(message):
        if text.startswith(label_start):
            return data
    raise AssertionError(f"no button {label_start!r} in {labels(message)}")


def markup_labels(params: dict[str, Any]) -> list[str]:
    markup = params.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


def broadcast_id(preview: dict[str, Any]) -> int:
    return int(data_of(preview, "Avbryt").split(":")[2])


def db_rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def messages_starting(tg: FakeTelegram, chat_id: int, start: str) -> list[dict[str, Any]]:
    return [m for m in tg.sent_messages(chat_id) if str(m.get("text", "")).startswith(start)]


def newsroom_with_channel_and_feeds(tmp_path: Path, server: FeedServer, tg: FakeTelegram) -> Path:
    """The two admins (Swedish and English Telegram), a served feed, and a feeds file with a
    failing feed and a section whose channel the bot cannot post in."""
    tg.user(SWEDE, first_name="Greta", language_code="sv")
    tg.user(BRIT, first_name="Tom", language_code="en")
    server.serve("/wire.xml", TINY_FEED)
    server.status("/broken.xml", 500)
    tg.add_chat(-1_000_000_000_781, "channel", title="Herald Fun", username="herald_fun")
    tg.set_channel_admin("@herald_fun", False)
    sections = SECTIONS_TOML.replace('entertainment = "Entertainment"',
                                     'entertainment = { name = "Entertainment", channel = "@herald_fun" }')
    return write_feeds_file(tmp_path, [server.url_for("/broken.xml")], sections=sections)


async def failing_once(bot: Driver, db_path: Path) -> None:
    await bot.tg.await_for(lambda: db_rows(db_path, "SELECT error_count FROM feeds WHERE id = 1") >= [(1,)],
                           timeout=30, interval=0.05)


async def test_a_swedish_admin_gets_every_admin_reply_in_swedish_and_an_english_one_english(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, server = sim_tg, sim_feeds
    feeds_file = newsroom_with_channel_and_feeds(tmp_path, server, tg)
    await seed(tmp_path / "newsbot.db", READERS, long_keywords=True)
    async with driven_bot(clock, tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_RATE_PRIVATE_INTERVAL="0",
                          NEWSBOT_PAID_BROADCASTS="1") as bot:
        db_path = bot.services.settings.db_path
        await bot.reply(SWEDE, "/timezone Asia/Tokyo")

        # /broadcast: the preview, its buttons, their answers.
        preview = await bot.reply(SWEDE, "/broadcast Stormvarning i norr")
        assert preview["text"] == "Förhandsvisning — inte skickat ännu\n\nStormvarning i norr"
        # A free send shows no Stars; an audience within the free rate costs none sent fast.
        assert labels(preview) == ["Skicka till 3 chattar (≈ 1 s)", "Skicka snabbt (≈ 1 s, utan Stars)",
                                   "Brådskande: av", "Avbryt"]
        urgent = await bot.press(SWEDE, preview["message_id"], data_of(preview, "Brådskande"))
        assert urgent["text"] == "Brådskande: det når läsarna även under deras tysta timmar."
        shown = tg.message(SWEDE, preview["message_id"])
        assert shown is not None and "Brådskande: på ✅" in labels(shown)
        sending = await bot.press(SWEDE, preview["message_id"], data_of(preview, "Skicka till"))
        assert sending["text"] == "Skickar till 3 chattar."
        sent = tg.message(SWEDE, preview["message_id"])
        assert sent is not None and sent["text"].startswith("Skickat — till 3 chattar; förloppet visas nedan.")

        # The progress message (with its Stop button) and the report, in Swedish.
        [report] = await tg.await_for(lambda: messages_starting(tg, SWEDE, "Rapport: utskick #1"), timeout=30)
        assert report["text"] == "Rapport: utskick #1 är klart — 3 av 3 läsare nåddes (100 %).\n”Stormvarning i norr”"
        first_progress = next(c.params for c in tg.calls("sendMessage")
                              if str(c.params.get("text", "")).startswith("<b>Utskick #1</b>"))
        assert "till alla: skickas" in first_progress["text"] and markup_labels(first_progress) == ["Stoppa"]
        assert "(brådskande: når fram även under tysta timmar)" in first_progress["text"]
        [progress] = messages_starting(tg, SWEDE, "Utskick #1")
        final = tg.message(SWEDE, progress["message_id"])
        assert final is not None
        assert final["text"].startswith("Utskick #1 till alla: klart\nSkickade 3 / 3 · blockerade 0 · misslyckade 0\nDet tog ")

        # /broadcasts: in the admin's zone, Swedish month names.
        [(created_at,)] = db_rows(db_path, "SELECT created_at FROM broadcasts")
        listing = await bot.reply(SWEDE, "/broadcasts")
        when = i18n.translator("sv").date_time(created_at, TOKYO)
        assert when.endswith(" JST") and when in listing["text"]
        assert listing["text"].startswith("Senaste utskicken\n\n#1 · " + when + " · av 9001 · till alla · brådskande · klart")
        english = await bot.reply(BRIT, "/broadcasts")
        assert english["text"].startswith("Recent broadcasts\n\n#1 · ") and "by 9001 · to everyone · urgent · done" in english["text"]

        # /stats: the chart's short caption (the figures are long) and the figures, in Swedish.
        photo, figures = await bot.send(SWEDE, "/stats")
        assert photo["caption"] == "Redaktionens statistik — de senaste 24 timmarna per timme; siffrorna följer."
        assert figures["text"].startswith("Redaktionens statistik\nLäsare: aktiva 3, pausade 0, inaktiva 0\n")
        assert ("Senaste 24 tim: 0 artiklar sparade, 0 notiser skickade (misslyckade 0, till läsare som lämnat 0), "
                "3 utskicksmeddelanden skickade, 0 sammanfattningar skickade, 0 rättelser skickade") in figures["text"]
        assert "Utkorg: tom" in figures["text"] and "Databas: " in figures["text"]
        assert [c.params["caption"] for c in tg.calls("sendPhoto")][-1] == (
            "<b>Redaktionens statistik</b> — de senaste 24 timmarna per timme; siffrorna följer.")
        photo, figures = await bot.send(BRIT, "/stats")
        assert photo["caption"] == "Newsroom stats — the last 24 hours by hour; the figures follow."
        assert "Readers: 3 active, 0 paused, 0 inactive" in figures["text"]

        # /feeds: the failing feed, the channel the bot cannot post in, Try now.
        await failing_once(bot, db_path)
        feeds = await bot.reply(SWEDE, "/feeds")
        assert feeds["text"].startswith("Flöden: 1 hämtas, 1 fungerar inte\n⚠ Kanalen @herald_fun för Entertainment: "
                                        "boten är inte administratör där; artiklarna publiceras inte där förrän")
        assert "⚠ fungerar inte sedan " in feeds["text"] and "försök i rad; senaste fel: " in feeds["text"]
        assert "sektion från kategorin (domän ”section”), annars World" in feeds["text"]
        assert "förfrågningar senaste timmen" in feeds["text"] or "förfrågan senaste timmen" in feeds["text"]
        assert labels(feeds) == ["Hämta #1 nu"]
        tried = await bot.press(SWEDE, feeds["message_id"], "feed:try:1")
        assert tried["text"] in ("Hämtar flöde #1 nu. /feeds visar hur det gick.", "Flöde #1 hämtas just nu.")
        english = await bot.reply(BRIT, "/feeds")
        assert english["text"].startswith("Feeds: 1 polled, 1 failing\n⚠ Entertainment's channel @herald_fun: "
                                          "the bot is not an admin there")
        assert labels(english) == ["Try #1 now"]

        # /addfeed: a bad URL, then a feed on the loopback server; /removefeed.
        bad = await bot.reply(SWEDE, "/addfeed notaurl sports")
        assert bad["text"].startswith("”notaurl” är ingen http(s)-URL.\n\nAnvändning: /addfeed")
        wire = server.url_for("/wire.xml")
        added = await bot.reply(SWEDE, f"/addfeed {wire} sports")
        assert added["text"].startswith(f"Lade till flödet #2: Tiny wire — RSS/Atom-flöde, 1 post, sektionen Sports.\n{wire}\n"
                                        "Flödets nuvarande poster markeras som sedda")
        again = await bot.reply(BRIT, f"/addfeed {wire} sports")
        assert again["text"] == f"Feed #2 {wire} is already polled (section Sports). Nothing was changed."
        removed = await bot.reply(SWEDE, "/removefeed 2")
        assert removed["text"] == f"Tog bort flödet #2 {wire}. Det förblir borttaget efter en omstart; /addfeed lägger till det igen."
        assert (await bot.reply(SWEDE, "/removefeed 2"))["text"] == "Flöde #2 var redan borttaget."
        assert (await bot.reply(BRIT, "/removefeed 2"))["text"] == "Feed #2 was already removed."

        # Not an admin: refused in the sender's own language.
        tg.user(4242, first_name="Astrid", language_code="sv")
        refused = await bot.reply(4242, "/stats")
        assert refused["text"] == i18n.translator("sv").gettext(admin.REFUSAL) != admin.REFUSAL


async def test_a_broadcast_followed_again_after_a_restart_reports_in_its_authors_language(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """After a restart nothing in memory says who speaks what: the author's chat does (its
    language kept at first contact or chosen with /language); a chat with none reads the
    newsroom's language. The same goes for the admins' command menus, set at start."""
    db_path = tmp_path / "newsbot.db"
    await seed(db_path, READERS)
    db = await Database.open(db_path)
    try:
        await chats.remember(db, SWEDE, "private", now=time.time())
        await chats.first_language(db, SWEDE, "sv")
        for author in (SWEDE, BRIT):  # both sending when the bot starts: as after a crash
            made = await broadcasts.create(db, admin_id=author, admin_chat_id=author, html="Hej", audience=None,
                                           now=time.time())
            await broadcasts.start(db, made, now=time.time(), expires_before=0)
    finally:
        await db.close()
    async with driven_bot(clock, sim_tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0") as bot:
        [swedish] = await bot.tg.await_for(lambda: messages_starting(sim_tg, SWEDE, "Rapport: utskick #1"), timeout=30)
        [english] = await bot.tg.await_for(lambda: messages_starting(sim_tg, BRIT, "Report: broadcast #2"), timeout=30)
    # The admins' command menus too: in their chats' languages.
    menus = {str((c.params.get("scope") or {}).get("chat_id")): {x["command"]: x["description"] for x in c.params["commands"]}
             for c in sim_tg.calls("setMyCommands") if "chat_id" in str(c.params.get("scope"))}
    assert menus[str(SWEDE)]["broadcasts"] == "Senaste utskicken" and menus[str(BRIT)]["broadcasts"] == "Recent broadcasts"
    assert swedish["text"].startswith("Rapport: utskick #1 är klart — 3 av 3 läsare nåddes (100 %).")
    assert english["text"].startswith("Report: broadcast #2 finished — 3 readers of 3 reached (100 %).")
    [progress] = messages_starting(sim_tg, SWEDE, "Utskick #1 till alla: klart")
    assert "Skickade 3 / 3" in progress["text"]


async def test_what_else_a_page_offers_is_said_in_swedish(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    site = sim_feeds
    site.serve("/", front_page([1, 2, 3]), "text/html")
    site.serve("/robots.txt", f"User-agent: *\nSitemap: {site.url_for('/news.xml')}\n".encode(), "text/plain")
    site.serve("/news.xml", news_sitemap([(1, clock.time())]))
    sim_tg.user(SWEDE, first_name="Greta", language_code="sv")
    async with driven_bot(clock, sim_tg, tmp_path) as bot:
        added = (await bot.reply(SWEDE, f"/addfeed {site.url_for('/')} world"))["text"]
    assert "— nyhetssitemap, 1 post, sektionen World." in added
    assert ("Sidan erbjuder också (lägg till med /addfeed URL sektion):\n"
            "• HTML-listsida (själva sidan som listsida: 3 artiklar hittade genom dess ") in added
    assert english_words(added) == []


async def test_a_chart_that_cannot_be_drawn_leaves_the_swedish_figures(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    font = tmp_path / "broken.ttf"
    font.write_bytes(b"this file is not a font")  # matplotlib cannot open it: drawing raises
    sim_tg.user(SWEDE, first_name="Greta", language_code="sv")
    async with driven_bot(clock, sim_tg, tmp_path, NEWSBOT_CHART_FONT=str(font)) as bot:
        answer = await bot.reply(SWEDE, "/stats")
    assert answer["text"].startswith("Redaktionens statistik\nLäsare: aktiva 0, pausade 0, inaktiva 0\n")
    assert "inga notiser skickade de senaste 24 timmarna" in answer["text"]
    assert not sim_tg.calls("sendPhoto")


def test_the_chart_is_drawn_with_the_words_it_is_given_whatever_thread_draws_it() -> None:
    """The labels are written in the handler (the admin's language set for its task) and the
    drawing thread only draws them: a thread started with no language of its own draws the
    Swedish words."""
    with i18n.speaking("sv"):
        words = chart_labels("Härolden")
    series = charts.hourly_series({0: Figures({"lane_personal_sent": 3, "latency_le_30": 2})}, 1800.0)
    drawn: list[str] = []
    thread = threading.Thread(target=lambda: drawn.extend(charts.chart_texts(series, labels=words, zone=TOKYO)))
    thread.start()
    thread.join()
    assert "Härolden — senaste 24 timmarna" in drawn and "skickade meddelanden" in drawn
    assert "publicering → notis" in drawn and "hälften inom" in drawn and "95 % inom" in drawn
    assert {"personliga", "sektioner", "utskick", "rättelser"} <= set(drawn)
    assert not {"messages sent", "half within", "personal", "corrections"} & set(drawn)
    quiet = charts.chart_texts(charts.hourly_series({}, 1800.0), labels=words, zone=TOKYO)
    assert "inga notiser skickade" in quiet and "no alerts sent" not in quiet


ADMIN_MODULES = ("bot/commands/admin.py", "bot/commands/feeds.py", "bot/broadcast.py", "bot/broadcast_texts.py",
                 "bot/charts.py", "bot/newsroom.py", "bot/channels.py")


def test_no_admin_message_is_translated_inside_an_f_string() -> None:
    """pybabel does not look into f-strings (Python 3.11): a `_()` there never reaches the
    catalogs, and the admin reads English."""
    found = []
    for name in ADMIN_MODULES:
        for node in ast.walk(ast.parse((REPO / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                found += [f"{name}:{call.lineno}" for call in ast.walk(node) if isinstance(call, ast.Call)
                          and isinstance(call.func, ast.Name) and call.func.id in ("_", "ngettext", "N_")]
    assert found == []


# --- the catch-all ----------------------------------------------------------------------------

ENGLISH = re.compile(r"\b(the|your|you|and|with|now|broadcasts?|feeds?|sent|queued|readers?|cancel(led)?)\b", re.I)


def english_words(text: str, *, keep_out: tuple[str, ...] = ()) -> list[str]:
    """English marker words in a Swedish admin's reply, once URLs, command names, feed titles,
    the broadcast's own text and technical error details are taken out."""
    for known in keep_out:
        text = text.replace(known, " ")
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"/[a-z_]+(@\w+)?", " ", text)
    # A fetch's or Telegram's own words are quoted as they came (logs have the same).
    text = re.sub(r"(senaste fel(?: \(fungerar igen sedan dess\))?|Kunde inte lägga till flödet —|Telegram svarade): [^\n]*", " ", text)
    text = re.sub(r"Kunde inte lägga till flödet — [^\n]*", " ", text)
    return [m.group(0) for m in ENGLISH.finditer(text)]


async def test_no_english_reaches_a_swedish_admin(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, server = sim_tg, sim_feeds
    server.serve("/sports/rss.xml", TINY_FEED.replace(b"wire-1", b"sports-1"))
    server.html("/sports/", [server.url_for("/sports/rss.xml")], title="Sports")
    feeds_file = newsroom_with_channel_and_feeds(tmp_path, server, tg)
    readers = list(range(500, 590))
    await seed(tmp_path / "newsbot.db", readers)
    keep_out = ("Tiny wire", "Hej alla läsare", "NEWSBOT_FEEDS", "NEWSBOT_POLL_SECONDS")
    async with driven_bot(clock, tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file), NEWSBOT_PAID_BROADCASTS="1",
                          NEWSBOT_RATE_PRIVATE_INTERVAL="0") as bot:
        db_path = bot.services.settings.db_path
        await failing_once(bot, db_path)
        seen: list[tuple[str, str]] = []  # (what the admin did, a text the bot showed)

        async def run(command: str) -> list[dict[str, Any]]:
            bot.calm()  # many commands in a few seconds: the flood guard would step in
            got = await bot.send(SWEDE, command)
            assert got, command
            for message in got:
                seen.append((command, str(message.get("text") or message.get("caption") or "")))
                seen.extend((command, label) for label in labels(message))
            return got

        async def press(message: dict[str, Any], data: str, user: int = SWEDE) -> None:
            bot.calm()
            answer = await bot.press(user, message["message_id"], data)
            seen.append((data, str(answer.get("text", ""))))
            shown = tg.message(user, message["message_id"])
            if shown is not None:
                seen.append((data, str(shown.get("text", ""))))
                seen.extend((data, label) for label in labels(shown))

        for command in ("/broadcast", "/broadcast @nosuch Hej alla läsare", "/broadcast @sports Hej alla läsare",
                        "/broadcast " + "x" * 4001, "/broadcasts", "/broadcasts 5", "/stats", "/stats nu",
                        "/feeds", "/feeds alla", "/addfeed", "/addfeed notaurl sports",
                        f"/addfeed {server.url_for('/wire.xml')} cooking",
                        f"/addfeed {server.url_for('/missing.xml')} sports",
                        f"/addfeed {server.url_for('/sports/')} sports", f"/addfeed {server.url_for('/wire.xml')} sports",
                        f"/addfeed {server.url_for('/wire.xml')} sports", "/removefeed", "/removefeed två",
                        "/removefeed 99", "/removefeed 3", "/removefeed 3"):
            await run(command)

        # Every button of a preview: Urgent (twice), Cancel, Send on a cancelled one, a bogus one.
        [first] = await run("/broadcast Hej alla läsare")
        for label in ("Brådskande", "Brådskande", "Avbryt", "Skicka till"):
            await press(first, data_of(tg.message(SWEDE, first["message_id"]) or first, label)
                        if label != "Skicka till" else data_of(first, label))
        await press(first, "bc:bogus:1")
        # An expired preview.
        [late] = await run("/broadcast Hej alla läsare")
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE broadcasts SET created_at = created_at - 601 WHERE id = ?", (broadcast_id(late),))
        await press(late, data_of(late, "Skicka till"))
        # Send fast, then Stop while it is sending, Stop again, and the report.
        [fast] = await run("/broadcast Hej alla läsare")
        number = broadcast_id(fast)
        tg.set_delay(0.2)
        await press(fast, data_of(fast, "Skicka snabbt"))
        [progress] = await tg.await_for(lambda: messages_starting(tg, SWEDE, f"Utskick #{number}"), timeout=30)
        await press(progress, f"bc:stop:{number}")
        await press(progress, f"bc:stop:{number}")
        [report] = await tg.await_for(lambda: messages_starting(tg, SWEDE, f"Rapport: utskick #{number}"), timeout=60)
        seen.append(("report", str(report["text"])))
        tg.set_delay(0)
        # The plain Send, its progress to the end.
        [plain] = await run("/broadcast Hej alla läsare")
        number = broadcast_id(plain)
        await press(plain, data_of(plain, "Skicka till"))
        [done] = await tg.await_for(lambda: messages_starting(tg, SWEDE, f"Rapport: utskick #{number}"), timeout=60)
        seen.append(("report", str(done["text"])))
        seen.extend(("progress", str(c.params.get("text", ""))) for c in tg.calls()
                    if c.method in ("sendMessage", "editMessageText") and c.chat_id == SWEDE)
        seen.extend(("progress", label) for c in tg.calls() if c.chat_id == SWEDE for label in markup_labels(c.params))
        await run("/broadcasts")
        # Try now: on the failing feed, twice, and on a feed that is not polled.
        [feeds] = await run("/feeds")
        await press(feeds, "feed:try:1")
        await press(feeds, "feed:try:1")
        await press(feeds, "feed:try:99")
        await press(feeds, "feed:bogus")

    found = [(what, text, words) for what, text in seen if (words := english_words(text, keep_out=keep_out))]
    assert found == []
    assert len(seen) > 60
