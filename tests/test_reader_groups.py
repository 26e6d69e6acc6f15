"""Groups and forum topics: only a group's admins register it or change what it follows,
a failing rights check gets a clear answer, and every subscription made inside a topic
(keywords as well as sections) delivers into that topic.

Updates go through `application.process_update` (tests.test_reader_handlers' Driver); the
real dispatcher sends alerts to the fake Bot API server, which files them by topic.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.commands.common import NOT_GROUP_ADMIN, RIGHTS_UNKNOWN
from storage import broadcasts, chats
from storage.models import Article
from tests.fakes.telegram_api import FakeTelegram
from tests.simtime import SimClock
from tests.test_reader_handlers import READER, Driver, buttons, driven_bot
from tests.test_reader_trust import broadcast, message_with

GROUP = -1001234567890
FORUM = -1_000_000_000_900
MEMBER, GROUP_ADMIN = 501, 502
IN_GROUP = {"chat_type": "supergroup"}


@pytest.fixture
async def bot(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    async with driven_bot(clock, sim_tg, tmp_path) as driver:
        yield driver


def fresh(bot: Driver, title: str, *, section: str = "world") -> Article:
    at = bot.services.clock.time() - 30
    return Article(
        id=f"g-{title}", url="https://news.example/" + title.replace(" ", "-"), title=title, summary="",
        section=section, tags=(), published_at=at, fetched_at=at,
    )


# --- only a group's admins register it -----------------------------------------------------------


async def test_a_members_start_registers_nothing_an_admins_does(bot: Driver) -> None:
    tg = bot.tg
    tg.set_member_status(GROUP, MEMBER, "member")
    tg.set_member_status(GROUP, GROUP_ADMIN, "administrator")
    await bot.reply(READER, "/start")  # someone to broadcast to

    for text in ("/start", "/start@newsbot_test_bot", "/start sports", "/start kw-drones"):
        refused = await bot.reply(GROUP, text, user_id=MEMBER, **IN_GROUP)
        assert refused["text"] == NOT_GROUP_ADMIN, text
    assert await chats.get_chat(bot.services.db, GROUP) is None
    assert await bot.subs(GROUP) == []
    assert await broadcasts.audience_size(bot.services.db, None) == 1
    assert await broadcast(bot, "Only for readers") == 1
    await message_with(tg, READER, "Only for readers")
    assert not any("Only for readers" in str(m["text"]) for m in tg.sent_messages(GROUP))

    welcome = await bot.reply(GROUP, "/start", user_id=GROUP_ADMIN, **IN_GROUP)
    assert welcome["text"].startswith("Welcome to newsbot!")
    chat = await chats.get_chat(bot.services.db, GROUP)
    assert chat is not None and chat.active
    assert await broadcast(bot, "Now for the group too") == 2
    await message_with(tg, GROUP, "Now for the group too")


# --- a rights check Telegram cannot answer ---------------------------------------------------------


async def test_a_failing_rights_check_answers_try_again_and_logs_one_line(
    bot: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    tg = bot.tg
    tg.set_member_status(GROUP, MEMBER, "member")
    sections = await bot.reply(GROUP, "/sections", user_id=MEMBER, **IN_GROUP)  # reading needs no check
    caplog.set_level(logging.INFO)
    tg.fail_chat(GROUP, 502, "Bad Gateway", methods=["getChatMember"])

    answer = await bot.press(GROUP, sections["message_id"], "sec:world", user_id=MEMBER)
    assert answer["text"] == RIGHTS_UNKNOWN and answer["show_alert"] is True
    refused = await bot.reply(GROUP, "/follow drones", user_id=MEMBER, **IN_GROUP)
    assert refused["text"] == RIGHTS_UNKNOWN
    assert await bot.subs(GROUP) == []

    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bot.")]
    assert len([line for line in lines if line.startswith("rights not checked")]) == 2  # one per attempt
    assert all(f"chat_id={GROUP} user_id={MEMBER}" in line for line in lines if line.startswith("rights not checked"))
    assert [r for r in caplog.records if r.exc_info is not None] == []
    assert not any(line.startswith("handler failed") for line in lines)
    assert bot.errors == []
    failed = {(c.method, c.status) for c in tg.calls() if not c.ok}
    assert failed == {("getChatMember", 502)}
    tg.clear()  # the refused getChatMember calls were the point; nothing else failed

    # Telegram answers again: the member is told why, the admin may.
    tg.clear_faults()
    assert (await bot.press(GROUP, sections["message_id"], "sec:world", user_id=MEMBER))["text"] == NOT_GROUP_ADMIN
    added = await bot.press(GROUP, sections["message_id"], "sec:world", user_id=GROUP_ADMIN)
    assert added["text"] == "Added World"


# --- keyword alerts into the topic they were followed in --------------------------------------------


def topic_alerts(tg: FakeTelegram, thread: int | None) -> list[str]:
    """The first line of each of the bot's alerts in one topic of the forum (None: General)."""
    return [
        str(m["text"]).split("\n")[0]
        for m in tg.topic_messages(FORUM, thread)
        if m.get("from", {}).get("is_bot") and "because you follow" in str(m.get("text", ""))
    ]


