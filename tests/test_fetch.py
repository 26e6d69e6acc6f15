"""The fetch stage against a real HTTP server on loopback (tests/fakes/feed_server.py)."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bot.pipeline.discover import discover_feed_links, find_feed, looks_like_html
from bot.pipeline.fetch import FetchError, fetch_feed
from bot.pipeline.transport import make_client
from tests.fakes.feed_server import FeedServer, TruncateMode, encode_body
from tests.simtime import SimClock

RSS = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
    b"<title>World</title><link>https://news.example/world</link>"
    b"<item><title>Drones over Malm\xc3\xb6</title><guid>a1</guid></item>"
    b"</channel></rss>\n"
)
MB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # The feed server is on loopback, which the default client refuses to connect to.
    async with make_client(connect_timeout=2, read_timeout=2, allow_private=True) as http_client:
        yield http_client


class PeakMemory:
    """Peak Python allocation (bytes) inside the block, over what was allocated before."""

    def __enter__(self) -> PeakMemory:
        self._was_tracing = tracemalloc.is_tracing()
        if not self._was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._before = tracemalloc.get_traced_memory()[0]
        self.peak = 0
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.peak = tracemalloc.get_traced_memory()[1] - self._before
        if not self._was_tracing:
            tracemalloc.stop()


async def fetch_error(
    client: httpx.AsyncClient, url: str, **kwargs: Any
) -> tuple[FetchError, float]:
    """The error, and how long it took on the loop's clock (simulated time in a test on the
    `clock` fixture, where waiting for a slow server costs no real time)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(FetchError) as info:
        await fetch_feed(client, url, **kwargs)
    return info.value, loop.time() - started


# -- conditional GET -----------------------------------------------------------------------


