"""/related's ranking: which words of a story count and how much, which stories are the story
itself, and the archive's common words. `storage.articles.related` fetches the candidates.

A story's words, strongest first:

* its tags, as whole phrases ("North Korea" is not the North Sea): a tag the other story
  carries too counts TAG_WEIGHT;
* names and places in its title (a capitalised word that does not start the headline or a
  sentence in it, an acronym, or a word its summary writes capitalised inside a sentence;
  in a headline that capitalises every word, only acronyms and the summary's names):
  NAME_WEIGHT;
* the title's other words: WORD_WEIGHT.

Stopwords (`storage.stopwords.ALL`) never count, nor do words held by more than COMMON_SHARE
of the stories of the ranking index (and at least COMMON_MIN_STORIES): a newsroom's own
country or city. A word found in the other story's title or tags counts fully, in its summary only
by SUMMARY_SHARE. The best score first, the newer story among equals. Never the story itself:
not its id, not its link, not a headline with nearly the same words (NEAR_COPY).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from storage import stopwords, words
from storage.db import Database

TAG_WEIGHT: Final = 3.0
NAME_WEIGHT: Final = 2.0
WORD_WEIGHT: Final = 1.0
SUMMARY_SHARE: Final = 0.5
# Ranked by bm25 first: the best CANDIDATES of the matches are scored here.
CANDIDATES: Final = 50
MAX_TERMS: Final = 8
# Two headlines whose word sets share this much (Jaccard) are one story's copies.
NEAR_COPY: Final = 0.8
COMMON_SHARE: Final = 0.05
COMMON_MIN_STORIES: Final = 20
# Measured document counts are kept for this many words, and measured again once the archive
# grew by REMEASURE_SHARE of its stories since.
CACHE_WORDS: Final = 10_000
REMEASURE_SHARE: Final = 0.02
# A headline of which at least this share of words is capitalised is in title case.
_TITLE_CASE: Final = 0.75

_RAW_WORD: Final = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SENTENCE_END: Final = frozenset(":.!?\"“”«»–—(")


@dataclass(frozen=True, slots=True)
class Term:
    """A word or phrase (its stems) of the story asked about."""

    stems: tuple[str, ...]
    weight: float
    tag: bool = False
    docs: int = 0  # stories of the ranking index holding it (at most)


@dataclass(frozen=True, slots=True)
class Query:
    """What /related asks: its terms, and what marks the story itself."""

    terms: tuple[Term, ...]
    url: str | None = None
    title_words: frozenset[str] = frozenset()  # empty: no near-copy rule
    size: int = 0  # stories in the ranking index

    @property
    def match(self) -> str:
        """The FTS5 query that finds the candidates: any of the terms."""
        return " OR ".join(words.fts_phrase(t.stems) for t in self.terms)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored story as the ranking reads it (from a row: bm25's candidates, older matches)."""

    rowid: int
    url: str
    title: str
    summary: str
    tags: tuple[str, ...]
    published_at: float


