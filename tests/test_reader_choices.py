"""Readers' choices: time zones, quiet hours, briefings, exclusions and /settings.

Quiet hours and briefings run on the test's simulated clock: the real Dispatcher sends to
the fake Bot API server on the same loop; the wall clock starts on a chosen day and hours
pass by stepping it (`jump_to`), never by sleeping. Commands go through
`application.process_update` (tests.test_reader_handlers).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import briefings, localtime, readers
from bot.context import Services, open_services
from bot.pipeline.botapi import BotApi
from bot.stages.deliver import RELOAD_SECONDS, Dispatcher
from storage import articles, broadcasts, chats, due, outbox
from storage.models import Article
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings, store_sample
from tests.simtime import SimClock
from tests.test_reader_handlers import READER, Driver, buttons, driven_bot

STOCKHOLM = ZoneInfo("Europe/Stockholm")
OTHER = 4343
ADMIN = 9001


def at(local: str, zone: ZoneInfo = STOCKHOLM) -> float:
    """'2027-01-14 23:50' on the wall clock in `zone`, as a timestamp."""
    return datetime.fromisoformat(local).replace(tzinfo=zone).timestamp()


def jump_to(clock: SimClock, when: float) -> None:
    """The wall clock set forward to `when`, as if the hours between had passed at once.

    The bot's waits run on the monotonic clock, which does not jump: the dispatcher finds
    what came due when it next reads the queue (within RELOAD_SECONDS), so waits for a
    message that comes due allow for that (`DUE`).
    """
    assert when >= clock.time(), "the clock only goes forward"
    clock.step(when - clock.time())


def starting_at(clock: SimClock, when: float) -> None:
    """The wall clock set to `when` before anything runs on it."""
    clock.step(when - clock.time())


# Simulated seconds within which a message that came due by a step of the wall clock is sent.
DUE = 2 * RELOAD_SECONDS


@dataclass
class Newsroom:
    """The bot's storage, matcher and dispatcher, built by hand around the test's clock."""

    tg: FakeTelegram
    services: Services
    clock: SimClock

    async def reader(
        self, chat_id: int, *, zone: str | None = None, sections: tuple[str, ...] = (),
        keywords: tuple[str, ...] = (), briefing_only: tuple[str, ...] = (), excluded: tuple[str, ...] = (),
    ) -> None:
        services = self.services
        chat = await readers.join(services, chat_id, "private", None)
        if zone:
            await readers.set_timezone(services, chat, zone)
        for slug in sections:
            await readers.add(services, chat_id, "section", slug, slug)
        for word in keywords:
            await readers.add(services, chat_id, "keyword", word, word)
        for word in briefing_only:
            await readers.add(services, chat_id, "keyword", word, word, mode="briefing")
        for word in excluded:
            await readers.add(services, chat_id, "exclude", word, word)

    async def quiet(self, chat_id: int, start: str, end: str, mode: str = "hold") -> None:
        await chats.set_quiet(self.services.db, chat_id, localtime.parse_hhmm(start), localtime.parse_hhmm(end), mode, now=self.clock.time())

    async def briefings(self, chat_id: int, *times: str) -> None:
        """Briefings at these local times, from now on (as /briefing sets them)."""
        chat = await chats.get_chat(self.services.db, chat_id)
        assert chat is not None
        minutes = [m for m in (localtime.parse_hhmm(t) for t in times) if m is not None]
        now = self.clock.time()
        next_at = localtime.next_slot(minutes, self.services.chat_zone(chat.timezone), now)
        await chats.set_briefings(self.services.db, chat_id, minutes, next_at, last_at=now, now=now)

    def story(self, title: str, *, section: str = "world", ago: float = 60.0, summary: str = "") -> Article:
        moment = self.clock.time() - ago
        return Article(
            id=f"t-{title}", url="https://news.example/" + re.sub(r"\W+", "-", title), title=title,
            summary=summary, section=section, tags=(), published_at=moment, fetched_at=moment,
        )

    async def publish(self, *stories: Article) -> list[Article]:
        """Stored, matched and queued now (by the test clock), as a poll does."""
        services = self.services
        async with services.db.write() as conn:
            stored = await articles.store_articles(conn, stories, now=self.clock.time())
        matches = {
            a.id: {chat_id: outbox.Match(reasons) for chat_id, reasons in services.matcher.match(a).items()}
            for a in stored.new
        }
        await outbox.enqueue_alerts(services.db, stored.new, matches, now=self.clock.time())
        services.outbox_wake.set()
        return stored.new

    async def schedule(self) -> int:
        return await briefings.schedule(self.services, self.clock.time())

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.services.settings.db_path) as conn:
            return conn.execute(sql, params).fetchall()

    async def held_until(self, chat_id: int, until: float, count: int) -> None:
        """Wait until `count` of the chat's rows wait for exactly `until` (quiet hours)."""
        sql = "SELECT count(*) FROM outbox WHERE chat_id = ? AND state = 'pending' AND next_attempt_at = ?"
        await self.tg.await_for(lambda: self.rows(sql, chat_id, until) == [(count,)], timeout=10, interval=0.05)

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        return self.tg.sent_messages(chat_id)

    async def await_sent(self, chat_id: int, n: int) -> list[dict[str, Any]]:
        return await self.tg.await_messages(chat_id, n, timeout=DUE)


