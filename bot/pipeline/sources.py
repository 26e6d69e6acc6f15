"""Every kind of source, read into one `ParsedFeed`: the parse stage's dispatcher.

| kind | what it is | read by |
| --- | --- | --- |
| rss | RSS, Atom, RDF | feedparser (bot.pipeline.parse) |
| json | JSON Feed 1 / 1.1 | bot.pipeline.jsonfeed |
| sitemap | a news sitemap, or a sitemap index leading to some | bot.pipeline.sitemap |
| html | a listing page (a section page, a "More news" list) | bot.pipeline.listing |

A feed's kind is "auto" (found out from each answer: discover.sniff, the body deciding over the
Content-Type) unless the feeds file forces one (``kind = "rss" | "sitemap" | "html"``).
All of them end as entries in feedparser's shape, which `parse.articles_from_entries` turns
into stories, so the rules for ids, text, sections and dates are the same for all.

A sitemap index is followed here: its newest MAX_CHILDREN sitemaps, at most MAX_DEPTH
indexes deep and MAX_FETCHES fetches in all, through the same client, size cap and time
budget as the feed itself.
"""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import replace
from typing import Any, Final

import httpx

from bot.pipeline.discover import sniff
from bot.pipeline.fetch import FetchError, FetchResult, fetch_feed
from bot.pipeline.jsonfeed import NotJsonFeed, read_json_feed
from bot.pipeline.listing import read_listing
from bot.pipeline.parse import ParsedFeed, ParseError, articles_from_entries, base_url, parse_feed
from bot.pipeline.sitemap import KEEP, NotASitemap, Sitemap, gunzip, is_gzip, read_sitemap
from bot.pipeline.urls import redact_url
from storage.models import SectionRule

__all__ = ["KIND_NAMES", "MAX_CHILDREN", "MAX_DEPTH", "MAX_FETCHES", "read_document"]

MAX_CHILDREN: Final = 3
MAX_DEPTH: Final = 2
MAX_FETCHES: Final = 4

KIND_NAMES: Final = {
    "rss": "RSS/Atom feed",
    "json": "JSON Feed",
    "sitemap": "news sitemap",
    "html": "HTML listing page",
}

Counter = Callable[[], None]
Enrich = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


async def read_document(
    client: httpx.AsyncClient,
    fetched: FetchResult,
    *,
    kind: str = "auto",
    selector: str | None = None,
    rule: SectionRule,
    fetched_at: float,
    feed_id: int | None = None,
    sections: Mapping[str, str] | None = None,
    max_bytes: int,
    total_timeout: float = 60.0,
    safe_params: Collection[str] = (),
    count_request: Counter | None = None,
    enrich: Enrich | None = None,
) -> ParsedFeed:
    """A fetched document read as its kind; raises ParseError (not a source of that kind,
    or nothing found in it) or FetchError (a sitemap an index names could not be fetched).
    `enrich` fills in what sitemap and listing items lack (bot.pipeline.enrich)."""
    body = fetched.body
    if is_gzip(body) and kind in ("auto", "sitemap"):
        try:
            body = gunzip(body, max_bytes)
        except NotASitemap as exc:
            raise ParseError(f"sitemap: {exc}") from None
    found = sniff(body, fetched.headers.get("content-type"))
    if kind == "sitemap" or (kind == "auto" and found == "sitemap"):
        entries, notes = await _sitemap(client, body, fetched, max_bytes, total_timeout, safe_params, count_request)
        kind_found = "sitemap"
    elif kind == "html" or (kind == "auto" and found == "html"):
        entries, notes = await asyncio.to_thread(_listing, body, fetched, selector)
        kind_found = "html"
    else:
        return await _feed(body, fetched, found, rule, fetched_at, feed_id, sections)
    if enrich is not None:
        entries = await enrich(entries)
    parsed = articles_from_entries(
        entries, title=None, base=fetched.url, rule=rule, fetched_at=fetched_at, feed_id=feed_id, sections=sections,
    )
    return replace(parsed, kind=kind_found, note="; ".join(notes) or None)


