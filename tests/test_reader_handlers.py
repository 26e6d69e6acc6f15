"""Reader handlers at their edges: bad input, limits, stale buttons, pause, stop, groups.

Each update goes through `application.process_update` of the app `build_app` makes,
initialised against the fake Bot API server, with a real SQLite file: the handler has
finished (and its replies reached the fake) when the call returns. The bot and the fake run
on the test's simulated clock, so the pause between two replies to one chat takes no time.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import TypeHandler

from bot.context import NewsApp, NewsContext, Services
from bot.flood import FloodGuard
from bot.stages import poll
from storage import articles, chats, subscriptions
from storage.models import Article, Subscription
from tests.fakes.telegram_api import FakeTelegram, RecordedCall, validate_telegram_html
from tests.harness import bot_settings, running_bot, store_sample
from tests.simtime import SimClock

READER = 4242
GROUP = -1001234567890
MEMBER = 501
GROUP_ADMIN = 502
SORRY = "Sorry, something went wrong"
_update_ids = itertools.count(1)


@dataclass
class Driver:
    """Feeds updates to the app's handlers and collects what the bot did about them."""

    app: NewsApp
    tg: FakeTelegram
    errors: list[BaseException] = field(default_factory=list)

    @property
    def services(self) -> Services:
        return self.app.bot_data.services

    async def process(self, update: dict[str, Any]) -> list[RecordedCall]:
        """One update through every handler; returns the Bot API calls it caused."""
        before = len(self.tg.calls())
        await self.app.process_update(Update.de_json({"update_id": next(_update_ids), **update}, self.app.bot))
        return self.tg.calls()[before:]

    async def send(self, chat_id: int, text: str, **kwargs: Any) -> list[dict[str, Any]]:
        """A user writes `text`; returns the messages the bot sent to that chat in reply."""
        before = len(self.tg.sent_messages(chat_id))
        await self.process(self.tg.user_message(chat_id, text, push=False, **kwargs))
        return self.tg.sent_messages(chat_id)[before:]

    async def reply(self, chat_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        """The bot's one reply to `text`."""
        replies = await self.send(chat_id, text, **kwargs)
        assert len(replies) == 1, f"{text!r} got {[r.get('text') for r in replies]}"
        return replies[0]

    async def press(self, chat_id: int, message_id: int, data: str, **kwargs: Any) -> dict[str, Any]:
        """A user presses a button with `data`; returns the answerCallbackQuery parameters."""
        calls = await self.process(self.tg.callback_query(chat_id, message_id, data, push=False, **kwargs))
        answers = [c for c in calls if c.method == "answerCallbackQuery"]
        assert len(answers) == 1, f"{data!r} was answered {len(answers)} times"
        return dict(answers[0].params)

    async def keywords(self, chat_id: int) -> set[str]:
        return {s.value for s in await self.subs(chat_id) if s.kind == "keyword"}

    async def sections(self, chat_id: int) -> set[str]:
        return {s.value for s in await self.subs(chat_id) if s.kind == "section"}

    async def subs(self, chat_id: int) -> list[Subscription]:
        return await subscriptions.subscriptions_for_chat(self.services.db, chat_id)

    def matched(self, chat_id: int, article: Article) -> bool:
        return chat_id in self.services.matcher.match(article)

    def calm(self) -> None:
        """As after a quiet minute: the flood guard (a fresh one) remembers no chat."""
        (guard,) = self.app.handlers[-1]
        assert isinstance(guard, TypeHandler) and isinstance(guard.callback, FloodGuard)
        self.app.remove_handler(guard, group=-1)
        self.app.add_handler(TypeHandler(Update, FloodGuard()), group=-1)

    async def publish(self, *stories: Article) -> list[Article]:
        """New stories stored and matched as a poll does; the running dispatcher sends
        their alerts. Returns the stories as stored (with their rowids)."""
        async with self.services.db.write() as conn:
            stored = await articles.store_articles(conn, stories, now=self.services.clock.time())
        await poll.enqueue_alerts(self.services, stored.new)
        return stored.new


def html_of(message: dict[str, Any], tg: FakeTelegram) -> str:
    """The HTML the bot sent for `message` (the fake keeps only the visible text)."""
    for call in tg.calls("sendMessage"):
        if call.ok and call.result["message_id"] == message["message_id"] and call.result["chat"]["id"] == message["chat"]["id"]:
            return str(call.params["text"])
    raise LookupError("no such message")


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


def story(
    title: str, *, summary: str = "", tags: tuple[str, ...] = (), section: str = "world",
    published_at: float = 1_741_800_000.0,
) -> Article:
    return Article(
        id=f"test-{title}", url="https://news.example/" + title.replace(" ", "-"), title=title,
        summary=summary, section=section, tags=tags, published_at=published_at,
        fetched_at=published_at,
    )


def assert_clean(driver: Driver) -> None:
    """Nothing failed: no handler raised, every Bot API call was accepted, HTML was valid."""
    assert driver.errors == []
    # Redrawing a list that had not changed is refused as "not modified", and that is fine.
    refused = [
        (c.method, c.description) for c in driver.tg.calls()
        if not c.ok and "message is not modified" not in (c.description or "")
    ]
    assert refused == []
    for call in driver.tg.calls():
        if call.method in ("sendMessage", "editMessageText"):
            assert validate_telegram_html(str(call.params["text"])) is None
            assert SORRY not in str(call.params["text"])


@asynccontextmanager
async def driven_bot(clock: SimClock, tg: FakeTelegram, tmp_path: Path, **env: str) -> AsyncIterator[Driver]:
    """The bot on `clock`, against `tg` (the fake on the same loop and clock: `sim_tg`)."""
    settings = bot_settings(tg, tmp_path, **env)
    async with running_bot(settings, polling=False, clock=clock) as rt:
        app = rt.app
        driver = Driver(app, tg)

        async def record(update: object, context: NewsContext) -> None:
            assert context.error is not None
            driver.errors.append(context.error)

        app.add_error_handler(record)
        yield driver
    assert_clean(driver)


@pytest.fixture
async def bot(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, sim_tg, tmp_path) as driver:
        yield driver


# --- usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "usage"),
    [
        ("/follow", "Usage: /follow"),
        ("/follow    ", "Usage: /follow"),
        ('/follow ""', "Usage: /follow"),
        ("/follow , ,", "Usage: /follow"),
        ("/subscribe", "Usage: /follow"),
        ("/unfollow", "Usage: /unfollow"),
        ("/unfollow «»", "Usage: /unfollow"),
        ("/unsubscribe", "Usage: /unfollow"),
        ("/search", "Usage: /search"),
        ("/search ?!", "Usage: /search"),
        ("/search ___", "Usage: /search"),
        ("/related", "Usage: /related"),
        ("/related —", "Usage: /related"),
        ("/latest sports world", "Usage: /latest"),
        ("/latest 3 4", "Usage: /latest"),
        ("/latest sports 3 extra", "Usage: /latest"),
    ],
)
async def test_missing_or_wrong_arguments_get_the_usage(bot: Driver, text: str, usage: str) -> None:
    answer = await bot.reply(READER, text)
    assert usage in answer["text"]
    assert "Example:" in answer["text"]


