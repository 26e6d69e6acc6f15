"""Whatever a reader types after a command, the bot answers without an error, in valid
Telegram HTML of at most 4096 characters; whatever callback data arrives, it is answered."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.app import READER_COMMANDS
from tests.fakes.telegram_api import (
    MAX_MESSAGE_LENGTH,
    FakeTelegram,
    RecordedCall,
    parse_telegram_html,
    validate_telegram_html,
)
from tests.harness import store_sample
from tests.simtime import SimClock
from tests.test_reader_handlers import SORRY, Driver, driven_bot

COMMANDS = [name for name, _ in READER_COMMANDS] + ["subscribe", "unsubscribe"]

# Pieces that have broken search engines, HTML and argument parsers before.
NASTY = [
    "AND", "OR", "NOT", "NEAR(", "NEAR(a b, 3)", '"', "'", '""', "*", "^", "-", "+", "c++",
    "c#", "(", ")", ":", "{title}", "title:", "<b>", "</b>", "<a href='x'>", "&", "&amp;",
    "&#0;", "&lt;", "<", ">", "\\", "%", "_", "«", "»", "“", "”", "„", ",", ",,", "kw-",
    "kw-drones", "sports", "Sports", "20", "0", "21", "²", "٣", "9" * 30, "https://",
    "http://[", "https://swedenherald.com/article/x?utm_source=y", "\x00", "\x1f", "\u202e",
    "\u200b", "🇸🇪", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Malmö", "ǅ", "ﬁ", "İ", "\n", "\t", "@newsbot_test_bot",
]

words = st.lists(st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=12)), max_size=30)
long_text = st.builds(
    lambda piece, n: (piece * n)[:5000], st.text(min_size=1, max_size=40), st.integers(50, 5000)
)
arguments = st.one_of(
    st.text(max_size=300),
    words.map(" ".join),
    words.map(", ".join),
    long_text,
)
# Each example is another reader: one reader sending hundreds of commands a minute would
# (rightly) be told to slow down by the flood guard.
_readers = itertools.count(10_000)

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
async def bot(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    await store_sample(tmp_path / "newsbot.db")
    async with driven_bot(clock, sim_tg, tmp_path) as driver:
        yield driver


def check_calls(driver: Driver, calls: list[RecordedCall]) -> None:
    assert driver.errors == [], driver.errors
    for call in calls:
        text = call.params.get("text")
        if call.method in ("sendMessage", "editMessageText"):
            assert isinstance(text, str)
            assert validate_telegram_html(text) is None, text
            visible, _ = parse_telegram_html(text)
            assert len(visible) <= MAX_MESSAGE_LENGTH
            assert SORRY not in text
        elif call.method == "answerCallbackQuery" and text is not None:
            assert len(str(text)) <= 200
        assert call.ok or "message is not modified" in (call.description or ""), call.description


@pytest.mark.parametrize("command", COMMANDS)
@PROPERTY
@given(argument=arguments, addressed=st.booleans())
@example(argument="x" * 5000, addressed=False)
@example(argument=" ".join(f"k{i}" for i in range(800)), addressed=False)
@example(argument="a, " * 1500, addressed=False)
@example(argument="'" * 64 + ", " + "a'" * 32, addressed=False)
@example(argument='" AND OR NEAR( c++ <b>&amp;', addressed=True)
async def test_any_argument_gets_a_valid_answer(
    bot: Driver, command: str, argument: str, addressed: bool
) -> None:
    name = f"/{command}@newsbot_test_bot" if addressed else f"/{command}"
    before = len(bot.tg.calls())
    replies = await bot.send(next(_readers), f"{name} {argument}")
    check_calls(bot, bot.tg.calls()[before:])
    assert replies, f"{command} did not answer"


@PROPERTY
@given(data=st.text(min_size=1, max_size=64).filter(lambda d: len(d.encode()) <= 64))
@example(data="unsub:" + "9" * 58)
@example(data="mute:" + "1" * 40 + ":" + "2" * 18)
@example(data="rel:-1")
@example(data="sec:\x00")
async def test_any_callback_data_is_answered(bot: Driver, data: str) -> None:
    reader = next(_readers)
    await bot.send(reader, "/follow drones")
    message = bot.tg.sent_messages(reader)[-1]
    before = len(bot.tg.calls())
    await bot.press(reader, message["message_id"], data)
    check_calls(bot, bot.tg.calls()[before:])
