"""Feeds must not reach inside the network: `AddressPolicy`, checked where connections open.

Two loopback servers play the parts: ``site``, a feed site the test policy allows (its
port only, as if it were a public host), and ``internal``, something inside the network
(the bot's /metrics, a local Bot API server …) that no feed may reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio
import httpcore
import httpx
import pytest

from bot.pipeline.discover import find_feed
from bot.pipeline.fetch import FetchError, fetch_feed
from bot.pipeline.transport import AddressPolicy, _GuardedBackend, make_client
from tests.fakes.feed_server import FeedServer
from tests.simtime import SimClock

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>\n'


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
def internal() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        feed_server.serve("/metrics", b"newsbot_feeds_total 12\n", "text/plain")
        feed_server.serve("/feed.xml", RSS)
        yield feed_server


@pytest.fixture
async def client(site: FeedServer) -> AsyncIterator[httpx.AsyncClient]:
    """The production rule, plus an exception for the site's port on 127.0.0.1 only."""
    policy = AddressPolicy.allowing(("127.0.0.1", site.port))
    async with make_client(connect_timeout=2, read_timeout=2, address_policy=policy) as http:
        yield http


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def refused(client: httpx.AsyncClient, url: str, **kwargs: Any) -> FetchError:
    with pytest.raises(FetchError) as info:
        await fetch_feed(client, url, **kwargs)
    assert info.value.kind == "forbidden_address", str(info.value)
    return info.value


# -- the default client --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address_class"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("LOCALHOST", "loopback"),
        ("127.1", "loopback"),  # inet_aton forms, resolved by the system
        ("2130706433", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("10.255.255.1", "private"),
        ("192.168.0.1", "private"),
        ("[fd00::1]", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
    ],
)
async def test_default_client_refuses_addresses_inside_the_network(
    internal: FeedServer, host: str, address_class: str
) -> None:
    async with make_client(connect_timeout=1, read_timeout=1) as client:
        error = await refused(client, f"http://{host}:{internal.port}/metrics")
    article = "an" if address_class[0] in "aeiou" else "a"
    assert str(error) == (
        f"fetch: not fetching http://{host.lower()}:{internal.port}/metrics: "
        f"its host resolves to {article} {address_class} address "
        "(NEWSBOT_FEED_ALLOW_PRIVATE=1 allows feeds inside the network)"
    )
    assert internal.requests() == []


async def test_refusal_does_not_tell_whether_anything_listens(internal: FeedServer) -> None:
    closed = closed_port()
    async with make_client(connect_timeout=1, read_timeout=1) as client:
        listening = await refused(client, f"http://127.0.0.1:{internal.port}/metrics")
        nothing = await refused(client, f"http://127.0.0.1:{closed}/metrics")
    assert str(listening).replace(str(internal.port), "PORT") == str(nothing).replace(
        str(closed), "PORT"
    )
    assert internal.requests() == []


def test_make_client_takes_one_rule() -> None:
    with pytest.raises(ValueError):
        make_client(allow_private=True, address_policy=AddressPolicy())


async def test_allow_private_allows_everything(internal: FeedServer) -> None:
    async with make_client(allow_private=True) as client:
        result = await fetch_feed(client, f"http://localhost:{internal.port}/feed.xml")
    assert result.body == RSS


async def test_the_guarded_client_keeps_httpx_limits(sim_feeds: FeedServer) -> None:
    """The guard replaces the pool httpx builds with one of the same limits: with one
    connection allowed, two fetches at once take turns on it (and the refusals above show
    the guard is in place). Should httpx build its transport differently, this and they fail,
    and make_client says so at start."""
    site = sim_feeds
    site.serve("/feed.xml", RSS)
    site.slow("/feed.xml", 0.2)
    policy = AddressPolicy.allowing(("127.0.0.1", site.port))
    async with make_client(connect_timeout=2, read_timeout=2, address_policy=policy, max_connections=1) as client:
        results = await asyncio.gather(*(fetch_feed(client, site.url_for("/feed.xml")) for _ in range(2)))
    assert [r.body for r in results] == [RSS, RSS]
    assert len({r.client_port for r in site.requests("/feed.xml")}) == 1


# -- redirects and discovery ---------------------------------------------------------------


