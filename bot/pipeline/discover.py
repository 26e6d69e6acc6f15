"""Discovery: what a URL serves (`sniff`), and what a site's page offers.

`find_feed` fetches a URL and, when it is a web page (`looks_like_html`), the first feed the
page announces (`discover_feed_links`). `find_source` goes further for `/addfeed` and
`newsbot check-feed`: a page's feeds (``<link rel="alternate">``), its site's sitemaps
(``Sitemap:`` lines of /robots.txt, for a site's home page) and the page itself as a
listing page when stories are found in its markup — all offered, the first that reads
taken.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx

from bot.pipeline.fetch import DEFAULT_MAX_BYTES, FetchError, FetchResult, fetch_feed
from bot.pipeline.listing import decode_html, read_listing
from bot.pipeline.urls import carry_credentials, redact_url

__all__ = [
    "FEED_LINK_TYPES", "Found", "Offer", "discover_feed_links", "find_feed", "find_source", "looks_like_html", "sniff",
]
ROBOTS_MAX_BYTES: Final = 64 * 1024
MIN_LISTING: Final = 3  # stories a page must show to be offered as a listing page

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
    return decode_html(body, None)


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


_FIRST_TAG_ANY = re.compile(rb"<([A-Za-z][A-Za-z0-9:._-]*)")


def sniff(body: bytes, content_type: str | None = None) -> str:
    """What a body is: "json" (JSON Feed), "sitemap", "html" (a page) or "rss" (anything
    else, which feedparser tries). The body decides over the Content-Type."""
    head = body[:4096]
    pos = 0
    while (match := _PROLOG.match(head, pos)) is not None and match.end() > pos:
        pos = match.end()
    rest = head[pos:]
    if rest[:1] in (b"{", b"["):
        return "json"
    tag = _FIRST_TAG_ANY.match(rest)
    if tag is not None and tag.group(1).lower().rsplit(b":", 1)[-1] in (b"urlset", b"sitemapindex"):
        return "sitemap"
    if looks_like_html(body, content_type):
        return "html"
    return "rss"


@dataclass(frozen=True, slots=True)
class Offer:
    url: str
    kind: str  # rss, json, sitemap, html
    how: str  # where it was found, for the reply
    stories: int = 0  # a listing page: the stories found in it …
    found_by: str = ""  # … and how ("articles": <article> elements, "links": links to stories)


@dataclass(frozen=True, slots=True)
class Found:
    """The source taken (its document and kind) and everything the page offered."""

    fetched: FetchResult
    kind: str
    offers: tuple[Offer, ...] = ()


async def find_source(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    total_timeout: float = 60,
    safe_params: Collection[str] = (),
) -> Found:
    """Fetch `url`; a feed or sitemap is taken as it is, a web page's offers are collected
    and the first that can be fetched is taken (its feeds first, then its sitemaps, then the
    page itself as a listing page). Raises FetchError ("not_a_feed" for a page that offers
    nothing). Everything shares one `total_timeout` and goes through `client`."""
    shown = redact_url(url, safe_params)
    try:
        async with asyncio.timeout(total_timeout):
            page = await fetch_feed(client, url, max_bytes=max_bytes, total_timeout=total_timeout, safe_params=safe_params)
            kind = sniff(page.body, page.headers.get("content-type"))
            if kind != "html":
                return Found(page, kind)
            offers = await _offers(client, page, max_bytes, total_timeout, safe_params)
            for offer in offers:
                if offer.url == page.url and offer.kind == "html":
                    return Found(page, "html", tuple(offers))
                try:
                    fetched = await fetch_feed(
                        client, offer.url, max_bytes=max_bytes, total_timeout=total_timeout, safe_params=safe_params,
                    )
                except FetchError:
                    continue
                return Found(fetched, sniff(fetched.body, fetched.headers.get("content-type")), tuple(offers))
    except TimeoutError:
        raise FetchError("timeout", f"timed out after {total_timeout:g} s finding a source at {shown}", url=shown) from None
    raise FetchError(
        "not_a_feed",
        f"{redact_url(page.url, safe_params)} is a web page that offers no feed (no <link rel=\"alternate\">), "
        "no sitemap in its site's robots.txt, and no stories found in its markup",
        url=shown,
    )


async def _offers(
    client: httpx.AsyncClient, page: FetchResult, max_bytes: int, total_timeout: float, safe_params: Collection[str]
) -> list[Offer]:
    offers = []
    for link in discover_feed_links(page.body, page.url):
        offers.append(Offer(carry_credentials(page.store_url, link), "rss", 'announced by <link rel="alternate">'))
    if urlsplit(page.url).path in ("", "/"):
        offers += await _robots_sitemaps(client, page, total_timeout, safe_params)
    listing = await asyncio.to_thread(read_listing, page.body, page.url, selector=None,
                                      content_type=page.headers.get("content-type"))
    if len(listing.entries) >= MIN_LISTING:
        how = {"articles": "<article> elements", "links": "links to its stories"}.get(listing.how, listing.how)
        offers.append(Offer(page.store_url if page.store_url == page.url else page.url, "html",
                            f"this page as a listing page: {len(listing.entries)} stories found by its {how}",
                            stories=len(listing.entries), found_by=listing.how))
    return offers


async def _robots_sitemaps(
    client: httpx.AsyncClient, page: FetchResult, total_timeout: float, safe_params: Collection[str]
) -> list[Offer]:
    robots = urljoin(page.url, "/robots.txt")
    try:
        answer = await fetch_feed(client, robots, max_bytes=ROBOTS_MAX_BYTES, total_timeout=total_timeout,
                                  safe_params=safe_params)
    except FetchError:
        return []
    found = []
    for line in answer.body.decode("utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key.strip().lower() == "sitemap" and value.lower().startswith(("http://", "https://")):
            found.append(Offer(value, "sitemap", "listed in the site's robots.txt"))
    return found[:10]
