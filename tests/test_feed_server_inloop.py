"""The fake feed server on the test's own loop, under simulated time.

Every test here runs FeedServer with ``here(clock)`` (no thread) and fetches from it with
httpx on the same loop. Slow answers and trickles must cost simulated time, not real time:
each test checks the simulated time that passed and that the real time stayed far below.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import threading
import time
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.feed_server import FeedServer
from tests.simtime import SimClock

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
MB = 1024 * 1024
# Far above what any test here takes in real time, far below the simulated time it spends.
REAL_BOUND = 5.0


class Stopwatch:
    """Simulated and real time since it was made."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._sim = clock.monotonic()
        self._real = time.monotonic()

    @property
    def sim(self) -> float:
        return self._clock.monotonic() - self._sim

    @property
    def real(self) -> float:
        return time.monotonic() - self._real


@pytest.fixture
async def server(clock: SimClock) -> AsyncIterator[FeedServer]:
    async with FeedServer().here(clock) as feed_server:
        yield feed_server


@pytest.fixture
async def http(server: FeedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=None) as client:
        yield client


async def test_serves_on_the_loop_and_reads_the_given_clock(
    server: FeedServer, http: httpx.AsyncClient, clock: SimClock
) -> None:
    assert server.clock is clock
    assert not any(t.name.startswith("feed-server") for t in threading.enumerate())
    # Well away from the system's clocks, so that a time read from them would show.
    await clock.run_for(3600)
    clock.step(86_400)
    server.serve("/f.xml", FEED)
    first = await http.get("/f.xml")
    assert first.status_code == 200 and first.content == FEED
    stamp = email.utils.parsedate_to_datetime(first.headers["last-modified"]).timestamp()
    assert stamp == int(clock.time())
    date = email.utils.parsedate_to_datetime(first.headers["date"]).timestamp()
    assert abs(date - clock.time()) < 2
    [record] = server.requests()
    assert record.at == pytest.approx(clock.monotonic(), abs=0.01)

    # New content within the same second still gets a later Last-Modified.
    server.serve("/f.xml", FEED + b"\n")
    second = await http.get("/f.xml", headers={"If-Modified-Since": first.headers["last-modified"]})
    assert second.status_code == 200
    unchanged = await http.get("/f.xml", headers={"If-None-Match": second.headers["etag"]})
    assert unchanged.status_code == 304
    await clock.run_for(600)
    server.serve("/f.xml", FEED + b"\n\n")
    third = await http.get("/f.xml")
    stamp = email.utils.parsedate_to_datetime(third.headers["last-modified"]).timestamp()
    assert stamp == int(clock.time())


async def test_a_slow_answer_takes_simulated_time(
    server: FeedServer, http: httpx.AsyncClient, clock: SimClock
) -> None:
    server.serve("/f.xml", FEED)
    server.slow("/f.xml", 120)
    watch = Stopwatch(clock)
    response = await http.get("/f.xml")
    assert response.content == FEED
    assert watch.sim == pytest.approx(120, abs=0.5)
    [record] = server.requests()
    assert record.at == pytest.approx(clock.monotonic(), abs=0.5)

    server.slow("/f.xml", 0)
    watch = Stopwatch(clock)
    await http.get("/f.xml")
    assert watch.sim < 0.5
    assert watch.real < REAL_BOUND


