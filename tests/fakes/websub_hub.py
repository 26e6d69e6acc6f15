"""A small WebSub hub (W3C WebSub §5-§8) on 127.0.0.1, serving on the test's own loop.

It takes subscription requests (POST, form-encoded ``hub.mode``, ``hub.topic``,
``hub.callback``, ``hub.secret``, ``hub.lease_seconds``), answers 202 and verifies intent
with a GET on the callback (``hub.challenge``), as a real hub does, right after answering.
`publish` then POSTs a topic's new content to every verified subscriber whose lease runs,
signed with ``X-Hub-Signature: sha256=…`` (or as told: another algorithm, a wrong or no
signature). Leases run on the clock given to `start_here` (the test's SimClock).

Told to misbehave: ``refuse`` (answer 400 to requests), ``verify=False`` (never verify),
``grant`` (the lease it grants, in seconds). Everything it did is recorded: `requests`
(subscription requests), `verifications` (callback, status, echoed?), `deliveries`
(callback, status).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import httpx

from tests.fakes.clocks import LoopTime, TimeSource


@dataclass
class HubSubscription:
    topic: str
    callback: str
    secret: str
    lease: int = 0
    expires: float = 0.0  # the hub's monotonic clock
    verified: bool = False


@dataclass
class Hub:
    grant: int = 3600
    refuse: bool = False
    verify: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)
    verifications: list[tuple[str, int, bool]] = field(default_factory=list)
    deliveries: list[tuple[str, int]] = field(default_factory=list)
    subscriptions: dict[tuple[str, str], HubSubscription] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _clock: TimeSource | None = None
    _client: httpx.AsyncClient | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    @property
    def clock(self) -> TimeSource:
        assert self._clock is not None
        return self._clock

    @contextlib.asynccontextmanager
    async def here(self, clock: TimeSource | None = None) -> AsyncIterator[Hub]:
        self._clock = clock or LoopTime(asyncio.get_running_loop())
        self._client = httpx.AsyncClient(timeout=10)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._client.aclose()
            await self._server.wait_closed()

    def active(self, topic: str) -> list[HubSubscription]:
        now = self.clock.monotonic()
        return [s for s in self.subscriptions.values() if s.topic == topic and s.verified and s.expires > now]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            self.requests.append(form)
            status = 400 if self.refuse or form.get("hub.mode") != "subscribe" else 202
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            if status == 202:
                task = asyncio.create_task(self._verify(form))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            writer.close()

    async def _verify(self, form: dict[str, str]) -> None:
        if not self.verify:
            return
        assert self._client is not None
        callback, topic = form["hub.callback"], form["hub.topic"]
        challenge = secrets.token_urlsafe(16)
        query = urlencode({"hub.mode": "subscribe", "hub.topic": topic, "hub.challenge": challenge,
                           "hub.lease_seconds": str(self.grant)})
        try:
            answer = await self._client.get(f"{callback}?{query}")
        except httpx.HTTPError:
            self.verifications.append((callback, 0, False))
            return
        echoed = answer.status_code // 100 == 2 and answer.text == challenge
        self.verifications.append((callback, answer.status_code, echoed))
        if echoed:
            self.subscriptions[(topic, callback)] = HubSubscription(
                topic, callback, form.get("hub.secret", ""), self.grant, self.clock.monotonic() + self.grant, True,
            )

    async def publish(
        self, topic: str, body: bytes, content_type: str = "application/rss+xml", *, signature: str | None = "sha256",
        wrong: bool = False,
    ) -> list[int]:
        """Deliver `body` to every active subscriber of `topic`; their answers' statuses."""
        assert self._client is not None
        statuses = []
        for sub in self.active(topic):
            headers = {"Content-Type": content_type}
            if signature is not None:
                key = (sub.secret + "x" if wrong else sub.secret).encode()
                digest = hmac.new(key, body, getattr(hashlib, signature)).hexdigest()
                headers["X-Hub-Signature"] = f"{signature}={digest}"
            answer = await self._client.post(sub.callback, content=body, headers=headers)
            self.deliveries.append((sub.callback, answer.status_code))
            statuses.append(answer.status_code)
        return statuses

    async def fetch_and_publish(self, topic: str) -> list[int]:
        """What a hub does when a publisher pings it: fetch the topic (one request to the
        publisher's site), then deliver what it got."""
        assert self._client is not None
        answer = await self._client.get(topic)
        return await self.publish(topic, answer.content, answer.headers.get("content-type", "application/rss+xml"))

    async def deny(self, topic: str, callback: str, reason: str = "no") -> int:
        assert self._client is not None
        query = urlencode({"hub.mode": "denied", "hub.topic": topic, "hub.reason": reason})
        return (await self._client.get(f"{callback}?{query}")).status_code