async def test_keywords_deliver_into_the_topic_they_were_followed_in(bot: Driver) -> None:
    tg = bot.tg
    tg.add_chat(FORUM, "supergroup", title="Newsroom fans", is_forum=True)
    drones = tg.create_topic(FORUM, "Drones")
    sport = tg.create_topic(FORUM, "Sport")

    followed = await bot.reply(FORUM, "/follow drones", user_id=GROUP_ADMIN, thread_id=drones)
    assert followed["text"].startswith("Following drones. You will get an alert here")
    assert followed.get("message_thread_id") == drones
    await bot.reply(FORUM, "/follow nato", user_id=GROUP_ADMIN)  # the General topic
    picker = await bot.reply(FORUM, "/sections", user_id=GROUP_ADMIN, thread_id=sport)
    sports = next(data for label, data in buttons(picker) if label == "Sports")
    assert (await bot.press(FORUM, picker["message_id"], sports, user_id=GROUP_ADMIN))["text"] == "Added Sports in this topic"

    await bot.publish(fresh(bot, "Drones seen over the harbour"), fresh(bot, "NATO ministers meet in Brussels"),
                      fresh(bot, "Derby ends in a draw", section="sports"))
    await tg.await_for(lambda: sum(len(topic_alerts(tg, t)) for t in (drones, sport, None)) >= 3, timeout=10)
    assert topic_alerts(tg, drones) == ["World · Drones seen over the harbour"]
    assert topic_alerts(tg, None) == ["World · NATO ministers meet in Brussels"]
    assert topic_alerts(tg, sport) == ["Sports · Derby ends in a draw"]

    # Followed again from another topic (here the General one): it moves there.
    moved = await bot.reply(FORUM, "/follow drones", user_id=GROUP_ADMIN)
    assert moved["text"] == "drones: alerts now come to the General topic."
    await bot.publish(fresh(bot, "Drones ground flights at Arlanda"))
    await tg.await_for(lambda: len(topic_alerts(tg, None)) >= 2, timeout=10)
    assert topic_alerts(tg, None)[-1] == "World · Drones ground flights at Arlanda"
    assert topic_alerts(tg, drones) == ["World · Drones seen over the harbour"]

    # A story for a keyword in one topic and a section bound to another goes once, to the
    # topic of its section (sections come first).
    await bot.reply(FORUM, "/follow derby", user_id=GROUP_ADMIN, thread_id=drones)
    await bot.publish(fresh(bot, "Derby tickets sold out", section="sports"))
    await tg.await_for(lambda: len(topic_alerts(tg, sport)) >= 2, timeout=10)
    assert topic_alerts(tg, sport)[-1] == "Sports · Derby tickets sold out"
    assert topic_alerts(tg, drones) == ["World · Drones seen over the harbour"]


async def test_a_private_chats_follow_reads_as_before(bot: Driver) -> None:
    answer: dict[str, Any] = await bot.reply(READER, "/follow drones")
    assert answer["text"] == "Following drones. You will get an alert for every new story that mentions drones."
    assert "message_thread_id" not in answer
