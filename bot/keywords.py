"""Keywords as readers type them: `/follow`, `/unfollow` and `/exclude` arguments.

* `parse_keywords` splits an argument into the keywords the reader meant (display
  form, as typed).
* `normalise_keyword` turns one keyword into the canonical value that is stored in
  `Subscription.value` and shown in alert reasons (`keyword:north korea`), or raises
  `KeywordError` with a message that can be shown to the reader as is.

What counts as the same word is `storage.words`' rule, shared with matching and search.
"""

from __future__ import annotations

import re
from typing import Final

from bot.i18n import _
from bot.text import truncate_words
from storage.words import fold

MIN_KEYWORD_LEN: Final = 2
MAX_KEYWORD_LEN: Final = 64


# Characters a stored keyword keeps besides letters and digits.
_KEYWORD_JUNK_RE: Final = re.compile(r"[^\w'+#-]|_")
_HAS_WORD_CHAR_RE: Final = re.compile(r"[^\W_]")

# Quote characters that delimit a phrase in a /follow argument: straight, curly,
# low-9 and guillemets, each acting as a toggle so „…“ and «…» work too.
_QUOTES: Final = frozenset('"“”„‟«»')


class KeywordError(ValueError):
    """A keyword cannot be followed; `message` is a complete reply for the reader."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalise_keyword(text: str) -> str:
    """The canonical stored form of one keyword: folded, punctuation as spaces.

    Letters, digits, `+`, `#`, and hyphens/apostrophes inside a word are kept; all
    other characters separate words, and whitespace is collapsed:
    `"North  Korea"` → `north korea`, `Malmö` → `malmo`, `C++` → `c++`.
    Raises `KeywordError` when the result has no letter or digit or is not
    MIN_KEYWORD_LEN to MAX_KEYWORD_LEN characters long.
    """
    folded = _KEYWORD_JUNK_RE.sub(" ", fold(text.strip()))
    pieces = [piece.strip("-'") for piece in folded.split()]
    value = " ".join(piece for piece in pieces if _HAS_WORD_CHAR_RE.search(piece))
    if not value:
        raise KeywordError(_("A keyword needs at least one letter or digit and must be {min} to {max} characters "
                             "long.").format(min=MIN_KEYWORD_LEN, max=MAX_KEYWORD_LEN))
    if len(value) < MIN_KEYWORD_LEN:
        raise KeywordError(_("“{text}” is too short: keywords must be {min} to {max} characters long.").format(
            text=truncate_words(text.strip(), 30), min=MIN_KEYWORD_LEN, max=MAX_KEYWORD_LEN))
    if len(value) > MAX_KEYWORD_LEN:
        raise KeywordError(_("“{text}” is too long: keywords must be {min} to {max} characters long.").format(
            text=truncate_words(text.strip(), 30), min=MIN_KEYWORD_LEN, max=MAX_KEYWORD_LEN))
    return value



def parse_keywords(arg: str) -> list[str]:
    """Split a `/follow` argument into keywords, as the reader wrote them.

    * With a comma outside quotes, commas separate keywords and each part is one
      keyword, spaces included: `north korea, drones` → `north korea`, `drones`.
    * Without one, spaces separate keywords and quotes group a phrase:
      `drones "north korea"` → `drones`, `north korea`.
    Straight, curly and low quotes and guillemets all work; commas inside quotes are
    kept; an unclosed quote runs to the end. Each keyword is trimmed with inner
    whitespace collapsed. Duplicates (same `normalise_keyword` value) are dropped,
    keeping the first. Keywords are not validated here: call `normalise_keyword` on
    each to get its stored value or the reason it is refused.
    """
    comma_mode = _has_unquoted_comma(arg)
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    for ch in arg:
        if ch in _QUOTES:
            in_quotes = not in_quotes
            if not comma_mode:
                parts.append("".join(current))
                current = []
            else:
                current.append(" ")
        elif not in_quotes and (ch == "," if comma_mode else ch.isspace()):
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))

    keywords: list[str] = []
    seen: set[str] = set()
    for part in parts:
        keyword = " ".join(part.split())
        if not keyword:
            continue
        try:
            key = normalise_keyword(keyword)
        except KeywordError:
            key = fold(keyword)
        if key not in seen:
            seen.add(key)
            keywords.append(keyword)
    return keywords


def _has_unquoted_comma(arg: str) -> bool:
    in_quotes = False
    for ch in arg:
        if ch in _QUOTES:
            in_quotes = not in_quotes
        elif ch == "," and not in_quotes:
            return True
    return False
