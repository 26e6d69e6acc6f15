"""A fake feed server: real HTTP/1.1 on 127.0.0.1, on asyncio.

It serves feeds with ETag / Last-Modified and answers conditional requests with 304, and
misbehaves on demand, path by path: slow, trickling, failing, huge, truncated, redirecting,
an HTML page instead of a feed. Every request is logged (method, path, headers, status) so a
test can assert e.g. that the second poll was answered with a 304.

It runs in one of two modes, with the same API:

* In a background thread, on an event loop of its own (``start()``/``stop()``,
  ``with FeedServer() as server``), reading the system's clocks. It works from sync and
  async tests alike and from a bot running in a subprocess::

    with FeedServer() as server:
        server.serve("/news.xml", rss_bytes)
        server.slow("/news.xml", 2.0)          # answers after 2 s
        server.status("/world.xml", 503, headers={"Retry-After": "120"})
        ...
        assert [r.status for r in server.requests("/news.xml")] == [200, 304]

* On the test's own event loop, without a thread (``await server.start_here(clock)``/
  ``await server.stop_here()``, or ``async with FeedServer().here(clock) as server``),
  for tests on simulated time (tests/simtime.py): delays and trickles are timers on that
  loop, so a two-minute ``slow`` costs two simulated minutes and no real time, and the
  server reads ``clock`` (see `FeedServer.start_here`). A server in another thread cannot
  be used with simulated time: the loop does not see its work and jumps past it.

A path answers with its *content* (`serve`, `serve_file`, `html`) unless a *fault* is set
(`status`, `redirect`, `huge`, `truncated`); `clear(path)` removes the fault and any delay,
and the content comes back. `slow` adds a delay on top of either. Unknown paths get 404.

A request is logged when its answer starts (the status line and headers go out), at the
server's monotonic time then (`RequestRecord.at`). A client that gives up during a `slow`
delay is therefore still logged, when the delay ends, with the status it would have got;
only stopping the server drops a request unlogged. Methods other than GET and HEAD get 501
and malformed requests 400, unlogged, as from http.server. Idle keep-alive connections are
closed after 30 s (simulated seconds on a simulated loop), and so is a connection whose
client stops reading an answer for that long.

Run ``python -m tests.fakes.feed_server FILE…`` to serve files by hand (at ``/<name>``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import gzip as gzip_module
import hashlib
import html as html_module
import mimetypes
import platform
import socket
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from tests.fakes.clocks import LoopTime, SystemTime, TimeSource

__all__ = ["FeedServer", "RequestRecord", "TruncateMode", "encode_body"]

TruncateMode = Literal["connection", "document", "chunked"]

_CHUNK = 64 * 1024
_JUNK = (b"<!-- junk -->" * (_CHUNK // 13 + 1))[:_CHUNK]
_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
# Idle keep-alive connections end after this long, and so does a client that stops reading.
_IDLE_TIMEOUT = 30.0
_SERVER = f"FakeFeedServer/1.0 Python/{platform.python_version()}"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it, and the status it answered with."""

    method: str
    path: str  # without the query string
    target: str  # the request target as sent, query included
    headers: dict[str, str]  # lower-case names
    status: int
    response_headers: dict[str, str]  # lower-case names
    at: float  # the server's monotonic clock when the answer was decided
    client_port: int = 0  # the same for requests that shared a connection

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _Route:
    # content
    body: bytes | None = None
    file_path: Path | None = None
    content_type: str = "application/rss+xml"
    etag: bool = True
    last_modified: float | None = None  # epoch seconds; None: no Last-Modified
    gzip: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None  # (user, password) required, for faults too
    # fault
    fault: Literal["status", "redirect", "huge", "truncated"] | None = None
    fault_status: int = 500
    fault_body: bytes = b""
    fault_headers: dict[str, str] = field(default_factory=dict)
    location: str = ""
    size: int = 0
    declare_length: bool = False
    content_encoding: str = ""  # "" : identity
    truncate_mode: TruncateMode = "connection"
    keep: int = 0
    # modifier
    delay: float = 0.0
    trickle_bytes: int | None = None


