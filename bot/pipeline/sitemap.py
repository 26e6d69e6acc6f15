"""News sitemaps → entries in feedparser's shape; sitemap indexes → the sitemaps they list.

A news sitemap (Google's sitemap-news 0.9) lists a site's recent stories as ``<url>``
entries, each with ``<loc>`` and a ``<news:news>`` holding its title and publication date.
Only those entries are stories: a plain ``<url>`` names a page, not when or what was
published.

Bounds, because a sitemap is the site's whole archive as often as its news:

* the XML is read by lxml without entities, DTDs or network access (no "billion laughs",
  no external fetches), as a stream: each entry is dropped once read;
* at most MAX_ENTRIES entries are read (the protocol's own limit), and of the news entries
  only the newest KEEP are kept; an index lists at most MAX_ENTRIES sitemaps, of which the
  poll follows the newest few (bot.pipeline.sources);
* a gzip file (``.xml.gz``, served as such rather than with a Content-Encoding) is inflated
  with the fetcher's bounded decoder, within the same size cap as any body.
"""

from __future__ import annotations

import calendar
import heapq
import io
from dataclasses import dataclass, field
from typing import Any, Final

from lxml import etree

from bot.pipeline.decode import CodingRefused, CorruptBody, DecoderChain, decoders
from bot.pipeline.jsonfeed import rfc3339

__all__ = ["KEEP", "MAX_ENTRIES", "NotASitemap", "Sitemap", "gunzip", "is_gzip", "read_sitemap"]

MAX_ENTRIES: Final = 50_000
KEEP: Final = 1_000
_NEWS: Final = "http://www.google.com/schemas/sitemap-news/0.9"
_IMAGE: Final = "http://www.google.com/schemas/sitemap-image/1.1"


class NotASitemap(ValueError):
    """The body is not a sitemap (or is too broken to read); the text says why."""


@dataclass
class Sitemap:
    """A news sitemap's stories (`entries`, newest first) or an index's `sitemaps`
    ((url, lastmod or None), newest first)."""

    index: bool
    entries: list[dict[str, Any]] = field(default_factory=list)
    sitemaps: list[tuple[str, float | None]] = field(default_factory=list)
    read: int = 0  # <url> or <sitemap> elements read
    plain: int = 0  # <url> entries without <news:news>: pages, not stories
    cut: bool = False  # stopped at MAX_ENTRIES

    @property
    def note(self) -> str | None:
        """What a bound left out, for the log; None when nothing was."""
        parts = []
        if self.cut:
            parts.append(f"stopped reading at {MAX_ENTRIES:,} entries")
        if not self.index and len(self.entries) == KEEP and self.read - self.plain > KEEP:
            parts.append(f"kept the newest {KEEP:,} of {self.read - self.plain:,} news entries")
        return "; ".join(parts) or None


def is_gzip(body: bytes) -> bool:
    return body[:2] == b"\x1f\x8b"


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """A gzip file's content, refused past `max_bytes` (the fetcher's cap) as it inflates."""
    chain = DecoderChain(decoders("gzip"))
    parts: list[bytes] = []
    size = 0
    try:
        for piece in chain.decode(body):
            size += len(piece)
            if size > max_bytes:
                raise NotASitemap(f"gzip content larger than {max_bytes} bytes")
            parts.append(piece)
    except (CorruptBody, CodingRefused):
        raise NotASitemap("corrupt gzip file") from None
    if chain.incomplete() is not None:
        raise NotASitemap("gzip file cut short")
    return b"".join(parts)


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child_text(element: Any, name: str, namespace: str | None = None) -> str:
    for child in element:
        if _local(child.tag) == name and (namespace is None or etree.QName(child.tag).namespace == namespace):
            return (child.text or "").strip()
    return ""


def _stamp(value: str) -> float | None:
    parsed = rfc3339(value)
    return None if parsed is None else float(calendar.timegm(parsed))


def read_sitemap(body: bytes) -> Sitemap:
    """Parse a sitemap or sitemap index (already inflated); raise NotASitemap otherwise."""
    parser_args: dict[str, Any] = {
        "events": ("start", "end"), "resolve_entities": False, "no_network": True, "load_dtd": False,
        "huge_tree": False, "remove_comments": True, "remove_pis": True, "recover": False,
    }
    result: Sitemap | None = None
    heap: list[tuple[float, int, dict[str, Any]]] = []
    try:
        for event, element in etree.iterparse(io.BytesIO(body), **parser_args):
            name = _local(element.tag)
            if result is None:
                if event != "start":
                    continue
                if name not in ("urlset", "sitemapindex"):
                    raise NotASitemap(f"the document is <{name}>, not a <urlset> or <sitemapindex>")
                result = Sitemap(index=name == "sitemapindex")
                continue
            if event != "end" or name not in ("url", "sitemap"):
                continue
            result.read += 1
            if result.read > MAX_ENTRIES:
                result.cut = True
                break
            if result.index and name == "sitemap":
                loc = _child_text(element, "loc")
                if loc:
                    result.sitemaps.append((loc, _stamp(_child_text(element, "lastmod"))))
            elif not result.index and name == "url":
                entry = _news_entry(element)
                if entry is None:
                    result.plain += 1
                else:
                    published = entry.get("published_parsed")
                    key = float(calendar.timegm(published)) if published is not None else float("-inf")
                    item = (key, -result.read, entry)
                    if len(heap) < KEEP:
                        heapq.heappush(heap, item)
                    else:
                        heapq.heappushpop(heap, item)
            # Done with it: the stream keeps no more than the entry being read.
            element.clear()
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        if result is None:
            raise NotASitemap(f"not well-formed XML: {exc}"[:200]) from None
        if not result.cut:
            raise NotASitemap(f"the sitemap is not well-formed: {exc}"[:200]) from None
    if result is None:
        raise NotASitemap("an empty document")
    result.entries = [entry for _, _, entry in sorted(heap, reverse=True)]
    result.sitemaps.sort(key=lambda pair: pair[1] if pair[1] is not None else float("-inf"), reverse=True)
    return result


def _news_entry(url: Any) -> dict[str, Any] | None:
    loc = _child_text(url, "loc")
    news = next((c for c in url if _local(c.tag) == "news" and etree.QName(c.tag).namespace == _NEWS), None)
    if not loc or news is None:
        return None
    entry: dict[str, Any] = {"link": loc}
    title = _child_text(news, "title")
    if title:
        entry["title"], entry["title_detail"] = title, {"type": "text/plain"}
    published = rfc3339(_child_text(news, "publication_date"))
    if published is not None:
        entry["published_parsed"] = published
    keywords = _child_text(news, "keywords")
    if keywords:
        entry["tags"] = [{"term": word.strip()} for word in keywords.split(",") if word.strip()][:20]
    image = next((c for c in url if _local(c.tag) == "image" and etree.QName(c.tag).namespace == _IMAGE), None)
    if image is not None and _child_text(image, "loc"):
        entry["media_thumbnail"] = [{"url": _child_text(image, "loc")}]
    return entry