async def test_200_then_304_with_etag(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.serve("/world.xml", RSS, last_modified=False)
    url = server.url_for("/world.xml")

    first = await fetch_feed(client, url)
    assert (first.status, first.not_modified, first.body) == (200, False, RSS)
    assert first.etag and first.last_modified is None
    assert first.url == url
    assert first.headers["content-type"] == "application/rss+xml"
    assert all(key == key.lower() for key in first.headers)

    second = await fetch_feed(client, url, etag=first.etag)
    assert (second.status, second.not_modified, second.body) == (304, True, b"")
    assert second.etag == first.etag

    log = server.requests("/world.xml")
    assert [r.status for r in log] == [200, 304]
    assert log[0].header("if-none-match") is None
    assert log[1].header("if-none-match") == first.etag


async def test_200_then_304_with_last_modified(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/sweden.xml", RSS, etag=False)
    url = server.url_for("/sweden.xml")

    first = await fetch_feed(client, url)
    assert first.etag is None and first.last_modified

    second = await fetch_feed(client, url, last_modified=first.last_modified)
    assert second.not_modified and second.last_modified == first.last_modified
    assert server.requests("/sweden.xml")[1].header("if-modified-since") == first.last_modified


async def test_changed_content_is_fetched_again(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/f.xml", RSS)
    url = server.url_for("/f.xml")
    first = await fetch_feed(client, url)
    server.serve("/f.xml", RSS.replace(b"Drones", b"Boats"))

    second = await fetch_feed(client, url, etag=first.etag, last_modified=first.last_modified)
    assert second.status == 200 and b"Boats" in second.body
    assert second.etag != first.etag


async def test_304_without_validators_keeps_the_old_ones(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.status("/f.xml", 304)
    result = await fetch_feed(
        client, server.url_for("/f.xml"), etag='"v1"', last_modified="Tue, 01 Oct 2024 10:00:00 GMT"
    )
    assert result.not_modified and result.body == b""
    assert result.etag == '"v1"'
    assert result.last_modified == "Tue, 01 Oct 2024 10:00:00 GMT"


async def test_unsendable_validators_fall_back_to_a_plain_get(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/f.xml", RSS)
    result = await fetch_feed(
        client, server.url_for("/f.xml"), etag='"caf\u00e9"', last_modified="x\r\nX-Evil: 1"
    )
    assert result.status == 200 and result.body == RSS
    record = server.requests("/f.xml")[0]
    assert record.header("if-none-match") is None and record.header("x-evil") is None


# -- size cap ------------------------------------------------------------------------------


async def test_50_mb_body_is_cut_at_the_cap(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.huge("/huge.xml", 50 * MB)  # chunked: no Content-Length to reject it by
    with PeakMemory() as memory:
        error, elapsed = await fetch_error(client, server.url_for("/huge.xml"))
    assert error.kind == "too_large"
    assert str(error).startswith("fetch: body larger than 10485760 bytes")
    assert memory.peak < 16 * MB  # the 10 MB kept so far, not the 50 MB sent
    assert elapsed < 5


async def test_content_length_over_the_cap_is_refused_before_reading(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.huge("/huge.xml", 50 * MB, declare_length=True)
    with PeakMemory() as memory:
        error, _ = await fetch_error(client, server.url_for("/huge.xml"), max_bytes=MB)
    assert error.kind == "too_large"
    assert "Content-Length 52428800" in str(error)
    assert memory.peak < MB


async def test_gzip_bomb_is_cut_while_inflating(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.huge("/bomb.xml", 1024 * MB, compressed=True)
    with PeakMemory() as memory:
        error, elapsed = await fetch_error(client, server.url_for("/bomb.xml"), max_bytes=MB)
    assert error.kind == "too_large"
    assert memory.peak < 4 * MB
    assert elapsed < 5


async def test_body_exactly_at_the_cap_is_accepted(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/f.xml", b"x" * 1000, gzip=True)
    result = await fetch_feed(client, server.url_for("/f.xml"), max_bytes=1000)
    assert len(result.body) == 1000
    with pytest.raises(FetchError) as info:
        await fetch_feed(client, server.url_for("/f.xml"), max_bytes=999)
    assert info.value.kind == "too_large"


# -- time bounds ---------------------------------------------------------------------------


async def test_slow_server_times_out(sim_feeds: FeedServer) -> None:
    server = sim_feeds
    server.serve("/slow.xml", RSS)
    server.slow("/slow.xml", 5)
    async with make_client(read_timeout=0.2, allow_private=True) as client:
        error, elapsed = await fetch_error(client, server.url_for("/slow.xml"))
    assert error.kind == "timeout"
    assert str(error).startswith("fetch: timed out after 0.2 s")
    assert elapsed < 2


async def test_trickling_server_hits_the_total_timeout(
    sim_feeds: FeedServer, client: httpx.AsyncClient
) -> None:
    server = sim_feeds
    # Every read succeeds well within the read timeout; only the total budget can stop it.
    server.serve("/trickle.xml", RSS * 50)
    server.slow("/trickle.xml", 0.05, trickle_bytes=10)
    error, elapsed = await fetch_error(client, server.url_for("/trickle.xml"), total_timeout=0.5)
    assert error.kind == "timeout"
    assert str(error).startswith("fetch: timed out after 0.5 s")
    assert 0.4 < elapsed < 2

    # The client is still usable afterwards.
    server.clear("/trickle.xml")
    assert (await fetch_feed(client, server.url_for("/trickle.xml"))).status == 200


# -- HTTP errors and redirects -------------------------------------------------------------


async def test_server_error_is_an_http_error(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.status("/f.xml", 500)
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.kind == "http" and error.status == 500
    assert str(error) == f"fetch: HTTP 500 from {server.url_for('/f.xml')}"


async def test_retry_after_is_reported(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.status("/f.xml", 503, headers={"Retry-After": "120"})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert (error.kind, error.status, error.retry_after) == ("http", 503, 120.0)


def _http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("99999999", 86400.0),  # capped at a day
        ("-5", 0.0),
        ("1.5", 1.5),
        ("soon", None),
        ("", None),
        ("inf", None),
        ("nan", None),
        ("1e9", None),
    ],
)
async def test_retry_after_seconds(
    server: FeedServer,
    client: httpx.AsyncClient,
    status: int,
    value: str,
    expected: float | None,
) -> None:
    server.status("/f.xml", status, headers={"Retry-After": value})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert (error.status, error.retry_after) == (status, expected)


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("offset", "low", "high"),
    [(90, 85, 90), (-3600, 0, 0), (30 * 86400, 86400, 86400)],
    ids=["ahead", "past", "far"],
)
async def test_retry_after_http_date(
    server: FeedServer,
    client: httpx.AsyncClient,
    status: int,
    offset: float,
    low: float,
    high: float,
) -> None:
    server.status("/f.xml", status, headers={"Retry-After": _http_date(offset)})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.retry_after is not None and low <= error.retry_after <= high


async def test_no_retry_after_without_the_header(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.status("/f.xml", 429)
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert (error.kind, error.status, error.retry_after) == ("http", 429, None)


async def test_not_found_is_an_http_error(server: FeedServer, client: httpx.AsyncClient) -> None:
    error, _ = await fetch_error(client, server.url_for("/missing.xml"))
    assert (error.kind, error.status) == ("http", 404)


async def test_redirect_is_followed(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.serve("/new.xml", RSS)
    server.redirect("/old.xml", "/moved")
    server.redirect("/moved", server.url_for("/new.xml"), code=301)

    result = await fetch_feed(client, server.url_for("/old.xml"))
    assert result.url == server.url_for("/new.xml")
    assert result.body == RSS
    assert [(r.path, r.status) for r in server.requests()] == [
        ("/old.xml", 302),
        ("/moved", 301),
        ("/new.xml", 200),
    ]


async def test_five_redirects_are_followed_six_are_not(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/end.xml", RSS)
    for hop in range(6):
        server.redirect(f"/r{hop}", f"/r{hop + 1}")
    server.redirect("/r6", "/end.xml")

    assert (await fetch_feed(client, server.url_for("/r2"))).body == RSS
    error, _ = await fetch_error(client, server.url_for("/r1"))
    assert error.kind == "redirects"


async def test_redirect_loop(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.redirect("/a.xml", "/b.xml")
    server.redirect("/b.xml", "/a.xml")
    error, elapsed = await fetch_error(client, server.url_for("/a.xml"))
    assert error.kind == "redirects"
    assert str(error).startswith("fetch: too many redirects")
    assert elapsed < 2


@pytest.mark.parametrize("declare_length", [True, False], ids=["sized", "chunked"])
async def test_redirect_body_is_never_read(
    server: FeedServer, client: httpx.AsyncClient, declare_length: bool
) -> None:
    server.serve("/new.xml", RSS)
    server.redirect("/old.xml", "/new.xml", body_size=1024 * MB, declare_length=declare_length)
    started = time.monotonic()
    with PeakMemory() as memory:
        result = await fetch_feed(client, server.url_for("/old.xml"))
    assert result.body == RSS and result.url == server.url_for("/new.xml")
    assert memory.peak < 2 * MB
    assert time.monotonic() - started < 2


async def test_trickling_redirect_body_does_not_hold_the_fetch(
    clock: SimClock, sim_feeds: FeedServer, client: httpx.AsyncClient
) -> None:
    server = sim_feeds
    server.serve("/new.xml", RSS)
    server.redirect("/old.xml", "/new.xml", body_size=100)  # small, but never finishes
    server.slow("/old.xml", 0.5, trickle_bytes=1)
    started = clock.monotonic()
    result = await fetch_feed(client, server.url_for("/old.xml"), total_timeout=10)
    assert result.body == RSS
    assert clock.monotonic() - started < 2


async def test_small_redirect_bodies_keep_the_connection(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/new.xml", RSS)
    server.redirect("/old.xml", "/new.xml", body_size=2000)
    await fetch_feed(client, server.url_for("/old.xml"))
    log = server.requests()
    assert [r.status for r in log] == [302, 200]
    assert log[0].client_port == log[1].client_port


async def test_redirect_to_another_scheme_is_refused(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.redirect("/f.xml", "file:///etc/passwd")
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.kind == "redirects"


# -- broken responses ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["connection", "chunked"])
async def test_truncated_body_is_an_error_not_a_hang(
    server: FeedServer, client: httpx.AsyncClient, mode: TruncateMode
) -> None:
    server.truncated("/cut.xml", RSS, mode=mode)
    error, elapsed = await fetch_error(client, server.url_for("/cut.xml"))
    assert error.kind == "protocol"
    assert "\n" not in str(error)
    assert elapsed < 2


async def test_document_cut_short_is_still_fetched(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    # Valid HTTP carrying half an XML document: the parser's problem, not the fetcher's.
    server.truncated("/cut.xml", RSS, mode="document")
    result = await fetch_feed(client, server.url_for("/cut.xml"))
    assert result.body == RSS[: len(RSS) // 2]


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, _ = await fetch_error(client, f"http://127.0.0.1:{port}/feed.xml")
    assert error.kind == "connect"
    assert str(error).startswith(f"fetch: cannot connect to http://127.0.0.1:{port}/feed.xml")


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/feed.xml",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "feed.xml",
        "",
        "http://",
        "http://[::1/feed",
    ],
)
async def test_only_http_urls_are_fetched(
    server: FeedServer, client: httpx.AsyncClient, url: str
) -> None:
    error, _ = await fetch_error(client, url)
    assert error.kind == "invalid_url"
    assert str(error).startswith("fetch: ")
    assert server.requests() == []


# -- content coding ------------------------------------------------------------------------


async def test_gzip_body_is_decoded(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.serve("/f.xml", RSS * 20, gzip=True)
    result = await fetch_feed(client, server.url_for("/f.xml"))
    assert result.body == RSS * 20
    assert "content-encoding" not in result.headers
    record = server.requests("/f.xml")[0]
    assert "gzip" in (record.header("accept-encoding") or "")
    assert record.response_headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_body_is_decoded(
    server: FeedServer, client: httpx.AsyncClient, wbits: int
) -> None:
    # RFC 9110 says "deflate" is zlib-wrapped; some servers send raw deflate anyway.
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    wire = compressor.compress(RSS) + compressor.flush()
    server.serve("/f.xml", wire, headers={"Content-Encoding": "deflate"})
    assert (await fetch_feed(client, server.url_for("/f.xml"))).body == RSS


async def test_multi_member_gzip_is_decoded(server: FeedServer, client: httpx.AsyncClient) -> None:
    wire = gzip.compress(RSS[:50]) + gzip.compress(RSS[50:])
    server.serve("/f.xml", wire, headers={"Content-Encoding": "gzip"})
    assert (await fetch_feed(client, server.url_for("/f.xml"))).body == RSS


@pytest.mark.parametrize(
    "wire", [b"not gzip at all", gzip.compress(RSS)[:-30]], ids=["corrupt", "cut"]
)
async def test_corrupt_or_cut_gzip_is_an_error(
    server: FeedServer, client: httpx.AsyncClient, wire: bytes
) -> None:
    server.serve("/f.xml", wire, headers={"Content-Encoding": "gzip"})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.kind == "protocol"


@pytest.mark.parametrize(
    ("encoding", "size"),
    [
        ("gzip, gzip", 1024 * MB),  # ~2 KB on the wire
        ("gzip, gzip, gzip", 256 * MB),
        ("deflate, gzip", 256 * MB),
        ("x-gzip, deflate", 256 * MB),
    ],
)
async def test_layered_coding_bomb_is_cut_while_inflating(
    server: FeedServer, encoding: str, size: int
) -> None:
    # Every layer is inflated a bounded step at a time: nothing holds more than the cap
    # (plus a step per layer), however much the inner layers would expand to.
    server.huge("/bomb.xml", size, content_encoding=encoding)
    # The outer layers stay silent until the server has compressed the whole stack (about
    # 2 s per GB of CPU, far more on a busy machine): the read timeout leaves it the time.
    async with make_client(read_timeout=300, allow_private=True) as client:
        with PeakMemory() as memory:
            error, _ = await fetch_error(client, server.url_for("/bomb.xml"), max_bytes=MB)
    assert error.kind == "too_large"
    assert memory.peak < 3 * MB


@pytest.mark.parametrize(
    "encoding",
    ["gzip, gzip", "deflate, gzip", "gzip, deflate", "x-gzip, gzip, deflate", "GZIP , Identity"],
)
async def test_layered_codings_are_decoded(
    server: FeedServer, client: httpx.AsyncClient, encoding: str
) -> None:
    server.serve("/f.xml", encode_body(RSS * 20, encoding), headers={"Content-Encoding": encoding})
    result = await fetch_feed(client, server.url_for("/f.xml"))
    assert result.body == RSS * 20
    assert "content-encoding" not in result.headers


async def test_layered_coding_decodes_a_byte_at_a_time(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate
    wire = gzip.compress(compressor.compress(RSS) + compressor.flush())
    server.serve("/f.xml", wire, headers={"Content-Encoding": "deflate, gzip"})
    server.slow("/f.xml", 0.001, trickle_bytes=1)
    assert (await fetch_feed(client, server.url_for("/f.xml"))).body == RSS


@pytest.mark.parametrize("label", ["utf-8", "UTF-8", "iso-8859-1", "utf-8, gzip"])
async def test_charset_in_content_encoding_is_ignored(
    server: FeedServer, client: httpx.AsyncClient, label: str
) -> None:
    # Misconfigured servers put the charset there; the body is not encoded by it.
    server.serve("/f.xml", encode_body(RSS, label), headers={"Content-Encoding": label})
    assert (await fetch_feed(client, server.url_for("/f.xml"))).body == RSS


@pytest.mark.parametrize(
    "encoding", ["br", "zstd", "compress", "x-compress", "gzip, br", "br, gzip", "zip", "binary"]
)
async def test_codings_without_a_bounded_decoder_are_refused(
    server: FeedServer, client: httpx.AsyncClient, encoding: str
) -> None:
    server.serve("/f.xml", encode_body(RSS, encoding), headers={"Content-Encoding": encoding})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.kind == "protocol"
    assert str(error).startswith("fetch: unsupported content coding")


async def test_more_than_four_stacked_codings_are_refused(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    encoding = ", ".join(["gzip"] * 5)
    server.serve("/f.xml", encode_body(RSS, encoding), headers={"Content-Encoding": encoding})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.kind == "protocol"
    assert "5 content codings" in str(error)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (gzip.compress(b"not gzip at all"), "corrupt gzip body"),
        (gzip.compress(gzip.compress(RSS)[:-30]), "gzip body ends early"),
    ],
    ids=["corrupt-inner", "cut-inner"],
)
async def test_broken_inner_layer_is_an_error(
    server: FeedServer, client: httpx.AsyncClient, wire: bytes, message: str
) -> None:
    server.serve("/f.xml", wire, headers={"Content-Encoding": "gzip, gzip"})
    error, _ = await fetch_error(client, server.url_for("/f.xml"))
    assert error.kind == "protocol"
    assert message in str(error)


# -- web pages instead of feeds ------------------------------------------------------------


async def test_feed_discovered_from_a_web_page(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/feeds/world.xml", RSS)
    server.html("/", ["/feeds/world.xml", ("sports.atom", "application/atom+xml")])

    page = await fetch_feed(client, server.url + "/")
    assert looks_like_html(page.body, page.headers["content-type"])
    links = discover_feed_links(page.body, page.url)
    assert links == [server.url_for("/feeds/world.xml"), server.url_for("/sports.atom")]

    feed = await fetch_feed(client, links[0])
    assert not looks_like_html(feed.body, feed.headers["content-type"])


async def test_discovery_shares_one_time_budget(
    clock: SimClock, sim_feeds: FeedServer, client: httpx.AsyncClient
) -> None:
    server = sim_feeds
    # Page and feed each fit well within the budget alone, not together.
    server.html("/", ["/feed.xml"])
    server.slow("/", 0.05, trickle_bytes=40)  # ~0.8 s
    server.serve("/feed.xml", RSS * 4)
    server.slow("/feed.xml", 0.5, trickle_bytes=10)  # ~16 s
    started = clock.monotonic()
    with pytest.raises(FetchError) as info:
        await find_feed(client, server.url + "/", total_timeout=1.5)
    assert 1.4 < clock.monotonic() - started < 2.5
    assert info.value.kind == "timeout"
    assert str(info.value) == f"fetch: timed out after 1.5 s finding a feed at {server.url}/"

    server.slow("/feed.xml", 0)
    assert (await find_feed(client, server.url + "/", total_timeout=5)).body == RSS * 4


async def test_discovery_caps_page_and_feed(server: FeedServer, client: httpx.AsyncClient) -> None:
    server.huge("/big-page", 5 * MB)
    with pytest.raises(FetchError) as info:
        await find_feed(client, server.url_for("/big-page"), max_bytes=MB)
    assert info.value.kind == "too_large"

    server.html("/", ["/big.xml"])
    server.huge("/big.xml", 5 * MB)
    with pytest.raises(FetchError) as info:
        await find_feed(client, server.url + "/", max_bytes=MB)
    assert info.value.kind == "too_large"
    assert str(info.value).startswith(f"fetch: body larger than 1048576 bytes from {server.url}")

    with pytest.raises(ValueError):
        await find_feed(client, server.url + "/", total_timeout=0)


def test_discover_feed_links() -> None:
    page = """<!doctype html><html><head>
      <link rel="stylesheet" href="/s.css">
      <link rel="alternate" type="application/rss+xml" href="/rss.xml">
      <LINK REL="Alternate Feed" TYPE="application/atom+xml; charset=utf-8" HREF="atom.xml">
      <link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/2">
      <link rel="alternate" hreflang="sv" href="/sv/">
      <link rel="alternate" type="application/feed+json" href="https://cdn.example/f.json"/>
      <link rel="alternate" type="application/rss+xml" href="/rss.xml">
      <link rel="alternate" type="application/rss+xml" href="">
      <link rel="alternate" type="application/rss+xml" href="javascript:void(0)">
      <link rel="alternate" type="application/rss+xml" href="/q?a=1&amp;b=2">
    </head><body></body></html>"""
    assert discover_feed_links(page, "https://news.example/world/index.html") == [
        "https://news.example/rss.xml",
        "https://news.example/world/atom.xml",
        "https://cdn.example/f.json",
        "https://news.example/q?a=1&b=2",
    ]


def test_discover_feed_links_honours_base_and_bytes() -> None:
    page = (
        '<html><head><meta charset="iso-8859-1"><base href="/sektion/">'
        '<link rel="alternate" type="application/rss+xml" href="v\xe4rlden.xml">'
        "</head></html>"
    ).encode("iso-8859-1")
    assert discover_feed_links(page, "https://news.example/a/b") == [
        "https://news.example/sektion/v\xe4rlden.xml"
    ]
    assert discover_feed_links(b"", "https://news.example/") == []
    assert discover_feed_links(b"<html><link rel=alternate", "https://x.example/") == []


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<!DOCTYPE html><html><head>", "text/html", True),
        (b"\xef\xbb\xbf  <html lang='en'>", None, True),
        (b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN">', None, True),
        (b"<head><title>x</title>", "application/octet-stream", True),
        (RSS, "application/rss+xml", False),
        (
            b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"\n'
            b' "http://my.netscape.com/publish/formats/rss-0.91.dtd">\n<rss version="0.91">',
            "text/html",
            False,
        ),
        (RSS, "text/html; charset=utf-8", False),  # mislabelled feed
        (b'<?xml version="1.0"?><!-- c --><feed xmlns="http://www.w3.org/2005/Atom">', None, False),
        (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">', "text/xml", False),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "text/html", False),
        (b"", "text/html", True),
        (b"", None, False),
        (b"garbage", "text/html", True),
    ],
)
def test_looks_like_html(body: bytes, content_type: str | None, expected: bool) -> None:
    assert looks_like_html(body, content_type) is expected
