"""Precision of /related's top three on a judged set, against plain bm25, in the same run.

    python -m bench.related

The judged set (tests/data/related-judged.json): 40 stories of the sample feed
(tests/data/swedenherald-sample.xml), each with the stories of the same feed a person reading
it would want next, picked by reading their headlines, summaries and tags. The feed's 50
stories are stored in a fresh SQLite file through the bot's own storage code.

Figure: precision@3 of `storage.articles.related(db, title, 5, exclude_id=id, phrases=tags)`
(as the Related button asks): of its first three answers, the share a person picked (out of
three, or out of as many as were picked when fewer), averaged over the stories.

Baseline: plain bm25, /related before shared tags, names and common words counted: one
statement ranking an OR of the story's tags and title words (less English stopwords, at most
8 terms) by `bm25(…, 3.0, 1.0, 2.0)`, the newer first among equals. Target: above the
baseline, and at least PRECISION_TARGET.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, figure, print_rows

JUDGED = REPO / "tests" / "data" / "related-judged.json"
PRECISION_TARGET = 0.875
PLAIN_STOPWORDS = frozenset(
    """a about after again against all an and any are as at be been before being but by can
    could did do does for from had has have he her his how i if in into is it its just more
    most new no not now of off on once only or other our out over says said she so some such
    than that the their them then there these they this those through to too under up very
    was we were what when where which while who why will with would you your near among across
    between during within without despite toward towards upon""".split()  # noqa: SIM905
)
PLAIN_BM25 = (
    "SELECT a.id FROM articles_recent_fts f JOIN articles a ON a.rowid = f.rowid "
    "WHERE articles_recent_fts MATCH ? AND a.id IS NOT ? "
    "ORDER BY bm25(articles_recent_fts, 3.0, 1.0, 2.0), a.published_at DESC LIMIT 3"
)


def plain_match(title: str, tags: tuple[str, ...]) -> str:
    from storage import words

    keys: list[tuple[str, ...]] = []
    for tag in tags:
        stems = words.keyword_stems(tag)
        if stems and stems not in keys:
            keys.append(stems)
    for token in words.tokens(title):
        stems = (words.stem(token),)
        if token not in PLAIN_STOPWORDS and stems not in keys and len(stems[0]) >= 2:
            keys.append(stems)
    return " OR ".join(words.fts_phrase(k) for k in keys[:8])


def precision_at_3(found: list[str], picked: set[str]) -> float:
    return sum(f in picked for f in found[:3]) / min(3, len(picked))


async def _measure(path: Path) -> dict[str, Any]:
    from storage import articles
    from storage.db import Database
    from tests.harness import store_sample

    judged = json.loads(JUDGED.read_text(encoding="utf-8"))["stories"]
    stored = await store_sample(path)
    db = await Database.open(path)
    try:
        ours: list[float] = []
        plain: list[float] = []
        for story_judged in judged:
            story = await articles.get_article(db, story_judged["id"])
            assert story is not None, story_judged["id"]
            picked = set(story_judged["related"])
            found = await articles.related(db, story.title, 5, exclude_id=story.id, phrases=story.tags)
            ours.append(precision_at_3([a.id for a in found], picked))
            rows = await db.fetchall(PLAIN_BM25, (plain_match(story.title, story.tags), story.id))
            plain.append(precision_at_3([r[0] for r in rows], picked))
    finally:
        await db.close()
    return {
        "stories": len(judged), "stored": stored,
        "precision": sum(ours) / len(ours), "baseline_precision": sum(plain) / len(plain),
        "better": sum(o > p for o, p in zip(ours, plain, strict=True)),
        "worse": sum(o < p for o, p in zip(ours, plain, strict=True)),
    }


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.related", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newsbot-related-") as tmp:
        found = asyncio.run(_measure(Path(tmp) / "newsbot.db"))
    value, base = found["precision"], found["baseline_precision"]
    rows = [figure(
        "related_precision",
        f"/related: precision of the top three on {found['stories']} judged stories",
        value, "", baseline=base, target=f"> baseline, ≥ {PRECISION_TARGET:g}",
        passed=value > base and value >= PRECISION_TARGET,
        value_text=f"{value:.3f}", baseline_text=f"{base:.3f} (plain bm25)",
        detail={**found, "note": (
            f"the judged set: {found['stories']} stories of the sample feed, each with the stories a "
            "person reading it would want next (tests/data/related-judged.json); baseline = plain "
            "bm25 over the tags and title words, /related before this ranking, in the same run; "
            f"better for {found['better']} stories, worse for {found['worse']}")},
    )]  # fmt: skip
    print_rows(rows, "related")
    return rows


if __name__ == "__main__":
    main()
