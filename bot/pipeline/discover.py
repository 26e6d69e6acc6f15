"""Feed discovery: a site or section page URL leads to its feed via <link rel="alternate">.

`find_feed` fetches a URL and, when it is a web page (`looks_like_html`), the first feed the
page announces (`discover_feed_links`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx

from bot.pipeline.fetch import DEFAULT_MAX_BYTES, FetchError, FetchResult, fetch_feed
from bot.pipeline.urls import carry_credentials, redact_url

__all__ = ["FEED_LINK_TYPES", "discover_feed_links", "find_feed", "looks_like_html"]

# `type` values of <link rel="alternate"> that announce a feed. Plain application/json is
# left out on purpose: WordPress uses it for REST API links on every page.
FEED_LINK_TYPES: Final = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/x-rss+xml",
        "application/x-atom+xml",
    }
)


async def find_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    total_timeout: float = 60,
    safe_params: Collection[str] = (),
) -> FetchResult:
    """Fetch `url`; if it is a web page, fetch the first feed it advertises instead.

    The bounds of `fetch_feed` hold for the whole discovery: page and feed share the one
    ``total_timeout``, and each body is cut at ``max_bytes``. The feed a page names is
    fetched through the same ``client``, so its `AddressPolicy` decides where that may be,
    as for the page and every redirect. Raises `FetchError` (kind "not_a_feed" for a page
    that names no feed). ``safe_params``: as for `fetch_feed`.
    """
    if not total_timeout > 0:
        raise ValueError("total_timeout must be positive")
    shown = redact_url(url, safe_params)
    try:
        # Each fetch gets the whole budget too, so this outer limit is the one that ends
        # them and the message names the discovery, not whichever fetch was running.
        async with asyncio.timeout(total_timeout):
            page = await fetch_feed(
                client, url, max_bytes=max_bytes, total_timeout=total_timeout, safe_params=safe_params
            )
            if not looks_like_html(page.body, page.headers.get("content-type")):
                return page
            feed_url = _advertised_feed(page, safe_params)
            del page  # the page body is not kept while the feed downloads
            return await fetch_feed(
                client, feed_url, max_bytes=max_bytes, total_timeout=total_timeout, safe_params=safe_params
            )
    except TimeoutError:
        raise FetchError(
            "timeout",
            f"timed out after {total_timeout:g} s finding a feed at {shown}",
            url=shown,
        ) from None


def _advertised_feed(page: FetchResult, safe_params: Collection[str]) -> str:
    links = discover_feed_links(page.body, page.url)
    if not links:
        shown = redact_url(page.url, safe_params)
        raise FetchError(
            "not_a_feed",
            f'{shown} is a web page that names no feed (no <link rel="alternate">)',
            url=shown,
        )
    # Credentials given for the page go on to a feed on the same origin, never elsewhere.
    return carry_credentials(page.store_url, links[0])


def discover_feed_links(html: bytes | str, base_url: str) -> list[str]:
    """Feed URLs announced by ``<link rel="alternate" type="…feed type…">`` in a web page.

    Absolute http(s) URLs, in document order, without duplicates; relative hrefs are
    resolved against ``<base href>`` when the page has one, else against ``base_url``.
    """
    text = _decode_html(html) if isinstance(html, bytes) else html
    parser = _FeedLinkParser(base_url)
    parser.feed(text)
    parser.close()
    seen: set[str] = set()
    links: list[str] = []
    for href in parser.hrefs:
        url = urljoin(parser.base, href)
        if urlsplit(url).scheme.lower() in ("http", "https") and url not in seen:
            seen.add(url)
            links.append(url)
    return links


class _FeedLinkParser(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base_url
        self._base_seen = False
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "base" and not self._base_seen and values.get("href", "").strip():
            # HTML: only the first <base href> counts, and it is itself relative to the URL.
            self._base_seen = True
            self.base = urljoin(self.base, values["href"].strip())
        elif tag == "link":
            rel = values.get("rel", "").lower().split()
            kind = values.get("type", "").split(";")[0].strip().lower()
            href = values.get("href", "").strip()
            if "alternate" in rel and kind in FEED_LINK_TYPES and href:
                self.hrefs.append(href)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def _decode_html(body: bytes) -> str:
    match = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", body[:4096], re.I)
    if match:
        try:
            return body.decode(match.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    # URLs are ASCII in practice; replacement characters elsewhere do not matter here.
    return body.decode("utf-8", errors="replace")


_PROLOG = re.compile(
    rb"\s+|<\?.*?\?>|<!--.*?-->|<!doctype[^>]*>|\xef\xbb\xbf", re.IGNORECASE | re.DOTALL
)
_DOCTYPE_NAME = re.compile(rb"<!doctype\s+([^\s>\[]+)", re.IGNORECASE)
_FIRST_TAG = re.compile(rb"<([a-z][a-z0-9:._-]*)", re.IGNORECASE)
_HTML_TAGS: Final = frozenset(
    {b"html", b"head", b"body", b"meta", b"title", b"link", b"script", b"style", b"div", b"p"}
)
_FEED_ROOTS: Final = frozenset({b"rss", b"feed", b"rdf:rdf", b"rdf", b"channel"})


def looks_like_html(body: bytes, content_type: str | None) -> bool:
    """True when a response is a web page rather than a feed.

    The body decides over the header: servers label feeds ``text/html`` and pages
    ``text/xml`` often enough. Only the prolog and first element are looked at.
    """
    head = body[:4096]
    pos = 0
    while True:
        match = _PROLOG.match(head, pos)
        if match is None:
            break
        doctype = _DOCTYPE_NAME.match(match.group(0))
        if doctype is not None and doctype.group(1).lower() == b"html":
            return True
        pos = match.end()
    rest = head[pos:]
    if rest[:1] in (b"{", b"["):
        return False  # JSON Feed
    tag = _FIRST_TAG.match(rest)
    if tag is not None:
        name = tag.group(1).lower()
        if name in _FEED_ROOTS or name.endswith((b":rss", b":feed", b":rdf")):
            return False
        if name in _HTML_TAGS:
            return True
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime in ("text/html", "application/xhtml+xml")
