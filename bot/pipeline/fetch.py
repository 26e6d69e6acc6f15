"""The fetch stage: download one feed over HTTP, politely and within hard bounds.

Everything that can go wrong on the network is turned into a `FetchError` with a short
``kind`` and a one-line, credential-free message, so the poller can record it as the feed's
health and back off (`backoff_seconds`) without ever seeing an httpx exception.

Bounds, because a poll runs inside a scheduled job that must not hang or balloon:

* conditional GET (``If-None-Match`` / ``If-Modified-Since``): an unchanged feed costs a 304;
* the body is streamed and abandoned as soon as it passes ``max_bytes`` — counted *after*
  content decoding, so a small gzip bomb is caught as early as a large plain body. Only
  gzip and deflate are decoded, in stacks of up to four ("gzip, gzip" is a bomb inside a
  bomb), each layer a bounded step at a time; other codings are refused;
* redirects (at most five) are followed without reading their bodies, except a small one
  that arrives at once and lets the connection be reused;
* the whole fetch (connect, redirects, headers, body) runs under one ``asyncio.timeout``: the
  per-operation timeouts of httpx reset on every received chunk, so a server trickling a few
  bytes a second would otherwise keep us forever.

Reach, because feed URLs, their redirects and the feeds their pages announce are chosen by
others: `make_client`'s connections go only to addresses its `AddressPolicy` allows —
by default public ones, never loopback, private or link-local — checked on the address
each socket is actually connected to.

`discover_feed_links` and `looks_like_html` help when a configured URL turns out to be a web
page rather than a feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.cookiejar
import ipaddress
import itertools
import math
import random
import re
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final, Literal, TypeGuard
from urllib.parse import unquote, urljoin, urlsplit

import anyio
import httpcore
import httpx
from httpcore import SOCKET_OPTION

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_USER_AGENT",
    "FEED_LINK_TYPES",
    "AddressPolicy",
    "FetchError",
    "FetchErrorKind",
    "FetchResult",
    "Resolver",
    "backoff_seconds",
    "discover_feed_links",
    "fetch_feed",
    "looks_like_html",
    "make_client",
    "redact_url",
]

DEFAULT_USER_AGENT: Final = "newsbot/0.1 (+feed alerts bot)"
DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024

FetchErrorKind = Literal[
    "invalid_url",  # not an absolute http(s) URL
    "connect",  # DNS, refused, TLS handshake …
    "timeout",  # connect/read timeout, or the total time budget
    "http",  # a status other than 2xx / 304
    "too_large",  # body (after decoding) over the size cap
    "redirects",  # too many redirects, or a redirect to a non-http(s) URL
    "protocol",  # broken response: truncated body, bad compression, reset mid-body
    "not_a_feed",  # for callers: a web page without any discoverable feed
    "forbidden_address",  # the host is (or resolves to) an address `AddressPolicy` refuses
]

# Feed formats first; */* last so a server with odd content negotiation still answers.
_ACCEPT: Final = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
# Only the codings `_BoundedDecoder` can decode with an output limit. httpx would also
# advertise br/zstd when those packages happen to be installed; a server sending them
# anyway is refused (see `_decoders`).
_ACCEPT_ENCODING: Final = "gzip, deflate"

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

_MAX_URL_IN_MESSAGE: Final = 200
_MAX_CODINGS: Final = 4
_REDIRECT_BODY_CAP: Final = 64 * 1024
_REDIRECT_DRAIN_SECONDS: Final = 1.0
_CONNECT_ATTEMPT_DELAY: Final = 0.25
_DECODE_STEP: Final = 64 * 1024
_HEADER_SAFE = re.compile(r"[\x20-\x7e\t]+")


class FetchError(Exception):
    """A feed could not be fetched. ``str(err)`` is a one-liner starting with ``"fetch: "``.

    ``kind`` is one of `FetchErrorKind`; ``status`` is the HTTP status for kind ``"http"``.

    ``retry_after`` is the server's ``Retry-After`` (sent with 429 and 503, seconds or an
    HTTP-date) as seconds from now, 0 to 24 h; None when it sent none. The poller must not
    poll the feed again sooner than that, whatever its own back-off says: the server asked,
    and servers that rate-limit block clients that do not listen.
    """

    kind: FetchErrorKind
    url: str | None
    status: int | None
    retry_after: float | None

    def __init__(
        self,
        kind: FetchErrorKind,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = " ".join(message.split())  # one line, whatever a server or OS put in it
        if not message.startswith("fetch: "):
            message = "fetch: " + message
        super().__init__(message)
        self.kind = kind
        self.url = url
        self.status = status
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True)
class FetchResult:
    """One successful fetch (2xx) or a "not modified" answer (304).

    ``url`` is the final URL after redirects, without any user:password part: the base for
    the feed's relative links (with credentials in it, every article link built on it would
    carry them to readers). ``store_url`` is the same URL to store and poll next time: it
    keeps the caller's user:password when it is on their origin (or its https upgrade).
    Neither is for messages or logs as is: show them through `redact_url`.
    ``body`` is the decoded body (empty on 304). ``headers`` has lower-case keys and
    describes that decoded body: ``content-encoding`` and ``content-length`` of the wire
    are dropped. On a 304 without validators of its own, ``etag``/``last_modified`` are
    the ones sent.
    """

    url: str
    status: int
    not_modified: bool
    body: bytes
    headers: dict[str, str]
    etag: str | None
    last_modified: str | None
    elapsed: float
    store_url: str


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


ALLOW_PRIVATE_HINT = "NEWSBOT_FEED_ALLOW_PRIVATE=1 allows feeds inside the network"


class _ForbiddenAddress(httpcore.ConnectError):
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
                raise _ForbiddenAddress(address_class)
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
    """httpx's own transport, on a connection pool that connects through `_GuardedBackend`."""

    def __init__(self, limits: httpx.Limits, backend: httpcore.AsyncNetworkBackend) -> None:
        # Not super().__init__(): all it does is build this pool, with no way to pass a
        # network backend to it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    total_timeout: float = 60,
) -> FetchResult:
    """GET a feed, conditionally when validators are given; raise `FetchError` on failure."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    if not total_timeout > 0:
        raise ValueError("total_timeout must be positive")
    target = _check_url(url)
    headers: dict[str, str] = {}
    if _sendable(etag):
        headers["If-None-Match"] = etag
    if _sendable(last_modified):
        headers["If-Modified-Since"] = last_modified
    started = time.perf_counter()  # a stopwatch for `elapsed`, not a clock anything waits on
    try:
        async with asyncio.timeout(total_timeout):
            return await _fetch(client, target, headers, etag, last_modified, max_bytes, started)
    except FetchError as exc:
        # Raised "from None", but still chained to the httpx exception it replaces, whose
        # request names the URL with its credentials. A traceback must not show that.
        exc.__context__ = None
        raise
    except TimeoutError:
        raise FetchError(
            "timeout",
            f"timed out after {_seconds(total_timeout)} s fetching {redact_url(target)}",
            url=redact_url(target),
        ) from None


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    started: float,
) -> FetchResult:
    shown = redact_url(url)
    involved = [url]  # every URL an error message might echo, for `_reason` to scrub
    try:
        request = client.build_request("GET", url, headers=headers)
        # Redirects are followed here, not by httpx: it reads every redirect body in full,
        # and those are bounded by nothing but the total timeout.
        for _ in range(client.max_redirects + 1):
            shown = redact_url(str(request.url))
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                next_request = response.next_request
                if next_request is None:
                    return await _read_response(
                        response, url, etag, last_modified, max_bytes, started
                    )
                involved += [response.headers.get("location", ""), str(next_request.url)]
                if next_request.url.scheme not in ("http", "https"):
                    raise FetchError(
                        "redirects", f"redirected to a non-http(s) URL from {shown}", url=shown
                    )
                await _drain_redirect(response)
            finally:
                await response.aclose()
            request = next_request
        raise FetchError(
            "redirects",
            f"too many redirects (over {client.max_redirects}) from {redact_url(url)}",
            url=redact_url(url),
        )
    except httpx.TimeoutException as exc:
        raise FetchError("timeout", _timeout_message(client, exc, shown), url=shown) from None
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, _ForbiddenAddress):
            raise FetchError(
                "forbidden_address",
                f"not fetching {shown}: its host {exc.__cause__} "
                f"({ALLOW_PRIVATE_HINT})",
                url=shown,
            ) from None
        raise FetchError(
            "connect", f"cannot connect to {shown}: {_reason(exc, involved)}", url=shown
        ) from None
    except httpx.RemoteProtocolError as exc:
        raise FetchError(
            "protocol", f"broken response from {shown}: {_reason(exc, involved)}", url=shown
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # ReadError (reset mid-body), LocalProtocolError, InvalidURL in a redirect, …: all
        # mean the server's answer could not be used.
        raise FetchError(
            "protocol", f"failed reading {shown}: {_reason(exc, involved)}", url=shown
        ) from None


async def _drain_redirect(response: httpx.Response) -> None:
    """Read a small redirect body so its connection can serve the next request.

    Anything larger or slower is left unread: closing the response drops the connection,
    which costs one new connection instead of a download.
    """
    declared = _content_length(response.headers)
    if declared is None or declared > _REDIRECT_BODY_CAP:
        return
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(_REDIRECT_DRAIN_SECONDS):
            async for _ in response.aiter_raw():
                pass


async def _read_response(
    response: httpx.Response,
    requested: str,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    started: float,
) -> FetchResult:
    final_url = _strip_userinfo(str(response.url))
    store_url = _store_url(requested, response.url)
    shown = redact_url(final_url)
    status = response.status_code
    new_etag = response.headers.get("etag") or None
    new_last_modified = response.headers.get("last-modified") or None
    headers = {
        key: value
        for key, value in response.headers.items()
        if key not in ("content-encoding", "content-length")
    }
    if status == 304:
        # RFC 9110 §15.4.5: a 304 need not repeat the validators; the old ones still hold.
        return FetchResult(
            url=final_url,
            status=status,
            not_modified=True,
            body=b"",
            headers=headers,
            etag=new_etag or etag,
            last_modified=new_last_modified or last_modified,
            elapsed=time.perf_counter() - started,
            store_url=store_url,
        )
    if not 200 <= status < 300:
        # The error body is never read: a 500 page can be as large as any feed.
        raise FetchError(
            "http",
            f"HTTP {status} from {shown}",
            url=shown,
            status=status,
            retry_after=_retry_after(response.headers.get("retry-after"), response.headers.get("date")),
        )
    declared = _content_length(response.headers)
    if declared is not None and declared > max_bytes:
        raise FetchError(
            "too_large",
            f"body larger than {max_bytes} bytes (Content-Length {declared}) from {shown}",
            url=shown,
        )
    body = await _read_body(response, max_bytes, shown)
    return FetchResult(
        url=final_url,
        status=status,
        not_modified=False,
        body=body,
        headers=headers,
        etag=new_etag,
        last_modified=new_last_modified,
        elapsed=time.perf_counter() - started,
        store_url=store_url,
    )


async def _read_body(response: httpx.Response, max_bytes: int, shown: str) -> bytes:
    chain = _DecoderChain(_decoders(response.headers.get("content-encoding", ""), shown))
    parts: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_raw():
            # Pieces come out lazily, one bounded step at a time, so the loop stops the
            # decoders as soon as the cap is passed.
            for chunk in chain.decode(raw):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(
                        "too_large", f"body larger than {max_bytes} bytes from {shown}", url=shown
                    )
                parts.append(chunk)
    except _CorruptBody as exc:
        raise FetchError("protocol", f"corrupt {exc.coding} body from {shown}", url=shown) from None
    cut = chain.incomplete()
    if cut is not None:
        raise FetchError("protocol", f"{cut} body ends early from {shown}", url=shown)
    return b"".join(parts)


def _decoders(content_encoding: str, shown: str) -> list[_BoundedDecoder]:
    """Decoders for a Content-Encoding value, the last-applied coding first.

    Only codings `_BoundedDecoder` can undo with an output limit are accepted: anything else
    (br, zstd, compress, unknown tokens) is refused rather than handed on still encoded, or
    to a decoder that inflates a whole chunk at once. A character set name (``utf-8``) is
    the one exception: servers put it there by mistake and the body is not encoded by it.
    """
    codings: list[str] = []
    for token in content_encoding.split(","):
        coding = token.strip().lower()
        if not coding or coding == "identity" or _is_charset(coding):
            continue
        if coding not in _BoundedDecoder.CODINGS:
            label = "".join(ch if ch.isprintable() else "?" for ch in coding[:40])
            raise FetchError(
                "protocol", f"unsupported content coding {label!r} from {shown}", url=shown
            )
        codings.append(coding)
    if len(codings) > _MAX_CODINGS:
        # Real servers stack two at most (a proxy gzipping a gzipped body); every layer
        # costs a zlib state and a buffered step.
        raise FetchError(
            "protocol", f"{len(codings)} content codings stacked in {shown}", url=shown
        )
    return [_BoundedDecoder(coding) for coding in reversed(codings)]


def _is_charset(label: str) -> bool:
    try:
        "".encode(label)  # bytes-to-bytes codecs (zlib, base64 …) are refused here too
    except (LookupError, ValueError):
        return False
    return True


class _CorruptBody(Exception):
    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


class _DecoderChain:
    """Stacked content codings undone one bounded step at a time.

    Each decoder holds at most one step of input (the network chunk, for the first) and
    produces at most one step per call; output is pulled from the innermost decoder that
    has any before the outer ones are asked for more, so however much a layer would
    expand, nothing is held beyond what the caller has taken plus a step per layer.
    """

    def __init__(self, decoders: list[_BoundedDecoder]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of one network chunk, produced only as they are taken."""
        if not self._decoders:
            if data:
                yield data
            return
        decoders = self._decoders
        last = len(decoders) - 1
        decoders[0].push(data)
        while True:
            for index in range(last, -1, -1):
                if not decoders[index].hungry:
                    break
            else:
                return  # every layer waits for the next network chunk
            decoder = decoders[index]
            try:
                piece = decoder.pull(_DECODE_STEP)
            except zlib.error:
                raise _CorruptBody(decoder.coding) from None
            if index == last:
                if piece:
                    yield piece
            elif piece:
                decoders[index + 1].push(piece)

    def incomplete(self) -> str | None:
        """The coding of the outermost layer cut short, or None when every layer ended."""
        for decoder in self._decoders:
            if not decoder.complete:
                return decoder.coding
        return None


