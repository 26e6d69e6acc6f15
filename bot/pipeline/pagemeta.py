"""An article page's own metadata: what a listing page or sitemap item lacks.

Read from the page's head: Open Graph (``og:title``, ``og:description``, ``og:image``),
``article:published_time`` and ``article:section``, ``<meta name="description">``, and
JSON-LD (``NewsArticle`` and its kin: ``datePublished``, ``articleSection``,
``description``). `read_page_meta` is pure; bot.pipeline.enrich fetches the pages.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from typing import Any, Final

from bot.pipeline.jsonfeed import rfc3339
from bot.pipeline.listing import parse_html

__all__ = ["PageMeta", "read_page_meta"]

_ARTICLE_TYPES: Final = frozenset(
    {"newsarticle", "article", "reportagenewsarticle", "analysisnewsarticle", "blogposting",
     "opinionnewsarticle", "reviewnewsarticle", "backgroundnewsarticle", "liveblogposting"}
)
_JSON_LD_MAX: Final = 200_000  # characters of one JSON-LD script read at most
_JSON_LD_SCRIPTS: Final = 10


@dataclass(frozen=True, slots=True)
class PageMeta:
    published_at: float | None = None
    section: str | None = None
    summary: str | None = None
    title: str | None = None
    image: str | None = None


def read_page_meta(body: bytes, content_type: str | None = None) -> PageMeta:
    doc = parse_html(body, content_type)
    if doc is None:
        return PageMeta()
    meta: dict[str, str] = {}
    for tag in doc.iter("meta"):
        key = (tag.get("property") or tag.get("name") or "").strip().lower()
        value = (tag.get("content") or "").strip()
        if key and value and key not in meta:
            meta[key] = value
    ld = _json_ld(doc)
    published = _when(meta.get("article:published_time")) or _when(_str(ld.get("datePublished")))
    section = meta.get("article:section") or _section(ld.get("articleSection"))
    summary = meta.get("og:description") or _str(ld.get("description")) or meta.get("description")
    title = meta.get("og:title") or _str(ld.get("headline"))
    image = meta.get("og:image")
    return PageMeta(published, section or None, summary or None, title or None, image or None)


def _str(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _section(value: object) -> str:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), "")
    return _str(value)


def _when(value: str | None) -> float | None:
    parsed = rfc3339(value or "")
    return None if parsed is None else float(calendar.timegm(parsed))


def _json_ld(doc: Any) -> dict[str, Any]:
    """The first article object of the page's JSON-LD scripts ({} when none)."""
    scripts = [s for s in doc.iter("script") if (s.get("type") or "").strip().lower() == "application/ld+json"]
    for script in scripts[:_JSON_LD_SCRIPTS]:
        text = (script.text or "")[:_JSON_LD_MAX]
        try:
            data = json.loads(text)
        except ValueError:
            continue
        found = _article_object(data, depth=0)
        if found is not None:
            return found
    return {}


def _article_object(data: object, depth: int) -> dict[str, Any] | None:
    if depth > 4:
        return None
    if isinstance(data, list):
        for item in data[:50]:
            found = _article_object(item, depth + 1)
            if found is not None:
                return found
        return None
    if not isinstance(data, dict):
        return None
    kinds = data.get("@type")
    names = [kinds] if isinstance(kinds, str) else [k for k in kinds if isinstance(k, str)] if isinstance(kinds, list) else []
    if any(name.lower() in _ARTICLE_TYPES for name in names):
        return data
    return _article_object(data.get("@graph"), depth + 1)
