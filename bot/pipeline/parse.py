"""Parse stage: feed bytes → normalised `Article`s.

`parse_feed` runs feedparser on bytes that the fetch stage downloaded and turns
every entry into an `Article` with a stable id, plain-text title and summary, a
section slug, tags, a UTC timestamp and an image. It raises `ParseError` only
when the document is not a usable feed; anything feedparser merely complains
about (`bozo`) is reported and otherwise ignored.

Why one module: it is one stage with one entry point, and every helper reads the same
feedparser entry into one field of the same `Article` (text, section, date, image).
"""

from __future__ import annotations

import asyncio
import calendar
import io
import re
import xml.sax
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import feedparser

from bot.text import clean_text, html_to_text, slugify, truncate_words
from storage.identity import ID_MAX, item_id
from storage.models import Article, SectionRule
from storage.words import fold

__all__ = [
    "ID_MAX",
    "ParseError",
    "ParsedFeed",
    "articles_from_entries",
    "canonical_url",
    "parse_feed",
    "parse_feed_async",
]

TITLE_MAX = 300
SUMMARY_MAX = 500
TAG_MAX = 64
TAGS_PER_ARTICLE = 20
UNTITLED = "(untitled)"
# Clocks disagree and some sites stamp stories slightly ahead; beyond this a
# date is wrong, and a story dated in the future would stay on top of /latest.
FUTURE_TOLERANCE = 600.0
# Titles made from a summary stop after about this many characters.
_DERIVED_TITLE_MAX = 100
# Text is read only as far as a title or summary needs (see html_to_text's
# `limit`); this bounds the work on markup that holds almost no text.
_HTML_INPUT_MAX = 200_000

_TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "gbraid", "wbraid",
        "mc_cid", "mc_eid", "igshid", "ref", "ref_src", "cmpid", "ocid", "_ga", "_hsenc",
        "_hsmi", "mkt_tok",
    }
)  # fmt: skip
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
_IMAGE_SUFFIX_RE = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)$", re.IGNORECASE)
_HTML_START_RE = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b",
    re.IGNORECASE | re.DOTALL,
)


class ParseError(Exception):
    """The body is not a usable feed. The message starts with "parse: ".

    `result` describes what was found instead (`is_feed` is False).
    """

    def __init__(self, message: str, *, result: ParsedFeed | None = None) -> None:
        super().__init__(message if message.startswith("parse: ") else f"parse: {message}")
        self.result = result


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One parsed feed document.

    `skipped` counts entries that were dropped: nothing to identify them by
    (no id, link, title or summary), or the same id as an earlier entry.
    `dated_ahead` holds the ids of stories dated further in the future than
    FUTURE_TOLERANCE (their time is the fetch time instead): not news to alert.
    """

    title: str | None
    articles: tuple[Article, ...]
    bozo: bool
    bozo_reason: str | None
    is_feed: bool
    skipped: int = 0
    dated_ahead: frozenset[str] = frozenset()
    # WebSub: the hubs the document declares (rel="hub") and its own URL (rel="self").
    hubs: tuple[str, ...] = ()
    self_url: str | None = None
    # What the document was: rss (RSS, Atom, RDF), json (JSON Feed), sitemap or html.
    kind: str = "rss"
    # A bound the reader hit (a huge sitemap, a page of thousands of links), for the log.
    note: str | None = None


def canonical_url(url: str) -> str:
    """`url` in the form used to recognise an article: the same story, one string.

    For http(s) URLs the scheme and host are lower-cased, a default port and
    the fragment dropped, tracking parameters (`utm_*`, `fbclid`, …) removed
    and the remaining query parameters sorted; an empty path becomes "/".
    Other URLs, and ones that cannot be parsed, come back only stripped.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    hostport = hostport.lower()
    if hostport.endswith(_DEFAULT_PORTS[scheme]):
        hostport = hostport[: -len(_DEFAULT_PORTS[scheme])]
    netloc = f"{userinfo}{at}{hostport}"
    # Parameters are compared by name but kept as sent: re-encoding them could
    # turn a working link into a different one.
    params = [
        p for p in parts.query.split("&") if p and not _is_tracking_param(p.partition("=")[0])
    ]
    params.sort(key=lambda p: (p.partition("=")[0], p))
    return urlunsplit((scheme, netloc, parts.path or "/", "&".join(params), ""))