async def test_allowed_site_serves_and_redirects_within_itself(
    site: FeedServer, client: httpx.AsyncClient
) -> None:
    site.serve("/feed.xml", RSS)
    site.redirect("/old.xml", "/feed.xml")
    assert (await fetch_feed(client, site.url_for("/old.xml"))).body == RSS


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/metrics",
        "http://localhost:{port}/metrics",
        "http://[::1]:{port}/metrics",
        "http://127.0.0.2:{site}/feed.xml",  # the site's port, but not its address
        "http://10.0.0.1/feed.xml",
    ],
)
async def test_redirect_into_the_network_is_refused(
    site: FeedServer, internal: FeedServer, client: httpx.AsyncClient, target: str
) -> None:
    location = target.format(port=internal.port, site=site.port)
    site.redirect("/feed.xml", location)
    error = await refused(client, site.url_for("/feed.xml"))
    assert str(error).startswith(f"fetch: not fetching {location}: its host resolves to a ")
    assert internal.requests() == []


async def test_redirect_chain_through_the_site_is_still_checked(
    site: FeedServer, internal: FeedServer, client: httpx.AsyncClient
) -> None:
    site.redirect("/a", "/b")
    site.redirect("/b", f"http://127.0.0.1:{internal.port}/metrics", code=307)
    await refused(client, site.url_for("/a"))
    assert [r.path for r in site.requests()] == ["/a", "/b"]
    assert internal.requests() == []


async def test_discovered_feed_inside_the_network_is_refused(
    site: FeedServer, internal: FeedServer, client: httpx.AsyncClient
) -> None:
    site.html("/", [internal.url_for("/feed.xml")])
    with pytest.raises(FetchError) as info:
        await find_feed(client, site.url + "/")
    assert info.value.kind == "forbidden_address"
    assert internal.requests() == []

    site.serve("/feed.xml", RSS)
    site.html("/", ["/feed.xml"])
    assert (await find_feed(client, site.url + "/")).body == RSS


# -- names, resolution and the address connected to ----------------------------------------


class Resolver:
    """A name lookup for tests: fixed answers per name, every call logged."""

    def __init__(self, answers: dict[str, list[Sequence[str]]]) -> None:
        self._answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        answers = self._answers.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers.pop(0) if len(answers) > 1 else answers[0]


async def test_a_name_is_connected_to_the_address_that_was_checked(site: FeedServer) -> None:
    site.serve("/feed.xml", RSS)
    resolver = Resolver({"feeds.test": [["127.0.0.1"]]})
    policy = AddressPolicy.allowing(("127.0.0.1", site.port))
    async with make_client(address_policy=policy, resolver=resolver) as client:
        result = await fetch_feed(client, f"http://feeds.test:{site.port}/feed.xml")
    assert result.body == RSS
    assert result.url == f"http://feeds.test:{site.port}/feed.xml"
    assert site.requests()[0].header("host") == f"feeds.test:{site.port}"
    assert resolver.calls == ["feeds.test"]


async def test_a_name_with_any_forbidden_address_is_refused(site: FeedServer) -> None:
    site.serve("/feed.xml", RSS)
    resolver = Resolver({"mixed.test": [["127.0.0.1", "10.1.2.3"]]})
    policy = AddressPolicy.allowing(("127.0.0.1", site.port))
    async with make_client(address_policy=policy, resolver=resolver) as client:
        error = await refused(client, f"http://mixed.test:{site.port}/feed.xml")
    assert "resolves to a private address" in str(error)
    assert site.requests() == []


async def test_every_connection_is_checked_on_its_own_lookup(site: FeedServer) -> None:
    # DNS rebinding: the name first points at the allowed address, then inside. The second
    # answer is what a connection would use, so it is the one checked.
    site.serve("/feed.xml", RSS)
    resolver = Resolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    policy = AddressPolicy.allowing(("127.0.0.1", site.port))
    url = f"http://rebind.test:{site.port}/feed.xml"
    async with make_client(address_policy=policy, resolver=resolver) as client:
        assert (await fetch_feed(client, url)).body == RSS
    async with make_client(address_policy=policy, resolver=resolver) as client:
        await refused(client, url)
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert len(site.requests()) == 1


async def test_unknown_name_is_a_connect_error() -> None:
    resolver = Resolver({})
    async with make_client(resolver=resolver) as client:
        with pytest.raises(FetchError) as info:
            await fetch_feed(client, "http://nowhere.test/feed.xml")
    assert info.value.kind == "connect"
    assert str(info.value).startswith("fetch: cannot connect to http://nowhere.test/feed.xml: ")


class FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, log: list[tuple[str, str | None]]) -> None:
        self._log = log

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        self._log.append(("start_tls", server_hostname))
        raise httpcore.ConnectError("no TLS here")

    async def aclose(self) -> None:
        pass