class FeedServer:
    """A loopback HTTP server for feeds; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._log: list[RequestRecord] = []
        # What the server reads the time from: the system's clocks in its own thread, the
        # clock given to start_here (or the loop's timer) on a test's loop.
        self._clock: TimeSource = SystemTime()
        self._bound_port: int | None = None  # while serving
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._here: asyncio.AbstractEventLoop | None = None  # the test's loop, in-loop
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FeedServer:
        """Serve from an event loop of its own in a background thread, on the system's
        clocks: for sync tests, other loops and bots in subprocesses."""
        if self._bound_port is not None:
            raise RuntimeError("FeedServer already started")
        sock = self._bind()
        self._clock = SystemTime()
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []
        thread = threading.Thread(
            target=self._run,
            args=(loop, sock, ready, failed),
            name=f"feed-server-{self._bound_port}",
            daemon=True,
        )
        self._loop, self._thread = loop, thread
        thread.start()
        if not ready.wait(10) or failed:
            self._loop = self._thread = None
            self._bound_port = None
            sock.close()
            raise RuntimeError("FeedServer did not start") from (failed[0] if failed else None)
        return self

    def stop(self) -> None:
        """Stop serving, end every open connection and join the thread. Idempotent."""
        if self._here is not None:
            raise RuntimeError("FeedServer serves on an event loop: await stop_here()")
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None
        self._bound_port = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def start_here(self, clock: TimeSource | None = None) -> FeedServer:
        """Serve on the running event loop, without a thread.

        For tests on simulated time (tests/simtime.py): ``slow`` delays and trickles are
        timers on this loop, and the server reads ``clock`` (normally the test's
        SimClock): its ``monotonic()`` for `RequestRecord.at`, its ``time()`` for
        Last-Modified stamps of `serve` and the Date header. Without a clock, monotonic
        time is the loop's timer and wall time the system's. Clients must not block this
        loop (a synchronous HTTP client here would wait for a server that cannot run).
        """
        if self._bound_port is not None:
            raise RuntimeError("FeedServer already started")
        loop = asyncio.get_running_loop()
        sock = self._bind()
        try:
            self._server = await asyncio.start_server(self._connection, sock=sock)
        except BaseException:
            self._bound_port = None
            sock.close()
            raise
        self._clock = clock if clock is not None else LoopTime(loop)
        self._loop = self._here = loop
        return self

    async def stop_here(self) -> None:
        """Stop what start_here started, ending every open connection. Idempotent."""
        loop = self._here
        if loop is None:
            return
        if asyncio.get_running_loop() is not loop:
            raise RuntimeError("stop_here() must run on the loop the server serves on")
        try:
            await self._shutdown()
        finally:
            self._loop = self._here = None
            self._bound_port = None

    @contextlib.asynccontextmanager
    async def here(self, clock: TimeSource | None = None) -> AsyncIterator[FeedServer]:
        """``async with FeedServer().here(clock) as server``: start_here, then stop_here."""
        await self.start_here(clock)
        try:
            yield self
        finally:
            await self.stop_here()

    @property
    def clock(self) -> TimeSource:
        """What the server reads the time from (see `start_here`)."""
        return self._clock

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("FeedServer not started")
        return self._bound_port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + _check_path(path)

    # -- content -------------------------------------------------------------------------

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/rss+xml",
        *,
        etag: bool = True,
        last_modified: bool | float = True,
        gzip: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Serve ``body`` at ``path``.

        The ETag is a hash of the body, so new content means a new ETag. Last-Modified is
        "now" when the content changes — and always later than the previous one for this
        path, even within the same second, so If-Modified-Since sees the change.
        ``last_modified`` may also be an explicit epoch time; False sends none.
        With ``gzip=True`` the body is gzip-encoded for clients that accept it.
        """
        path = _check_path(path)
        with self._lock:
            old = self._routes.get(path)
            if last_modified is True:
                previous = old.last_modified if old is not None else None
                if old is not None and old.body == body and previous is not None:
                    stamp: float | None = previous
                else:
                    stamp = float(int(self._clock.time()))
                    if previous is not None and stamp <= previous:
                        stamp = previous + 1
            elif last_modified is False:
                stamp = None
            else:
                stamp = float(int(last_modified))
            self._set_content(
                path,
                body=bytes(body),
                file_path=None,
                content_type=content_type,
                etag=etag,
                last_modified=stamp,
                gzip=gzip,
                headers=dict(headers or {}),
            )

    def serve_file(
        self,
        path: str,
        file_path: str | Path,
        content_type: str | None = None,
        *,
        etag: bool = True,
        last_modified: bool = True,
        gzip: bool = False,
    ) -> None:
        """Serve a file, read on every request (so edits show), Last-Modified from its mtime."""
        file_path = Path(file_path)
        if content_type is None:
            guessed = mimetypes.guess_type(file_path.name)[0]
            content_type = (
                "application/rss+xml"
                if guessed in (None, "application/xml", "text/xml")
                else guessed
            )
        with self._lock:
            self._set_content(
                _check_path(path),
                body=None,
                file_path=file_path,
                content_type=content_type,
                etag=etag,
                last_modified=0.0 if last_modified else None,
                gzip=gzip,
                headers={},
            )

    def html(
        self,
        path: str,
        feed_links: Sequence[str | tuple[str, str]] = (),
        *,
        title: str = "Front page",
    ) -> None:
        """Serve a web page instead of a feed, announcing ``feed_links`` in its head.

        A link is an href (announced as ``application/rss+xml``) or ``(href, type)``.
        """
        tags = []
        for link in feed_links:
            href, kind = (link, "application/rss+xml") if isinstance(link, str) else link
            tags.append(
                f'    <link rel="alternate" type="{html_module.escape(kind)}" '
                f'title="Feed" href="{html_module.escape(href)}">\n'
            )
        page = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n'
            '    <meta charset="utf-8">\n'
            f"    <title>{html_module.escape(title)}</title>\n"
            f"{''.join(tags)}"
            '    <link rel="stylesheet" href="/style.css">\n'
            "</head>\n<body>\n"
            f"<h1>{html_module.escape(title)}</h1>\n<p>Not a feed.</p>\n"
            "</body>\n</html>\n"
        )
        self.serve(path, page.encode("utf-8"), "text/html; charset=utf-8")

    def require_auth(self, path: str, user: str, password: str) -> None:
        """Answer 401 unless the request carries HTTP Basic credentials ``user:password``.

        Stays in force across `serve`, faults and `clear`; `remove` ends it.
        """
        path = _check_path(path)
        with self._lock:
            route = self._routes.setdefault(path, _Route())
            route.auth = (user, password)

    def remove(self, path: str) -> None:
        """Forget a path entirely: it answers 404 again."""
        with self._lock:
            self._routes.pop(_check_path(path), None)

    # -- faults --------------------------------------------------------------------------

    def status(
        self,
        path: str,
        code: int,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer ``code`` (e.g. 500, or 503 with ``headers={"Retry-After": "60"}``)."""
        self._set_fault(
            path,
            fault="status",
            fault_status=code,
            fault_body=f"error {code}\n".encode() if body is None else body,
            fault_headers=dict(headers or {}),
        )

    def redirect(
        self,
        path: str,
        to: str,
        code: int = 302,
        *,
        body_size: int = 0,
        declare_length: bool = True,
    ) -> None:
        """Redirect to ``to`` (a path on this server, or any URL).

        ``body_size`` sends that much junk after the headers, generated as in `huge`
        (with a Content-Length, or chunked when ``declare_length=False``); `slow` with
        ``trickle_bytes`` makes it trickle.
        """
        self._set_fault(
            path,
            fault="redirect",
            fault_status=code,
            location=to,
            size=body_size,
            declare_length=declare_length,
        )

    def huge(
        self,
        path: str,
        size_bytes: int,
        *,
        declare_length: bool = False,
        compressed: bool = False,
        content_encoding: str | None = None,
    ) -> None:
        """Stream ``size_bytes`` of junk, generated on the fly (never held in memory).

        Chunked by default; ``declare_length=True`` sends a Content-Length instead.
        ``compressed=True`` sends a gzip stream that *inflates* to ``size_bytes`` (a few
        hundred bytes on the wire per megabyte: a gzip bomb), chunked.
        ``content_encoding`` (e.g. ``"gzip, gzip"``) stacks codings the same way, in the
        order listed (RFC 9110 §8.4: the first one was applied first). gzip, x-gzip and
        deflate are applied; any other token (br, zstd …) is only announced, the bytes
        under it left as they are. A stack whose outer layers compress the inner ones
        sends nearly nothing until the whole size has been generated (~2 s per GB).
        """
        if content_encoding is None:
            content_encoding = "gzip" if compressed else ""
        self._set_fault(
            path,
            fault="huge",
            fault_status=200,
            size=size_bytes,
            declare_length=declare_length and not _codings(content_encoding),
            content_encoding=content_encoding,
        )

    def truncated(
        self,
        path: str,
        body: bytes,
        *,
        mode: TruncateMode = "connection",
        keep: int | None = None,
    ) -> None:
        """Send only the first ``keep`` bytes of ``body`` (default: half).

        ``"connection"``: Content-Length says the full size, then the connection closes.
        ``"chunked"``: chunked encoding, closed before the last chunk.
        ``"document"``: a well-formed HTTP answer whose document (e.g. XML) is cut.
        """
        self._set_fault(
            path,
            fault="truncated",
            fault_status=200,
            fault_body=bytes(body),
            truncate_mode=mode,
            keep=len(body) // 2 if keep is None else keep,
        )

    def slow(self, path: str, delay: float, *, trickle_bytes: int | None = None) -> None:
        """Delay the answer by ``delay`` seconds (0 removes the delay).

        With ``trickle_bytes``, headers go out at once and the body follows
        ``trickle_bytes`` at a time, ``delay`` seconds apart: every read succeeds
        quickly but the whole body takes forever.
        """
        path = _check_path(path)
        with self._lock:
            route = self._routes.setdefault(path, _Route())
            route.delay = delay
            route.trickle_bytes = trickle_bytes

    def clear(self, path: str | None = None) -> None:
        """Remove faults and delays (of one path, or of all): content is served again."""
        with self._lock:
            targets = self._routes if path is None else {path: self._routes.get(path)}
            for key, route in list(targets.items()):
                if route is None:
                    continue
                cleared = _Route(
                    body=route.body,
                    file_path=route.file_path,
                    content_type=route.content_type,
                    etag=route.etag,
                    last_modified=route.last_modified,
                    gzip=route.gzip,
                    headers=route.headers,
                    auth=route.auth,
                )
                self._routes[key] = cleared

    # -- request log ---------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        """Requests seen so far, oldest first (of one path, or all)."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # -- internals -----------------------------------------------------------------------

    def _set_content(self, path: str, **content: Any) -> None:
        route = self._routes.get(path) or _Route()
        self._routes[path] = replace(route, **content)

    def _set_fault(self, path: str, **fault: Any) -> None:
        path = _check_path(path)
        with self._lock:
            route = self._routes.get(path) or _Route()
            reset: dict[str, Any] = {
                "fault_body": b"",
                "fault_headers": {},
                "location": "",
                "size": 0,
                "declare_length": False,
                "content_encoding": "",
            }
            self._routes[path] = replace(route, **{**reset, **fault})

    def _route(self, path: str) -> _Route | None:
        with self._lock:
            route = self._routes.get(path)
            return None if route is None else replace(route)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    # -- serving -------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        # socketserver's default listen backlog is 5: a burst of new connections overflows
        # it and the kernel drops SYNs, which clients retry only after a second.
        sock = socket.create_server((self._host, self._port), backlog=128)
        self._bound_port = int(sock.getsockname()[1])
        return sock

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        ready: threading.Event,
        failed: list[BaseException],
    ) -> None:
        """The background thread of `start`: the server's own loop."""
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._connection, sock=sock)
                )
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def _shutdown(self) -> None:
        """End every connection (requests in progress with them) and close the server."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        current = asyncio.current_task()
        tasks = [task for task in self._connections if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Let the transports run connection_lost() so their sockets are really closed.
        for _ in range(3):
            await asyncio.sleep(0)
        if server is not None:
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: its requests, answered in turn (keep-alive)."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        client_port = int(peer[1]) if isinstance(peer, tuple) else 0
        try:
            while True:
                try:
                    async with asyncio.timeout(_IDLE_TIMEOUT):
                        request = await _read_request(reader)
                except (TimeoutError, *_CONNECTION_ERRORS, asyncio.IncompleteReadError):
                    return
                if request is None:
                    return
                if isinstance(request, _BadRequest):
                    await _Exchange.refuse(writer, request, self._clock)
                    return
                exchange = _Exchange(self, writer, request, client_port)
                await exchange.answer()
                if exchange.close_connection:
                    return
        except (*_CONNECTION_ERRORS, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # The server is stopping. End normally: asyncio's stream server (3.11) calls
            # task.exception() on its handler, which raises for a cancelled task.
            return
        finally:
            self._writers.discard(writer)
            self._connections.discard(task)
            writer.close()


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names


@dataclass(frozen=True)
class _BadRequest:
    status: int
    reason: str


async def _read_request(reader: asyncio.StreamReader) -> _Request | _BadRequest | None:
    """The next request on a connection (its body read and dropped); None at its end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            return _BadRequest(400, "incomplete request")
        return None
    except asyncio.LimitOverrunError:
        return _BadRequest(431, "request header fields too large")
    lines = head.decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # stray blank lines before a request are allowed
        lines.pop(0)
    words = lines[0].split() if lines else []
    if len(words) != 3 or not words[2].startswith("HTTP/1."):
        return _BadRequest(400, "bad request line")
    method, target, version = words
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return _BadRequest(400, "bad header line")
        headers[name.strip().lower()] = value.strip()
    if method not in ("GET", "HEAD"):
        return _BadRequest(501, f"unsupported method ({method!r})")
    length = headers.get("content-length")
    if length and length.isdigit():
        await reader.readexactly(int(length))
    return _Request(method, target, version, headers)