def _is_tracking_param(name: str) -> bool:
    key = unquote(name).lower()
    return key.startswith("utm_") or key in _TRACKING_PARAMS


def parse_feed(
    body: bytes,
    *,
    url: str,
    rule: SectionRule,
    fetched_at: float,
    headers: Mapping[str, str] | None = None,
    feed_id: int | None = None,
    sections: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse a downloaded feed into articles.

    `url` is the address the body came from; relative links resolve against
    the response's Content-Location, else `url`. `headers` are the HTTP
    response headers (Content-Type carries the charset). `sections` maps known
    section slugs to display names; when given, only those slugs are assigned
    (or what `rule.mapping` names) and anything else falls back to
    `rule.section`.

    Raises `ParseError`, and nothing else, when the body is not a feed: empty,
    an HTML page, or so broken that no entry could be read.
    """
    try:
        return _parse(body, url, rule, fetched_at, headers, feed_id, sections)
    except ParseError:
        raise
    except Exception as exc:  # feedparser on hostile input: contain whatever escapes
        raise ParseError(f"feedparser failed: {type(exc).__name__}: {exc}"[:500]) from exc


async def parse_feed_async(
    body: bytes,
    *,
    url: str,
    rule: SectionRule,
    fetched_at: float,
    headers: Mapping[str, str] | None = None,
    feed_id: int | None = None,
    sections: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """`parse_feed` in a worker thread: parsing is CPU work (about 1 s for 0.5 MB)."""
    return await asyncio.to_thread(
        parse_feed,
        body,
        url=url,
        rule=rule,
        fetched_at=fetched_at,
        headers=headers,
        feed_id=feed_id,
        sections=sections,
    )


@dataclass(frozen=True, slots=True)
class _Context:
    base: str
    rule: SectionRule
    fetched_at: float
    feed_id: int | None
    mapping: dict[str, str]
    known: dict[str, str] | None
    domain: str | None


def _parse(
    body: bytes,
    url: str,
    rule: SectionRule,
    fetched_at: float,
    headers: Mapping[str, str] | None,
    feed_id: int | None,
    sections: Mapping[str, str] | None,
) -> ParsedFeed:
    if not body.strip():
        raise ParseError("empty document", result=_not_a_feed())
    base = _base_url(url, headers)
    # Content-Location is withheld on purpose: feedparser resolves a guid
    # against the document's base as if it were a link, so guid "12345" would
    # become a different id in every feed the story appears in. Links are
    # resolved here instead (after any xml:base, which feedparser applies).
    response_headers = {
        k.lower(): v
        for k, v in (headers or {}).items()
        if k.lower() in ("content-type", "content-language")
    }
    # A stream, never bytes: feedparser would take bytes for a file name.
    # Sanitising and resolving links inside entry HTML are both skipped: that
    # HTML only ever becomes plain text here, and they cost about 4× the parse.
    raw = _dict(
        feedparser.parse(
            io.BytesIO(body),
            response_headers=response_headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    )
    bozo = bool(raw.get("bozo"))
    exc = raw.get("bozo_exception")
    bozo_reason = f"{type(exc).__name__}: {exc}"[:300] if bozo and exc is not None else None
    version = _str(raw.get("version"))
    feed_info = _dict(raw.get("feed"))
    entries = list(_dicts(raw.get("entries")))
    title = _feed_title(feed_info)

    if _cut_short(exc, body):
        # The XML parser ran out of document inside an element: what was read may end in the
        # middle of a story, and a half story must not be stored (it would come back as a
        # "correction" once the whole feed arrives).
        raise ParseError(f"document cut short: the XML ends inside an element ({bozo_reason})")
    if not entries:
        broken = isinstance(exc, xml.sax.SAXException)
        if not version or broken:
            result = ParsedFeed(
                title=title, articles=(), bozo=bozo, bozo_reason=bozo_reason, is_feed=False
            )
            raise ParseError(_not_a_feed_reason(result, body, version), result=result)

    links = [_dict(link) for link in _list(feed_info.get("links"))]
    return articles_from_entries(
        entries, title=title, base=base, rule=rule, fetched_at=fetched_at, feed_id=feed_id, sections=sections,
        bozo=bozo, bozo_reason=bozo_reason,
        hubs=tuple(_str(link.get("href")) for link in links if _str(link.get("rel")) == "hub" and link.get("href")),
        self_url=next((_str(link.get("href")) for link in links if _str(link.get("rel")) == "self" and link.get("href")), None),
    )


def articles_from_entries(
    entries: Iterable[dict[str, Any]],
    *,
    title: str | None,
    base: str,
    rule: SectionRule,
    fetched_at: float,
    feed_id: int | None = None,
    sections: Mapping[str, str] | None = None,
    bozo: bool = False,
    bozo_reason: str | None = None,
    hubs: tuple[str, ...] = (),
    self_url: str | None = None,
) -> ParsedFeed:
    """Entries in feedparser's shape (`link`, `title`, `summary` with their `*_detail`
    types, `id`, `published_parsed`, `tags`, `media_thumbnail`) turned into articles: the one
    way every kind of source (RSS and Atom through feedparser, JSON Feed, news sitemaps,
    listing pages) becomes stories."""
    ctx = _Context(
        base=base,
        rule=rule,
        fetched_at=fetched_at,
        feed_id=feed_id,
        mapping={fold(k.strip()): v for k, v in rule.mapping},
        known=_known_sections(sections),
        domain=fold(rule.domain.strip()) if rule.domain is not None else None,
    )
    articles: list[Article] = []
    seen: set[str] = set()
    ahead: set[str] = set()
    skipped = 0
    for entry in entries:
        found = _article(entry, ctx)
        if found is None or found[0].id in seen:
            skipped += 1
            continue
        article, dated_ahead = found
        seen.add(article.id)
        articles.append(article)
        if dated_ahead:
            ahead.add(article.id)
    return ParsedFeed(
        title=title,
        articles=tuple(articles),
        bozo=bozo,
        bozo_reason=bozo_reason,
        is_feed=True,
        skipped=skipped,
        dated_ahead=frozenset(ahead),
        hubs=hubs,
        self_url=self_url,
    )


# What expat says when the document stops before its elements are closed.
_CUT_SHORT = ("no element found", "unclosed token")


def _cut_short(exc: object, body: bytes) -> bool:
    """The XML parser's own verdict: the document ended before its elements did."""
    if not isinstance(exc, xml.sax.SAXParseException):
        return False
    if exc.getMessage() not in _CUT_SHORT:
        return False
    # Only at the very end: the same words in the middle mean another kind of breakage.
    line = exc.getLineNumber()
    return line is not None and line >= body.rstrip().count(b"\n") + 1


