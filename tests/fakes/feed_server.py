"""A fake feed server: real HTTP/1.1 on 127.0.0.1, in a background thread.

It serves feeds with ETag / Last-Modified and answers conditional requests with 304, and
misbehaves on demand, path by path: slow, trickling, failing, huge, truncated, redirecting,
an HTML page instead of a feed. Every request is logged (method, path, headers, status) so a
test can assert e.g. that the second poll was answered with a 304.

Because it is a real socket server in its own thread, it works from sync and async tests
alike and from a bot running in a subprocess::

    with FeedServer() as server:
        server.serve("/news.xml", rss_bytes)
        server.slow("/news.xml", 2.0)          # answers after 2 s
        server.status("/world.xml", 503, headers={"Retry-After": "120"})
        ...
        assert [r.status for r in server.requests("/news.xml")] == [200, 304]

A path answers with its *content* (`serve`, `serve_file`, `html`) unless a *fault* is set
(`status`, `redirect`, `huge`, `truncated`); `clear(path)` removes the fault and any delay,
and the content comes back. `slow` adds a delay on top of either. Unknown paths get 404.

Run ``python -m tests.fakes.feed_server FILE…`` to serve files by hand (at ``/<name>``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import gzip as gzip_module
import hashlib
import html as html_module
import mimetypes
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["FeedServer", "RequestRecord", "TruncateMode", "encode_body"]

TruncateMode = Literal["connection", "document", "chunked"]

_CHUNK = 64 * 1024
_JUNK = (b"<!-- junk -->" * (_CHUNK // 13 + 1))[:_CHUNK]
_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it, and the status it answered with."""

    method: str
    path: str  # without the query string
    target: str  # the request target as sent, query included
    headers: dict[str, str]  # lower-case names
    status: int
    response_headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic() when the answer was decided
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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FeedServer:
        if self._server is not None:
            raise RuntimeError("FeedServer already started")
        server = _Server((self._host, self._port), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"feed-server-{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every open connection and join all threads. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.stopping.set()  # wakes handlers sleeping in slow()/trickle
        server.shutdown()
        thread.join()
        server.close_connections()
        server.server_close()  # joins the handler threads

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FeedServer not started")
        return int(self._server.server_address[1])

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
                    stamp = float(int(time.time()))
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


class _Server(ThreadingHTTPServer):
    # Handler threads are daemons, so a stuck one never blocks interpreter exit, but they
    # are tracked here and joined by server_close() (socketserver only joins non-daemon
    # threads), after close_connections() has unblocked them.
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of new connections overflows it and
    # the kernel drops SYNs, which clients retry only after a second.
    request_queue_size = 128
    owner: FeedServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"feed-server-{self.server_address[1]}-conn",
            daemon=True,
        )
        with self._connections_lock:
            self._connections.add(request)
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()]
            self._handler_threads.append(thread)
        thread.start()

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            threads, self._handler_threads = self._handler_threads, []
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        # shutdown() (not close()) wakes a handler blocked in recv/send on that socket;
        # the handler thread then closes it itself.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError) or self.stopping.is_set():
            return  # a client hung up or the server is stopping: expected in these tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked encoding
    server_version = "FakeFeedServer/1.0"
    timeout = 30  # idle keep-alive connections end on their own
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(head_only=False)

    def do_HEAD(self) -> None:
        self._answer(head_only=True)

    # -- dispatch ------------------------------------------------------------------------

    def _answer(self, *, head_only: bool) -> None:
        self._head_only = head_only
        self._request_headers = {k.lower(): v for k, v in self.headers.items()}
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            self.rfile.read(int(length))
        self._path = urlsplit(self.path).path or "/"
        route = self.server.owner._route(self._path)
        try:
            if route is None:
                self._simple(404, b"not found\n", {})
                return
            if route.delay and route.trickle_bytes is None and not self._sleep(route.delay):
                self.close_connection = True
                return
            if route.auth is not None and not _authorized(self._request_headers, route.auth):
                challenge = {"WWW-Authenticate": 'Basic realm="feeds", charset="UTF-8"'}
                self._simple(401, b"credentials required\n", challenge)
            elif route.fault == "status":
                self._simple(route.fault_status, route.fault_body, route.fault_headers, route)
            elif route.fault == "redirect" and route.size:
                self._huge(route, route.fault_status, {"Location": route.location})
            elif route.fault == "redirect":
                self._simple(route.fault_status, b"", {"Location": route.location})
            elif route.fault == "huge":
                self._huge(route)
            elif route.fault == "truncated":
                self._truncated(route)
            else:
                self._content(route)
        except _CONNECTION_ERRORS:
            self.close_connection = True

    def _content(self, route: _Route) -> None:
        body = route.body
        last_modified = route.last_modified
        if route.file_path is not None:
            try:
                body = route.file_path.read_bytes()
                mtime = route.file_path.stat().st_mtime
            except OSError:
                self._simple(404, b"file not found\n", {})
                return
            if last_modified is not None:
                last_modified = float(int(mtime))
        if body is None:  # only faults/delays were ever set for this path
            self._simple(404, b"not found\n", {})
            return
        headers = dict(route.headers)
        etag = None
        if route.etag:
            etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
            headers["ETag"] = etag
        if last_modified is not None:
            headers["Last-Modified"] = email.utils.formatdate(last_modified, usegmt=True)
        if _not_modified(self._request_headers, etag, last_modified):
            self._send(304, headers, b"")
            return
        headers["Content-Type"] = route.content_type
        if route.gzip:
            headers["Vary"] = "Accept-Encoding"
            if _accepts_gzip(self._request_headers.get("accept-encoding", "")):
                body = gzip_module.compress(body, mtime=0)
                headers["Content-Encoding"] = "gzip"
        self._send(200, headers, body, route)

    def _simple(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        route: _Route | None = None,
    ) -> None:
        headers = {"Content-Type": "text/plain; charset=utf-8", **headers}
        self._send(status, headers, body, route)

    def _huge(
        self, route: _Route, status: int = 200, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        headers = {"Content-Type": "application/rss+xml", **(extra_headers or {})}
        if route.content_encoding:
            headers["Content-Encoding"] = route.content_encoding
        if route.declare_length:
            headers["Content-Length"] = str(route.size)
        else:
            headers["Transfer-Encoding"] = "chunked"
        self._start(status, headers)
        if self._head_only:
            return
        chunked = not route.declare_length
        encoder = _Encoder(route.content_encoding)
        step = route.trickle_bytes if route.delay and route.trickle_bytes else _CHUNK
        sent = 0
        while sent < route.size and not self.server.stopping.is_set():
            piece = _JUNK[: min(step, route.size - sent)]
            sent += len(piece)
            piece = encoder.encode(piece, final=sent >= route.size)
            if piece:
                self._write(piece, chunked)
            if route.delay and route.trickle_bytes is not None and not self._sleep(route.delay):
                break
        if chunked and sent >= route.size:
            self.wfile.write(b"0\r\n\r\n")
        if sent < route.size:
            self.close_connection = True

    def _truncated(self, route: _Route) -> None:
        full = route.fault_body
        kept = full[: max(0, min(route.keep, len(full)))]
        headers = {"Content-Type": "application/rss+xml"}
        if route.truncate_mode == "document":
            headers["Content-Length"] = str(len(kept))
            self._send(200, headers, kept, route)
            return
        if route.truncate_mode == "connection":
            headers["Content-Length"] = str(len(full))
        else:
            headers["Transfer-Encoding"] = "chunked"
        self.close_connection = True
        self._start(200, headers)
        if not self._head_only and kept:
            self._write(kept, route.truncate_mode == "chunked")
        # Returning closes the socket: the client sees EOF before the promised end.

    # -- writing -------------------------------------------------------------------------

    def _send(
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
        self._start(status, headers)
        if self._head_only or no_body or not body:
            return
        if route is not None and route.delay and route.trickle_bytes:
            for offset in range(0, len(body), route.trickle_bytes):
                self.wfile.write(body[offset : offset + route.trickle_bytes])
                if not self._sleep(route.delay):
                    self.close_connection = True
                    return
        else:
            self.wfile.write(body)

    def _start(self, status: int, headers: Mapping[str, str]) -> None:
        """Log the request, then send the status line and headers."""
        self.server.owner._record(
            RequestRecord(
                method=self.command,
                path=self._path,
                target=self.path,
                headers=self._request_headers,
                status=status,
                response_headers={k.lower(): v for k, v in headers.items()},
                at=time.monotonic(),
                client_port=int(self.client_address[1]),
            )
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _write(self, data: bytes, chunked: bool) -> None:
        if chunked:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.wfile.write(data)

    def _sleep(self, seconds: float) -> bool:
        """Sleep, but wake at once when the server stops; False if it did."""
        return not self.server.stopping.wait(seconds)


def encode_body(body: bytes, content_encoding: str) -> bytes:
    """``body`` with the codings of a Content-Encoding value applied, first listed first.

    gzip, x-gzip and deflate (zlib-wrapped) are applied; other tokens are left out, as
    in `FeedServer.huge`.
    """
    return _Encoder(content_encoding).encode(body, final=True)


class _Encoder:
    """Streams bytes through the codings of a Content-Encoding value, innermost first."""

    def __init__(self, content_encoding: str) -> None:
        self._stages = [
            zlib.compressobj(9, zlib.DEFLATED, (16 if coding != "deflate" else 0) + zlib.MAX_WBITS)
            for coding in _codings(content_encoding)
        ]

    def encode(self, data: bytes, *, final: bool) -> bytes:
        for stage in self._stages:
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
