"""Where the fetcher may connect: `AddressPolicy`, and the one HTTP client that enforces it.

Feed URLs, their redirects and the feeds their pages announce are chosen by others:
`make_client`'s connections go only to addresses its `AddressPolicy` allows — by default
public ones, never loopback, private or link-local — checked on the address each socket is
actually connected to (`_GuardedBackend`, httpcore's network backend interface).
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import itertools
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import anyio
import httpcore
import httpx
from httpcore import SOCKET_OPTION

__all__ = [
    "ALLOW_PRIVATE_HINT",
    "DEFAULT_USER_AGENT",
    "AddressPolicy",
    "ForbiddenAddress",
    "Resolver",
    "make_client",
]

DEFAULT_USER_AGENT: Final = "newsbot/0.1 (+feed alerts bot)"
ALLOW_PRIVATE_HINT: Final = "NEWSBOT_FEED_ALLOW_PRIVATE=1 allows feeds inside the network"

# Feed formats first; */* last so a server with odd content negotiation still answers.
_ACCEPT: Final = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
# Only the codings bot.pipeline.decode can undo with an output limit. httpx would also
# advertise br/zstd when those packages happen to be installed; a server sending them
# anyway is refused (see `decode.decoders`).
_ACCEPT_ENCODING: Final = "gzip, deflate"

_CONNECT_ATTEMPT_DELAY: Final = 0.25


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``, as strings: the name lookup `make_client` can be given."""

_SHARED_ADDRESS_SPACE: Final = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_RFC1918: Final = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL: Final = ipaddress.IPv6Network("fc00::/7")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the fetcher may connect to.

    A feed URL comes from whoever adds a feed, and redirects and ``<link>`` discovery come
    from the feed's server: without a rule, any of them can make the bot request its own
    metrics, a database's HTTP port or a cloud metadata service. By default only public
    unicast addresses are allowed: loopback, private (RFC 1918, fc00::/7), link-local,
    carrier-grade NAT (100.64/10), multicast, unspecified and reserved ones are refused,
    also when written as IPv4-mapped, NAT64 or 6to4 IPv6.

    ``allow_private`` allows everything (feeds hosted inside the network); ``exceptions``
    allow single networks, each on one port or (None) on all.
    """

    allow_private: bool = False
    exceptions: tuple[tuple[IPNetwork, int | None], ...] = ()

    @classmethod
    def allowing(cls, *endpoints: str | tuple[str, int | None]) -> AddressPolicy:
        """The default policy plus ``"10.1.2.0/24"`` (any port) or ``("127.0.0.1", 8080)``."""
        exceptions = []
        for endpoint in endpoints:
            network, port = (endpoint, None) if isinstance(endpoint, str) else endpoint
            exceptions.append((ipaddress.ip_network(network), port))
        return cls(exceptions=tuple(exceptions))

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """None when ``address:port`` may be connected to, else what kind of address it is."""
        if self.allow_private:
            return None
        address = _unwrap(address)
        for network, allowed_port in self.exceptions:
            if address in _unwrap_network(network) and allowed_port in (None, port):
                return None
        return _address_class(address)


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _unwrap_network(network: IPNetwork) -> IPNetwork:
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = _unwrap(network.network_address)
        if isinstance(mapped, ipaddress.IPv4Address):
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def _address_class(address: IPAddress) -> str | None:
    """None for a public unicast address, else its class as a message would name it."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if address in _SHARED_ADDRESS_SPACE:
            return "a carrier-grade NAT address"
        if any(address in network for network in _RFC1918):
            return "a private address"
    elif address in _UNIQUE_LOCAL or address.is_site_local:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def make_client(
    *,
    user_agent: str = DEFAULT_USER_AGENT,
    connect_timeout: float = 10,
    read_timeout: float = 20,
    max_connections: int = 20,
    allow_private: bool = False,
    address_policy: AddressPolicy | None = None,
    resolver: Resolver | None = None,
) -> httpx.AsyncClient:
    """The one HTTP client the bot shares for all feeds; close it with ``aclose()``.

    Every connection it opens is checked against ``address_policy`` (default: public
    addresses only, see `AddressPolicy`; ``allow_private=True`` is the policy allowing
    everything). ``resolver`` replaces the system's name lookup, whose answers are checked
    just the same. Proxies from the environment (HTTP_PROXY …) are not used: through a
    proxy, the address a feed's name stands for could not be checked.
    """
    if address_policy is not None and allow_private:
        raise ValueError("give either allow_private or address_policy, not both")
    policy = address_policy or AddressPolicy(allow_private=allow_private)
    limits = httpx.Limits(
        max_connections=max_connections,
        # Sections of one site share a host: keep their connections alive between polls.
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        headers={
            "User-Agent": user_agent,
            "Accept": _ACCEPT,
            "Accept-Encoding": _ACCEPT_ENCODING,
        },
        # No pool timeout: waiting for a free connection is the scheduler's concurrency, not
        # the feed's fault, and `fetch_feed`'s total timeout bounds it anyway.
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None
        ),
        transport=_GuardedTransport(limits, _GuardedBackend(policy, resolver)),
        # Feeds have no business setting cookies on one shared client: a hostile feed could
        # add some at every poll, and they would go to every other feed of its domain.
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        # `fetch_feed` follows redirects itself, up to this many, never reading their bodies.
        follow_redirects=False,
        max_redirects=5,
    )



