"""Credentials and secrets in feed URLs: used where they belong, named nowhere else."""

from __future__ import annotations

import socket
import string
import traceback
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.discover import find_feed
from bot.pipeline.fetch import FetchError, fetch_feed
from bot.pipeline.transport import make_client
from bot.pipeline.urls import redact_url, store_url
from tests.fakes.feed_server import FeedServer

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>\n'
PASSWORD = "s3cr3t-pw"
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
# Every value a message might leak; none of them occurs in a port number or a path.
SECRETS = (
    PASSWORD,
    "p@ss-8888",
    "p%40ss-8888",
    "tok-1111",
    "key-2222",
    "sig-3333",
    "acc-4444",
    "cs-5555",
    "pw-6666",
    "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
def other() -> Iterator[FeedServer]:
    """Another origin (same address, another port)."""
    with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(connect_timeout=2, read_timeout=2, allow_private=True) as http:
        yield http


def with_credentials(url: str, userinfo: str = f"reader:{PASSWORD}") -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_clean(error: BaseException) -> None:
    """No secret in the message, the repr, the attributes or a logged traceback."""
    texts = [str(error), repr(error), *map(str, error.args)]
    texts += ["".join(traceback.format_exception(error))]
    if isinstance(error, FetchError):
        texts.append(str(error.url))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


# -- credentials ---------------------------------------------------------------------------


async def test_credentials_are_sent_and_kept_in_the_url_to_store(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/private.xml", RSS)
    server.require_auth("/private.xml", "reader", PASSWORD)
    url = with_credentials(server.url_for("/private.xml"))

    result = await fetch_feed(client, url)
    assert result.body == RSS
    assert result.store_url == url  # what the caller stores, and polls next time
    assert result.url == server.url_for("/private.xml")  # the base for article links
    assert (await fetch_feed(client, result.store_url)).status == 200
    assert [r.status for r in server.requests()] == [200, 200]


async def test_percent_encoded_credentials_are_kept_as_given(
    server: FeedServer, client: httpx.AsyncClient
) -> None:
    server.serve("/private.xml", RSS)
    server.require_auth("/private.xml", "reader", "p@ss-8888")
    url = with_credentials(server.url_for("/private.xml"), "reader:p%40ss-8888")
    assert (await fetch_feed(client, url)).store_url == url


@pytest.mark.parametrize("absolute", [False, True])
async def test_credentials_follow_a_redirect_within_the_origin(
    server: FeedServer, client: httpx.AsyncClient, absolute: bool
) -> None:
    server.serve("/private.xml", RSS)
    server.require_auth("/private.xml", "reader", PASSWORD)
    server.redirect("/old.xml", server.url_for("/private.xml") if absolute else "/private.xml")

    result = await fetch_feed(client, with_credentials(server.url_for("/old.xml")))
    assert result.body == RSS
    assert result.store_url == with_credentials(server.url_for("/private.xml"))
    assert result.url == server.url_for("/private.xml")


async def test_credentials_never_go_to_another_origin(
    server: FeedServer, other: FeedServer, client: httpx.AsyncClient
) -> None:
    other.serve("/feed.xml", RSS)
    server.redirect("/away.xml", other.url_for("/feed.xml"))

    result = await fetch_feed(client, with_credentials(server.url_for("/away.xml")))
    assert result.url == result.store_url == other.url_for("/feed.xml")
    assert server.requests()[0].header("authorization") is not None
    assert other.requests()[0].header("authorization") is None


@pytest.mark.parametrize(
    ("final", "kept"),
    [
        ("http://news.example/feed", True),
        ("http://NEWS.example:80/other?x=1", True),
        ("https://news.example/feed", True),  # the upgrade httpx also sends them over
        ("https://news.example:8443/feed", False),
        ("http://news.example:8080/feed", False),
        ("http://cdn.news.example/feed", False),
        ("http://intruder:pw@news.example/feed", True),  # the server's userinfo is dropped
    ],
)
def test_store_url_keeps_credentials_on_their_origin(final: str, kept: bool) -> None:
    plain = str(httpx.URL(final).copy_with(username=None, password=None))
    expected = plain.replace("://", "://reader:pw@", 1) if kept else plain
    assert store_url("http://reader:pw@news.example/old", httpx.URL(final)) == expected
    assert store_url("https://reader:pw@news.example/", httpx.URL("http://news.example/")) == (
        "http://news.example/"
    )
    assert store_url("http://news.example/", httpx.URL(final)) == plain


@pytest.mark.parametrize("absolute", [False, True])
async def test_discovery_takes_credentials_to_a_feed_on_the_same_origin(
    server: FeedServer, client: httpx.AsyncClient, absolute: bool
) -> None:
    server.html("/", [server.url_for("/feed.xml") if absolute else "/feed.xml"])
    server.serve("/feed.xml", RSS)
    for path in ("/", "/feed.xml"):
        server.require_auth(path, "reader", PASSWORD)

    result = await find_feed(client, with_credentials(server.url + "/"))
    assert result.body == RSS
    assert result.store_url == with_credentials(server.url_for("/feed.xml"))
    assert result.url == server.url_for("/feed.xml")


async def test_discovery_does_not_take_credentials_elsewhere(
    server: FeedServer, other: FeedServer, client: httpx.AsyncClient
) -> None:
    server.html("/", [other.url_for("/feed.xml")])
    other.serve("/feed.xml", RSS)

    result = await find_feed(client, with_credentials(server.url + "/"))
    assert result.store_url == other.url_for("/feed.xml")
    assert other.requests()[0].header("authorization") is None


# -- nothing secret in messages ------------------------------------------------------------


async def test_no_error_names_a_password_or_a_secret(
    sim_feeds: FeedServer, client: httpx.AsyncClient
) -> None:
    server = sim_feeds  # on simulated time: the slow feed's time-out costs no real time
    closed = closed_port()
    secret_query = "?token=tok-1111&api_key=key-2222&X-Amz-Signature=sig-3333"
    server.status("/500.xml", 500, headers={"Retry-After": "60"})
    server.redirect("/to-missing", "/missing.xml?access_token=acc-4444&client_secret=cs-5555")
    server.redirect("/to-closed", f"http://reader:pw-6666@127.0.0.1:{closed}/x{secret_query}")
    server.redirect("/to-bad", "http://reader:pw-6666@127.0.0.1:notaport/?token=tok-1111")
    server.redirect("/to-file", "file://reader:pw-6666@localhost/etc/passwd?token=tok-1111")
    server.redirect("/to-bot", f"http://127.0.0.1:{closed}/bot{BOT_TOKEN}/getMe")
    server.redirect("/loop", "/loop?sig=sig-3333")
    server.serve("/slow.xml", RSS)
    server.slow("/slow.xml", 5)
    server.huge("/huge.xml", 5 * 1024 * 1024)
    server.truncated("/cut.xml", RSS)
    server.serve("/br.xml", RSS, headers={"Content-Encoding": "br"})
    server.serve("/bad.gz", b"not gzip", headers={"Content-Encoding": "gzip"})
    server.html("/page.html")
    base = with_credentials(server.url)
    urls = [
        f"{base}/missing.xml{secret_query}",
        f"{base}/500.xml{secret_query}",
        f"{base}/to-missing",
        f"{base}/to-closed",
        f"{base}/to-bad",
        f"{base}/to-file",
        f"{base}/to-bot",
        f"{base}/loop{secret_query}",
        f"{base}/slow.xml{secret_query}",
        f"{base}/huge.xml{secret_query}",
        f"{base}/cut.xml{secret_query}",
        f"{base}/br.xml{secret_query}",
        f"{base}/bad.gz{secret_query}",
        f"http://reader:{PASSWORD}@127.0.0.1:{closed}/f.xml{secret_query}",
        f"ftp://reader:{PASSWORD}@127.0.0.1/f.xml{secret_query}",
        f"http://reader:{PASSWORD}@[::1/f.xml{secret_query}",
        f"http://reader:{PASSWORD}@/f.xml{secret_query}",
    ]
    kinds = []
    for url in urls:
        with pytest.raises(FetchError) as info:
            await fetch_feed(client, url, max_bytes=1024 * 1024, total_timeout=0.5)
        assert_clean(info.value)
        kinds.append(info.value.kind)
    with pytest.raises(FetchError) as info:
        await find_feed(client, f"{base}/page.html{secret_query}")
    assert_clean(info.value)
    kinds.append(info.value.kind)
    async with make_client() as default_client:
        with pytest.raises(FetchError) as info:
            await fetch_feed(default_client, f"{base}/f.xml{secret_query}")
    assert_clean(info.value)
    kinds.append(info.value.kind)
    # Every kind of failure was seen, so every message was checked.
    assert set(kinds) == {
        "http",
        "connect",
        "protocol",
        "redirects",
        "timeout",
        "too_large",
        "invalid_url",
        "not_a_feed",
        "forbidden_address",
    }


# -- redact_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://news.example/feed.xml", "https://news.example/feed.xml"),
        ("http://reader:pw@news.example/f", "http://news.example/f"),
        ("http://p@ss:w@rd@news.example/f?q=1", "http://news.example/f?q=***"),
        ("http://reader@news.example/f", "http://news.example/f"),
        # Every value, whatever its parameter is called: no list of names can know them all.
        ("https://x.example/rss?pw=hunter2", "https://x.example/rss?pw=***"),
        ("https://x.example/rss?k=9f8e7d&u=newsroom&x=1", "https://x.example/rss?k=***&u=***&x=***"),
        (
            "https://x.example/f?token=a&key=b&api_key=c&X-Amz-Signature=d&Api-Key=e",
            "https://x.example/f?token=***&key=***&api_key=***&X-Amz-Signature=***&Api-Key=***",
        ),
        ("https://x.example/f?keyword=drones&page=2;sort=new", "https://x.example/f?keyword=***&page=***;sort=***"),
        ("https://x.example/f?a9f8e7d6c5", "https://x.example/f?***"),  # a bare value is a value
        ("https://x.example/f?a=1&&b", "https://x.example/f?a=***&&***"),
        # Fragment parameters too; a plain fragment is an anchor.
        ("https://x.example/f#access_token=abc&state=1", "https://x.example/f#access_token=***&state=***"),
        ("https://x.example/f#comments", "https://x.example/f#comments"),
        ("https://x.example/f?token=&a=", "https://x.example/f?token=&a="),  # nothing to hide
        (f"https://api.telegram.org/bot{BOT_TOKEN}/getMe", "https://api.telegram.org/bot***/getMe"),
        ("http://[::1/f?token=abc", "http://[::1/f?token=***"),
        ("http://x.example/\x00\n", "http://x.example/??"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_shows_the_values_of_safe_parameters_only() -> None:
    url = "https://x.example/rss?Lang=en&section=sports&pw=hunter2#tag=a&sig=b"
    assert redact_url(url, frozenset({"lang", "section", "tag"})) == (
        "https://x.example/rss?Lang=en&section=sports&pw=***#tag=a&sig=***"
    )
    assert redact_url("https://x.example/rss?en", frozenset({"en"})) == "https://x.example/rss?en"


@pytest.mark.parametrize("name", ["pw", "k", "x", "code", "hash", "u", "q", "feedkey2"])
@settings(max_examples=50)
@given(value=st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1, max_size=40))
def test_no_query_value_survives_redaction(name: str, value: str) -> None:
    """Whatever a parameter is called and holds, its value is not shown (the issue's
    ``?pw=`` was shown because "pw" was on no list)."""
    shown = redact_url(f"https://feeds.example/rss.xml?{name}={value}&lang=sv", frozenset({"lang"}))
    assert shown == f"https://feeds.example/rss.xml?{name}=***&lang=sv"


def test_redact_url_shortens_long_urls() -> None:
    shown = redact_url("https://x.example/" + "a" * 500)
    assert len(shown) == 200 and shown.endswith("…")
