"""What every stage and handler shares: opened once at start, closed once at the end."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.config import FeedsConfig, Settings, load_feeds_file
from bot.metrics import Metrics
from bot.pipeline.fetch import make_client
from bot.pipeline.match import Matcher
from storage import chats, feeds, subscriptions
from storage.db import Database
from storage.models import Section

log = logging.getLogger(__name__)

# The sections of the first site; a feeds file replaces them.
DEFAULT_SECTIONS = (
    Section("sweden", "Sweden"),
    Section("living", "Living"),
    Section("world", "World"),
    Section("business", "Business"),
    Section("sports", "Sports"),
    Section("entertainment", "Entertainment"),
)


@dataclass
class Services:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    matcher: Matcher
    sections: tuple[Section, ...]
    metrics: Metrics = field(default_factory=Metrics)
    # Set whenever new rows enter the outbox, so the dispatcher need not poll the table.
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def section_names(self) -> dict[str, str]:
        return {s.slug: s.name for s in self.sections}

    async def close(self) -> None:
        await self.http.aclose()
        await self.db.close()


def find_section(sections: tuple[Section, ...], word: str) -> Section | None:
    """The section a reader or admin means by `word`: its slug or name, any case, `@` or `#`."""
    key = word.casefold().lstrip("@#")
    return next((s for s in sections if key in (s.slug, s.name.casefold())), None)


def read_feeds_config(settings: Settings) -> FeedsConfig | None:
    return load_feeds_file(settings.feeds_path) if settings.feeds_path else None


async def open_services(settings: Settings, *, load_matcher: bool = True) -> Services:
    """Open the database, seed the feeds file, load the matcher's index."""
    feeds_config = read_feeds_config(settings)
    db = await Database.open(Path(settings.db_path))
    try:
        if feeds_config is not None:
            added = await feeds.seed_feeds(db, [(f.url, f.rule) for f in feeds_config.feeds])
            if added:
                log.info("feeds seeded count=%d", added)
        matcher = Matcher()
        if load_matcher:
            await load_matcher_index(db, matcher)
    except BaseException:
        await db.close()
        raise
    return Services(
        settings=settings,
        db=db,
        http=make_client(read_timeout=settings.fetch_timeout),
        matcher=matcher,
        sections=feeds_config.sections if feeds_config else DEFAULT_SECTIONS,
    )


async def load_matcher_index(db: Database, matcher: Matcher) -> None:
    # Row by row: a list of a million Subscription objects would double the bot's memory.
    matcher.load((), await chats.silenced_chat_ids(db))
    count = 0
    async for sub in subscriptions.iter_subscriptions(db):
        matcher.add(sub)
        count += 1
    log.info("matcher loaded subscriptions=%d", count)