class ForbiddenAddress(httpcore.ConnectError):
    """A connection the `AddressPolicy` refused; httpx hands it on as a ConnectError's cause."""

    def __init__(self, address_class: str) -> None:
        super().__init__(f"resolves to {address_class}")
        self.address_class = address_class


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows, and only to the ones it checked.

    The name is resolved here, every address it resolves to is checked, and the socket is
    connected to a checked address — not to the name, which a second lookup (DNS
    rebinding) could point elsewhere. The check comes before any connection attempt, so a
    refused host looks the same whether something listens there or not. TLS still
    verifies, and the Host header still names, the host of the URL: httpcore takes both
    from the request, not from the address connected to.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver or _system_resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._checked_addresses(host, port)
                return await self._connect_any(addresses, port, local_address, socket_options)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}") from None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("feeds are fetched over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                answers = await self._resolve(host, port)
                addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in answers))
            except (OSError, UnicodeError, ValueError) as exc:  # no such name, no DNS …
                raise httpcore.ConnectError(str(exc) or "name not resolved") from None
        if not addresses:
            raise httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            # One forbidden answer refuses the name: a public name has no business resolving
            # into the network, and the outcome must not depend on which address is tried.
            address_class = self._policy.refusal(address, port)
            if address_class is not None:
                raise ForbiddenAddress(address_class)
        return addresses

    async def _connect_any(
        self,
        addresses: list[IPAddress],
        port: int,
        local_address: str | None,
        socket_options: Iterable[SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        """The first connection that succeeds, attempts started 250 ms apart (RFC 8305)."""
        options = list(socket_options or ())
        if len(addresses) == 1:
            return await self._inner.connect_tcp(
                str(addresses[0]), port, local_address=local_address, socket_options=options
            )
        winner: httpcore.AsyncNetworkStream | None = None
        errors: list[Exception] = []

        async def attempt(address: IPAddress, failed: anyio.Event) -> None:
            nonlocal winner
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, local_address=local_address, socket_options=options
                )
            except Exception as exc:  # any failure only means: try the next address
                errors.append(exc)
                failed.set()
                return
            if winner is None:
                winner = stream
                group.cancel_scope.cancel()
            else:
                with anyio.CancelScope(shield=True):  # a second success: not left open
                    await stream.aclose()

        async with anyio.create_task_group() as group:
            for address in _interleave(addresses):
                failed = anyio.Event()
                group.start_soon(attempt, address, failed)
                with anyio.move_on_after(_CONNECT_ATTEMPT_DELAY):
                    await failed.wait()
        if winner is not None:
            return winner
        last = errors[-1]
        if isinstance(last, httpcore.ConnectError | httpcore.ConnectTimeout):
            raise last
        raise httpcore.ConnectError(str(last) or type(last).__name__) from None


async def _system_resolve(host: str, port: int) -> list[str]:
    answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in answers]


def _interleave(addresses: list[IPAddress]) -> list[IPAddress]:
    """Alternate address families, the resolver's first family first (RFC 8305 §4)."""
    first = [a for a in addresses if a.version == addresses[0].version]
    other = [a for a in addresses if a.version != addresses[0].version]
    return [a for pair in itertools.zip_longest(first, other) for a in pair if a is not None]


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request and response mapping, its exceptions), on a
    connection pool that connects through `_GuardedBackend`.

    httpx offers no argument for a network backend, httpcore's pool does (its documented
    ``network_backend``). So the base class is built as usual and its pool replaced by an
    equal one with the backend. Should a new httpx keep its pool elsewhere, the check below
    stops the bot at start instead of leaving feeds unguarded
    (tests/test_fetch_network.py builds the client and fetches through it).
    """

    def __init__(self, limits: httpx.Limits, backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError(
                f"httpx {httpx.__version__} builds its transport differently: the feed "
                "client's address guard cannot be installed"
            )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
