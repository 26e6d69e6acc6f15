"""The one word rule (storage/words.py): what matching, the search index and search agree on.

A keyword that alerts on a story finds that story with /search: the property test below
checks it for generated keywords and texts against a real SQLite file, and the explicit
cases go through the paths readers use (/follow's `readers.follow`, the poller's
`store_document`, /search's `articles.search`).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot import readers
from bot.config import load_settings
from bot.context import Services, open_services
from bot.keywords import KeywordError, normalise_keyword
from bot.pipeline.fetch import FetchResult
from bot.pipeline.match import Matcher
from bot.stages.poll import store_document
from storage import articles, feeds, words
from storage.db import Database
from storage.models import Article, Feed, SectionRule, Subscription
from storage.words import (
    FIELD_BREAK,
    contains,
    field_stems,
    fts_phrase,
    index_text,
    keyword_stems,
    stem,
    title_key,
    tokens,
)

# --- tokens and stem ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Drones over Malmö!", ["drones", "over", "malmo"]),
        ("North Korea's leader", ["north", "korea's", "leader"]),
        ("North Korea’s leader", ["north", "korea's", "leader"]),
        ("F-16 jets", ["f", "16", "jets"]),
        ("Learn C++ and C# today", ["learn", "c++", "and", "c#", "today"]),
        ("Disney+ prices", ["disney", "prices"]),
        ("players' union", ["players", "union"]),
        ("O'Brien's party", ["o'brien's", "party"]),
        ("covid-19, 2024.", ["covid", "19", "2024"]),
        ("snake_case", ["snake", "case"]),
        ("Łódź and Øresund", ["lodz", "and", "oresund"]),
        ("", []),
    ],
)
def test_tokens(text: str, found: list[str]) -> None:
    assert tokens(text) == found


@pytest.mark.parametrize(
    ("word", "stemmed"),
    [
        ("drones", "drone"),
        ("drone", "drone"),
        ("stories", "story"),
        ("story", "story"),
        ("boxes", "box"),
        ("churches", "church"),
        ("classes", "class"),
        ("buses", "bus"),
        ("crises", "crisis"),
        ("heroes", "hero"),
        ("movies", "movie"),
        ("caches", "cache"),
        ("ties", "tie"),
        ("korea's", "korea"),
        ("1990s", "1990"),
        ("16s", "16"),
        # kept as they are
        ("news", "news"),
        ("series", "series"),
        ("class", "class"),
        ("bus", "bus"),
        ("gas", "gas"),
        ("its", "its"),
        ("analysis", "analysis"),
        ("campus", "campus"),
        ("texas", "texas"),
        ("c++", "c++"),
        ("o'brien", "o'brien"),
        ("ab", "ab"),
    ],
)
def test_stem(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("drone", "drones"),
        ("story", "stories"),
        ("box", "boxes"),
        ("bus", "buses"),
        ("movie", "movies"),
        ("church", "churches"),
        ("Malmö", "malmo"),
        ("Łódź", "lodz"),
        ("Øresund", "oresund"),
        ("Korea", "Korea's"),
    ],
)
def test_singular_and_plural_share_a_stem(one: str, other: str) -> None:
    assert keyword_stems(one) == keyword_stems(other)


@pytest.mark.parametrize(
    ("one", "other"), [("news", "new"), ("art", "party"), ("war", "warsaw"), ("c++", "c"), ("c#", "c")]
)
def test_different_words_keep_different_stems(one: str, other: str) -> None:
    assert keyword_stems(one) != keyword_stems(other)


def test_field_stems_puts_a_break_between_fields() -> None:
    assert field_stems(["North", "Korea's drones"]) == ("north", FIELD_BREAK, "korea", "drone")
    # The marker inside a field is punctuation, not a field boundary.
    assert field_stems([f"a{FIELD_BREAK}b"]) == ("a", "b")


def test_the_index_stores_stems() -> None:
    assert index_text("Three stories from Łódź") == "three story from lodz"
    assert index_text("Three stories").split() == ["three", "story"]  # neither "storys" nor "storie"


def test_title_key_ignores_an_update_mark_only_at_the_end() -> None:
    assert title_key("Storm hits Malmö – Updated") == title_key("storm hits malmo")
    assert title_key("Storm hits Malmö (update)") == title_key("Storm hits Malmö")
    assert title_key("Storm hits Malmö again") != title_key("Storm hits Malmö")
    assert title_key("Update") == "update"


def test_contains_is_consecutive_stems() -> None:
    stems = field_stems(["The prime minister's office", "said"])
    assert contains(stems, keyword_stems("prime minister office"))
    assert not contains(stems, keyword_stems("office said"))  # across the field break
    assert not contains(stems, ())


def test_fts_phrase_quotes_query_syntax() -> None:
    assert fts_phrase(("c++",)) == '"c++"'
    assert fts_phrase(('say "no"',)) == '"say ""no"""'
    assert fts_phrase(("and", "or")) == '"and or"'