def base_url(url: str, headers: Mapping[str, str] | None) -> str:
    """The base for a document's relative links: its Content-Location, else its URL."""
    return _base_url(url, headers)


def _not_a_feed() -> ParsedFeed:
    return ParsedFeed(title=None, articles=(), bozo=False, bozo_reason=None, is_feed=False)


def _not_a_feed_reason(result: ParsedFeed, body: bytes, version: str) -> str:
    detail = f" ({result.bozo_reason})" if result.bozo_reason else ""
    if _HTML_START_RE.match(body[:4096]):
        return "not a feed: an HTML page"
    if version:
        return f"not a usable feed: not well-formed and no entries could be read{detail}"
    return f"not a feed: no RSS, Atom or RDF document found{detail}"


def _base_url(url: str, headers: Mapping[str, str] | None) -> str:
    location = next(
        (v for k, v in (headers or {}).items() if k.lower() == "content-location" and v), None
    )
    if location is None:
        return url
    try:
        return urljoin(url, location.strip())
    except ValueError:
        return url


def _feed_title(feed_info: dict[str, Any]) -> str | None:
    title = _text_field(feed_info, "title", TITLE_MAX)
    return truncate_words(title, TITLE_MAX) if title else None


def _known_sections(sections: Mapping[str, str] | None) -> dict[str, str] | None:
    """Lookup from every accepted spelling of a section to its slug."""
    if sections is None:
        return None
    known: dict[str, str] = {}
    for slug, name in sections.items():
        for spelling in (fold(slug.strip()), fold(name.strip()), slugify(name), slugify(slug)):
            if spelling:
                known.setdefault(spelling, slug)
    return known


