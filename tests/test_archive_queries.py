"""The reader queries on a big archive: where /search and /related rank (the index of the
newest stories, storage.articles RECENT_STORIES, kept in step with the archive's, and older
matches after them), and how /latest finds a story under its second section.

The ranking index's size is a constant of storage.articles; these tests make it small (a few
dozen stories) so that a story can be older than it without storing fifty thousand.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from storage import articles, maintenance
from storage.db import Database
from storage.models import Article

DAY = 24 * 3600.0
T0 = 1_700_000_000.0


def story(n: int, title: str, *, summary: str = "", tags: tuple[str, ...] = ()) -> Article:
    return Article(
        id=f"r-{n}", url=f"https://news.example/r/{n}", title=title, summary=summary or f"Summary {n}",
        section="world", tags=tags, published_at=T0 + n, fetched_at=T0 + n,
    )


async def store(db: Database, batch: list[Article]) -> None:
    async with db.write() as conn:
        await articles.store_articles(conn, batch, now=time.time())


async def ranked_rowids(db: Database) -> set[int]:
    return {int(r[0]) for r in await db.fetchall("SELECT rowid FROM articles_recent_fts")}


@pytest.fixture
def small_index(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(articles, "RECENT_STORIES", 30)
    return 30


async def test_retention_keeps_the_newest_stories_in_the_ranking_index(db: Database, small_index: int) -> None:
    await store(db, [story(n, f"Ordinary day {n}") for n in range(1, 101)])
    assert len(await ranked_rowids(db)) == 100  # stored in both indexes
    pruned = await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + DAY)
    assert pruned.recent == 100 - small_index
    assert await ranked_rowids(db) == set(range(101 - small_index, 101))
    assert await db.scalar("SELECT count(*) FROM articles_fts") == 100  # the archive keeps all
    assert (await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + DAY)).recent == 0


async def test_older_matches_follow_the_ranked_newest_ones(db: Database, small_index: int) -> None:
    old = [story(n, f"Ferry timetable {n}", summary="ferry ferry ferry") for n in range(1, 21)]
    filler = [story(n, f"Ordinary day {n}") for n in range(21, 101)]
    recent = [story(101, "Ordinary harbour news", summary="a ferry was late"), story(102, "Ferry strike")]
    await store(db, [story(0, "Zanzibar ferry news"), *old, *filler, *recent])
    await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + DAY)
    assert not {1, 21} & await ranked_rowids(db)

    # A word only an old story holds is found all the same.
    assert [a.id for a in await articles.search(db, "zanzibar")] == ["r-0"]
    # The newest stories are ranked (the headline first) and come first; older matches
    # follow, newest first, however often they say the word.
    found = [a.id for a in await articles.search(db, "ferry", limit=5)]
    assert found == ["r-102", "r-101", "r-20", "r-19", "r-18"]
    related = [a.id for a in await articles.related(db, "Ferry strike", 4, exclude_id="r-102")]
    assert related == ["r-101", "r-20", "r-19", "r-18"]


async def test_a_correction_is_ranked_by_its_new_words(db: Database, small_index: int) -> None:
    await store(db, [story(1, "Storm closes the bridge"), *[story(n, f"Ordinary day {n}") for n in range(2, 101)]])
    await maintenance.prune(db, outbox_days=7, archive_days=0, now=T0 + DAY)
    await store(db, [story(100, "Volcano erupts near the coast")])  # the newest story, corrected
    await store(db, [story(1, "Storm closes the tunnel")])  # an old one, corrected
    assert [a.id for a in await articles.search(db, "volcano")] == ["r-100"]
    assert "r-100" not in {a.id for a in await articles.search(db, "ordinary", limit=200)}
    assert [a.id for a in await articles.search(db, "tunnel")] == ["r-1"]
    assert await articles.search(db, "bridge") == []
    ranked = await ranked_rowids(db)
    assert 100 in ranked and 1 not in ranked  # a correction does not bring an old story back


async def test_archive_retention_empties_both_indexes(db: Database) -> None:
    await store(db, [story(n, f"Harbour story {n}") for n in range(1, 11)])
    await maintenance.prune(db, outbox_days=7, archive_days=1, now=T0 + 10 * DAY)
    assert await articles.count_articles(db) == 0
    assert await ranked_rowids(db) == set()
    assert await articles.search(db, "harbour") == []


async def test_latest_finds_a_story_under_its_second_section_however_many_are_newer(db: Database) -> None:
    """A story indexed under World that is in Sports too is Sports' newest even when a
    thousand World stories came after it; an older one is not listed before Sports' own."""
    await store(db, [story(1, "Derby day in the rain"), story(2, "An old double")])
    await store(db, [replace(story(1, "Derby day in the rain"), section="sports")])
    await store(db, [story(n, f"World story {n}") for n in range(3, 1203)])
    assert [a.id for a in await articles.latest(db, ["sports"], 5)] == ["r-1"]
    await store(db, [replace(story(n, f"Sports story {n}"), section="sports") for n in range(1203, 1210)])
    await store(db, [replace(story(2, "An old double"), section="sports")])
    listed = [a.id for a in await articles.latest(db, ["sports", "world"], 12)]
    assert listed[:7] == [f"r-{n}" for n in range(1209, 1202, -1)]
    assert "r-1" not in listed and "r-2" not in listed
    assert [a.id for a in await articles.latest(db, ["sports"], 10)][-3:] == ["r-1203", "r-2", "r-1"]