class _Exchange:
    """One request and its answer, written on the connection's stream."""

    def __init__(
        self, owner: FeedServer, writer: asyncio.StreamWriter, request: _Request, client_port: int
    ) -> None:
        self._owner = owner
        self._writer = writer
        self._request = request
        self._client_port = client_port
        self._head_only = request.method == "HEAD"
        self._path = urlsplit(request.target).path or "/"
        self._pending = b""  # the status line and headers, sent with the first body bytes
        connection = request.headers.get("connection", "").lower()
        if request.version == "HTTP/1.0":
            self.close_connection = "keep-alive" not in connection
        else:
            self.close_connection = "close" in connection

    @staticmethod
    async def refuse(writer: asyncio.StreamWriter, bad: _BadRequest, clock: TimeSource) -> None:
        """Answer a request that cannot be served (not logged) and close the connection."""
        body = f"error {bad.status}: {bad.reason}\n".encode()
        head = _head(
            bad.status,
            {
                "Content-Type": "text/plain; charset=utf-8",
                "Content-Length": str(len(body)),
                "Connection": "close",
            },
            clock,
        )
        with contextlib.suppress(*_CONNECTION_ERRORS):
            writer.write(head + body)
            await writer.drain()

    # -- dispatch ------------------------------------------------------------------------

    async def answer(self) -> None:
        route = self._owner._route(self._path)
        headers = self._request.headers
        try:
            if route is None:
                await self._simple(404, b"not found\n", {})
                return
            if route.delay and route.trickle_bytes is None:
                await asyncio.sleep(route.delay)
            if route.auth is not None and not _authorized(headers, route.auth):
                challenge = {"WWW-Authenticate": 'Basic realm="feeds", charset="UTF-8"'}
                await self._simple(401, b"credentials required\n", challenge)
            elif route.fault == "status":
                await self._simple(route.fault_status, route.fault_body, route.fault_headers, route)
            elif route.fault == "redirect" and route.size:
                await self._huge(route, route.fault_status, {"Location": route.location})
            elif route.fault == "redirect":
                await self._simple(route.fault_status, b"", {"Location": route.location})
            elif route.fault == "huge":
                await self._huge(route)
            elif route.fault == "truncated":
                await self._truncated(route)
            else:
                await self._content(route)
            await self._flush()
        except _CONNECTION_ERRORS:
            self.close_connection = True

    async def _content(self, route: _Route) -> None:
        body = route.body
        last_modified = route.last_modified
        if route.file_path is not None:
            try:
                body = route.file_path.read_bytes()
                mtime = route.file_path.stat().st_mtime
            except OSError:
                await self._simple(404, b"file not found\n", {})
                return
            if last_modified is not None:
                last_modified = float(int(mtime))
        if body is None:  # only faults/delays were ever set for this path
            await self._simple(404, b"not found\n", {})
            return
        headers = dict(route.headers)
        etag = None
        if route.etag:
            etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
            headers["ETag"] = etag
        if last_modified is not None:
            headers["Last-Modified"] = email.utils.formatdate(last_modified, usegmt=True)
        if _not_modified(self._request.headers, etag, last_modified):
            await self._send(304, headers, b"")
            return
        headers["Content-Type"] = route.content_type
        if route.gzip:
            headers["Vary"] = "Accept-Encoding"
            if _accepts_gzip(self._request.headers.get("accept-encoding", "")):
                body = gzip_module.compress(body, mtime=0)
                headers["Content-Encoding"] = "gzip"
        await self._send(200, headers, body, route)

    async def _simple(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        route: _Route | None = None,
    ) -> None:
        headers = {"Content-Type": "text/plain; charset=utf-8", **headers}
        await self._send(status, headers, body, route)

    async def _huge(
        self, route: _Route, status: int = 200, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        headers = {"Content-Type": "application/rss+xml", **(extra_headers or {})}
        if route.content_encoding:
            headers["Content-Encoding"] = route.content_encoding
        if route.declare_length:
            headers["Content-Length"] = str(route.size)
        else:
            headers["Transfer-Encoding"] = "chunked"
        await self._start(status, headers)
        if self._head_only:
            return
        chunked = not route.declare_length
        encoder = _Encoder(route.content_encoding)
        if encoder.stages:
            # Compressed junk may take long to produce a byte: the headers go out at once.
            await self._flush()
        trickle = route.delay > 0 and route.trickle_bytes is not None
        step = route.trickle_bytes if route.delay and route.trickle_bytes else _CHUNK
        sent = 0
        ended = not chunked
        while sent < route.size:
            piece = _junk(min(step, route.size - sent))
            sent += len(piece)
            last = sent >= route.size
            data = encoder.encode(piece, final=last)
            if chunked and data:
                data = b"%x\r\n%b\r\n" % (len(data), data)
            if last and not ended and not trickle:
                data += b"0\r\n\r\n"  # the end goes out with the last piece
                ended = True
            if data:
                await self._write_raw(data)
            elif not trickle:
                await asyncio.sleep(0)  # compressing into nothing: let other clients run
            if trickle:
                await asyncio.sleep(route.delay)
        if not ended:
            await self._write_raw(b"0\r\n\r\n")

    async def _truncated(self, route: _Route) -> None:
        full = route.fault_body
        kept = full[: max(0, min(route.keep, len(full)))]
        headers = {"Content-Type": "application/rss+xml"}
        if route.truncate_mode == "document":
            headers["Content-Length"] = str(len(kept))
            await self._send(200, headers, kept, route)
            return
        if route.truncate_mode == "connection":
            headers["Content-Length"] = str(len(full))
        else:
            headers["Transfer-Encoding"] = "chunked"
        self.close_connection = True
        await self._start(200, headers)
        if not self._head_only and kept:
            await self._write(kept, route.truncate_mode == "chunked")
        # Closing the connection now: the client sees EOF before the promised end.

    # -- writing -------------------------------------------------------------------------

    async def _send(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        route: _Route | None = None,
    ) -> None:
        headers = dict(headers)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            headers["Content-Length"] = str(len(body))
        await self._start(status, headers)
        if self._head_only or no_body or not body:
            return
        if route is not None and route.delay and route.trickle_bytes:
            for offset in range(0, len(body), route.trickle_bytes):
                await self._write_raw(body[offset : offset + route.trickle_bytes])
                await asyncio.sleep(route.delay)
        else:
            await self._write_raw(body)

    async def _start(self, status: int, headers: Mapping[str, str]) -> None:
        """Log the request; the status line and headers go out with the body's first bytes."""
        owner = self._owner
        owner._record(
            RequestRecord(
                method=self._request.method,
                path=self._path,
                target=self._request.target,
                headers=self._request.headers,
                status=status,
                response_headers={k.lower(): v for k, v in headers.items()},
                at=owner._clock.monotonic(),
                client_port=self._client_port,
            )
        )
        headers = dict(headers)
        if self.close_connection:
            headers["Connection"] = "close"
        self._pending = _head(status, headers, owner._clock)

    async def _write(self, data: bytes, chunked: bool) -> None:
        if chunked:
            await self._write_raw(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            await self._write_raw(data)

    async def _flush(self) -> None:
        if self._pending:
            await self._write_raw(b"")

    async def _write_raw(self, data: bytes) -> None:
        # The headers wait for the first bytes of the body, so that an answer leaves in as
        # few sends as it can: the kernel may hold a small send back for a moment while an
        # earlier one is under way (Linux's autocorking), and a loop on simulated time
        # that looks in between sees nothing to read and jumps to its next timer.
        data, self._pending = self._pending + data, b""
        writer = self._writer
        if writer.is_closing():
            raise ConnectionResetError("the client has gone")
        writer.write(data)
        # A client that stops reading (and does not hang up) holds the answer this long.
        async with asyncio.timeout(_IDLE_TIMEOUT):
            await writer.drain()


def _head(status: int, headers: Mapping[str, str], clock: TimeSource) -> bytes:
    """Status line and headers, with the Server and Date that http.server sends first."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Server: {_SERVER}",
        f"Date: {email.utils.formatdate(clock.time(), usegmt=True)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _junk(size: int) -> bytes:
    """``size`` bytes of junk (an XML comment, repeated)."""
    if size <= _CHUNK:
        return _JUNK[:size]
    return (_JUNK * (size // _CHUNK + 1))[:size]


def encode_body(body: bytes, content_encoding: str) -> bytes:
    """``body`` with the codings of a Content-Encoding value applied, first listed first.

    gzip, x-gzip and deflate (zlib-wrapped) are applied; other tokens are left out, as
    in `FeedServer.huge`.
    """
    return _Encoder(content_encoding).encode(body, final=True)


class _Encoder:
    """Streams bytes through the codings of a Content-Encoding value, innermost first."""

    def __init__(self, content_encoding: str) -> None:
        # Under other layers, the innermost one (which sees every byte: a gigabyte for a
        # bomb) is compressed at level 1, in a third of level 9's time; the layer above
        # squeezes what level 1 left, so the wire stays as small.
        codings = _codings(content_encoding)
        self.stages = [
            zlib.compressobj(1 if i == 0 and len(codings) > 1 else 9, zlib.DEFLATED,
                             (16 if coding != "deflate" else 0) + zlib.MAX_WBITS)
            for i, coding in enumerate(codings)
        ]

    def encode(self, data: bytes, *, final: bool) -> bytes:
        for stage in self.stages:
            data = stage.compress(data)
            if final:
                data += stage.flush()
        return data


def _codings(content_encoding: str) -> list[str]:
    """The tokens of a Content-Encoding value that `_Encoder` applies, in order."""
    tokens = (token.strip().lower() for token in content_encoding.split(","))
    return [token for token in tokens if token in ("gzip", "x-gzip", "deflate")]


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")
    return path


def _authorized(headers: Mapping[str, str], credentials: tuple[str, str]) -> bool:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return given == f"{credentials[0]}:{credentials[1]}"


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _float(q[2:]) == 0)
    return False


def _not_modified(
    headers: Mapping[str, str], etag: str | None, last_modified: float | None
) -> bool:
    # RFC 9110 §13.1.3: If-None-Match (weak comparison) wins; If-Modified-Since is
    # only looked at when there is no If-None-Match.
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if etag is None:
            return False
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in wanted or etag in wanted
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is None or last_modified is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return last_modified <= since


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0


def _iter_files(names: Iterable[str]) -> Iterator[tuple[str, Path]]:
    for name in names:
        file_path = Path(name)
        yield "/" + file_path.name, file_path


def main(argv: Sequence[str] | None = None) -> None:
    """Serve files by hand: ``python -m tests.fakes.feed_server [--port N] FILE…``."""
    args = list(sys.argv[1:] if argv is None else argv)
    port = 0
    if len(args) >= 2 and args[0] == "--port":
        port = int(args[1])
        args = args[2:]
    with FeedServer(port=port) as server:
        for path, file_path in _iter_files(args):
            server.serve_file(path, file_path)
            print(server.url_for(path), flush=True)
        print(f"serving on {server.url}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
