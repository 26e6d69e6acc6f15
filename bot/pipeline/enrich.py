"""Article pages read for what a sitemap or listing page item lacks: its date, summary,
section (and, when the listing gave none, its headline).

Only stories not stored yet are looked at (the first poll of a feed, which only marks what
it holds as seen, reads none), newest first, at most PER_POLL pages a poll; what a page
said is kept in a small cache (CACHE entries), so a story that stays new for a while (a
bound left it out) is read once. Pages are fetched through the feed client — the same
address policy, so private addresses stay refused — with a size cap of their own
(PAGE_MAX_BYTES, or the feeds' cap when that is smaller) and NEWSBOT_FETCH_TIMEOUT in all:
a page that never ends is cut there, and its story goes out without what it lacked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from bot.pipeline.fetch import FetchError, fetch_feed
from bot.pipeline.pagemeta import PageMeta, read_page_meta
from bot.pipeline.parse import canonical_url
from bot.pipeline.urls import redact_url

log = logging.getLogger(__name__)

PER_POLL: Final = 5
CACHE: Final = 2_000
PAGE_MAX_BYTES: Final = 2 * 1024 * 1024

Known = Callable[[list[str]], Awaitable[set[str]]]


class PageCache:
    """What article pages said, by canonical link (least recently used dropped first)."""

    def __init__(self, size: int = CACHE) -> None:
        self._size = size
        self._pages: OrderedDict[str, PageMeta] = OrderedDict()

    def get(self, url: str) -> PageMeta | None:
        found = self._pages.get(url)
        if found is not None:
            self._pages.move_to_end(url)
        return found

    def put(self, url: str, meta: PageMeta) -> None:
        self._pages[url] = meta
        self._pages.move_to_end(url)
        while len(self._pages) > self._size:
            self._pages.popitem(last=False)


def lacking(entry: dict[str, Any]) -> bool:
    return not entry.get("published_parsed") or not entry.get("summary") or not entry.get("tags") \
        or not entry.get("title")


async def enrich_entries(
    entries: list[dict[str, Any]],
    *,
    client: httpx.AsyncClient,
    cache: PageCache,
    known: Known,
    max_bytes: int,
    page_timeout: float,
    safe_params: Collection[str] = (),
    count_request: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """`entries` (newest first), the new ones that lack something filled in from their pages."""
    wanting = [e for e in entries if e.get("link") and lacking(e)]
    if not wanting:
        return entries
    stored = await known([canonical_url(e["link"]) for e in wanting])
    fetched = skipped = 0
    for entry in wanting:
        url = canonical_url(entry["link"])
        if url in stored:
            continue
        meta = cache.get(url)
        if meta is None:
            if fetched >= PER_POLL:
                skipped += 1
                continue
            fetched += 1
            meta = await _read_page(client, entry["link"], min(max_bytes, PAGE_MAX_BYTES), page_timeout, safe_params,
                                    count_request)
            cache.put(url, meta)
        _fill(entry, meta)
    if skipped:
        log.info("article pages not read this poll (at most %d a poll) count=%d", PER_POLL, skipped)
    return entries


async def _read_page(
    client: httpx.AsyncClient, url: str, max_bytes: int, page_timeout: float, safe_params: Collection[str],
    count_request: Callable[[], None] | None,
) -> PageMeta:
    if count_request is not None:
        count_request()
    try:
        page = await fetch_feed(client, url, max_bytes=max_bytes, total_timeout=page_timeout, safe_params=safe_params)
    except FetchError as exc:
        log.info("article page not read url=%s error=%s", redact_url(url, safe_params), exc)
        return PageMeta()
    return await asyncio.to_thread(read_page_meta, page.body, page.headers.get("content-type"))


def _fill(entry: dict[str, Any], meta: PageMeta) -> None:
    """Only what the entry lacks: the listing's own headline, date and text win."""
    if not entry.get("published_parsed") and meta.published_at is not None:
        entry["published_parsed"] = datetime.fromtimestamp(meta.published_at, UTC).timetuple()
    if not entry.get("summary") and meta.summary:
        entry["summary"], entry["summary_detail"] = meta.summary, {"type": "text/plain"}
    if not entry.get("tags") and meta.section:
        entry["tags"] = [{"term": meta.section}]
    if not entry.get("title") and meta.title:
        entry["title"], entry["title_detail"] = meta.title, {"type": "text/plain"}
    if not entry.get("media_thumbnail") and meta.image:
        entry["media_thumbnail"] = [{"url": meta.image}]
