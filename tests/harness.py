"""Running the real bot in-process against the loopback fakes.

`running_bot` is bot.runner's own life cycle (`running`): database and health endpoint,
Telegram reached, dispatcher, jobs and the getUpdates loop, then the same ordered stop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.clock import Clock
from bot.config import Settings, load_settings
from bot.pipeline.parse import parse_feed
from bot.runner import Runtime, running
from storage import articles
from storage.db import Database
from storage.models import SectionRule
from tests.conftest import SAMPLE_FEED
from tests.fakes.telegram_api import FakeTelegram

SECTIONS_TOML = """
[sections]
sweden = "Sweden"
living = "Living"
world = "World"
business = "Business"
sports = "Sports"
entertainment = "Entertainment"
"""
SAMPLE_RULE = SectionRule(kind="category", domain="section", section="world")


def write_feeds_file(tmp_path: Path, urls: list[str], name: str = "feeds.toml", *, sections: str = SECTIONS_TOML) -> Path:
    body = sections + "".join(
        f'\n[[feeds]]\nurl = "{u}"\nsection_from = "category"\ncategory_domain = "section"\n'
        'section = "world"\n'
        for u in urls
    )
    path = tmp_path / name
    path.write_text(body)
    return path


def bot_settings(tg: FakeTelegram, tmp_path: Path, **extra: str) -> Settings:
    env: dict[str, str] = {
        **tg.bot_env(),
        "NEWSBOT_DB": str(tmp_path / "newsbot.db"),
        "NEWSBOT_FEEDS": str(write_feeds_file(tmp_path, [], name="no-feeds.toml")),
        "NEWSBOT_ADMIN_IDS": "9001 9002",
        "NEWSBOT_POLL_SECONDS": "60",
        # Feeds in tests are served from 127.0.0.1.
        "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
    }
    env.update(extra)
    return load_settings(env, env_file=None)


async def store_sample(db_path: Path) -> int:
    """The 50 sample stories, stored as already seen (history, not alerts)."""
    parsed = parse_feed(
        SAMPLE_FEED.read_bytes(), url="https://swedenherald.com/rss", rule=SAMPLE_RULE,
        fetched_at=1_741_800_000.0,
    )
    db = await Database.open(db_path)
    try:
        async with db.write() as conn:
            stored = await articles.store_articles(conn, parsed.articles, seen=True, now=time.time())
    finally:
        await db.close()
    return len(stored.new)


@asynccontextmanager
async def running_bot(settings: Settings, *, polling: bool = True, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """The bot as `newsbot run` runs it; on the test's simulated time when given `clock`
    (then the fakes must serve on this loop: the `sim_tg` and `sim_feeds` fixtures)."""
    async with running(settings, polling=polling, clock=clock) as runtime:
        yield runtime


async def ask(tg: FakeTelegram, chat_id: int, text: str, **kwargs: object) -> dict[str, object]:
    """A reader sends `text`; returns the bot's next message to that chat."""
    before = len(tg.sent_messages(chat_id))
    tg.user_message(chat_id, text, **kwargs)  # type: ignore[arg-type]
    messages = await tg.await_messages(chat_id, before + 1, timeout=10.0)
    return messages[before]


async def press(
    tg: FakeTelegram, chat_id: int, message_id: int, data: str, **kwargs: object
) -> dict[str, object]:
    """A reader presses a button; returns the answerCallbackQuery call's parameters."""
    before = len(tg.calls("answerCallbackQuery"))
    tg.callback_query(chat_id, message_id, data, **kwargs)  # type: ignore[arg-type]
    calls = await tg.await_calls("answerCallbackQuery", before + 1, timeout=10.0)
    return dict(calls[before].params)