async def _feed(
    body: bytes, fetched: FetchResult, found: str, rule: SectionRule, fetched_at: float, feed_id: int | None,
    sections: Mapping[str, str] | None,
) -> ParsedFeed:
    if found == "json":
        return await asyncio.to_thread(_json, body, fetched, rule, fetched_at, feed_id, sections)
    parsed = await asyncio.to_thread(
        parse_feed, body, url=fetched.url, rule=rule, fetched_at=fetched_at, headers=fetched.headers,
        feed_id=feed_id, sections=sections,
    )
    return replace(parsed, kind="rss")


def _json(
    body: bytes, fetched: FetchResult, rule: SectionRule, fetched_at: float, feed_id: int | None,
    sections: Mapping[str, str] | None,
) -> ParsedFeed:
    try:
        feed = read_json_feed(body)
    except NotJsonFeed as exc:
        raise ParseError(f"not a feed: {exc}") from None
    parsed = articles_from_entries(
        feed.entries, title=feed.title, base=base_url(fetched.url, fetched.headers), rule=rule,
        fetched_at=fetched_at, feed_id=feed_id, sections=sections, hubs=feed.hubs, self_url=feed.self_url,
    )
    note = f"read the first {len(feed.entries):,} items of {len(feed.entries) + feed.dropped:,}" if feed.dropped else None
    return replace(parsed, kind="json", note=note)


def _listing(body: bytes, fetched: FetchResult, selector: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    listing = read_listing(body, fetched.url, selector=selector, content_type=fetched.headers.get("content-type"))
    if not listing.entries:
        how = f"nothing matches the selector {selector!r}" if selector else (
            "no <article> with a link and no list of links to stories"
        )
        raise ParseError(
            f"listing: no stories found on the page ({how}, {listing.links:,} links looked at); "
            "its markup may have changed"
        )
    return listing.entries, [listing.note] if listing.note else []


async def _sitemap(
    client: httpx.AsyncClient, body: bytes, fetched: FetchResult, max_bytes: int, total_timeout: float,
    safe_params: Collection[str], count_request: Counter | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        top = await asyncio.to_thread(read_sitemap, body)
    except NotASitemap as exc:
        raise ParseError(f"sitemap: {exc}") from None
    entries: list[dict[str, Any]] = []
    notes = [top.note] if top.note else []
    fetches = 0
    plain = top.plain

    async def follow(sitemap: Sitemap, depth: int) -> None:
        nonlocal fetches, plain
        if not sitemap.index:
            entries.extend(sitemap.entries)
            return
        if depth >= MAX_DEPTH:
            notes.append(f"sitemap indexes nested deeper than {MAX_DEPTH}: not followed")
            return
        if len(sitemap.sitemaps) > MAX_CHILDREN:
            notes.append(f"followed the newest {MAX_CHILDREN} of {len(sitemap.sitemaps):,} sitemaps")
        for url, _ in sitemap.sitemaps[:MAX_CHILDREN]:
            if fetches >= MAX_FETCHES:
                notes.append(f"stopped after {MAX_FETCHES} sitemap fetches")
                return
            fetches += 1
            if count_request is not None:
                count_request()
            child_body = (await fetch_feed(
                client, url, max_bytes=max_bytes, total_timeout=total_timeout, safe_params=safe_params,
            )).body
            try:
                if is_gzip(child_body):
                    child_body = gunzip(child_body, max_bytes)
                child = await asyncio.to_thread(read_sitemap, child_body)
            except NotASitemap as exc:
                raise ParseError(f"sitemap: {redact_url(url, safe_params)}: {exc}") from None
            if child.note:
                notes.append(child.note)
            plain += child.plain
            await follow(child, depth + 1)

    try:
        # One budget for every sitemap an index leads to, as for the feed itself.
        async with asyncio.timeout(total_timeout):
            await follow(top, 0)
    except TimeoutError:
        raise FetchError(
            "timeout", f"timed out after {total_timeout:g} s reading the sitemaps of "
            f"{redact_url(fetched.url, safe_params)}", url=redact_url(fetched.url, safe_params),
        ) from None
    if not entries and plain:
        raise ParseError(
            "sitemap: no <news:news> entries (a news sitemap names each story's title and publication date)"
        )
    entries.sort(key=_entry_time, reverse=True)
    return entries[:KEEP], notes


def _entry_time(entry: dict[str, Any]) -> float:
    published = entry.get("published_parsed")
    return float(calendar.timegm(published)) if published is not None else float("-inf")
