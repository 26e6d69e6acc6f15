"""The operator's HTTP endpoint: GET /healthz (JSON) and GET /metrics (Prometheus text).

A few lines of HTTP/1.1 on asyncio.start_server rather than another dependency: one request
per connection, answered and closed. Started in post_init when NEWSBOT_HTTP_PORT is set.

/healthz is 200 when the database answers and the dispatcher runs, 503 otherwise; a poll
that has not succeeded for longer than 3 poll intervals + 60 s is also a 503, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from bot.services import Services
from storage import broadcasts, chats, feeds, outbox, stats

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # a client must send its request within this
CHECK_TIMEOUT = 2.0  # a database check slower than this counts as a failure
MAX_HEAD = 16 * 1024
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Health:
    database: bool
    dispatcher: bool
    last_poll_age_seconds: float | None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok" if self.ok else "unhealthy",
            "database": self.database,
            "dispatcher": self.dispatcher,
            "last_poll_age_seconds": None
            if self.last_poll_age_seconds is None
            else round(self.last_poll_age_seconds, 1),
        }
        if self.reasons:
            body["reasons"] = list(self.reasons)
        return body


def stale_after(services: Services) -> float:
    return 3 * services.settings.poll_seconds + 60


async def _database_ok(services: Services) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await stats.database_ok(services.db)
    except Exception as exc:  # any failure to answer is the finding, not an error of ours
        log.warning("health: database check failed error=%s", exc)
        return False


async def _last_poll_age(services: Services, now: float, database: bool) -> float | None:
    """Seconds since a feed was last polled successfully: this process's own figure, else
    the stored one (so a restart does not hide a feed outage)."""
    seen = services.metrics.last_poll_success
    if seen is not None:
        return max(0.0, now - seen)
    if not database:
        return None
    with contextlib.suppress(Exception):
        return await feeds.last_success_age(services.db, now)
    return None


async def check_health(services: Services, dispatcher_alive: bool, now: float) -> Health:
    database = await _database_ok(services)
    age = await _last_poll_age(services, now, database)
    reasons = []
    if not database:
        reasons.append("database: not answering")
    if not dispatcher_alive:
        reasons.append("dispatcher: not running")
    limit = stale_after(services)
    if age is not None and age > limit:
        reasons.append(f"poll: last success {age:.0f} s ago (limit {limit:.0f} s)")
    elif age is None and database and now - services.metrics.started_at > limit:
        # Never polled successfully, long after start: stale, if there is anything to poll.
        with contextlib.suppress(Exception):
            if (await stats.feed_counts(services.db)).enabled:
                reasons.append(f"poll: no successful poll since start (limit {limit:.0f} s)")
    return Health(database, dispatcher_alive, age, tuple(reasons))


async def metrics_text(services: Services, dispatcher_alive: bool, now: float) -> str:
    """The counters and histograms of `Metrics`, plus gauges read from the database."""
    gauges: dict[str, float] = {
        "newsbot_dispatcher_up": 1.0 if dispatcher_alive else 0.0,
        "newsbot_uptime_seconds": now - services.metrics.started_at,
    }
    database = await _database_ok(services)
    gauges["newsbot_database_up"] = 1.0 if database else 0.0
    if database:
        try:
            readers = await chats.chat_counts(services.db)
            feed_counts = await stats.feed_counts(services.db)
            gauges.update({
                "newsbot_outbox_backlog": float(await outbox.backlog(services.db)),
                "newsbot_readers_active": float(readers["active"]),
                "newsbot_readers_paused": float(readers["paused"]),
                "newsbot_readers_inactive": float(readers["inactive"]),
                "newsbot_feeds_enabled": float(feed_counts.enabled),
                "newsbot_feeds_failing": float(feed_counts.failing),
                "newsbot_broadcasts_sending": float(await broadcasts.count_sending(services.db)),
            })  # fmt: skip
        except Exception as exc:  # serve what is known rather than nothing
            log.warning("metrics: database gauges unavailable error=%s", exc)
    age = await _last_poll_age(services, now, database)
    if age is not None:
        gauges["newsbot_last_poll_age_seconds"] = age
    return services.metrics.render(gauges=gauges)


class HealthServer:
    """GET /healthz and GET /metrics on `host:port`; anything else is 404."""

    def __init__(self, services: Services, dispatcher_alive: Callable[[], bool]) -> None:
        self.services = services
        self.dispatcher_alive = dispatcher_alive
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
            status, content_type, body = await self._answer(head)
            writer.write(_response(status, content_type, body, head_only=head.startswith(b"HEAD ")))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that went away or never finished its request gets nothing
        except Exception:
            log.exception("health endpoint failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[HTTPStatus, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        method = parts[0].decode("latin-1") if parts else ""
        path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) > 1 else ""
        if method not in ("GET", "HEAD") or path not in ("/healthz", "/metrics"):
            return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n"
        now = time.time()
        alive = self.dispatcher_alive()
        if path == "/healthz":
            health = await check_health(self.services, alive, now)
            status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
            if not health.ok:
                log.warning("health: unhealthy reasons=%s", "; ".join(health.reasons))
            return status, "application/json", json.dumps(health.to_json()).encode() + b"\n"
        text = await metrics_text(self.services, alive, now)
        return HTTPStatus.OK, METRICS_TYPE, text.encode()


def _response(status: HTTPStatus, content_type: str, body: bytes, *, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)