def test_word_caches_forget_their_older_half_when_full() -> None:
    class Tiny(words._StemCache):
        limit = 4

    cache = Tiny()
    assert [cache[word] for word in ["drones", "a", "b", "c"]] == ["drone", "a", "b", "c"]
    assert cache["stories"] == "story"
    assert list(cache) == ["b", "c", "stories"]


# Any text, and ASCII text on its own: field_stems takes a faster path for it.
_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
    st.text(alphabet="aBc1'+#- .\x1f\x00", max_size=20),
)


@given(st.lists(_text, max_size=5))
def test_field_stems_equals_each_field_stemmed(fields: list[str]) -> None:
    expected: list[str] = []
    for number, field in enumerate(fields):
        if number:
            expected.append(FIELD_BREAK)
        expected.extend(keyword_stems(field))
    assert list(field_stems(fields)) == expected


@given(_text)
def test_tokens_of_tokens_are_unchanged(text: str) -> None:
    found = tokens(text)
    assert [w for word in found for w in tokens(word)] == found


# --- matching and search agree --------------------------------------------------------------

NOW = 1_774_000_000.0


def story(title: str, *, n: int = 1, summary: str = "", tags: tuple[str, ...] = ()) -> Article:
    return Article(
        id=f"w-{n}", url=f"https://news.example/w/{n}", title=title, summary=summary,
        section="world", tags=tags, published_at=NOW + n, fetched_at=NOW + n,
    )


def alerts(typed: str, article: Article) -> bool:
    """Whether a chat that followed `typed` (stored as /follow stores it) is matched."""
    sub = Subscription(chat_id=1, kind="keyword", value=normalise_keyword(typed), display=typed)
    return 1 in Matcher.from_subscriptions([sub]).match(article)


async def found_ids(db: Database, text: str) -> list[str]:
    return [a.id for a in await articles.search(db, text)]


class _Loop:
    """One event loop and one database for every example of a property test."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self.runner = asyncio.Runner()
        self.db = self.runner.run(Database.open(Path(self._dir.name) / "words.db"))

    def close(self) -> None:
        self.runner.run(self.db.close())
        self.runner.close()
        self._dir.cleanup()


@pytest.fixture(scope="module")
def loop() -> Iterator[_Loop]:
    held = _Loop()
    yield held
    held.close()


_PIECES = [
    "Łódź", "lodz", "Øresund", "oresund", "Malmö", "story", "stories", "drone", "drones", "c++",
    "C#", "F-16s", "north", "Korea's", "korea", "São", "Paulo", "1990s", "o'brien", "the", "news",
    "crises", "boxes", "Straße", "ﬁnance", "İstanbul", "Þórshöfn", "x", "of",
]  # fmt: skip
_piece = st.one_of(
    st.sampled_from(_PIECES),
    st.text(
        alphabet=st.characters(categories=("L", "N"), include_characters="'+#-"),
        min_size=1, max_size=8,
    ),
)
_separator = st.sampled_from([" ", ", ", " – ", "/", "-", ": ", " (", ") ", "\n", "'s "])
_phrase = st.lists(_piece, min_size=1, max_size=3).map(" ".join)


def _variant(typed: str, how: int) -> str:
    return [typed, typed.upper(), typed.title(), typed + "s", typed.lower()][how]


@settings(max_examples=300)
@given(
    typed=_phrase,
    how=st.integers(0, 4),
    before=st.lists(_piece, max_size=4).map(" ".join),
    after=st.lists(_piece, max_size=4).map(" ".join),
    separators=st.tuples(_separator, _separator),
    where=st.sampled_from(["title", "summary", "tag"]),
    other=_phrase,
)
def test_what_a_keyword_alerts_on_search_finds(
    loop: _Loop, typed: str, how: int, before: str, after: str, separators: tuple[str, str],
    where: str, other: str,
) -> None:
    """For any keyword and text: if following it alerts on the story, searching for its
    words (as typed, or as stored) finds the story in a real database."""
    try:
        value = normalise_keyword(typed)
    except KeywordError:
        assume(False)
        return
    text = before + separators[0] + _variant(typed, how) + separators[1] + after
    article = story(
        text if where == "title" else other,
        summary=text if where == "summary" else other,
        tags=(other, text) if where == "tag" else (other,),
    )
    assume(alerts(typed, article))

    async def check() -> tuple[list[str], list[str]]:
        async with loop.db.write() as conn:
            await conn.execute("DELETE FROM articles_fts")
            await conn.execute("DELETE FROM articles")
            stored = await articles.store_articles(conn, [article], now=time.time())
        assert [a.id for a in stored.new] == [article.id]
        return await found_ids(loop.db, typed), await found_ids(loop.db, value)

    by_typed, by_value = loop.runner.run(check())
    assert by_typed == [article.id], (typed, article)
    assert by_value == [article.id], (value, article)


# --- the explicit cases, through the readers' paths ----------------------------------------

FEED_URL = "https://news.example/rss"
READER = 77


def rss(*items: tuple[str, str]) -> bytes:
    """An RSS document of (guid, title) items."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>https://news.example/{guid}</link>"
        "<pubDate>Mon, 16 Mar 2026 10:00:00 +0000</pubDate></item>"
        for guid, title in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>News</title>'
        f"{body}</channel></rss>"
    ).encode()


