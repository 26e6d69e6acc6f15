"""Generated rows for `bench.year`: readers, subscriptions, stories and a month of outbox
traffic, the same for 0.2's schema and 0.1's (standard library only: `bench/year_v01.py`
imports this next to 0.1's own code)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

SECTIONS = ("sweden", "living", "world", "business", "sports", "entertainment")
SECTION_WEIGHTS = (12, 6, 10, 8, 9, 5)
START = 1_780_000_000.0  # the first simulated day
DAY = 86_400.0
FIRST_CHAT = 5_000_000
VOCABULARY = [f"w{n:05d}" for n in range(30_000)]
_ZIPF = [1.0 / (rank + 1) ** 1.05 for rank in range(len(VOCABULARY))]
# Summed once: `choices` given plain weights sums all 30,000 of them on every call. The draws
# are the same either way (it sums them exactly so), so cached databases stay valid.
_ZIPF_SUMS = list(itertools.accumulate(_ZIPF))


def readers(count: int) -> list[int]:
    return [FIRST_CHAT + n for n in range(count)]


def subscriptions(count: int, readers_count: int, seed: int) -> Iterator[tuple[int, str, str]]:
    """(chat, kind, value): about two sections a reader, keywords for the rest (Zipf)."""
    rng = random.Random(seed)
    sections = 0
    for n in range(readers_count):
        for section in rng.sample(SECTIONS, 2):
            sections += 1
            yield FIRST_CHAT + n, "section", section
    keywords = max(0, count - sections)
    seen: set[tuple[int, str]] = set()
    while len(seen) < keywords:
        chat = FIRST_CHAT + rng.randrange(readers_count)
        word = rng.choices(VOCABULARY, cum_weights=_ZIPF_SUMS)[0]
        if (chat, word) not in seen:
            seen.add((chat, word))
            yield chat, "keyword", word


def stories(count: int, seed: int) -> Iterator[tuple[int, str, str, str, str, float]]:
    """(number, title, summary, section, url, published): a million span about a year
    before the first simulated day."""
    rng = random.Random(seed)
    step = 365 * DAY / max(1, count)
    for n in range(count):
        title = " ".join(rng.choices(VOCABULARY, cum_weights=_ZIPF_SUMS, k=9))
        summary = " ".join(rng.choices(VOCABULARY, cum_weights=_ZIPF_SUMS, k=30))
        section = rng.choices(SECTIONS, SECTION_WEIGHTS)[0]
        yield n, title, summary, section, f"https://news.example/{section}/{n}", START - 365 * DAY + n * step


def day_of_outbox(day: int, per_day: int, readers_count: int, stories_count: int, seed: int) -> Iterator[tuple[int, str, float, float]]:
    """(chat, story id, created, sent) for one day of traffic: sections' fan-outs."""
    rng = random.Random(seed * 1000 + day)
    start = START + day * DAY
    for n in range(per_day):
        at = start + n * DAY / per_day
        story = (day * 500 + rng.randrange(500)) % stories_count
        yield FIRST_CHAT + rng.randrange(readers_count), f"s{story}", at, at + rng.uniform(1, 120)
