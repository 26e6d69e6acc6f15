"""The fake feed server itself: it must behave like a real one, and misbehave on demand."""

from __future__ import annotations

import email.utils
import gzip
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.feed_server import FeedServer, encode_body

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
MB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
def http(server: FeedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def test_serves_with_validators_and_answers_conditional_requests(
    server: FeedServer, http: httpx.Client
) -> None:
    server.serve("/f.xml", FEED)
    first = http.get("/f.xml")
    assert first.status_code == 200 and first.content == FEED
    assert first.headers["content-type"] == "application/rss+xml"
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]

    assert http.get("/f.xml", headers={"If-None-Match": etag}).status_code == 304
    assert http.get("/f.xml", headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert http.get("/f.xml", headers={"If-None-Match": "*"}).status_code == 304
    assert http.get("/f.xml", headers={"If-Modified-Since": last_modified}).status_code == 304
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    both = {"If-None-Match": '"other"', "If-Modified-Since": last_modified}
    assert http.get("/f.xml", headers=both).status_code == 200

    not_modified = http.get("/f.xml", headers={"If-None-Match": etag})
    assert not_modified.content == b"" and not_modified.headers["etag"] == etag


def test_new_content_gets_a_new_etag_and_a_later_last_modified(
    server: FeedServer, http: httpx.Client
) -> None:
    server.serve("/f.xml", FEED)
    first = http.get("/f.xml").headers
    server.serve("/f.xml", FEED + b"\n")  # within the same second
    second = http.get("/f.xml").headers
    assert second["etag"] != first["etag"]
    first_time = email.utils.parsedate_to_datetime(first["last-modified"])
    second_time = email.utils.parsedate_to_datetime(second["last-modified"])
    assert second_time > first_time
    # The old validators now get the new content.
    response = http.get("/f.xml", headers={"If-Modified-Since": first["last-modified"]})
    assert response.status_code == 200

    server.serve("/f.xml", FEED + b"\n")  # same content again: nothing changes
    assert http.get("/f.xml").headers["etag"] == second["etag"]
    assert http.get("/f.xml").headers["last-modified"] == second["last-modified"]


def test_validators_can_be_turned_off(server: FeedServer, http: httpx.Client) -> None:
    server.serve("/f.xml", FEED, etag=False, last_modified=False)
    response = http.get("/f.xml", headers={"If-None-Match": "*"})
    assert response.status_code == 200
    assert "etag" not in response.headers and "last-modified" not in response.headers


def test_request_log(server: FeedServer, http: httpx.Client) -> None:
    server.serve("/f.xml", FEED)
    http.get("/f.xml?page=2", headers={"X-Test": "yes"})
    http.head("/f.xml")
    http.get("/nothing-here")

    log = server.requests()
    assert [(r.method, r.path, r.status) for r in log] == [
        ("GET", "/f.xml", 200),
        ("HEAD", "/f.xml", 200),
        ("GET", "/nothing-here", 404),
    ]
    assert log[0].target == "/f.xml?page=2"
    assert log[0].header("X-Test") == "yes"
    assert log[0].response_headers["content-length"] == str(len(FEED))
    assert len(server.requests("/f.xml")) == 2
    assert len({r.client_port for r in log}) == 1  # one keep-alive connection
    server.clear_requests()
    assert server.requests() == []


def test_status_fault_then_recovery(server: FeedServer, http: httpx.Client) -> None:
    server.serve("/f.xml", FEED)
    server.status("/f.xml", 503, headers={"Retry-After": "30"})
    response = http.get("/f.xml")
    assert response.status_code == 503 and response.headers["retry-after"] == "30"

    server.clear("/f.xml")
    assert http.get("/f.xml").content == FEED
    server.remove("/f.xml")
    assert http.get("/f.xml").status_code == 404


def test_basic_auth_on_a_path(server: FeedServer, http: httpx.Client) -> None:
    server.serve("/private.xml", FEED)
    server.require_auth("/private.xml", "reader", "p@ss w\u00f6rd")
    missing = http.get("/private.xml")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('Basic realm="feeds"')
    assert http.get("/private.xml", auth=("reader", "wrong")).status_code == 401
    assert http.get("/private.xml", auth=("reader", "p@ss w\u00f6rd")).content == FEED

    server.status("/private.xml", 503)  # faults sit behind the credentials too
    assert http.get("/private.xml").status_code == 401
    assert http.get("/private.xml", auth=("reader", "p@ss w\u00f6rd")).status_code == 503
    server.clear("/private.xml")
    assert http.get("/private.xml").status_code == 401
    server.remove("/private.xml")
    assert http.get("/private.xml").status_code == 404


def test_redirects(server: FeedServer, http: httpx.Client) -> None:
    server.redirect("/a", "/b", code=301)
    server.redirect("/b", "/a")
    response = http.get("/a")
    assert response.status_code == 301 and response.headers["location"] == "/b"
    with pytest.raises(httpx.TooManyRedirects):
        http.get("/a", follow_redirects=True)


def test_redirect_with_a_body(server: FeedServer, http: httpx.Client) -> None:
    server.redirect("/sized", "/f.xml", body_size=3 * MB)
    server.redirect("/chunked", "/f.xml", 301, body_size=100_000, declare_length=False)
    server.redirect("/trickle", "/f.xml", body_size=MB)
    server.slow("/trickle", 0.05, trickle_bytes=10)

    with http.stream("GET", "/sized") as response:
        assert response.status_code == 302 and response.headers["location"] == "/f.xml"
        assert response.headers["content-length"] == str(3 * MB)
        assert sum(len(chunk) for chunk in response.iter_raw()) == 3 * MB
    with http.stream("GET", "/chunked") as response:
        assert response.status_code == 301 and "content-length" not in response.headers
        assert sum(len(chunk) for chunk in response.iter_raw()) == 100_000
    started = time.monotonic()
    with http.stream("GET", "/trickle") as response:
        received = 0
        for chunk in response.iter_raw():
            received += len(chunk)
            if received >= 50:
                break
    assert received == 50  # ten bytes at a time, 0.05 s apart
    assert time.monotonic() - started > 0.15


def test_huge_body_is_streamed_in_full(server: FeedServer, http: httpx.Client) -> None:
    server.huge("/chunked", 5 * MB)
    server.huge("/sized", 3 * MB + 5, declare_length=True)
    server.huge("/bomb", 20 * MB, compressed=True)

    with http.stream("GET", "/chunked") as response:
        assert "content-length" not in response.headers
        assert sum(len(chunk) for chunk in response.iter_raw()) == 5 * MB

    with http.stream("GET", "/sized") as response:
        assert response.headers["content-length"] == str(3 * MB + 5)
        assert sum(len(chunk) for chunk in response.iter_raw()) == 3 * MB + 5

    with http.stream("GET", "/bomb") as response:
        wire = b"".join(response.iter_raw())
    assert len(wire) < MB // 10
    assert len(zlib.decompress(wire, 16 + zlib.MAX_WBITS)) == 20 * MB


def test_huge_body_with_stacked_codings(server: FeedServer, http: httpx.Client) -> None:
    server.huge("/gz-gz", 20 * MB, content_encoding="gzip, gzip")
    server.huge("/df-gz", 3 * MB, content_encoding="deflate, gzip")
    server.huge("/br", 1000, content_encoding="br")

    with http.stream("GET", "/gz-gz") as response:
        assert response.headers["content-encoding"] == "gzip, gzip"
        wire = b"".join(response.iter_raw())
    assert len(wire) < 10_000
    inner = zlib.decompress(wire, 16 + zlib.MAX_WBITS)
    assert len(zlib.decompress(inner, 16 + zlib.MAX_WBITS)) == 20 * MB

    with http.stream("GET", "/df-gz") as response:
        wire = b"".join(response.iter_raw())
    assert len(zlib.decompress(zlib.decompress(wire, 16 + zlib.MAX_WBITS))) == 3 * MB

    with http.stream("GET", "/br") as response:  # announced, not applied
        assert response.headers["content-encoding"] == "br"
        assert len(b"".join(response.iter_raw())) == 1000


def test_encode_body_applies_codings_in_order() -> None:
    wire = encode_body(FEED, "deflate, x-gzip, identity")
    assert zlib.decompress(gzip.decompress(wire)) == FEED
    assert encode_body(FEED, "") == encode_body(FEED, "br") == FEED


def test_client_hanging_up_on_a_huge_body_is_fine(server: FeedServer, http: httpx.Client) -> None:
    server.huge("/huge", 500 * MB)
    with http.stream("GET", "/huge") as response:
        next(response.iter_raw())
    server.serve("/f.xml", FEED)
    assert http.get("/f.xml").status_code == 200


def test_truncated_responses(server: FeedServer, http: httpx.Client) -> None:
    server.truncated("/conn", FEED, mode="connection")
    server.truncated("/chunk", FEED, mode="chunked", keep=10)
    server.truncated("/doc", FEED, mode="document", keep=20)

    with pytest.raises(httpx.RemoteProtocolError, match="expected"):
        http.get("/conn")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/chunk")
    response = http.get("/doc")
    assert response.status_code == 200 and response.content == FEED[:20]


def test_slow_and_trickle(server: FeedServer, http: httpx.Client) -> None:
    server.serve("/f.xml", FEED)
    server.slow("/f.xml", 0.3)
    started = time.monotonic()
    assert http.get("/f.xml").content == FEED
    assert 0.3 <= time.monotonic() - started < 2

    server.slow("/f.xml", 0.02, trickle_bytes=20)  # 5 pieces, 0.1 s in all
    with http.stream("GET", "/f.xml") as response:
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == FEED and len(pieces) > 1

    server.slow("/f.xml", 0)
    started = time.monotonic()
    http.get("/f.xml")
    assert time.monotonic() - started < 0.2


def test_gzip_only_for_clients_that_accept_it(server: FeedServer, http: httpx.Client) -> None:
    server.serve("/f.xml", FEED * 10, gzip=True)
    plain = http.get("/f.xml", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == FEED * 10

    with http.stream("GET", "/f.xml", headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(b"".join(response.iter_raw())) == FEED * 10

    refused = http.get("/f.xml", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_html_page_with_feed_links(server: FeedServer, http: httpx.Client) -> None:
    server.html("/", ["/world.xml", ("/a.atom", "application/atom+xml")], title="News & more")
    response = http.get("/")
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    assert (
        '<link rel="alternate" type="application/rss+xml" title="Feed" href="/world.xml">' in page
    )
    assert 'type="application/atom+xml" title="Feed" href="/a.atom"' in page
    assert "<title>News &amp; more</title>" in page


def test_serve_file_reads_the_file_each_time(
    server: FeedServer, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    server.serve_file("/feed.xml", path)

    first = http.get("/feed.xml")
    assert first.content == FEED
    assert first.headers["content-type"] == "application/rss+xml"
    assert first.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"

    path.write_bytes(FEED + b"<!-- v2 -->")
    second = http.get("/feed.xml", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.content.endswith(b"v2 -->")

    path.unlink()
    assert http.get("/feed.xml").status_code == 404


def test_concurrent_clients(server: FeedServer) -> None:
    server.serve("/f.xml", FEED)
    statuses: list[int] = []
    lock = threading.Lock()

    def poll() -> None:
        with httpx.Client(timeout=5) as client:
            for _ in range(10):
                status = client.get(server.url_for("/f.xml")).status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=poll) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 100
    assert len(server.requests("/f.xml")) == 100


def test_reachable_from_another_process(server: FeedServer) -> None:
    server.serve("/f.xml", FEED)
    code = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())"
    output = subprocess.run(
        [sys.executable, "-c", code, server.url_for("/f.xml")],
        capture_output=True,
        check=True,
        text=True,
        timeout=10,
    ).stdout
    assert output == FEED.decode()


def test_stop_is_prompt_with_requests_in_flight_and_idle_connections() -> None:
    baseline = threading.active_count()
    server = FeedServer().start()
    server.serve("/f.xml", FEED)
    server.slow("/before-headers.xml", 30)
    server.serve("/trickle.xml", FEED)
    server.slow("/trickle.xml", 30, trickle_bytes=1)
    outcomes: list[BaseException | int] = []

    def fetch(path: str) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                outcomes.append(client.get(server.url_for(path)).status_code)
        except httpx.HTTPError as exc:
            outcomes.append(exc)

    with httpx.Client(timeout=5) as idle:
        idle.get(server.url_for("/f.xml"))  # leaves a keep-alive connection open
        waiters = [
            threading.Thread(target=fetch, args=(path,))
            for path in ("/before-headers.xml", "/trickle.xml")
        ]
        for waiter in waiters:
            waiter.start()
        while not server.requests("/trickle.xml"):
            time.sleep(0.01)
        time.sleep(0.1)

        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
        for waiter in waiters:
            waiter.join(5)
            assert not waiter.is_alive()
    assert len(outcomes) == 2
    assert all(isinstance(outcome, httpx.HTTPError) for outcome in outcomes)
    server.stop()  # idempotent
    assert threading.active_count() == baseline, threading.enumerate()


def test_lifecycle_errors() -> None:
    server = FeedServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    with server:
        with pytest.raises(RuntimeError):
            server.start()
        with pytest.raises(ValueError):
            server.serve("f.xml", FEED)