def _article(entry: dict[str, Any], ctx: _Context) -> tuple[Article, bool] | None:
    """The story of one entry, and whether its date lay too far ahead."""
    link = _absolute(ctx.base, _str(entry.get("link")))
    canonical = canonical_url(link) if link else ""
    title_text = _text_field(entry, "title", TITLE_MAX)
    summary_text = _summary(entry)
    guid = _printable(_str(entry.get("id")))

    article_id = item_id(guid, canonical, title_text, summary_text)
    if article_id is None:
        return None

    title = truncate_words(title_text, TITLE_MAX)
    summary = truncate_words(summary_text, SUMMARY_MAX)
    if not title:
        title = truncate_words(summary_text, _DERIVED_TITLE_MAX) or UNTITLED
    elif fold(summary) == fold(title):
        # Feeds that repeat the headline as the description would show it twice.
        summary = ""

    tags = list(_dicts(entry.get("tags")))
    section, section_tag = _section(tags, link, ctx)
    published_at, dated_ahead = _published_at(entry, ctx.fetched_at)
    return Article(
        id=article_id,
        url=canonical,
        title=title,
        summary=summary,
        section=section,
        tags=_tag_terms(tags, skip=section_tag),
        published_at=published_at,
        fetched_at=ctx.fetched_at,
        image_url=_image_url(entry, ctx.base),
        feed_id=ctx.feed_id,
    ), dated_ahead


def _summary(entry: dict[str, Any]) -> str:
    text = _text_field(entry, "summary", SUMMARY_MAX)
    if text:
        return text
    for content in _dicts(entry.get("content")):
        text = _to_text(_str(content.get("value")), _str(content.get("type")), SUMMARY_MAX)
        if text:
            return text
    return ""


def _text_field(d: dict[str, Any], key: str, limit: int) -> str:
    """Plain single-line text of a feedparser text construct (`title`, `summary`)."""
    value = _str(d.get(key))
    if not value:
        return ""
    content_type = _str(_dict(d.get(f"{key}_detail")).get("type"))
    return _to_text(value, content_type, limit)


def _to_text(value: str, content_type: str, limit: int) -> str:
    if content_type == "text/plain":
        return clean_text(value)
    # Alerts show the summary as one short paragraph; line breaks would only
    # make ragged messages.
    return " ".join(html_to_text(value[:_HTML_INPUT_MAX], limit=limit).split())


def _section(tags: list[dict[str, Any]], link: str, ctx: _Context) -> tuple[str | None, int | None]:
    """The entry's section slug, and the index of the tag that named it."""
    rule = ctx.rule
    if rule.kind == "category":
        for index, tag in enumerate(tags):
            if ctx.domain is not None and fold(_str(tag.get("scheme")).strip()) != ctx.domain:
                continue
            for value in (_str(tag.get("term")), _str(tag.get("label"))):
                slug = _section_slug(clean_text(value), ctx)
                if slug:
                    return slug, index
    elif rule.kind == "path":
        segment = _path_segment(link, rule.segment)
        if segment:
            slug = _section_slug(segment, ctx)
            if slug:
                return slug, None
    elif rule.kind == "fixed":
        return rule.section, None
    return rule.section, None


