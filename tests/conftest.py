"""Shared fixtures: a real SQLite file per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import settings

from storage.db import Database
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.simtime import SimClock, SimLoop

# CI shares two cores with the servers under test; a per-example deadline would turn load into
# failures that say nothing about the code.
settings.register_profile("newsbot", deadline=None)
settings.load_profile("newsbot")

# python-telegram-bot warns on every RetryAfter unless the timedelta behaviour is chosen; the
# bot chooses it at start (bot/__main__.py) and so do the tests and their bot subprocesses.
os.environ.setdefault("PTB_TIMEDELTA", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_FEED = DATA / "swedenherald-sample.xml"
# feedparser's own test documents, with their licence (see its README).
CORPUS = DATA / "feed-corpus"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "newsbot.db")
    yield database
    await database.close()


@pytest.fixture
async def sample_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A database holding the 50 stories of the sample feed."""
    from tests.harness import store_sample  # tests.harness imports this module

    assert await store_sample(tmp_path / "newsbot.db") == 50
    database = await Database.open(tmp_path / "newsbot.db")
    yield database
    await database.close()


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on the SimLoop: real time, until it asks for `clock`."""
    return {"sim": SimLoop}


@pytest.fixture
async def clock() -> SimClock:
    """Simulated time for this test: hand it to the bot (and the fakes' `start_here`)."""
    return SimClock()


@pytest.fixture
async def sim_tg(clock: SimClock) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API on this test's loop, on its simulated clock."""
    async with FakeTelegram().here(clock) as fake:
        yield fake


@pytest.fixture
async def sim_feeds(clock: SimClock) -> AsyncIterator[FeedServer]:
    """The loopback feed server on this test's loop, on its simulated clock."""
    async with FeedServer().here(clock) as server:
        yield server
