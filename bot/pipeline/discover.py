"""Feed discovery: a site or section page URL leads to its feed via <link rel="alternate">."""

from __future__ import annotations

import asyncio

import httpx

from bot.pipeline.fetch import (
    DEFAULT_MAX_BYTES,
    FetchError,
    FetchResult,
    _carry_credentials,
    discover_feed_links,
    fetch_feed,
    looks_like_html,
    redact_url,
)


async def find_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    total_timeout: float = 60,
) -> FetchResult:
    """Fetch `url`; if it is a web page, fetch the first feed it advertises instead.

    The bounds of `fetch_feed` hold for the whole discovery: page and feed share the one
    ``total_timeout``, and each body is cut at ``max_bytes``. The feed a page names is
    fetched through the same ``client``, so its `AddressPolicy` decides where that may be,
    as for the page and every redirect. Raises `FetchError` (kind "not_a_feed" for a page
    that names no feed).
    """
    if not total_timeout > 0:
        raise ValueError("total_timeout must be positive")
    shown = redact_url(url)
    try:
        # Each fetch gets the whole budget too, so this outer limit is the one that ends
        # them and the message names the discovery, not whichever fetch was running.
        async with asyncio.timeout(total_timeout):
            page = await fetch_feed(client, url, max_bytes=max_bytes, total_timeout=total_timeout)
            if not looks_like_html(page.body, page.headers.get("content-type")):
                return page
            feed_url = _advertised_feed(page)
            del page  # the page body is not kept while the feed downloads
            return await fetch_feed(
                client, feed_url, max_bytes=max_bytes, total_timeout=total_timeout
            )
    except TimeoutError:
        raise FetchError(
            "timeout",
            f"timed out after {total_timeout:g} s finding a feed at {shown}",
            url=shown,
        ) from None


def _advertised_feed(page: FetchResult) -> str:
    links = discover_feed_links(page.body, page.url)
    if not links:
        shown = redact_url(page.url)
        raise FetchError(
            "not_a_feed",
            f'{shown} is a web page that names no feed (no <link rel="alternate">)',
            url=shown,
        )
    # Credentials given for the page go on to a feed on the same origin, never elsewhere.
    return _carry_credentials(page.store_url, links[0])