# --- /follow, /unfollow ------------------------------------------------------------------------


async def test_keyword_length_is_checked_after_trimming(bot: Driver) -> None:
    short = await bot.reply(READER, "/follow a")
    assert "too short" in short["text"] and "2 to 64 characters" in short["text"]
    long = await bot.reply(READER, "/follow " + "x" * 65)
    assert "too long" in long["text"] and "2 to 64 characters" in long["text"]
    trimmed = await bot.reply(READER, "/follow    ab   ")
    assert "Following ab." in trimmed["text"]
    longest = await bot.reply(READER, "/follow " + "y" * 64)
    assert "Following " + "y" * 64 in longest["text"]
    assert await bot.keywords(READER) == {"ab", "y" * 64}


async def test_subscription_limit_is_stated(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    async with driven_bot(clock, sim_tg, tmp_path, NEWSBOT_MAX_SUBSCRIPTIONS="3") as bot:
        answer = await bot.reply(READER, "/follow one, two, three, four")
        assert "Following one, two, three." in answer["text"]
        assert "Not added: four." in answer["text"]
        assert "limit of 3 subscriptions" in answer["text"]
        assert await bot.keywords(READER) == {"one", "two", "three"}

        again = await bot.reply(READER, "/follow five")
        assert "limit of 3 subscriptions" in again["text"]

        welcome = await bot.reply(READER, "/start")
        answer_button = await bot.press(READER, welcome["message_id"], "sec:sports")
        assert "at most 3 subscriptions" in answer_button["text"]
        deep = await bot.reply(READER, "/start sports")
        assert "limit of 3 subscriptions" in deep["text"]
        assert await bot.sections(READER) == set()

        # Room again after one goes; the rest of a long list is named, within one message.
        await bot.reply(READER, "/unfollow one")
        crowd = await bot.reply(READER, "/follow two, " + ", ".join(f"w{i:03}" for i in range(400)))
        assert "Following w000." in crowd["text"] and "Already following two." in crowd["text"]
        assert re.search(r"Not added: w001, w002, .* and \d+ more\. You have reached the limit of 3", crowd["text"])
        assert await bot.keywords(READER) == {"two", "three", "w000"}


async def test_several_keywords_and_quoted_phrases(bot: Driver) -> None:
    answer = await bot.reply(READER, '/follow drones, "north korea", Malmö')
    assert "Following drones, north korea, malmo." in answer["text"]
    spaced = await bot.reply(READER, '/follow drones “north korea” nato')
    assert "Following nato." in spaced["text"]
    assert "Already following drones, north korea." in spaced["text"]
    assert await bot.keywords(READER) == {"drones", "north korea", "malmo", "nato"}

    assert bot.matched(READER, story("North Korea's new drone", summary="Pyongyang tests it."))
    assert bot.matched(READER, story("Malmö FF wins", section="sports"))
    assert not bot.matched(READER, story("North of Korea", summary="Nothing here."))

    subs = await bot.reply(READER, "/mysubs")
    assert "Keywords: drones, north korea, malmo, nato" in subs["text"]
    assert "(4 of 50)" in subs["text"]


async def test_the_welcome_and_help_name_the_newsroom(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    async with driven_bot(clock, sim_tg, tmp_path, NEWSBOT_NAME="Herald <News> & Co") as named:
        welcome = await named.reply(READER, "/start")
        assert welcome["text"].startswith("Welcome to Herald <News> & Co! Pick the sections")
        assert "newsbot" not in welcome["text"]
        deep = await named.reply(READER, "/start sports")
        assert deep["text"] == "Welcome to Herald <News> & Co! You now get alerts from Sports."
        helped = await named.reply(READER, "/help")
        assert helped["text"].startswith("Herald <News> & Co sends you the news you choose")
        assert "newsbot" not in helped["text"]
    (tmp_path / "plain").mkdir()
    async with driven_bot(clock, sim_tg, tmp_path / "plain") as plain:
        assert (await plain.reply(READER, "/help"))["text"].startswith("newsbot sends you the news you choose")


async def test_the_follow_answer_names_what_a_story_must_mention(bot: Driver) -> None:
    """"…that mentions malmo", never "…that mentions them"."""
    one = await bot.reply(READER, "/follow malmo")
    assert one["text"] == "Following malmo. You will get an alert for every new story that mentions malmo."
    two = await bot.reply(READER, '/follow drones, "north korea"')
    assert two["text"].endswith("every new story that mentions drones or north korea.")
    three = await bot.reply(READER, "/follow nato, ukraine, baltic")
    assert three["text"].endswith("that mentions nato, ukraine or baltic.")
    many = await bot.reply(READER, "/follow riga, oslo, bergen, turku")
    assert many["text"].endswith("that mentions any of these keywords.")
    assert not [m for m in bot.tg.sent_messages(READER) if "them" in m["text"]]


async def test_unfollow_of_something_not_followed(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    await bot.reply(READER, "/sections")
    missing = await bot.reply(READER, "/unfollow moon")
    assert "You do not follow: moon. See /mysubs." in missing["text"]
    both = await bot.reply(READER, "/unfollow drones, moon, x")
    assert "Stopped: drones." in both["text"] and "You do not follow: moon, x." in both["text"]
    assert await bot.keywords(READER) == set()


async def test_unfollow_removes_a_section_by_name(bot: Driver) -> None:
    await bot.reply(READER, "/start sports")
    answer = await bot.reply(READER, "/unfollow Sports")
    assert "Stopped: Sports." in answer["text"]
    assert await bot.sections(READER) == set()


# --- /latest -------------------------------------------------------------------------------


def story_count(message: dict[str, Any]) -> int:
    """Stories in a list reply: one link each, plus the "…and N more" that did not fit."""
    links = sum(1 for e in message.get("entities", []) if e["type"] == "text_link")
    more = re.search(r"…and (\d+) more", message["text"])
    return links + (int(more.group(1)) if more else 0)


async def test_latest_unknown_section_lists_the_sections(bot: Driver) -> None:
    answer = await bot.reply(READER, "/latest moon")
    assert "Unknown section “moon”" in answer["text"]
    assert "Sweden, Living, World, Business, Sports, Entertainment" in answer["text"]
    odd = await bot.reply(READER, "/latest ²")  # a digit to str.isdigit, not a number
    assert "Unknown section “²”" in odd["text"]


async def test_latest_count_bounds(bot: Driver) -> None:
    assert story_count(await bot.reply(READER, "/latest")) == 5
    assert story_count(await bot.reply(READER, "/latest 1")) == 1
    most = await bot.reply(READER, "/latest 20")
    assert story_count(most) == 20 and len(most["text"]) <= 4096
    for bad in ("0", "21", "007" * 300):
        answer = await bot.reply(READER, f"/latest {bad}")
        assert "Give a number from 1 to 20." in answer["text"]
    sports = await bot.reply(READER, "/latest 2 sports")
    assert "Latest in Sports" in sports["text"] and story_count(sports) == 2
    same = await bot.reply(READER, "/latest SPORTS 2")
    assert same["text"] == sports["text"]


async def test_latest_follows_the_readers_sections(bot: Driver) -> None:
    assert "Latest news" in (await bot.reply(READER, "/latest"))["text"]
    await bot.reply(READER, "/start entertainment")
    mine = await bot.reply(READER, "/latest 10")
    assert "Latest in your sections" in mine["text"]
    assert story_count(mine) == 2  # the sample has two entertainment stories
    assert "ABBA museum" in mine["text"]


# --- buttons ---------------------------------------------------------------------------------


async def test_unknown_or_stale_buttons_change_nothing(bot: Driver) -> None:
    await bot.reply(READER, "/start world")
    await bot.reply(READER, "/follow drones")
    subs = await bot.reply(READER, "/mysubs")
    before = await bot.subs(READER)
    stale = [
        "sec:moon",
        "sec:",
        "unsub:999999",
        "unsub:-1",
        "unsub:" + "9" * 40,
        "unsub:abc",
        "mute:1:9",
        "mute:1",
        "mute:²:1",
        "mute:" + "9" * 30 + ":0",
        "rel:999999",
        "rel:" + "1" * 50,
        "set:moon",
        "garbage",
        "x" * 64,
    ]
    for data in stale:
        bot.calm()
        answer = await bot.press(READER, subs["message_id"], data)
        assert answer.get("text") in {
            "This button is no longer valid.", "Already removed.", "This story is no longer available."
        }, data
    assert await bot.subs(READER) == before
    assert len(bot.tg.sent_messages(READER)) == 3  # no new message for any of them

    # The button of a subscription removed meanwhile.
    drones = next(data for text, data in buttons(subs) if text == "✖ drones")
    await bot.reply(READER, "/unfollow drones")
    answer = await bot.press(READER, subs["message_id"], drones)
    assert answer.get("text") == "Already removed."
    assert await bot.sections(READER) == {"world"}


async def test_another_chats_subscription_button_is_refused(bot: Driver) -> None:
    await bot.reply(READER + 1, "/follow drones")
    (theirs,) = await bot.subs(READER + 1)
    mine = await bot.reply(READER, "/mysubs")
    answer = await bot.press(READER, mine["message_id"], f"unsub:{theirs.id}")
    assert answer.get("text") == "Already removed."
    assert await bot.keywords(READER + 1) == {"drones"}


async def test_section_buttons_edit_the_same_message(bot: Driver) -> None:
    welcome = await bot.reply(READER, "/start")
    answer = await bot.press(READER, welcome["message_id"], "sec:world")
    assert answer["text"] == "Added World"
    edited = bot.tg.message(READER, welcome["message_id"])
    assert edited is not None and ("✅ World", "sec:world") in buttons(edited)
    answer = await bot.press(READER, welcome["message_id"], "sec:world")
    assert answer["text"] == "Removed World"
    assert await bot.sections(READER) == set()
    assert len(bot.tg.sent_messages(READER)) == 1


# --- deep links --------------------------------------------------------------------------------


async def test_deep_links_subscribe_in_one_tap(bot: Driver) -> None:
    sports = await bot.reply(READER, "/start sports")
    assert "You now get alerts from Sports" in sports["text"]
    drones = await bot.reply(READER, "/start kw-drones")
    assert "Following drones." in drones["text"]
    phrase = await bot.reply(READER, "/start kw-north_korea")
    assert "Following north korea." in phrase["text"]
    again = await bot.reply(READER, "/start sports")
    assert "already follow Sports" in again["text"]
    unknown = await bot.reply(READER, "/start moon")
    assert "Unknown section “moon”" in unknown["text"]
    empty = await bot.reply(READER, "/start kw-")
    assert "Usage: /follow" in empty["text"]
    assert await bot.sections(READER) == {"sports"}
    assert await bot.keywords(READER) == {"drones", "north korea"}


# --- /pause, /resume, /settings, /stop ----------------------------------------------------------


async def test_pause_holds_alerts_but_not_commands(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    assert "Alerts paused" in (await bot.reply(READER, "/pause"))["text"]
    assert "already paused" in (await bot.reply(READER, "/pause"))["text"]
    assert "Latest news" in (await bot.reply(READER, "/latest"))["text"]
    assert "Following nato." in (await bot.reply(READER, "/follow nato"))["text"]
    assert "Alerts are paused" in (await bot.reply(READER, "/mysubs"))["text"]
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.paused

    # Matched while paused: kept, not sent.
    await bot.publish(story("Drones over the Baltic", published_at=bot.services.clock.time()))
    await bot.tg.await_for(lambda: held_rows(bot) == 1, timeout=10, interval=0.05)
    sent = len(bot.tg.sent_messages(READER))

    resumed = await bot.reply(READER, "/resume")
    assert "While you were away: 1 story" in resumed["text"]
    (away,) = (await bot.tg.await_messages(READER, sent + 2, timeout=10))[sent + 1 :]
    assert "While you were away: 1 story" in away["text"] and "Drones over the Baltic" in away["text"]
    assert "not paused" in (await bot.reply(READER, "/resume"))["text"]


def held_rows(bot: Driver) -> int:
    with sqlite3.connect(bot.services.settings.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE state = 'held'").fetchone()[0])


async def test_settings_buttons_toggle_and_edit_the_same_message(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    shown = await bot.reply(READER, "/settings")
    assert "Link previews: off" in shown["text"] and "Combine bursts: on" in shown["text"]
    message_id = shown["message_id"]

    def current() -> str:
        message = bot.tg.message(READER, message_id)
        assert message is not None
        return str(message["text"])

    assert (await bot.press(READER, message_id, "set:link_previews"))["text"] == "Saved"
    assert "Link previews: on" in current()
    await bot.press(READER, message_id, "set:combine")
    assert "Combine bursts: off" in current()
    await bot.press(READER, message_id, "set:paused")
    assert "Alerts: paused" in current()
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.paused and chat.link_previews and not chat.combine

    await bot.press(READER, message_id, "set:paused")
    assert "Alerts: on" in current()
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and not chat.paused
    assert len(bot.tg.sent_messages(READER)) == 2  # /follow and /settings: the rest were edits

    await bot.press(READER, message_id, "set:sections")
    sections = bot.tg.sent_messages(READER)[-1]
    assert ("World", "sec:world") in buttons(sections)


async def test_stop_deletes_the_chat_and_start_brings_it_back(bot: Driver) -> None:
    await bot.reply(READER, "/start world")
    await bot.reply(READER, "/follow drones")
    bye = await bot.reply(READER, "/stop")
    assert "deleted" in bye["text"]
    assert await chats.get_chat(bot.services.db, READER) is None
    assert await bot.subs(READER) == []
    assert not bot.matched(READER, story("Drones over the Baltic"))

    await bot.reply(READER, "/start")
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.active and not chat.paused
    await bot.reply(READER, "/follow drones")
    assert bot.matched(READER, story("Drones over the Baltic"))


async def test_blocked_reader_is_inactive_until_back(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    await bot.process(bot.tg.my_chat_member(READER, "member", "kicked", push=False))
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and not chat.active
    assert not bot.matched(READER, story("Drones over the Baltic"))

    await bot.process(bot.tg.my_chat_member(READER, "kicked", "member", push=False))
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.active and chat.inactive_reason is None
    assert bot.matched(READER, story("Drones over the Baltic"))

    # Blocked again, then simply writing to the bot is coming back too.
    await bot.process(bot.tg.my_chat_member(READER, "member", "kicked", push=False))
    bot.tg.clear_faults()
    await bot.reply(READER, "/start")
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.active
    assert bot.matched(READER, story("Drones over the Baltic"))


async def test_paused_reader_stays_paused_after_coming_back(bot: Driver) -> None:
    await bot.reply(READER, "/follow drones")
    await bot.reply(READER, "/pause")
    await bot.process(bot.tg.my_chat_member(READER, "member", "kicked", push=False))
    await bot.process(bot.tg.my_chat_member(READER, "kicked", "member", push=False))
    chat = await chats.get_chat(bot.services.db, READER)
    assert chat is not None and chat.active and chat.paused
    assert "Alerts resumed" in (await bot.reply(READER, "/resume"))["text"]


# --- groups ----------------------------------------------------------------------------------


async def test_groups_admins_manage_everyone_reads(bot: Driver) -> None:
    tg = bot.tg
    tg.set_member_status(GROUP, MEMBER, "member")
    tg.set_member_status(GROUP, GROUP_ADMIN, "administrator")
    group = {"chat_type": "supergroup"}

    latest = await bot.reply(GROUP, "/latest@newsbot_test_bot", user_id=MEMBER, **group)
    assert "Latest news" in latest["text"] and story_count(latest) == 5
    found = await bot.reply(GROUP, "/search@newsbot_test_bot ukraine", user_id=MEMBER, **group)
    assert "Attack on Ukraine after proposal for ceasefire" in found["text"]
    related = await bot.reply(GROUP, "/related drones", user_id=MEMBER, **group)
    assert "Related: drones" in related["text"]
    assert await bot.send(GROUP, "/latest@some_other_bot", user_id=MEMBER, **group) == []

    bot.calm()
    for text in ("/follow drones", "/unfollow drones", "/pause", "/resume", "/stop", "/start sports"):
        refused = await bot.reply(GROUP, text, user_id=MEMBER, **group)
        assert refused["text"] == "Only this group's admins can change its subscriptions.", text
    sections = await bot.reply(GROUP, "/sections", user_id=MEMBER, **group)
    answer = await bot.press(GROUP, sections["message_id"], "sec:world", user_id=MEMBER)
    assert answer["show_alert"] is True and "Only this group's admins" in answer["text"]
    assert await bot.subs(GROUP) == []

    bot.calm()
    followed = await bot.reply(GROUP, "/follow@newsbot_test_bot drones", user_id=GROUP_ADMIN, **group)
    assert "Following drones." in followed["text"]
    answer = await bot.press(GROUP, sections["message_id"], "sec:world", user_id=GROUP_ADMIN)
    assert answer["text"] == "Added World"
    assert await bot.keywords(GROUP) == {"drones"} and await bot.sections(GROUP) == {"world"}

    # A member promoted later may manage; the owner may too.
    tg.set_member_status(GROUP, MEMBER, "creator")
    assert "Alerts paused" in (await bot.reply(GROUP, "/pause", user_id=MEMBER, **group))["text"]


async def test_bot_removed_from_group_and_added_back(bot: Driver) -> None:
    await bot.reply(GROUP, "/follow drones", user_id=GROUP_ADMIN, chat_type="supergroup")
    await bot.process(bot.tg.my_chat_member(GROUP, "member", "left", push=False))
    chat = await chats.get_chat(bot.services.db, GROUP)
    assert chat is not None and not chat.active
    assert not bot.matched(GROUP, story("Drones over the Baltic"))
    await bot.process(bot.tg.my_chat_member(GROUP, "left", "member", push=False))
    assert bot.matched(GROUP, story("Drones over the Baltic"))
