"""/related's ranking: better than plain bm25 on a judged set, and its rules one by one —
stopwords of every shipped language and the archive's common words ignored, a shared tag
above a shared word, the newer story among equals, never the story itself or a copy of it.

The judged set (tests/data/related-judged.json) is 40 stories of the sample feed, each with
the stories of the feed a person reading it would want next, picked by reading the stories'
headlines, summaries and tags.
"""

from __future__ import annotations

import json
import time

from bench.related import PLAIN_BM25, PRECISION_TARGET, plain_match, precision_at_3
from storage import articles, stopwords
from storage import related as ranking
from storage.db import Database
from storage.models import Article
from tests.conftest import REPO

JUDGED = json.loads((REPO / "tests" / "data" / "related-judged.json").read_text(encoding="utf-8"))
# Precision of the top three on the judged set: the ranking before (plain bm25, written as
# one statement in bench/related.py) measured 0.854; the new ranking 0.896. The test holds it
# at or above the bench's target, and above plain bm25 in the same run.
PRECISION_FLOOR = PRECISION_TARGET


async def test_the_ranking_beats_plain_bm25_on_the_judged_set(sample_db: Database) -> None:
    new = old = 0.0
    for judged in JUDGED["stories"]:
        story = await articles.get_article(sample_db, judged["id"])
        assert story is not None
        picked = set(judged["related"])
        found = await articles.related(sample_db, story.title, 5, exclude_id=story.id, phrases=story.tags)
        assert story.id not in [a.id for a in found]
        new += precision_at_3([a.id for a in found], picked)
        rows = await sample_db.fetchall(PLAIN_BM25, (plain_match(story.title, story.tags), story.id))
        old += precision_at_3([r[0] for r in rows], picked)
    new, old = new / len(JUDGED["stories"]), old / len(JUDGED["stories"])
    assert round(old, 3) == 0.854  # today's ranking, as measured
    assert new >= PRECISION_FLOOR
    assert new > old


# --- the rules, one by one -----------------------------------------------------------------------

T0 = 1_700_000_000.0


def story(n: int, title: str, *, tags: tuple[str, ...] = (), summary: str = "", at: float | None = None,
          url: str | None = None) -> Article:  # fmt: skip
    return Article(
        id=f"s-{n}", url=url or f"https://news.example/s/{n}", title=title, summary=summary or f"Item {n}.",
        section="world", tags=tags, published_at=T0 + n if at is None else at, fetched_at=T0 + n,
    )


async def store(db: Database, batch: list[Article]) -> None:
    async with db.write() as conn:
        await articles.store_articles(conn, batch, now=time.time())


async def related_ids(db: Database, of: Article, limit: int = 5) -> list[str]:
    found = await articles.related(db, of.title, limit, exclude_id=of.id, phrases=of.tags)
    return [a.id for a in found]


def test_stopword_lists_per_language_and_their_union() -> None:
    english, swedish = stopwords.for_language("en"), stopwords.for_language("sv")
    assert "the" in english and "och" not in english
    assert {"och", "ar", "pa", "att"} <= swedish  # folded: "är", "på"
    assert stopwords.ALL == english | swedish == stopwords.for_language(None) == stopwords.for_language("de")
    assert articles.STOPWORDS == stopwords.ALL
    # News words that are Swedish function words too stay searchable.
    assert not {"us", "man", "men", "ny"} & stopwords.ALL
    # /search: a query of stopwords only, in either language, is answered, not searched.
    assert articles.only_stopwords("och det är") and articles.only_stopwords("The of")
    assert not articles.only_stopwords("färjan och")
    assert articles.search_matches("och ukraine") == articles.search_matches("the ukraine") == articles.search_matches("ukraine")


async def test_stopwords_of_both_languages_never_relate_stories(db: Database) -> None:
    asked = story(1, "Färjan och the ferry är sen")
    await store(db, [
        asked,
        story(2, "Det är och the end", summary="Och det är så."),  # only stopwords shared
        story(3, "Ferry timetables change"),
        story(4, "Sen ankomst"),
    ])  # fmt: skip
    assert await related_ids(db, asked) == ["s-4", "s-3"]


