"""HTML listing pages (a section page, a "More news" list) → entries in feedparser's shape.

Stories are found in the page's markup, with lxml's HTML parser and CSS selectors:

* by the feed's ``selector`` when the feeds file gives one: each element it matches is a
  story (a link, or an element holding one; its heading, or the link's text, is the
  headline);
* else by ``<article>`` elements that hold a link;
* else as a list of links into the site's article paths: links on the page's own site whose
  last path segment reads like a story's (``/world/storm-hits-the-coast``, ``/a/12345``) and
  whose text is a headline of at least three words, outside the page's nav, header and
  footer.

A headline's date comes from a ``<time datetime>`` inside the story's element, when there is
one; bot.pipeline.pagemeta can read the rest from the article page.

Bounds: at most MAX_LINKS links are looked at (a page of 10,000 links is cut there, and
the poll logs it) and at most MAX_STORIES stories kept, in page order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import lxml.html
from cssselect import SelectorError
from lxml import etree
from lxml.cssselect import CSSSelector

from bot.pipeline.jsonfeed import rfc3339

__all__ = ["MAX_LINKS", "MAX_STORIES", "Listing", "css_problem", "decode_html", "read_listing"]

MAX_LINKS: Final = 5_000
MAX_STORIES: Final = 200
_MIN_LINKS: Final = 3  # fewer article-like links than this is not a list of stories
_CHROME: Final = frozenset({"nav", "header", "footer", "aside"})
_HEADINGS: Final = ("h1", "h2", "h3", "h4", "h5", "h6")
_STORY_SEGMENT: Final = re.compile(r"^(?:[^/]*-[^/]*-[^/]*|.*\d{5,}.*|[^/]+\.s?html?)$", re.IGNORECASE)
_CHARSET: Final = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def css_problem(selector: str) -> str | None:
    """None when lxml can use `selector`, else what is wrong with it."""
    try:
        CSSSelector(selector)
    except (SelectorError, etree.XPathError, ValueError) as exc:
        return str(exc)[:120] or type(exc).__name__
    return None


@dataclass
class Listing:
    entries: list[dict[str, Any]] = field(default_factory=list)
    how: str = "nothing"  # selector, articles, links or nothing
    links: int = 0  # links looked at
    cut: bool = False  # more than MAX_LINKS links, or MAX_STORIES stories

    @property
    def note(self) -> str | None:
        if not self.cut:
            return None
        return f"a page of more than {MAX_LINKS:,} links or {MAX_STORIES} stories: read the first ones"


def decode_html(body: bytes, content_type: str | None) -> str:
    """The page as text: the charset its Content-Type or a <meta> names, else UTF-8."""
    names = []
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value.strip(' "'):
            names.append(value.strip(' "'))
    match = _CHARSET.search(body[:4096])
    if match:
        names.append(match.group(1).decode("ascii"))
    for name in names:
        try:
            return body.decode(name, errors="replace")
        except LookupError:
            continue
    return body.decode("utf-8", errors="replace")


def parse_html(body: bytes, content_type: str | None) -> Any:
    """The page's document element (lxml.html), or None for an empty page."""
    text = decode_html(body, content_type)
    if not text.strip():
        return None
    try:
        return lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError):
        return None


def page_base(doc: Any, url: str) -> str:
    for base in doc.iter("base"):
        href = str(base.get("href") or "").strip()
        if href:
            return urljoin(url, href)
    return url


def read_listing(body: bytes, url: str, *, selector: str | None, content_type: str | None = None) -> Listing:
    """The stories of a listing page, by `selector` or found in its markup."""
    doc = parse_html(body, content_type)
    if doc is None:
        return Listing()
    base = page_base(doc, url)
    if selector:
        matched = CSSSelector(selector)(doc)
        return _collect(matched if isinstance(matched, list) else [], base, "selector")
    articles = [a for a in doc.iter("article") if _first_link(a) is not None]
    if articles:
        return _collect(articles, base, "articles")
    return _links(doc, base)


def _collect(elements: list[Any], base: str, how: str) -> Listing:
    listing = Listing(how=how)
    seen: set[str] = set()
    for element in elements:
        if len(listing.entries) >= MAX_STORIES:
            listing.cut = True
            break
        entry = _story(element, base)
        if entry is not None and entry["link"] not in seen:
            seen.add(entry["link"])
            listing.entries.append(entry)
    listing.links = len(elements)
    if not listing.entries:
        listing.how = "nothing"
    return listing


def _links(doc: Any, base: str) -> Listing:
    listing = Listing(how="links")
    site = _site(base)
    found: list[Any] = []
    seen: set[str] = set()
    for anchor in doc.iter("a"):
        listing.links += 1
        if listing.links > MAX_LINKS:
            listing.cut = True
            break
        href = _href(anchor, base)
        if href is None or href in seen or _in_chrome(anchor) or not _story_link(href, site):
            continue
        if len(_text(anchor).split()) < 3:
            continue
        seen.add(href)
        found.append(anchor)
        if len(found) >= MAX_STORIES:
            listing.cut = True
            break
    if len(found) < _MIN_LINKS:
        return Listing(how="nothing", links=listing.links, cut=listing.cut)
    listing.entries = [e for e in (_story(a, base) for a in found) if e is not None]
    return listing


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def _story_link(href: str, site: str) -> bool:
    parts = urlsplit(href)
    if (parts.hostname or "").lower().removeprefix("www.") != site:
        return False
    segments = [s for s in parts.path.split("/") if s]
    return bool(segments) and _STORY_SEGMENT.match(segments[-1]) is not None


def _in_chrome(element: Any) -> bool:
    return any(parent.tag in _CHROME for parent in element.iterancestors())


def _href(anchor: Any, base: str) -> str | None:
    href = (anchor.get("href") or "").strip()
    if not href or href.startswith("#"):
        return None
    try:
        absolute = urljoin(base, href)
    except ValueError:
        return None
    return absolute.split("#", 1)[0] if urlsplit(absolute).scheme in ("http", "https") else None


def _first_link(element: Any) -> Any:
    if element.tag == "a" and element.get("href"):
        return element
    return next((a for a in element.iter("a") if a.get("href")), None)


def _text(element: Any) -> str:
    return " ".join(element.text_content().split())


def _story(element: Any, base: str) -> dict[str, Any] | None:
    anchor = _first_link(element)
    if anchor is None:
        return None
    link = _href(anchor, base)
    if link is None:
        return None
    heading = next((h for h in element.iter(*_HEADINGS)), None)
    title = _text(heading) if heading is not None else _text(anchor)
    if not title:
        image = next(iter(anchor.iter("img")), None)
        title = " ".join((image.get("alt") or "").split()) if image is not None else ""
    entry: dict[str, Any] = {"link": link}
    if title:
        entry["title"], entry["title_detail"] = title, {"type": "text/plain"}
    if element is not anchor:
        paragraph = next((p for p in element.iter("p") if heading is None or heading not in p.iterancestors()), None)
        if paragraph is not None and _text(paragraph):
            entry["summary"], entry["summary_detail"] = _text(paragraph), {"type": "text/plain"}
    stamp = next((t.get("datetime") for t in element.iter("time") if t.get("datetime")), None)
    published = rfc3339(stamp or "")
    if published is not None:
        entry["published_parsed"] = published
    image = next((i for i in element.iter("img") if i.get("src")), None)
    if image is not None:
        entry["media_thumbnail"] = [{"url": urljoin(base, image.get("src").strip())}]
    return entry