class _BoundedDecoder:
    """gzip/deflate decoding that never produces more than it is asked for.

    httpx's own decoders inflate a whole network chunk at once: 64 KiB of a gzip bomb
    becomes ~64 MB in memory before any size check could run. zlib's ``max_length``
    stops inflation at the limit instead; the input not yet used waits in ``_pending``.
    """

    CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate"})

    def __init__(self, coding: str) -> None:
        self.coding = "gzip" if coding == "x-gzip" else coding
        # 32 + MAX_WBITS accepts a gzip or a zlib header; "deflate" is zlib-wrapped per
        # RFC 9110 §8.4.1.2, but some servers send raw deflate (handled on the first error).
        self._inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._pending = b""
        self._full = False  # the last pull stopped at its limit: zlib may hold more output
        self._fed = False
        self._members = 0
        self._trailing = False

    @property
    def hungry(self) -> bool:
        """True when nothing more can come out before more input is pushed."""
        return not self._full and (not self._pending or self._undecided())

    @property
    def complete(self) -> bool:
        """False when the input so far stops inside a compressed stream (a cut body)."""
        return not self._pending and (not self._fed or self._inflater.eof or self._trailing)

    def push(self, data: bytes) -> None:
        """Add input; only called when `hungry`, so at most one step is ever pending."""
        if not self._trailing:
            self._pending += data

    def pull(self, room: int) -> bytes:
        """Inflate pending input, stopping once ``room`` bytes have been produced."""
        if self._undecided():
            return b""
        out = bytearray()
        data, self._pending = self._pending, b""
        flush, self._full = self._full, False
        while len(out) < room and not self._trailing and (data or flush):
            flush = False
            if self._inflater.eof:
                if self.coding != "gzip":
                    self._trailing = True  # bytes after a zlib stream carry no content
                    break
                # RFC 1952 §2.2: a gzip file is a series of members.
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out += self._inflater.decompress(data, room - len(out))
            except zlib.error:
                if self.coding == "deflate" and not self._fed:
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._fed = True
                    continue
                if self._members:
                    self._trailing = True  # padding after a member: ignored, as gzip(1) does
                    break
                raise
            self._fed = True
            if self._inflater.eof:
                self._members += 1
                data = self._inflater.unused_data
            else:
                data = self._inflater.unconsumed_tail
        self._pending = b"" if self._trailing else data
        self._full = len(out) >= room and not self._trailing and not self._inflater.eof
        return bytes(out)

    def _undecided(self) -> bool:
        # A zlib header is two bytes: with fewer, an error could not yet tell raw deflate.
        return self.coding == "deflate" and not self._fed and len(self._pending) < 2


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


