"""newsbot's HTTP server on NEWSBOT_HTTP_PORT: the operator's endpoints and the pushes.

| method | path | what | exists |
| --- | --- | --- | --- |
| GET, HEAD | /healthz | health (JSON), bot.health | always |
| GET, HEAD | /metrics | Prometheus text, bot.health | always |
| POST | /ping | a publish ping, bot.stages.ping | with NEWSBOT_PING_SECRET |
| GET, POST | /websub/<token> | WebSub verification and deliveries, bot.stages.websub | with NEWSBOT_PUBLIC_URL |

Anything else is the same 404. A few lines of HTTP/1.1 on asyncio.start_server rather than
another dependency: one request per connection, answered and closed. The request head must
arrive within REQUEST_TIMEOUT and fit MAX_HEAD; a body needs a Content-Length (no chunked
bodies: 411) of at most NEWSBOT_FETCH_MAX_BYTES for WebSub deliveries and MAX_SMALL_BODY
elsewhere (413), and must arrive within BODY_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from http import HTTPStatus

from bot.context import Services
from bot.health import METRICS_TYPE, check_health, metrics_text
from bot.stages import ping, websub

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0
BODY_TIMEOUT = 30.0
MAX_HEAD = 16 * 1024
MAX_SMALL_BODY = 64 * 1024
TEXT = "text/plain; charset=utf-8"
Answer = tuple[HTTPStatus, str, bytes, dict[str, str]]
NOT_FOUND: Answer = (HTTPStatus.NOT_FOUND, TEXT, b"not found\n", {})


class WebServer:
    """The HTTP server; `start` on host:port, `stop` at the end."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.ping_gate = ping.Gate(services.clock)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        log.info("health endpoint listening host=%s port=%d", host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(set(self._clients), timeout=1.0)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target, headers = _parse_head(head)
            answer = await self._route(method, target, headers, reader)
            status, content_type, body, extra = answer
            writer.write(_response(status, content_type, body, extra, head_only=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that went away or never finished its request gets nothing
        except Exception:
            log.exception("http endpoint failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(
        self, method: str, target: str, headers: Mapping[str, str], reader: asyncio.StreamReader
    ) -> Answer:
        settings = self.services.settings
        path, _, query = target.partition("?")
        if method in ("GET", "HEAD") and path in ("/healthz", "/metrics"):
            return await self._operator(path)
        if path == "/ping" and method == "POST" and settings.ping_secret is not None:
            body = await _body(reader, headers, MAX_SMALL_BODY)
            if isinstance(body, tuple):
                return body
            status, text, extra = await ping.on_ping(self.services, self.ping_gate, headers, body)
            return HTTPStatus(status), "application/json" if status == 202 else TEXT, text, extra
        if path.startswith("/websub/") and settings.public_url is not None:
            token = path.removeprefix("/websub/")
            if not token or "/" in token or len(token) > 100:
                return NOT_FOUND
            if method == "GET":
                status, text = await websub.on_verify(self.services, token, query)
                return HTTPStatus(status), TEXT, text, {}
            if method == "POST":
                body = await _body(reader, headers, settings.fetch_max_bytes)
                if isinstance(body, tuple):
                    return body
                status, text = await websub.on_delivery(self.services, token, headers, body)
                return HTTPStatus(status), TEXT, text, {}
        return NOT_FOUND

    async def _operator(self, path: str) -> Answer:
        services = self.services
        now = services.clock.time()
        if path == "/healthz":
            health = await check_health(services, now)
            status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
            if not health.ok:
                log.warning("health: %s reasons=%s", health.status, "; ".join(health.reasons))
            return status, "application/json", json.dumps(health.to_json()).encode() + b"\n", {}
        return HTTPStatus.OK, METRICS_TYPE, await metrics_text(services, now), {}


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    method = parts[0] if parts else ""
    target = parts[1] if len(parts) > 1 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _body(reader: asyncio.StreamReader, headers: Mapping[str, str], limit: int) -> bytes | Answer:
    if "transfer-encoding" in headers:
        return HTTPStatus.LENGTH_REQUIRED, TEXT, b"send a Content-Length\n", {}
    length = headers.get("content-length", "0").strip()
    if not length.isdigit():
        return HTTPStatus.BAD_REQUEST, TEXT, b"bad Content-Length\n", {}
    if int(length) > limit:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, TEXT, f"body larger than {limit} bytes\n".encode(), {}
    async with asyncio.timeout(BODY_TIMEOUT):
        return await reader.readexactly(int(length))


def _response(status: HTTPStatus, content_type: str, body: bytes, extra: Mapping[str, str], *, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        *(f"{name}: {value}" for name, value in extra.items()),
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
