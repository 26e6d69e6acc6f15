"""What "the same word" means, for everything that compares words: keyword matching,
the search index and its queries, exclusions. One rule in one place.

* `fold` is the text form everything compares: case and accents dropped.
* `tokens` and `stem` define the words: a keyword matches a text when its stems
  (`keyword_stems`) occur as consecutive stems of the text. `field_stems` computes the
  same stems for an article's fields at once, quickly; tests prove the two agree.
* `index_text` is what the search index stores for a field (its stems), and
  `phrase_query` what a query asks for, so a word found by matching is found by search.

Word rules (the reference for what readers get):

* Folding: compatibility decomposition, combining marks dropped, casefolded, and
  letters that do not decompose mapped by hand (ø→o, æ→ae, œ→oe, ß→ss, ł→l, đ/ð→d,
  þ→th, ı→i, …); typographic apostrophes become `'`. So `malmo` finds `Malmö`.
* A word is a run of letters and digits. An apostrophe between letters stays inside
  the word (`o'brien`, `don't`), and a trailing `'s` is dropped by `stem`, so `art`
  finds "Art's" and `north korea` finds "North Korea's".
* Hyphens, dots, slashes and other punctuation separate words: `f-16` is the phrase
  `f 16` and finds "F-16" and "F 16"; `drone` finds "anti-drone".
* A single letter followed by `+`, `++` or `#` is one word (`c++`, `c#`, `a+`), so
  following `c++` does not alert on every "C". After a longer word the sign is
  dropped: `disney` finds "Disney+".
* Simple English plurals share their singular's stem (`drone`/`drones`,
  `story`/`stories`, `crisis`/`crises`); short words and known non-plurals are kept.
* Underscores separate words. Scripts written without spaces (Chinese, Japanese)
  yield one word per run of characters; matching there is whole-run only.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Final, TypeVar

_V = TypeVar("_V")

# Letters that NFKD leaves alone but a reader typing on an English keyboard would
# write differently; also typographic apostrophes, so "Korea’s" and "Korea's" agree.
_HAND_FOLDED: Final = {
    "ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
    "ħ": "h", "ı": "i", "ŀ": "l", "ŧ": "t", "ŋ": "n", "ĸ": "k", "ſ": "s", "ƒ": "f",
    "ɖ": "d", "ƀ": "b", "ɨ": "i", "ʉ": "u", "ȥ": "z", "ꝋ": "o",
    "’": "'", "‘": "'", "ʼ": "'",
}  # fmt: skip

# After folding: letters/digits with apostrophes only between them, and a trailing
# +, ++ or # that `_signed` keeps only after a single letter (c++, c#). One pattern
# with a fix-up is faster than an alternation tried at every position.
_WORD: Final = r"[^\W_]+(?:'[^\W_]+)*(?:(?:\+\+?|#)(?![^\W_]))?"
_WORD_RE: Final = re.compile(_WORD)

_NON_ASCII_RE: Final = re.compile(r"[^\x00-\x7f]")


@functools.cache
def _fold_char(ch: str) -> str:
    if unicodedata.combining(ch):
        return ""
    return _HAND_FOLDED.get(ch, ch)


def fold(text: str) -> str:
    """Casefold `text` and strip diacritics (see the module docstring for the rules)."""
    if text.isascii():
        # For ASCII, casefold() and lower() agree and lower() is the faster of the two.
        return text.lower()
    # NFKD before casefolding catches compatibility forms that decompose to capitals
    # (ℍ → H); NFKD again splits what casefolding may produce (ǰ → j + caron).
    text = unicodedata.normalize("NFKD", text).casefold()
    if not unicodedata.is_normalized("NFKD", text):
        text = unicodedata.normalize("NFKD", text)
    # News text is mostly ASCII with a few accented names: replacing each distinct
    # non-ASCII character is several times faster than translate() or a regex
    # character class over every combining mark.
    for ch in set(_NON_ASCII_RE.findall(text)):
        folded = _fold_char(ch)
        if folded != ch:
            text = text.replace(ch, folded)
    return text


def tokens(text: str) -> list[str]:
    """The folded words of `text`, in order (not stemmed)."""
    folded = fold(text)
    words: list[str] = _WORD_RE.findall(folded)
    return _signed(words) if "+" in folded or "#" in folded else words


def _signed(words: list[str]) -> list[str]:
    return [
        word
        if word[-1] not in "+#" or (len(base := word.rstrip("+#")) == 1 and base.isalpha())
        else base
        for word in words
    ]


# Words that look like plurals but are not, or whose stripped form is another word.
_NOT_PLURAL: Final = frozenset(
    {
        "news",
        "series",
        "species",
        "does",
        "goes",
        "always",
        "perhaps",
        "whereas",
        "chaos",
        "cosmos",
        "kudos",
        "mars",
        "lens",
        "bias",
        "alias",
        "atlas",
        "canvas",
        "texas",
        "kansas",
        "arkansas",
        "dallas",
        "vegas",
        "wales",
        "athens",
        "james",
        "jones",
        "mercedes",
        "hermes",
    }
)

_IRREGULAR_PLURALS: Final = {
    "buses": "bus",
    "gases": "gas",
    "viruses": "virus",
    "bonuses": "bonus",
    "campuses": "campus",
    "censuses": "census",
    "statuses": "status",
    "lenses": "lens",
    "crises": "crisis",
    "analyses": "analysis",
    "theses": "thesis",
    "diagnoses": "diagnosis",
    "quizzes": "quiz",
    "heroes": "hero",
    "potatoes": "potato",
    "tomatoes": "tomato",
    "echoes": "echo",
    "vetoes": "veto",
    "torpedoes": "torpedo",
    "embargoes": "embargo",
    "volcanoes": "volcano",
    "mosquitoes": "mosquito",
}

# Singular nouns ending in -ie: their plural is -ies, like story/stories, so the
# plural has to be told apart from -y nouns by name.
_IE_NOUNS: Final = frozenset(
    {
        "movie",
        "cookie",
        "zombie",
        "rookie",
        "selfie",
        "calorie",
        "hippie",
        "goalie",
        "smoothie",
        "prairie",
        "genie",
        "newbie",
        "freebie",
        "sortie",
        "auntie",
        "techie",
        "foodie",
        "birdie",
        "brownie",
        "lingerie",
        "walkie",
        "talkie",
        "magpie",
        "necktie",
        "pixie",
        "budgie",
        "indie",
    }
)

# Singular nouns ending in -che: their plural adds only "s", unlike church/churches.
_CHE_NOUNS: Final = frozenset(
    {
        "cache",
        "niche",
        "headache",
        "avalanche",
        "moustache",
        "mustache",
        "cliche",
        "creche",
        "quiche",
        "psyche",
        "apache",
        "porsche",
    }
)


def stem(word: str) -> str:
    """Fold simple English plurals (and a possessive 's) of one folded word.

    Conservative on purpose: words of three letters or fewer and words ending in
    "ss", "us" or "is" are kept, as are known non-plurals such as "news". Both a
    keyword and the text are stemmed the same way, so only conflating two different
    words would hurt; missing an unusual plural just means no match.
    """
    if word.endswith("'s"):
        word = word[:-2]
    if not word.isalpha() or not word.isascii():
        # "1990s" and "f-16s" (whose second word is "16s") are plurals too.
        if len(word) >= 3 and word[-1] == "s" and word[:-1].isdigit():
            return word[:-1]
        return word
    irregular = _IRREGULAR_PLURALS.get(word)
    if irregular is not None:
        return irregular
    if len(word) <= 3 or word[-1] != "s" or word in _NOT_PLURAL:
        return word
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-1] if word[:-1] in _IE_NOUNS else word[:-3] + "y"
    if word.endswith("ches"):
        return word[:-1] if word[:-1] in _CHE_NOUNS else word[:-2]
    if word.endswith(("sses", "shes", "xes", "zzes")):
        return word[:-2]
    return word[:-1]


def keyword_stems(value: str) -> tuple[str, ...]:
    """The stems a keyword must match, in order (one for a word, several for a phrase)."""
    # Interned like the stems of `field_stems`, so the matcher's dict lookups find
    # the very same string object and never compare characters.
    return tuple(sys.intern(stem(word)) for word in tokens(value))


# Marks the boundary between two fields in `field_stems`: a control character that
# folding keeps and no keyword can contain, so no phrase can match across it.
FIELD_BREAK: Final = "\x1f"
_FIELD_WORD_RE: Final = re.compile(_WORD + "|" + FIELD_BREAK)

# For ASCII text (most news text, once folded) one translate() both lowercases and
# turns every character that cannot be part of a word into a space, and split() cuts
# the rest into runs: several times faster than the regex. The field break becomes
# NUL (split() would drop \x1f as whitespace); a NUL in the text becomes a space.
_ASCII_RUNS: Final = str.maketrans(
    {chr(i): chr(i).lower() if chr(i).isalnum() or chr(i) in "'+#" else " " for i in range(128)}
    | {FIELD_BREAK: "\x00"}
)


class _BoundedCache(dict[str, _V]):
    """A dict that forgets its older half when full.

    A site's vocabulary is small enough that nearly every word is a hit, but names
    and numbers keep arriving. Dicts keep insertion order, so the first keys are the
    oldest; a word still in use simply comes back.
    """

    limit = 100_000

    def remember(self, key: str, value: _V) -> _V:
        if len(self) >= self.limit:
            for old in list(itertools.islice(self, self.limit // 2)):
                del self[old]
        self[key] = value
        return value


class _StemCache(_BoundedCache[str]):
    """word → stem, for text that is not ASCII once folded."""

    limit = 50_000

    def __missing__(self, word: str) -> str:
        return self.remember(word, sys.intern(stem(word)))


class _RunCache(_BoundedCache[tuple[str, ...]]):
    """A run of word characters and ' + # (from `_ASCII_RUNS`) → the stems of its words.

    Usually one word; "'quoted'", "players'" or "a+b" are tokenised like any text.
    """

    def __missing__(self, run: str) -> tuple[str, ...]:
        if run.isalnum():
            # The usual case, a plain word: no need for the regex.
            stems: tuple[str, ...] = (sys.intern(stem(run)),)
        elif run == "\x00":
            stems = (FIELD_BREAK,)
        else:
            words: list[str] = _WORD_RE.findall(run)
            if "+" in run or "#" in run:
                words = _signed(words)
            stems = tuple(map(_stem_cache.__getitem__, words))
        return self.remember(run, stems)


_stem_cache: Final = _StemCache()
_run_cache: Final = _RunCache()
_chain: Final = itertools.chain.from_iterable


def field_stems(fields: Sequence[str]) -> tuple[str, ...]:
    """The stems of every field in order, with FIELD_BREAK between two fields.

    Equal to the fields' `keyword_stems` joined by FIELD_BREAK, but folds and
    tokenises once for all fields: this runs for every new article.
    """
    text = f" {FIELD_BREAK} ".join(fields)
    if text.count(FIELD_BREAK) != len(fields) - 1:
        # A field holding the marker itself: it is punctuation there, so a space.
        text = f" {FIELD_BREAK} ".join(field.replace(FIELD_BREAK, " ") for field in fields)
    if not text.isascii():
        text = fold(text)
        if not text.isascii():
            words: list[str] = _FIELD_WORD_RE.findall(text)
            if "+" in text or "#" in text:
                words = _signed(words)
            return tuple(map(_stem_cache.__getitem__, words))
    return tuple(_chain(map(_run_cache.__getitem__, text.translate(_ASCII_RUNS).split())))


# --- the search index and its queries ------------------------------------------------------------


def index_text(text: str) -> str:
    """What the search index stores for one field: its stems, space-separated.

    The index tokenizer (see migration 0003) splits on spaces only for these (`'`, `+`
    and `#` are word characters there), so a query for a keyword's stems finds exactly
    the texts the matcher finds. `field_stems` of the one field is its `keyword_stems`
    through the word caches (this runs for every field of every new story).
    """
    return " ".join(field_stems((text,)))


def index_tags(tags: Iterable[str]) -> str:
    """The tags field of the index: every tag's stems, tags separated by ` | `."""
    return " | ".join(text for text in map(index_text, tags) if text)


def fts_phrase(stems: Sequence[str]) -> str:
    """An FTS5 phrase for these stems (quoted: `c++` or `and` are never query syntax)."""
    return '"' + " ".join(stems).replace('"', '""') + '"'


# Trailing words that mark a re-published story rather than a different one.
_UPDATE_MARKS: Final = frozenset({"update", "updated", "uppdaterad"})


def title_key(title: str) -> str:
    """The form in which two headlines of one story agree: case, accents and punctuation
    dropped, and a trailing "– Updated" (or "(update)") ignored.

    "Storm hits Malmö – Updated" and "storm hits malmo" share a key; "Storm hits Malmö
    again" does not.
    """
    found = tokens(title)
    while len(found) > 1 and found[-1] in _UPDATE_MARKS:
        found.pop()
    return " ".join(found)


def contains(stems: Sequence[str], phrase: Sequence[str]) -> bool:
    """Whether `phrase` occurs as consecutive items of `stems` (a text's `field_stems`)."""
    if not phrase:
        return False
    first, size = phrase[0], len(phrase)
    start = stems.index(first) if first in stems else -1
    while 0 <= start <= len(stems) - size:
        if tuple(stems[start : start + size]) == tuple(phrase):
            return True
        try:
            start = stems.index(first, start + 1)
        except ValueError:
            return False
    return False