def fetched(body: bytes) -> FetchResult:
    return FetchResult(
        url=FEED_URL, status=200, not_modified=False, body=body,
        headers={"content-type": "application/rss+xml; charset=utf-8"}, etag=None,
        last_modified=None, elapsed=0.01, store_url=FEED_URL,
    )


@asynccontextmanager
async def newsroom(tmp_path: Path) -> AsyncIterator[tuple[Services, Feed]]:
    """Services on a real database with one primed feed and one reader."""
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text('[sections]\nworld = "World"\n')
    settings = load_settings(
        {"NEWSBOT_DB": str(tmp_path / "newsbot.db"), "NEWSBOT_FEEDS": str(feeds_file),
         "NEWSBOT_ALERT_MAX_AGE": "30d"},
        env_file=None,
    )  # fmt: skip
    services = await open_services(settings)
    try:
        await feeds.seed_feeds(services.db, [(FEED_URL, SectionRule(kind="fixed", section="world"))], now=time.time())
        (feed,) = await feeds.list_feeds(services.db)
        # The first document primes the feed: history, not news.
        await store_document(services, feed, fetched(rss(("old", "Weather report"))), now=NOW)
        (feed,) = await feeds.list_feeds(services.db)
        assert feed.primed
        await readers.join(services, READER, "private", None)
        yield services, feed
    finally:
        await services.close()


async def alerted(services: Services, chat_id: int) -> list[str]:
    rows = await services.db.fetchall(
        "SELECT article_id FROM outbox WHERE chat_id = ? AND kind = 'alert' ORDER BY id", (chat_id,)
    )
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    ("typed", "title", "query"),
    [
        ("lodz", "Łódź mayor resigns", "lodz"),
        ("Łódź", "Lodz mayor resigns", "łódź"),
        ("oresund", "Øresund bridge closed by storm", "oresund"),
        ("story", "Three stories from the front", "story"),
        ("stories", "One story from the front", "stories"),
        ("drones", "A drone was spotted", "drone"),
        ("drone", "Drones spotted over the airport", "drones"),
        ("c++", "C++ turns 40", "c++"),
        ("c#", "Learning C# in a week", "c#"),
        ('"north korea"', "North Korea’s leader visits Moscow", "north korea"),
        ("f-16", "Denmark sends F-16s", "f-16"),
    ],
)
async def test_follow_alerts_and_search_finds(tmp_path: Path, typed: str, title: str, query: str) -> None:
    """/follow `typed` queues an alert for the story the poller stores, and /search `query`
    finds it."""
    async with newsroom(tmp_path) as (services, feed):
        report = await readers.follow(services, READER, typed)
        assert report.added and not report.refused
        outcome = await store_document(
            services, feed, fetched(rss(("new", title))), now=NOW + 60
        )
        assert [a.title for a in outcome.new] == [title]
        assert await alerted(services, READER) == ["new"]
        assert await found_ids(services.db, query) == ["new"]


@pytest.mark.parametrize(
    ("typed", "title"),
    [
        ("c++", "Vitamin C helps"),
        ("c#", "C major scale"),
        ('"north korea"', "Travel north of Korea"),
        ('"north korea"', "Korea north"),
        ("news", "New rules for landlords"),
        ("art", "Smart phones"),
    ],
)
async def test_neither_alert_nor_search_on_other_words(tmp_path: Path, typed: str, title: str) -> None:
    """A keyword does not alert on other words that share letters with it, nor on its words
    apart; /search for a single word does not find those stories either."""
    async with newsroom(tmp_path) as (services, feed):
        await readers.follow(services, READER, typed)
        await store_document(services, feed, fetched(rss(("new", title))), now=NOW + 60)
        assert await alerted(services, READER) == []
        if len(tokens(typed)) == 1:
            assert await found_ids(services.db, typed) == []


async def test_search_ranks_the_phrase_and_finds_plurals_both_ways(db: Database) -> None:
    batch = [
        story("Drones over the Øresund bridge", n=1),
        story("A drone over Malmö", n=2),
        story("Three stories from Łódź", n=3),
        story("One story", n=4, tags=("North Korea",)),
    ]
    async with db.write() as conn:
        await articles.store_articles(conn, batch, now=time.time())
    assert sorted(await found_ids(db, "drone")) == ["w-1", "w-2"]
    assert sorted(await found_ids(db, "drones")) == ["w-1", "w-2"]
    assert sorted(await found_ids(db, "story")) == ["w-3", "w-4"]
    assert sorted(await found_ids(db, "stories")) == ["w-3", "w-4"]
    assert await found_ids(db, "oresund bridge") == ["w-1"]
    assert await found_ids(db, "lodz") == ["w-3"]
    assert await found_ids(db, "north korea") == ["w-4"]
    assert await found_ids(db, "c++") == []