def _raw_words(text: str) -> list[tuple[str, bool]]:
    """The words of `text` as written, each with whether it starts the text or a sentence."""
    found = []
    last = 0
    for n, match in enumerate(_RAW_WORD.finditer(text)):
        between = text[last : match.start()].strip()
        found.append((match.group(), n == 0 or (bool(between) and between[-1] in _SENTENCE_END)))
        last = match.end()
    return found


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _acronym(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def names_in(summary: str) -> frozenset[str]:
    """Folded words `summary` writes capitalised inside a sentence (names, places)."""
    return frozenset(
        token for raw, initial in _raw_words(summary) if _capitalised(raw) and not initial
        for token in words.tokens(raw)
    )  # fmt: skip


def terms(text: str, phrases: Iterable[str] = (), *, summary: str = "") -> list[Term]:
    """The terms of a story's title (or a reader's words) and tags (or quoted words): tags
    first, then names, then other words; stopwords left out, each stem once."""
    found: dict[tuple[str, ...], Term] = {}
    for phrase in phrases:
        stems = words.keyword_stems(phrase)
        if stems and stems not in found:
            found[stems] = Term(stems, TAG_WEIGHT, tag=True)
    raw = _raw_words(text)
    inner = [(w, initial) for w, initial in raw if not initial and words.fold(w) not in stopwords.ALL]
    title_case = len(inner) >= 2 and sum(_capitalised(w) for w, _ in inner) >= _TITLE_CASE * len(inner)
    known = names_in(summary)
    names: dict[tuple[str, ...], Term] = {}
    others: dict[tuple[str, ...], Term] = {}
    for word, initial in raw:
        for token in words.tokens(word):
            if token in stopwords.ALL or len(token) < 2:
                continue
            stems = (words.stem(token),)
            name = _acronym(word) or token in known or (_capitalised(word) and not initial and not title_case)
            (names if name else others).setdefault(stems, Term(stems, NAME_WEIGHT if name else WORD_WEIGHT))
    for group in (names, others):
        for stems, term in group.items():
            found.setdefault(stems, term)
    return list(found.values())


def _title_words(title: str) -> frozenset[str]:
    return frozenset(words.title_key(title).split())


def near_copy(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two headlines' word sets are one story's (Jaccard ≥ NEAR_COPY)."""
    return bool(a and b) and len(a & b) >= NEAR_COPY * len(a | b)


def query(
    text: str, found: Sequence[Term], *, url: str | None = None, headline: bool = True, size: int = 0
) -> Query:
    """The query of these terms (`significant` ones); `text` is a headline whose copies are
    left out when `headline`."""
    return Query(tuple(found[:MAX_TERMS]), url or None, _title_words(text) if headline else frozenset(), size)


def significant(found: Sequence[Term], docs: dict[str, int], size: int) -> list[Term]:
    """The terms not common across the archive (a phrase is common when each of its words
    is), each with its document count; all of them when every one is common."""
    frequent = common(docs, size)
    kept = [t for t in found if not all(stem in frequent for stem in t.stems)] or list(found)
    return [replace(t, docs=min(docs.get(stem, 0) for stem in t.stems)) for t in kept]


def is_copy(q: Query, candidate: Candidate) -> bool:
    """Whether `candidate` is the story asked about again: its link, or nearly its headline."""
    return (bool(q.url) and candidate.url == q.url) or near_copy(q.title_words, _title_words(candidate.title))


def score(q: Query, candidate: Candidate) -> float:
    """How much `candidate` shares with the query: each term's weight (TAG_WEIGHT for a shared
    tag, SUMMARY_SHARE of it when only the summary holds it) times its rarity, 1 + log(1 +
    stories / stories holding it); over the square root of the candidate's tags plus one, so
    a story about the same few things beats one that touches them among many."""
    tags = {words.keyword_stems(tag) for tag in candidate.tags}
    heading = words.field_stems((candidate.title, *candidate.tags))
    summary: tuple[str, ...] | None = None
    total = 0.0
    for term in q.terms:
        weight = NAME_WEIGHT if term.tag else term.weight
        if term.tag and term.stems in tags:
            weight = TAG_WEIGHT
        elif not words.contains(heading, term.stems):
            if summary is None:
                summary = words.field_stems((candidate.summary,))
            weight = weight * SUMMARY_SHARE if words.contains(summary, term.stems) else 0.0
        total += weight * (1.0 + math.log1p(q.size / max(term.docs, 1)))
    return total / math.sqrt(1 + len(candidate.tags))


def rank(q: Query, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates that are not the story itself, best score first, the newer among
    equals (then the later stored)."""
    scored = [(score(q, c), c) for c in candidates if not is_copy(q, c)]
    scored.sort(key=lambda pair: (-pair[0], -pair[1].published_at, -pair[1].rowid))
    return [c for _, c in scored]


def fill(q: Query, found: list[Candidate], older: Iterable[Candidate], limit: int) -> list[Candidate]:
    """The answer: `found` (by `rank`), then, when those are fewer than `limit`, older matches
    in the order given (newest first), copies of the story left out."""
    if len(found) < limit:
        found = found + [c for c in older if not is_copy(q, c)]
    return found[:limit]


# --- words common across the archive -------------------------------------------------------------


class _Counts:
    """One database's measured document counts: stem → (stories holding it, the archive's
    newest rowid when measured); and the ranking index's size, measured likewise."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[int, int]] = {}
        self.size = (0, -1)

    def fresh(self, measured_at: int, newest: int) -> bool:
        return measured_at >= 0 and newest - measured_at <= REMEASURE_SHARE * self.size[0]

    def remember(self, stem: str, docs: int, newest: int) -> None:
        if len(self.docs) >= CACHE_WORDS and stem not in self.docs:
            for old in list(self.docs)[: CACHE_WORDS // 2]:
                del self.docs[old]
        self.docs.pop(stem, None)
        self.docs[stem] = (docs, newest)


_counts: Final[weakref.WeakKeyDictionary[Database, _Counts]] = weakref.WeakKeyDictionary()


async def document_counts(db: Database, stems: Iterable[str], *, window: int) -> tuple[dict[str, int], int]:
    """How many stories of the ranking index (the newest `window` stories) hold each of
    `stems`, and how many stories it holds.

    Counted by the index's vocabulary (`articles_recent_vocab`, migration 0015): a walk of
    each word's list, so each count is kept (CACHE_WORDS of them) until the archive has grown
    by REMEASURE_SHARE since, and the words of a busy archive cost a lookup."""
    counts = _counts.setdefault(db, _Counts())
    rows = await db.fetchall_here("SELECT coalesce(max(rowid), 0) FROM articles")
    newest = int(rows[0][0])
    if not counts.fresh(counts.size[1], newest):
        size = await db.scalar("SELECT count(*) FROM articles WHERE rowid > ?", (newest - window,))
        counts.size = (int(size or 0), newest)
    wanted = sorted(set(stems))
    stale = [s for s in wanted if s not in counts.docs or not counts.fresh(counts.docs[s][1], newest)]
    if stale:
        rows = await db.fetchall(
            f"SELECT term, doc FROM articles_recent_vocab WHERE term IN ({','.join('?' * len(stale))})",  # noqa: S608
            stale,
        )
        found: dict[str, int] = {str(row[0]): int(row[1]) for row in rows}
        for stem in stale:
            counts.remember(stem, int(found.get(stem, 0)), newest)
    return {s: counts.docs[s][0] for s in wanted}, counts.size[0]


def common(docs: dict[str, int], size: int) -> set[str]:
    """The stems more than COMMON_SHARE of the stories hold, and at least COMMON_MIN_STORIES."""
    limit = max(COMMON_SHARE * size, COMMON_MIN_STORIES - 1)
    return {stem for stem, n in docs.items() if n > limit}