@asynccontextmanager
async def newsroom(tg: FakeTelegram, tmp_path: Path, clock: SimClock, *, sending: bool = True) -> AsyncIterator[Newsroom]:
    settings = bot_settings(tg, tmp_path)
    services = await open_services(settings, clock=clock)
    api = BotApi(settings.api_url, settings.require_token(), connections=4, timeout=10.0)
    dispatcher = Dispatcher(services, api)
    try:
        if sending:
            await api.start()
            await dispatcher.start()
        yield Newsroom(tg, services, clock)
    finally:
        if sending:
            await dispatcher.stop(timeout=5)
            await api.close()
        await services.close()


# --- 14. quiet hours -------------------------------------------------------------------------------


async def test_quiet_hours_hold_alerts_for_one_overnight_message(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    starting_at(clock, at("2027-01-14 21:30"))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world",))
        await room.quiet(READER, "22:00", "07:00")
        await room.publish(room.story("Evening story"))
        (evening,) = await room.await_sent(READER, 1)
        assert "Evening story" in evening["text"]

        morning = at("2027-01-15 07:00")
        jump_to(clock, at("2027-01-14 23:50"))
        await room.publish(room.story("Late story"))
        await room.held_until(READER, morning, 1)
        jump_to(clock, at("2027-01-15 00:30"))  # past midnight, still quiet
        await room.publish(room.story("After midnight story"))
        await room.held_until(READER, morning, 2)
        assert len(room.sent(READER)) == 1

        jump_to(clock, morning + 5)
        overnight = (await room.await_sent(READER, 2))[1]
        assert overnight["text"].startswith("During your quiet hours (22:00–07:00): 2 stories")
        assert "Late story" in overnight["text"] and "After midnight story" in overnight["text"]
        assert "disable_notification" not in tg.calls("sendMessage")[-1].params

        await room.publish(room.story("Breakfast story"))
        assert "Breakfast story" in (await room.await_sent(READER, 3))[2]["text"]


async def test_daytime_quiet_hours_are_named_by_their_times_not_as_overnight(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    starting_at(clock, at("2027-01-14 10:00"))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world",))
        await room.quiet(READER, "09:00", "17:00")
        await room.publish(room.story("Lunch story"), room.story("Afternoon story", ago=30))
        afternoon = at("2027-01-14 17:00")
        await room.held_until(READER, afternoon, 2)
        jump_to(clock, afternoon + 5)
        (held,) = await room.await_sent(READER, 1)
    assert held["text"].startswith("During your quiet hours (09:00–17:00): 2 stories"), held["text"]
    assert "overnight" not in held["text"].casefold()


@pytest.mark.parametrize(
    ("evening", "end_utc"),
    [
        # Summer time begins at 02:00 that night: 07:00 is 05:00 UTC, not 06:00.
        ("2027-03-27 23:00", "2027-03-28 05:00"),
        # Summer time ends at 03:00 that night: 07:00 is 06:00 UTC, not 05:00.
        ("2027-10-30 23:00", "2027-10-31 06:00"),
    ],
)
async def test_quiet_hours_end_at_local_seven_across_a_dst_change(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path, evening: str, end_utc: str
) -> None:
    tg = sim_tg
    starting_at(clock, at(evening))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world",))
        await room.quiet(READER, "22:00", "07:00")
        await room.publish(room.story("Night story"))
        end = at(end_utc, ZoneInfo("UTC"))
        await room.held_until(READER, end, 1)
        jump_to(clock, end + 5)
        (overnight,) = await room.await_sent(READER, 1)
        assert overnight["text"].startswith("During your quiet hours (22:00–07:00): 1 story") and "Night story" in overnight["text"]


async def test_silent_quiet_hours_deliver_without_sound(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    starting_at(clock, at("2027-01-14 23:00"))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world",))
        await room.quiet(READER, "22:00", "07:00", "silent")
        await room.publish(room.story("Night story"))
        (night,) = await room.await_sent(READER, 1)
        assert "Night story" in night["text"]
        assert tg.calls("sendMessage")[-1].params.get("disable_notification") is True

        jump_to(clock, at("2027-01-15 08:00"))
        await room.publish(room.story("Day story"))
        await room.await_sent(READER, 2)
        assert "disable_notification" not in tg.calls("sendMessage")[-1].params


async def test_urgent_broadcasts_ignore_quiet_hours_ordinary_ones_wait(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    starting_at(clock, at("2027-01-14 23:00"))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world",))
        await room.quiet(READER, "22:00", "07:00")
        db = room.services.db
        for text, urgent in (("Ordinary notice", False), ("Urgent: storm warning", True)):
            broadcast_id = await broadcasts.create(db, admin_id=ADMIN, admin_chat_id=ADMIN, html=text, audience=None, now=clock.time())
            await broadcasts.start(db, broadcast_id, now=clock.time(), expires_before=0, urgent=urgent)
        room.services.outbox_wake.set()
        (urgent_message,) = await room.await_sent(READER, 1)
        assert urgent_message["text"] == "Urgent: storm warning"
        morning = at("2027-01-15 07:00")
        await room.held_until(READER, morning, 1)
        jump_to(clock, morning + 5)
        assert (await room.await_sent(READER, 2))[1]["text"] == "Ordinary notice"


# --- 15. briefings -----------------------------------------------------------------------------------


async def test_each_reader_gets_one_briefing_at_their_own_time(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    new_york = ZoneInfo("America/New_York")
    tg = sim_tg
    starting_at(clock, at("2027-01-14 06:00"))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world",))
        await room.reader(OTHER, zone="America/New_York", sections=("world",))
        await room.briefings(READER, "07:30")
        await room.briefings(OTHER, "07:30")
        jump_to(clock, at("2027-01-14 06:10"))
        await room.publish(room.story("Budget vote tonight"))
        await room.await_sent(READER, 1)
        await room.await_sent(OTHER, 1)  # the instant alerts
        assert await room.schedule() == 0

        jump_to(clock, at("2027-01-14 07:30"))
        assert await room.schedule() == 1
        brief = (await room.await_sent(READER, 2))[1]
        assert brief["text"].startswith("Your briefing, 07:30: 1 story") and "Budget vote tonight" in brief["text"]
        assert len(room.sent(OTHER)) == 1
        assert await room.schedule() == 0  # once per slot

        jump_to(clock, at("2027-01-14 07:30", new_york))
        assert await room.schedule() == 1
        other = (await room.await_sent(OTHER, 2))[1]
        assert other["text"].startswith("Your briefing, 07:30: 1 story")
        assert "14 Jan 2027 00:09 EST" in other["text"]  # 06:09 in Stockholm
        assert await room.schedule() == 0
        assert len(room.sent(READER)) == 2
        # The next ones are due at 07:30 tomorrow, each in its own zone.
        assert room.rows("SELECT id, next_briefing_at FROM chats ORDER BY id") == [
            (READER, at("2027-01-15 07:30")), (OTHER, at("2027-01-15 07:30", new_york))
        ]


async def test_briefing_lists_keywords_first_each_story_once_and_the_rest_as_more(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    starting_at(clock, at("2027-01-14 06:00"))
    async with newsroom(tg, tmp_path, clock) as room:
        await room.reader(READER, sections=("world", "sports"), briefing_only=("drones",), excluded=("football",))
        await room.briefings(READER, "07:30")
        jump_to(clock, at("2027-01-14 06:05"))
        await room.publish(
            room.story("Drones over the arena", section="business", ago=50),  # the keyword alone
            room.story("Drones over Riga", ago=40),  # keyword and section: listed once
            room.story("Football final tonight", section="sports", ago=30),  # excluded
            *(room.story(f"World story number {n}", ago=20 - n / 10) for n in range(30)),
        )
        # The section stories go at once; the story only the briefing-only keyword matched waits.
        await tg.await_for(lambda: any("Drones over Riga" in m["text"] for m in room.sent(READER)), timeout=10)
        jump_to(clock, at("2027-01-14 07:30"))
        assert await room.schedule() == 1
        brief = await tg.await_for(
            lambda: next((m for m in room.sent(READER) if m["text"].startswith("Your briefing")), None), timeout=DUE
        )
        alerts = [m for m in room.sent(READER) if not m["text"].startswith("Your briefing")]
    text = brief["text"]
    assert text.startswith("Your briefing, 07:30: 32 stories")
    assert max(text.index("Drones over the arena"), text.index("Drones over Riga")) < text.index("World story number")
    assert text.count("Drones over Riga") == 1 and "Football" not in text
    more = re.search(r"…and (\d+) more — /latest$", text)
    assert more is not None
    shown = len(re.findall(r"^\d+\. ", text, flags=re.MULTILINE))
    assert shown + int(more.group(1)) == 32
    assert [label for label, _ in buttons(brief)] == [f"Related {n}" for n in range(1, shown + 1)]
    # The briefing-only keyword and the exclusion sent nothing at once; the sections did.
    assert any("World story number 0\n" in m["text"] for m in alerts)
    assert not any("Drones over the arena" in m["text"] or "Football" in m["text"] for m in alerts)


async def test_a_restart_between_story_and_briefing_delivers_it_once(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    starting_at(clock, at("2027-01-14 06:00"))
    async with newsroom(tg, tmp_path, clock, sending=False) as room:
        await room.reader(READER, briefing_only=("drones",))
        await room.briefings(READER, "07:30")
        jump_to(clock, at("2027-01-14 06:05"))
        await room.publish(room.story("Drones over Riga"))
        assert room.rows("SELECT count(*) FROM outbox") == [(0,)]  # briefing only
        jump_to(clock, at("2027-01-14 07:30"))
        assert await room.schedule() == 1
    # Stopped before it was sent; started again within the same minute.
    async with newsroom(tg, tmp_path, clock) as room:
        assert await room.schedule() == 0
        (brief,) = await room.await_sent(READER, 1)
        assert brief["text"].startswith("Your briefing, 07:30: 1 story") and "Drones over Riga" in brief["text"]
        await tg.await_for(lambda: room.rows("SELECT state FROM outbox") == [("sent",)], timeout=10, interval=0.05)
        jump_to(clock, at("2027-01-14 07:31"))
        assert await room.schedule() == 0
    assert len(tg.sent_messages(READER)) == 1


# --- 13. time zones ----------------------------------------------------------------------------------


@pytest.fixture
async def bot(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, sim_tg, tmp_path) as driver:
        yield driver


async def test_a_readers_zone_is_used_for_every_time_shown(bot: Driver) -> None:
    invalid = await bot.reply(READER, "/timezone Mars/Olympus_Mons")
    assert "is not a time zone I know" in invalid["text"] and "/timezone Europe/London" in invalid["text"]
    chosen = await bot.reply(READER, "/timezone europe/london")
    assert chosen["text"].startswith("Time zone: Europe/London. It is ")
    assert re.search(r"It is \d\d:\d\d (GMT|BST) there", chosen["text"])

    latest = await bot.reply(READER, "/latest sports 1")
    assert "12 Mar 2025 17:20 GMT" in latest["text"]  # 18:20 in Stockholm
    assert "17:20 GMT" in (await bot.reply(READER, "Sweden beats Norway"))["text"]
    settings = await bot.reply(READER, "/settings")
    assert re.search(r"Time zone: Europe/London \(now \d\d:\d\d (GMT|BST)\)", settings["text"])
    briefing = await bot.reply(READER, "/briefing 07:30")
    assert "(Europe/London)" in briefing["text"] and re.search(r"The next at 07:30 (GMT|BST)", briefing["text"])

    await bot.reply(READER, "/start sports")
    published = bot.services.clock.time() - 60
    await bot.publish(Article(
        id="zone-story", url="https://news.example/zone", title="Zone story", summary="", section="sports",
        tags=(), published_at=published, fetched_at=published,
    ))
    alert = await bot.tg.await_for(lambda: next((m for m in bot.tg.sent_messages(READER) if "Zone story" in m["text"]), None), timeout=10)
    london = datetime.fromtimestamp(published, ZoneInfo("Europe/London")).strftime("%d %b %Y %H:%M %Z")
    assert london in alert["text"]

    # Buttons alone: Tokyo, then back to the newsroom's zone.
    shown = await bot.reply(READER, "/settings")
    assert ("Tokyo", "tz:4") in buttons(shown)
    assert (await bot.press(READER, shown["message_id"], "tz:4"))["text"] == "Time zone: Asia/Tokyo"
    assert "13 Mar 2025 02:20 JST" in (await bot.reply(READER, "/latest sports 2"))["text"]
    await bot.press(READER, shown["message_id"], "tz:0")
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.timezone is None  # the newsroom's own
    assert "12 Mar 2025 18:20 CET" in (await bot.reply(READER, "/latest sports 2"))["text"]


# --- 16. exclusions ----------------------------------------------------------------------------------


async def test_exclusions_remove_stories_everywhere_and_trade_places_with_keywords(bot: Driver) -> None:
    await bot.reply(READER, "/start sports")
    excluded = await bot.reply(READER, "/exclude football")
    assert excluded["text"].startswith("Excluded football")
    await bot.reply(OTHER, "/start sports")
    now = bot.services.clock.time()
    await bot.publish(
        Article(id="fb", url="https://news.example/fb", title="Football final tonight", summary="", section="sports",
                tags=(), published_at=now - 60, fetched_at=now - 60),
        Article(id="ski", url="https://news.example/ski", title="Ski results from Falun", summary="", section="sports",
                tags=(), published_at=now - 30, fetched_at=now - 30),
    )
    await bot.tg.await_for(lambda: sum("Ski results" in m["text"] for m in bot.tg.sent_messages(OTHER)) == 1, timeout=10)
    await bot.tg.await_for(lambda: sum("Ski results" in m["text"] for m in bot.tg.sent_messages(READER)) == 1, timeout=10)
    assert any("Football final" in m["text"] for m in bot.tg.sent_messages(OTHER))
    assert not any("Football final" in m["text"] for m in bot.tg.sent_messages(READER))
    assert "Football final" not in (await bot.reply(READER, "/latest sports 5"))["text"]
    assert "Football final" in (await bot.reply(OTHER, "/latest sports 5"))["text"]

    subs = await bot.reply(READER, "/mysubs")
    assert "Never about: football" in subs["text"]
    assert ("⚡ Instant", next(d for label, d in buttons(subs) if label == "⚡ Instant")) in buttons(subs)
    assert any(label == "✖ not football" for label, _ in buttons(subs))

    followed = await bot.reply(READER, "/follow football")
    assert "Following football — you had excluded it before; that exclusion is removed." in followed["text"]
    assert await bot.keywords(READER) == {"football"}
    again = await bot.reply(READER, "/exclude football")
    assert "Excluded football — you followed it before; that keyword is removed." in again["text"]
    assert await bot.keywords(READER) == set()
    assert "No longer excluded: football." in (await bot.reply(READER, "/include football"))["text"]
    assert "Football final" in (await bot.reply(READER, "/latest sports 5"))["text"]
    assert not [s for s in await bot.subs(READER) if s.kind == "exclude"]


async def test_mysubs_buttons_remove_exclusions_and_switch_modes(bot: Driver) -> None:
    await bot.reply(READER, "/start sports")
    await bot.reply(READER, "/exclude football")
    subs = await bot.reply(READER, "/mysubs")
    mode = next(d for label, d in buttons(subs) if label == "⚡ Instant")
    answer = await bot.press(READER, subs["message_id"], mode)
    assert answer["text"].startswith("Sports: in your briefing only.")
    redrawn = bot.tg.message(READER, subs["message_id"])
    assert redrawn is not None and "Sports (briefing only)" in redrawn["text"]
    assert any(label == "📰 Briefing only" for label, _ in buttons(redrawn))
    (section,) = [s for s in await bot.subs(READER) if s.kind == "section"]
    assert section.mode == "briefing"

    remove = next(d for label, d in buttons(redrawn) if label == "✖ not football")
    assert (await bot.press(READER, subs["message_id"], remove))["text"] == "Removed exclusion of football"
    assert [s.kind for s in await bot.subs(READER)] == ["section"]


# --- 17. /settings ------------------------------------------------------------------------------------


async def test_every_setting_is_shown_and_reachable_by_buttons(bot: Driver) -> None:
    await bot.reply(READER, "/start world")
    shown = await bot.reply(READER, "/settings")
    for line in ("Alerts: on", "Time zone: Europe/Stockholm", "Quiet hours: off", "Briefings: off",
                 "Combine bursts: on", "Link previews: off", "Following 1 section, 0 keywords; 0 excluded words"):
        assert line in shown["text"], line
    message_id = shown["message_id"]

    async def choose(data: str) -> str:
        bot.calm()
        await bot.press(READER, message_id, data)
        message = bot.tg.message(READER, message_id)
        assert message is not None
        return str(message["text"])

    assert "Alerts: paused" in await choose("set:paused")
    assert "Alerts: on" in await choose("set:paused")
    assert "Link previews: on" in await choose("set:link_previews")
    assert "Combine bursts: off" in await choose("set:combine")
    assert "Time zone: America/New_York" in await choose("tz:3")
    assert "Quiet hours: 22:00–07:00, alerts held" in await choose(f"quiet:{22 * 60}-{7 * 60}")
    assert "Quiet hours: 22:00–07:00, alerts delivered silently" in await choose("quiet:mode")
    assert "Quiet hours: 23:00–06:00" in await choose(f"quiet:{23 * 60}-{6 * 60}")
    assert "Quiet hours: off" in await choose("quiet:off")
    assert re.search(r"Briefings: 07:30 — next at 07:30 E[SD]T", await choose(f"brief:{7 * 60 + 30}"))
    assert "Briefings: 07:30, 18:00" in await choose(f"brief:{18 * 60}")
    assert "Briefings: off" in await choose("brief:off")
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None
    assert (chat.paused, chat.link_previews, chat.combine, chat.timezone) == (False, True, False, "America/New_York")
    assert (chat.quiet_start, chat.quiet_end, chat.quiet_mode, chat.briefings) == (None, None, "silent", ())

    # Sections and subscriptions are a button away too.
    before = len(bot.tg.sent_messages(READER))
    await bot.press(READER, message_id, "set:sections")
    await bot.press(READER, message_id, "set:mysubs")
    sections, subs = bot.tg.sent_messages(READER)[before:]
    assert ("✅ World", "sec:world") in buttons(sections)
    assert "Sections: World" in subs["text"]
    labels = [label for label, _ in buttons(bot.tg.message(READER, message_id) or {})]
    assert {"Pause alerts", "Choose sections", "My subscriptions", "Quiet off", "Briefings off"} <= set(labels)


async def test_a_late_briefing_shows_the_readers_time_and_no_briefing_repeats_a_story(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Briefings at 07:30 and 08:00. The bot is down at 07:30 and starts at 07:35 unable to
    send; it composes the 07:30 briefing once, then stops. The briefing goes out at 07:45
    with what came until then, saying 07:30; the 08:00 one carries only what came after it."""
    tg = sim_tg
    starting_at(clock, at("2027-01-14 06:00"))
    async with newsroom(tg, tmp_path, clock, sending=False) as room:
        await room.reader(READER, briefing_only=("drones",))
        await room.briefings(READER, "07:30", "08:00")
        jump_to(clock, at("2027-01-14 07:00"))
        await room.publish(room.story("Drones over Riga", ago=0))
    jump_to(clock, at("2027-01-14 07:35"))
    async with newsroom(tg, tmp_path, clock, sending=False) as room:
        assert await room.schedule() == 1
        # Composed (as a send would), then the bot stopped before the message went out.
        (row,) = await due.due_messages(room.services.db, outbox.LANE_PERSONAL, clock.time(), 10)
        assert "Drones over Riga" in (await briefings.compose(room.services, row)).html
        jump_to(clock, at("2027-01-14 07:40"))
        await room.publish(room.story("Drones over Tallinn", ago=0))
    jump_to(clock, at("2027-01-14 07:45"))
    async with newsroom(tg, tmp_path, clock) as room:
        late = (await room.await_sent(READER, 1))[0]["text"]
        await tg.await_for(lambda: room.rows("SELECT state FROM outbox") == [("sent",)], timeout=10, interval=0.05)
        jump_to(clock, at("2027-01-14 07:50"))
        await room.publish(room.story("Drones over Vilnius", ago=0))
        jump_to(clock, at("2027-01-14 08:00"))
        assert await room.schedule() == 1
        second = (await room.await_sent(READER, 2))[1]["text"]
    assert late.startswith("Your briefing, 07:30: 2 stories")
    assert "Drones over Riga" in late and "Drones over Tallinn" in late
    assert second.startswith("Your briefing, 08:00: 1 story")
    assert "Drones over Vilnius" in second and "Riga" not in second and "Tallinn" not in second


async def test_a_briefing_with_nothing_new_is_not_sent_unless_the_reader_asked_for_it(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """No "0 stories" message: an empty briefing is skipped, and the reader who chose
    "Nothing new: tell me" in /settings is told so in words instead."""
    tg = sim_tg
    starting_at(clock, at("2027-01-14 07:00"))
    async with driven_bot(clock, tg, tmp_path) as bot:
        await bot.reply(READER, "/follow drones")
        await bot.reply(READER, "/briefing 07:30")
        await clock.run_until(at("2027-01-14 07:35"))
        assert not [m for m in tg.sent_messages(READER) if "briefing," in m["text"]]
        with sqlite3.connect(bot.services.settings.db_path) as conn:
            assert conn.execute("SELECT state FROM outbox WHERE kind = 'briefing'").fetchall() == [("cancelled",)]

        shown = await bot.reply(READER, "/settings")
        assert "A briefing with nothing new: not sent" in shown["text"]
        assert ("Nothing new: tell me", "set:nothing_new") in buttons(shown)
        assert (await bot.press(READER, shown["message_id"], "set:nothing_new"))["text"] == "Saved"
        redrawn = tg.message(READER, shown["message_id"])
        assert redrawn is not None and "A briefing with nothing new: sent, saying so" in redrawn["text"]
        assert ("Nothing new: stay quiet", "set:nothing_new") in buttons(redrawn)

        await bot.reply(READER, "/briefing 07:40")
        await clock.run_until(at("2027-01-14 07:45"))
        (told,) = [m for m in tg.sent_messages(READER) if m["text"].startswith("Your briefing")]
    assert told["text"] == "Your briefing, 07:40\n\nNothing new for your sections and keywords since the last one."