class FakeNetwork(httpcore.AsyncNetworkBackend):
    """Connections that succeed (or hang, or fail) by address, without a socket."""

    def __init__(self, hang: Sequence[str] = (), fail: Sequence[str] = ()) -> None:
        self.log: list[tuple[str, str | None]] = []
        self._hang = set(hang)
        self._fail = set(fail)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.log.append(("connect_tcp", host))
        if host in self._hang:
            await anyio.sleep_forever()
        if host in self._fail:
            raise httpcore.ConnectError(f"[Errno 111] Connection refused ({host})")
        return FakeStream(self.log)


async def test_tls_names_the_host_while_the_socket_goes_to_the_checked_address() -> None:
    network = FakeNetwork()
    resolver = Resolver({"feeds.test": [["127.0.0.1"]]})
    backend = _GuardedBackend(AddressPolicy.allowing("127.0.0.0/8"), resolver, network)
    async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        with pytest.raises(httpcore.ConnectError):
            await pool.request("GET", "https://feeds.test:8443/feed.xml")
    assert network.log == [("connect_tcp", "127.0.0.1"), ("start_tls", "feeds.test")]


async def test_a_silent_address_does_not_hold_up_the_next(clock: SimClock) -> None:
    # RFC 8305: the next address is tried 250 ms after the last, not after its timeout.
    network = FakeNetwork(hang=["2001:db8::1"])
    resolver = Resolver({"dual.test": [["2001:db8::1", "192.0.2.1"]]})
    backend = _GuardedBackend(AddressPolicy(allow_private=True), resolver, network)
    started = clock.monotonic()
    stream = await backend.connect_tcp("dual.test", 443, timeout=10)
    assert isinstance(stream, FakeStream)
    assert 0.2 < clock.monotonic() - started < 2
    assert network.log == [("connect_tcp", "2001:db8::1"), ("connect_tcp", "192.0.2.1")]


async def test_every_address_failing_is_a_connect_error(clock: SimClock) -> None:
    network = FakeNetwork(fail=["192.0.2.1", "192.0.2.2"])
    resolver = Resolver({"down.test": [["192.0.2.1", "192.0.2.2"]]})
    backend = _GuardedBackend(AddressPolicy(allow_private=True), resolver, network)
    with pytest.raises(httpcore.ConnectError, match="Connection refused"):
        await backend.connect_tcp("down.test", 80, timeout=10)
    network = FakeNetwork(hang=["192.0.2.1", "192.0.2.2"])
    backend = _GuardedBackend(AddressPolicy(allow_private=True), resolver, network)
    with pytest.raises(httpcore.ConnectTimeout):
        await backend.connect_tcp("down.test", 80, timeout=0.3)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_unix_socket("/run/docker.sock")


async def test_total_timeout_cancels_a_hanging_connect(clock: SimClock) -> None:
    network = FakeNetwork(hang=["192.0.2.1", "192.0.2.2"])
    resolver = Resolver({"slow.test": [["192.0.2.1", "192.0.2.2"]]})
    backend = _GuardedBackend(AddressPolicy(allow_private=True), resolver, network)
    started = clock.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await backend.connect_tcp("slow.test", 80, timeout=None)
    assert clock.monotonic() - started == pytest.approx(0.5)


# -- the policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("::ffff:93.184.215.14", None),
        ("127.0.0.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("64:ff9b::7f00:1", "a loopback address"),  # NAT64
        ("2002:7f00:1::1", "a loopback address"),  # 6to4
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("fc00::1", "a private address"),
        ("fec0::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("100.127.255.254", "a carrier-grade NAT address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("255.255.255.255", "a reserved address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.1", "a reserved address"),
        ("198.18.0.1", "a reserved address"),
        ("0.1.2.3", "a reserved address"),
        ("2001:db8::1", "a reserved address"),
        ("::7f00:1", "a reserved address"),
    ],
)
def test_default_policy(address: str, expected: str | None) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address), 443) == expected


def test_policy_exceptions() -> None:
    policy = AddressPolicy.allowing(("127.0.0.1", 8080), "10.1.0.0/16")
    loopback, private = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")
    assert policy.refusal(loopback, 8080) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1"), 8080) is None
    assert policy.refusal(loopback, 8081) == "a loopback address"
    assert policy.refusal(ipaddress.ip_address("127.0.0.2"), 8080) == "a loopback address"
    assert policy.refusal(private, 5432) is None
    assert policy.refusal(ipaddress.ip_address("10.2.0.1"), 80) == "a private address"
    assert AddressPolicy(allow_private=True).refusal(loopback, 1) is None
