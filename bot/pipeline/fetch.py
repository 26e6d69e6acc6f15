"""The fetch stage: download one feed over HTTP, politely and within hard bounds.

Everything that can go wrong on the network is turned into a `FetchError` with a short
``kind`` and a one-line, credential-free message, so the poller can record it as the feed's
health and back off without ever seeing an httpx exception.

Bounds, because a poll must not hang or balloon:

* conditional GET (``If-None-Match`` / ``If-Modified-Since``): an unchanged feed costs a 304;
* the body is streamed and abandoned as soon as it passes ``max_bytes`` — counted *after*
  content decoding (bot.pipeline.decode), so a small gzip bomb is caught as early as a
  large plain body;
* redirects (at most five) are followed without reading their bodies, except a small one
  that arrives at once and lets the connection be reused;
* the whole fetch (connect, redirects, headers, body) runs under one ``asyncio.timeout``: the
  per-operation timeouts of httpx reset on every received chunk, so a server trickling a few
  bytes a second would otherwise keep us forever.

Where the client may connect is bot.pipeline.transport's business; how URLs are shown,
bot.pipeline.urls'.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeGuard

import httpx

from bot.pipeline.decode import CodingRefused, CorruptBody, DecoderChain, decoders
from bot.pipeline.transport import ALLOW_PRIVATE_HINT, ForbiddenAddress
from bot.pipeline.urls import redact_url, scrub, store_url, strip_userinfo

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FetchError",
    "FetchErrorKind",
    "FetchResult",
    "fetch_feed",
]

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

_REDIRECT_BODY_CAP: Final = 64 * 1024
_REDIRECT_DRAIN_SECONDS: Final = 1.0
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
    # The server's Retry-After on a success or 304, as seconds (0 to a day); None without one.
    retry_after: float | None = None


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    total_timeout: float = 60,
    safe_params: Collection[str] = (),
) -> FetchResult:
    """GET a feed, conditionally when validators are given; raise `FetchError` on failure.

    ``safe_params``: query parameters whose values error messages may show
    (NEWSBOT_URL_SAFE_PARAMS; see `redact_url`).
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    if not total_timeout > 0:
        raise ValueError("total_timeout must be positive")
    target = _check_url(url, safe_params)
    headers: dict[str, str] = {}
    if _sendable(etag):
        headers["If-None-Match"] = etag
    if _sendable(last_modified):
        headers["If-Modified-Since"] = last_modified
    job = _Job(
        target, etag, last_modified, max_bytes, frozenset(safe_params),
        started=time.perf_counter(),  # a stopwatch for `elapsed`, not a clock anything waits on
    )
    try:
        async with asyncio.timeout(total_timeout):
            return await _fetch(client, job, headers)
    except FetchError as exc:
        # Raised "from None", but still chained to the httpx exception it replaces, whose
        # request names the URL with its credentials. A traceback must not show that.
        exc.__context__ = None
        raise
    except TimeoutError:
        raise FetchError(
            "timeout",
            f"timed out after {_seconds(total_timeout)} s fetching {job.show(target)}",
            url=job.show(target),
        ) from None


@dataclass(frozen=True)
class _Job:
    """One fetch: what was asked for, and how its URLs may be shown."""

    url: str
    etag: str | None
    last_modified: str | None
    max_bytes: int
    safe: frozenset[str]
    started: float

    def show(self, url: str) -> str:
        return redact_url(url, self.safe)


async def _fetch(client: httpx.AsyncClient, job: _Job, headers: dict[str, str]) -> FetchResult:
    url = job.url
    shown = job.show(url)
    involved = [url]  # every URL an error message might echo, for `scrub`
    try:
        request = client.build_request("GET", url, headers=headers)
        # Redirects are followed here, not by httpx: it reads every redirect body in full,
        # and those are bounded by nothing but the total timeout.
        for _ in range(client.max_redirects + 1):
            shown = job.show(str(request.url))
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                next_request = response.next_request
                if next_request is None:
                    return await _read_response(response, job)
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
            f"too many redirects (over {client.max_redirects}) from {job.show(url)}",
            url=job.show(url),
        )
    except httpx.TimeoutException as exc:
        raise FetchError("timeout", _timeout_message(client, exc, shown), url=shown) from None
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, ForbiddenAddress):
            raise FetchError(
                "forbidden_address",
                f"not fetching {shown}: its host {exc.__cause__} "
                f"({ALLOW_PRIVATE_HINT})",
                url=shown,
            ) from None
        raise FetchError(
            "connect", f"cannot connect to {shown}: {_reason(exc, involved, job)}", url=shown
        ) from None
    except httpx.RemoteProtocolError as exc:
        raise FetchError(
            "protocol", f"broken response from {shown}: {_reason(exc, involved, job)}", url=shown
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # ReadError (reset mid-body), LocalProtocolError, InvalidURL in a redirect, …: all
        # mean the server's answer could not be used.
        raise FetchError(
            "protocol", f"failed reading {shown}: {_reason(exc, involved, job)}", url=shown
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


def _reason(exc: BaseException, urls: list[str], job: _Job) -> str:
    """A short reason from an exception, scrubbed of anything secret in the URLs involved."""
    return scrub(str(exc) or type(exc).__name__, urls, job.safe)


async def _read_response(response: httpx.Response, job: _Job) -> FetchResult:
    final_url = strip_userinfo(str(response.url))
    stored = store_url(job.url, response.url)
    shown = job.show(final_url)
    max_bytes = job.max_bytes
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
            etag=new_etag or job.etag,
            last_modified=new_last_modified or job.last_modified,
            elapsed=time.perf_counter() - job.started,
            store_url=stored,
            retry_after=_retry_after(response.headers.get("retry-after"), response.headers.get("date")),
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
        elapsed=time.perf_counter() - job.started,
        store_url=stored,
        retry_after=_retry_after(response.headers.get("retry-after"), response.headers.get("date")),
    )


async def _read_body(response: httpx.Response, max_bytes: int, shown: str) -> bytes:
    try:
        chain = DecoderChain(decoders(response.headers.get("content-encoding", "")))
    except CodingRefused as exc:
        raise FetchError("protocol", f"{exc} from {shown}", url=shown) from None
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
    except CorruptBody as exc:
        raise FetchError("protocol", f"corrupt {exc.coding} body from {shown}", url=shown) from None
    cut = chain.incomplete()
    if cut is not None:
        raise FetchError("protocol", f"{cut} body ends early from {shown}", url=shown)
    return b"".join(parts)


def _check_url(url: str, safe: Collection[str]) -> str:
    url = url.strip()
    shown = redact_url(url, safe)
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
