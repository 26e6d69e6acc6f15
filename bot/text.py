"""Plain-text helpers shared by parsing and rendering.

Feed HTML is never passed on: it becomes plain text here, and rendering escapes
that text for Telegram. What counts as the same word is `storage.words`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

from storage.words import fold

__all__ = ["clean_text", "html_to_text", "plain_line", "slugify", "truncate_words"]

# Elements that start a new line, and those that start a new paragraph.
_LINE_TAGS = frozenset({"dd", "dt", "li", "tr"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "details", "div", "dl", "figcaption",
        "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav",
        "ol", "p", "pre", "section", "summary", "table", "ul",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
# Content that is not text for a reader. Only elements whose end tag is reliably
# present belong here: an unclosed one would swallow the rest of the document.
_SKIP_TAGS = frozenset({"script", "style", "template"})

# Invisible characters that break matching and measuring but carry no meaning
# in a headline: BOM/zero-width no-break space, zero-width space, soft hyphen,
# word joiner; and the bidirectional controls (embeddings, overrides, isolates,
# marks), with which a title can make text read backwards and pose as a link.
_INVISIBLE = frozenset(
    "\ufeff\u200b\u00ad\u2060"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)

# One more round of entity decoding for text that was HTML-escaped twice
# (`&amp;amp;`, `&amp;quot;`), which many CMSs produce. Only complete entities
# with a semicolon are decoded so that "AT&T" and "R&D" stay as they are.
_ENTITY_RE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_TAG_RE = re.compile(r"<[^>]*>?")
# Feeds that cut descriptions to a length often cut inside a tag; html.parser
# would hand the stub back as text.
_TRAILING_TAG_RE = re.compile(r"<[A-Za-z/!?][^<>]*$")
# With a length limit, HTML is read in chunks of this size; the margin covers
# the end of the text read so far, where a word or an entity may be incomplete.
_CHUNK = 1024
_LIMIT_MARGIN = 32
_LAST_SPACE_RE = re.compile(r"\s(?=\S*$)")


def _decode_entities_once(s: str) -> str:
    if "&" not in s:
        return s
    return _ENTITY_RE.sub(lambda m: html.unescape(m.group(0)), s)


def _scrub(s: str) -> str:
    """Turn every whitespace character into a space and drop control characters.

    Lone surrogates are dropped as well: they cannot be encoded as UTF-8, so
    SQLite and Telegram would reject the text.
    """
    if s.isprintable():  # the common case: no whitespace but spaces, nothing to drop
        return s
    out: list[str] = []
    for ch in s:
        if ch.isspace():
            out.append(" ")
        elif ch in _INVISIBLE:
            continue
        elif ch.isprintable() or unicodedata.category(ch) not in ("Cc", "Cs"):
            out.append(ch)
    return "".join(out)


class _TextExtractor(HTMLParser):
    """Collects text runs and the line breaks that markup implies between them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # Text runs, and ints for breaks: 0 = `<br>`, 1 = new line, 2 = new paragraph.
        self.parts: list[str | int] = []
        # Characters of raw text collected so far: an upper bound on the length of `text()`.
        self.raw_length = 0
        self._skip: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip is not None:
            return
        if tag in _SKIP_TAGS:
            self._skip = tag
        else:
            self._mark(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # `<script/>` has no content to skip; everything else acts as its start tag.
        if tag not in _SKIP_TAGS:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skip is not None:
            if tag == self._skip:
                self._skip = None
            return
        if tag != "br":
            self._mark(tag)

    def _mark(self, tag: str) -> None:
        if tag == "br":
            self.parts.append(0)
        elif tag in _LINE_TAGS:
            self.parts.append(1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(2)
        elif tag in _CELL_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self._skip is not None:
            return
        self.raw_length += len(data)
        # html.parser may hand over one run of text in several pieces; entity
        # decoding below needs them whole.
        if self.parts and isinstance(self.parts[-1], str):
            self.parts[-1] += data
        else:
            self.parts.append(data)

    def text(self) -> str:
        out: list[str] = []
        pending = 0
        for part in self.parts:
            if isinstance(part, int):
                # Adjacent block boundaries (`</li><li>`, `</p><p>`) mean one
                # break, not several; only repeated `<br>`s add up.
                pending = min(pending + 1, 2) if part == 0 else max(pending, part)
                continue
            words = _clean_run(part)
            if not words:
                continue
            if out:
                out.append("\n" * pending if pending else " ")
            out.append(words)
            pending = 0
        return "".join(out)


def _clean_run(s: str) -> str:
    return " ".join(_scrub(_decode_entities_once(s)).split())


def html_to_text(s: str, *, limit: int | None = None) -> str:
    """Plain text of an HTML fragment.

    Tags are removed; `<br>` and list items give a line break and block
    elements (`<p>`, `<div>`, headings, …) a blank line; script, style and
    template content is dropped; entities are decoded, and decoded once more
    when the source was escaped twice; runs of whitespace become one space;
    control characters other than the newline are removed. Never raises.

    With `limit`, reading stops once the text is safely longer than `limit`
    characters: `truncate_words(html_to_text(s, limit=n), n)` equals
    `truncate_words(html_to_text(s), n)` (also with the lines joined by
    spaces first), at a fraction of the cost for long articles.
    """
    if not s:
        return ""
    if "<" not in s and "&" not in s:
        # No markup and no entities: most feed summaries, and a tenth of the cost.
        return " ".join(_scrub(s).split())
    try:
        parser = _TextExtractor()
        s = _TRAILING_TAG_RE.sub("", s)
        if limit is None:
            parser.feed(s)
        else:
            for start in range(0, len(s), _CHUNK):
                parser.feed(s[start : start + _CHUNK])
                if parser.raw_length > limit + _LIMIT_MARGIN:
                    text = parser.text()
                    # Discounting line breaks keeps the promise for callers
                    # that join the lines into one paragraph before truncating.
                    if len(text) - text.count("\n") > limit + _LIMIT_MARGIN:
                        return text
        parser.close()
        return parser.text()
    except Exception:
        # html.parser is lenient, but a fallback keeps the promise for inputs
        # that still manage to upset it.
        return _clean_run(html.unescape(_TAG_RE.sub(" ", s)))


def plain_line(s: str) -> str:
    """A reader's own words as one line: control, bidi and invisible characters dropped,
    whitespace collapsed (entities are left as typed)."""
    return " ".join(_scrub(s).split())


def clean_text(s: str) -> str:
    """Tidy text that is already plain: decode stray entities once, drop control
    characters, collapse whitespace to single spaces (newlines included)."""
    if not s:
        return ""
    return " ".join(_scrub(_decode_entities_once(s)).split())


def truncate_words(s: str, limit: int) -> str:
    """`s` cut to at most `limit` characters, counting the "…" added when it is cut.

    The cut falls at the last word boundary that keeps at least half of the
    allowed length; a single word longer than that is cut inside the word.
    """
    if limit <= 0:
        return ""
    if len(s) <= limit:
        return s
    room = limit - 1
    head = s[:room]
    # A boundary right after the kept part keeps the whole last word.
    if s[room].isspace():
        cut = head
    else:
        last_space = _LAST_SPACE_RE.search(head)
        boundary = last_space.start() if last_space else -1
        cut = head[:boundary] if boundary >= room // 2 else head
    cut = cut.rstrip()
    stripped = cut.rstrip(",;:-–—([{/")
    if stripped:
        cut = stripped.rstrip()
    return cut + "…"


_SLUG_MAX = 40
_NON_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slugify(s: str) -> str:
    """ASCII slug of `s` ("Sports & Games" → "sports-games"); "" when nothing is left.

    Slugs travel in commands and callback data (64 bytes at most), so they are
    kept to ASCII letters, digits and hyphens and to 40 characters.
    """
    slug = _NON_SLUG_RE.sub("-", fold(s)).strip("-")
    return slug[:_SLUG_MAX].rstrip("-")
