"""Stopwords per language: words that say nothing about what a story is about.

The lists are plain files beside this module (`en.txt`, `sv.txt`: one word a line, `#` starts
a comment), shipped as package data, read once and compared in folded form
(`storage.words.fold`), as every word of the index is.

A story's language is not recorded (feeds rarely say it, and a newsroom may publish in
several), so /search and /related use `ALL`, the union of every shipped list: a stopword in
any of the newsroom's languages is never a useful word to search or rank by.
"""

from __future__ import annotations

import functools
from importlib import resources

from storage import words

LANGUAGES = ("en", "sv")


@functools.cache
def for_language(language: str | None) -> frozenset[str]:
    """The folded stopwords of `language` ("en", "sv"); every shipped list's for None or a
    language without a list."""
    if language not in LANGUAGES:
        return frozenset().union(*(for_language(code) for code in LANGUAGES))
    text = resources.files(__name__).joinpath(f"{language}.txt").read_text(encoding="utf-8")
    found: set[str] = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            found.update(words.tokens(word))
    return frozenset(found)


ALL = for_language(None)