def backoff_seconds(
    error_count: int,
    base: float,
    cap: float = 6 * 3600,
    *,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before polling a failing feed again: ``base`` after the first error, doubling
    with each further one, never above ``cap``.

    ``jitter`` (e.g. 0.1) spreads the delay by up to ±that fraction so feeds that failed
    together do not retry in lock-step; 0 (the default) is exact.
    """
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    if error_count <= 0:
        return 0.0
    try:
        delay = min(cap, math.ldexp(base, error_count - 1))
    except OverflowError:  # a feed that has failed thousands of times
        delay = cap
    if jitter:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    return min(cap, delay)


def _check_url(url: str) -> str:
    url = url.strip()
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError("invalid_url", f"invalid URL {shown!r}", url=shown) from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(
            "invalid_url", f"only http and https URLs can be fetched, not {shown!r}", url=shown
        )
    if not parsed.host:
        raise FetchError("invalid_url", f"URL without a host: {shown!r}", url=shown)
    return url


def _sendable(validator: str | None) -> TypeGuard[str]:
    # A validator stored from an odd server (UTF-8 ETag, stray CR/LF) would make every later
    # request fail in the HTTP layer; an unconditional GET is the safe fallback.
    return validator is not None and _HEADER_SAFE.fullmatch(validator) is not None


def redact_url(url: str) -> str:
    """The URL as it may appear in messages and logs.

    No user:password, ``***`` for the value of any query or fragment parameter whose name
    looks secret (token, key, api_key, secret, password, auth, sig, signature, session,
    credential, jwt … in any case, also inside names like ``accessToken`` or
    ``X-Amz-Signature``) and for a Telegram bot token in the path; non-printable characters
    as ``?``; at most 200 characters. Works on URLs too broken to parse.
    """
    shown = _USERINFO.sub(r"\1", url, count=1)
    shown = _BOT_TOKEN.sub(r"\1***", shown)
    shown = _PARAMETER.sub(_redact_parameter, shown)
    shown = "".join(ch if ch.isprintable() else "?" for ch in shown)
    if len(shown) > _MAX_URL_IN_MESSAGE:
        shown = shown[: _MAX_URL_IN_MESSAGE - 1] + "…"
    return shown


_USERINFO: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/*)[^/?#]*@")
_BOT_TOKEN: Final = re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+")
_PARAMETER: Final = re.compile(r"([?&;#])([^=&;#]*)=([^&;#]*)")
# A parameter is secret when one of the words of its name is one of these (names are split
# at punctuation and camelCase), or when the whole name, run together, ends in a compound.
_SECRET_WORDS: Final = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "jwt",
        "key",
        "pass",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "session",
        "sessionid",
        "sid",
        "sig",
        "signature",
        "token",
    }
)
_SECRET_ENDINGS: Final = ("apikey", "password", "passwd", "secret", "signature", "token")


def _redact_parameter(match: re.Match[str]) -> str:
    separator, name, value = match.groups()
    if not value or not _secret_name(unquote(name)):
        return match.group(0)
    return f"{separator}{name}=***"


def _secret_name(name: str) -> bool:
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    compact = "".join(words)
    return any(word in _SECRET_WORDS for word in words) or compact.endswith(_SECRET_ENDINGS)


def _strip_userinfo(url: str) -> str:
    return _USERINFO.sub(r"\1", url, count=1)


def _store_url(requested: str, final: httpx.URL) -> str:
    """``final`` with the user:password of ``requested`` where they may go, else without.

    That is the origin they were given for, and its upgrade from http to https on the
    default ports — the one other place httpx sends them (RFC 9110 §11.6.1's "protection
    space" is the origin; a server redirecting from http to https on the same host keeps
    it). Userinfo a server put in a redirect is never kept.
    """
    plain = _strip_userinfo(str(final))
    match = _USERINFO.match(requested)
    if match is None:
        return plain
    userinfo = match.group(0)[len(match.group(1)) : -1]
    start = httpx.URL(requested)
    same_origin = (start.scheme, start.host, start.port) == (final.scheme, final.host, final.port)
    upgrade = (
        (start.scheme, final.scheme) == ("http", "https")
        and start.host == final.host
        and start.port is None
        and final.port is None
    )
    if not (same_origin or upgrade):
        return plain
    scheme, sep, rest = plain.partition("://")
    return f"{scheme}{sep}{userinfo}@{rest}"


def _carry_credentials(from_url: str, to_url: str) -> str:
    """``to_url`` (e.g. a feed a page names) with ``from_url``'s user:password where they
    may go, as for a redirect; unchanged if it does not parse (fetching it will say why)."""
    try:
        return _store_url(from_url, httpx.URL(to_url))
    except (httpx.InvalidURL, ValueError, TypeError):
        return to_url


def _secrets(url: str) -> set[str]:
    """What must not appear in a message about ``url``: its password and secret values."""
    found: set[str] = set()
    match = _USERINFO.match(url)
    if match is not None:
        userinfo = match.group(0)[len(match.group(1)) : -1]
        user, _, password = userinfo.partition(":")
        found.update({user, unquote(user), password, unquote(password)})
    for param in _PARAMETER.finditer(url):
        _, name, value = param.groups()
        if value and _secret_name(unquote(name)):
            found.update({value, unquote(value)})
    for token in _BOT_TOKEN.finditer(url):
        found.add(url[token.end(1) : token.end()])
    return {secret for secret in found if secret}


def _reason(exc: BaseException, urls: Iterable[str]) -> str:
    """A short reason from an exception, scrubbed of anything secret in the URLs involved."""
    text = str(exc) or type(exc).__name__
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted(set().union(*map(_secrets, urls)), key=len, reverse=True):
        text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", "***", text)
    return text[:200]


_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _timeout_message(client: httpx.AsyncClient, exc: httpx.TimeoutException, shown: str) -> str:
    timeout = client.timeout
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out after {_seconds(timeout.connect)} s connecting to {shown}"
    if isinstance(exc, httpx.WriteTimeout):
        return f"timed out after {_seconds(timeout.write)} s sending to {shown}"
    if isinstance(exc, httpx.PoolTimeout):
        return f"timed out after {_seconds(timeout.pool)} s waiting for a connection to {shown}"
    return f"timed out after {_seconds(timeout.read)} s waiting for {shown}"


def _seconds(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    # Repeated identical values are allowed (RFC 9110 §8.6); httpx joins them with ", ".
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        return None
    (single,) = values
    return int(single) if single.isdigit() else None


def _retry_after(value: str | None, date: str | None) -> float | None:
    """``Retry-After`` as seconds from now, within [0, a day]; None if absent or unreadable.

    RFC 9110 §10.2.3 allows delay-seconds or an HTTP-date. An HTTP-date is read against the
    response's own ``Date`` (the server's clock, so the two clocks need not agree; without a
    Date it cannot be read). A negative delay or a date in the past means "now"; more than a
    day is taken as a day, so a typo or a hostile server cannot silence a feed for years.
    """
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        when, sent = _http_date(value), _http_date(date)
        if when is None or sent is None:
            return None
        seconds = when - sent
    return min(_MAX_RETRY_AFTER, max(0.0, seconds))


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return None if when.tzinfo is None else when.timestamp()


_DELAY_SECONDS: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_RETRY_AFTER: Final = 24 * 3600.0