async def test_a_10_mb_trickle_takes_simulated_time(
    server: FeedServer, http: httpx.AsyncClient, clock: SimClock
) -> None:
    body = bytes(range(256)) * (10 * MB // 256)
    server.serve("/big.xml", body)
    server.slow("/big.xml", 1.0, trickle_bytes=100_000)  # 105 pieces, a second apart
    watch = Stopwatch(clock)
    pieces = 0
    received = bytearray()
    async with http.stream("GET", "/big.xml") as response:
        assert response.headers["content-length"] == str(10 * MB)
        assert watch.sim < 0.5  # headers at once
        async for chunk in response.aiter_raw():
            received += chunk
            pieces += 1
    assert received == body and pieces >= 105
    assert watch.sim == pytest.approx(104, abs=1)  # the last piece goes out at 104 s

    # The server pauses after the last piece too before it reads the next request.
    await clock.run_for(1)
    server.huge("/huge.xml", 10 * MB)
    server.slow("/huge.xml", 0.5, trickle_bytes=MB)  # chunked: ten pieces, then the end
    watch = Stopwatch(clock)
    async with http.stream("GET", "/huge.xml") as response:
        assert sum([len(chunk) async for chunk in response.aiter_raw()]) == 10 * MB
    assert watch.sim == pytest.approx(5, abs=0.5)
    assert watch.real < REAL_BOUND


async def test_a_request_the_client_gave_up_on_is_logged_when_its_delay_ends(
    server: FeedServer, clock: SimClock
) -> None:
    server.serve("/f.xml", FEED)
    server.slow("/f.xml", 120)
    watch = Stopwatch(clock)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.get("/f.xml")
    assert watch.sim == pytest.approx(10, abs=0.5)
    assert server.requests() == []  # the answer is not decided yet
    await clock.run_for(120)
    [record] = server.requests()
    assert (record.path, record.status) == ("/f.xml", 200)
    assert record.at - (clock.monotonic() - watch.sim) == pytest.approx(120, abs=0.5)
    assert watch.real < REAL_BOUND


async def test_idle_connections_close_after_30_simulated_seconds(
    server: FeedServer, http: httpx.AsyncClient, clock: SimClock
) -> None:
    server.serve("/f.xml", FEED)
    await http.get("/f.xml")
    await clock.run_for(20)
    await http.get("/f.xml")
    await clock.run_for(40)
    await http.get("/f.xml")  # the server closed the idle connection; a new one
    ports = [r.client_port for r in server.requests()]
    assert ports[0] == ports[1] != ports[2]


async def test_faults_in_loop(
    server: FeedServer, http: httpx.AsyncClient, clock: SimClock
) -> None:
    server.serve("/f.xml", FEED * 10, gzip=True)
    async with http.stream("GET", "/f.xml", headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(b"".join([c async for c in response.aiter_raw()])) == FEED * 10

    server.status("/f.xml", 503, headers={"Retry-After": "60"})
    response = await http.get("/f.xml")
    assert response.status_code == 503 and response.headers["retry-after"] == "60"
    server.clear("/f.xml")
    server.require_auth("/f.xml", "reader", "secret")
    assert (await http.get("/f.xml")).status_code == 401
    assert (await http.get("/f.xml", auth=("reader", "secret"))).status_code == 200

    server.redirect("/old.xml", "/f.xml", 301)
    assert (await http.get("/old.xml")).headers["location"] == "/f.xml"
    server.truncated("/cut.xml", FEED)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get("/cut.xml")
    server.huge("/bomb.xml", 20 * MB, compressed=True)
    async with http.stream("GET", "/bomb.xml") as response:
        wire = b"".join([c async for c in response.aiter_raw()])
    assert len(zlib.decompress(wire, 16 + zlib.MAX_WBITS)) == 20 * MB
    assert [r.status for r in server.requests()] == [200, 503, 401, 200, 301, 200, 200]


async def test_stop_here_ends_requests_in_flight_and_the_server_restarts(
    server: FeedServer, clock: SimClock
) -> None:
    server.serve("/f.xml", FEED)
    server.slow("/f.xml", 600)
    watch = Stopwatch(clock)
    async with httpx.AsyncClient(base_url=server.url, timeout=None) as client:
        waiting = asyncio.create_task(client.get("/f.xml"))
        await clock.run_for(5)
        await server.stop_here()
        with pytest.raises(httpx.HTTPError):
            await waiting
    assert watch.sim == pytest.approx(5, abs=0.5)
    assert server.requests() == []  # stopped before its answer was decided
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    await server.stop_here()  # idempotent

    await server.start_here(clock)
    server.slow("/f.xml", 0)
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/f.xml")).content == FEED
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    with pytest.raises(RuntimeError, match="stop_here"):
        server.stop()