def _section_slug(value: str, ctx: _Context) -> str | None:
    if not value:
        return None
    key = fold(value)
    if key in ctx.mapping:
        return ctx.mapping[key]
    slug = slugify(value)
    if ctx.known is None:
        return slug or None
    return ctx.known.get(key) or ctx.known.get(slug)


def _path_segment(link: str, index: int) -> str:
    if not link or index < 0:
        return ""
    try:
        path = urlsplit(link).path
    except ValueError:
        return ""
    segments = path.split("/")
    # The last segment names the article itself unless the path ends with "/",
    # so it is never taken for a section.
    directories = [unquote(s) for s in segments[:-1] if s]
    return directories[index] if index < len(directories) else ""


def _tag_terms(tags: list[dict[str, Any]], *, skip: int | None) -> tuple[str, ...]:
    terms: list[str] = []
    seen: set[str] = set()
    for index, tag in enumerate(tags):
        if index == skip:
            continue
        term = clean_text(_str(tag.get("term")) or _str(tag.get("label")))
        if not term:
            continue
        key = fold(term)
        if key in seen:
            continue
        seen.add(key)
        terms.append(truncate_words(term, TAG_MAX))
        if len(terms) == TAGS_PER_ARTICLE:
            break
    return tuple(terms)


def _published_at(entry: dict[str, Any], fetched_at: float) -> tuple[float, bool]:
    """The story's time, and whether its date lay beyond FUTURE_TOLERANCE (the fetch time
    stands in: a story dated in the future would stay on top of /latest)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if not value:
            continue
        try:
            # feedparser's struct_time is UTC; time.mktime would read it as local time.
            stamp = float(calendar.timegm(value))
        except (TypeError, ValueError, OverflowError):
            continue
        if stamp > fetched_at + FUTURE_TOLERANCE:
            return fetched_at, True
        return stamp, False
    return fetched_at, False


def _image_url(entry: dict[str, Any], base: str) -> str | None:
    for candidate in _image_candidates(entry):
        url = _absolute(base, candidate)
        if url:
            return url
    return None


def _image_candidates(entry: dict[str, Any]) -> Iterator[str]:
    for media in _dicts(entry.get("media_content")):
        url = _str(media.get("url"))
        medium = _str(media.get("medium")).lower()
        media_type = _str(media.get("type")).lower()
        untyped_image = not medium and not media_type and _IMAGE_SUFFIX_RE.search(url.split("?")[0])
        if medium == "image" or media_type.startswith("image/") or untyped_image:
            yield url
    for thumbnail in _dicts(entry.get("media_thumbnail")):
        yield _str(thumbnail.get("url"))
    for link in _dicts(entry.get("links")):
        if _str(link.get("rel")) == "enclosure" and _str(link.get("type")).startswith("image/"):
            yield _str(link.get("href"))
    yield _str(_dict(entry.get("image")).get("href"))


def _absolute(base: str, url: str) -> str:
    """`url` resolved against `base` if it is http(s); "" otherwise."""
    url = _printable(url)
    if not url:
        return ""
    try:
        absolute = urljoin(base, url)
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return ""
    return absolute if scheme in ("http", "https") else ""


def _printable(s: str) -> str:
    s = s.strip()
    return s if s.isprintable() else "".join(ch for ch in s if ch.isprintable()).strip()


# feedparser's results are loosely typed, and FeedParserDict's own lookups have
# side effects (a DeprecationWarning when `updated_parsed` falls back to
# `published_parsed`); these copy them into plain dicts and give typed defaults.


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: object) -> Iterator[dict[str, Any]]:
    return (dict(item) for item in _list(value) if isinstance(item, dict))
