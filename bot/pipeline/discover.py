"""Feed discovery: a site or section page URL leads to its feed via <link rel="alternate">."""

from __future__ import annotations

import httpx

from bot.pipeline.fetch import (
    FetchError,
    FetchResult,
    _carry_credentials,
    discover_feed_links,
    fetch_feed,
    looks_like_html,
    redact_url,
)


async def find_feed(
    client: httpx.AsyncClient, url: str, *, max_bytes: int = 10 * 1024 * 1024
) -> FetchResult:
    """Fetch `url`; if it is a web page, fetch the first feed it advertises instead."""
    result = await fetch_feed(client, url, max_bytes=max_bytes)
    if not looks_like_html(result.body, result.headers.get("content-type")):
        return result
    links = discover_feed_links(result.body, result.url)
    if not links:
        shown = redact_url(result.url)
        raise FetchError(
            "not_a_feed",
            f'{shown} is a web page that names no feed (no <link rel="alternate">)',
            url=shown,
        )
    # Credentials given for the page go on to a feed on the same origin, never elsewhere.
    feed_url = _carry_credentials(result.store_url, links[0])
    return await fetch_feed(client, feed_url, max_bytes=max_bytes)