async def test_a_word_common_across_the_archive_is_ignored(db: Database) -> None:
    asked = story(100, "Harbour ferry strike")
    only_common = story(90, "Harbour lights")
    await store(db, [asked, only_common, story(91, "Ferry delays"), story(92, "Bus strike ends")])
    # Four stories: "harbour" is no common word yet, and relates.
    assert "s-90" in await related_ids(db, asked)
    # Forty stories about the harbour: it says nothing any more (the counts are measured
    # again as the archive grows).
    await store(db, [story(n, f"Harbour news {n}") for n in range(10, 50)])
    found = await related_ids(db, asked)
    assert found[:2] == ["s-92", "s-91"] and "s-90" not in found
    # Asked alone, a common word is asked all the same.
    alone = await articles.related(db, "harbour", 3)
    assert len(alone) == 3 and all(a.title.startswith("Harbour") for a in alone)


async def test_a_shared_tag_beats_a_shared_word(db: Database) -> None:
    asked = story(10, "Council approves the budget plan", tags=("Gotland",))
    tagged = story(1, "Island ferries run late", tags=("Gotland",))
    worded = story(5, "New budget talks", tags=("Economy",))
    await store(db, [asked, tagged, worded])
    assert await related_ids(db, asked) == ["s-1", "s-5"]


async def test_a_name_beats_an_ordinary_word(db: Database) -> None:
    asked = story(10, "Flooding closes roads near Kiruna")
    await store(db, [asked, story(1, "Kiruna mine expands"), story(5, "Roads repaired in spring")])
    assert await related_ids(db, asked) == ["s-1", "s-5"]


async def test_equals_come_newest_first(db: Database) -> None:
    asked = story(10, "Wildfire spreads in the north", tags=("Wildfire",))
    # Stored in one order, published in the other: the newer story first.
    await store(db, [asked, story(1, "Wildfire warning", tags=("Wildfire",), at=T0 + 500),
                     story(2, "Wildfire contained", tags=("Wildfire",), at=T0 + 100)])  # fmt: skip
    assert await related_ids(db, asked) == ["s-1", "s-2"]


async def test_never_the_story_itself_nor_a_copy(db: Database) -> None:
    asked = story(10, "Storm closes the Öresund bridge", tags=("Storm",))
    await store(db, [
        asked,
        story(1, "Storm closes the Oresund bridge – Updated", tags=("Storm",)),  # the same headline
        story(2, "Storm closes the Öresund bridge tonight", tags=("Storm",)),  # nearly the same
        story(3, "Storm closes the Öresund bridge and the ferries stop", tags=("Storm",)),  # another story
        story(4, "Storm damage in Skåne", tags=("Storm",)),
    ])  # fmt: skip
    found = await related_ids(db, asked)
    assert found == ["s-3", "s-4"]
    # The same link is the story too, whatever its headline (another feed's copy).
    query = ranking.query(asked.title, ranking.terms(asked.title, asked.tags), url=asked.url)
    copy = ranking.Candidate(99, asked.url, "Bridge closed", "", ("Storm",), T0 + 99)
    other = ranking.Candidate(98, "https://news.example/other", "Bridge closed", "", ("Storm",), T0 + 98)
    assert ranking.rank(query, [copy, other]) == [other]
    # Words a reader sends that are a headline leave that headline out too.
    assert "s-1" not in [a.id for a in await articles.related(db, "storm closes the öresund bridge")]


async def test_older_matches_leave_the_story_and_its_copies_out_too(db: Database) -> None:
    """Stories the ranking index no longer holds come as older matches, by the same rule."""
    asked = story(10, "Storm closes the Öresund bridge", tags=("Storm",))
    await store(db, [
        asked,
        story(1, "Storm closes the Oresund bridge – Updated", tags=("Storm",)),  # the same headline
        story(4, "Storm damage in Skåne", tags=("Storm",)),
    ])  # fmt: skip
    await db.execute(
        "DELETE FROM articles_recent_fts WHERE rowid IN (SELECT rowid FROM articles WHERE id != ?)", (asked.id,)
    )
    assert await related_ids(db, asked) == ["s-4"]


def test_the_measured_counts_are_bounded() -> None:
    counts = ranking._Counts()
    for n in range(ranking.CACHE_WORDS + 10):
        counts.remember(f"w{n}", 1, 0)
    assert len(counts.docs) <= ranking.CACHE_WORDS
    assert f"w{ranking.CACHE_WORDS + 9}" in counts.docs and "w0" not in counts.docs
