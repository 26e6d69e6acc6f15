"""The publish ping: a newsroom's CMS says "this feed changed" and the feed is fetched at
once (a conditional GET, through the normal poll path).

``POST /ping`` on NEWSBOT_HTTP_PORT, with ``Authorization: Bearer <NEWSBOT_PING_SECRET>``
and a ``feed`` field (form or JSON): the feed's URL as the feeds file (or /addfeed) has it,
or a section slug for every feed of that section. Answers: 202 accepted; 401 without the
right secret (compared in constant time: both sides are hashed first, so not even the
length leaks); 404 for a feed or section newsbot does not poll; 429 when pings come faster
than RATE a second (BURST at once), with ``Retry-After: 1``; 400 for a body it cannot read.
Without NEWSBOT_PING_SECRET the endpoint does not exist (404, like any unknown path).

Pings for one feed that come faster than once a second are merged into one fetch
(bot.pipeline.schedule), and a feed that was pinged is polled at the slow end of its range
while pings keep coming (bot.pipeline.cadence).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from bot.clock import Clock
from bot.context import Services
from bot.pipeline.urls import redact_url
from storage import feeds

log = logging.getLogger(__name__)

RATE: Final = 10.0
BURST: Final = 20.0
MAX_BODY: Final = 16 * 1024

Answer = tuple[int, bytes, dict[str, str]]


class Gate:
    """Pings let through: a token bucket of BURST, refilled at RATE a second."""

    def __init__(self, clock: Clock, rate: float = RATE, burst: float = BURST) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = clock.monotonic()

    def take(self) -> bool:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def authorized(secret: str, header: str | None) -> bool:
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # Hashing both sides first makes the comparison's time independent of the given length.
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(secret.encode()).digest())


def feed_field(headers: Mapping[str, str], body: bytes) -> str | None:
    """The ``feed`` field of a form or JSON body; None when there is none or it is unreadable."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
        if kind == "application/json" or text.lstrip().startswith("{"):
            data = json.loads(text)
            value = data.get("feed") if isinstance(data, dict) else None
        else:
            value = dict(parse_qsl(text, keep_blank_values=True)).get("feed")
    except (UnicodeDecodeError, ValueError):
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


async def on_ping(services: Services, gate: Gate, headers: Mapping[str, str], body: bytes) -> Answer:
    settings = services.settings
    secret = settings.ping_secret
    if secret is None:
        return 404, b"not found\n", {}
    if not authorized(secret, headers.get("authorization")):
        services.metrics.inc("newsbot_push_refused_total", via="ping", why="secret")
        log.warning("ping refused: %s secret", "missing" if not headers.get("authorization") else "wrong")
        return 401, b"unauthorized\n", {"WWW-Authenticate": 'Bearer realm="newsbot"'}
    if not gate.take():
        services.metrics.inc("newsbot_push_refused_total", via="ping", why="flood")
        return 429, b"too many pings; try again in a second\n", {"Retry-After": "1"}
    wanted = feed_field(headers, body) if len(body) <= MAX_BODY else None
    if wanted is None:
        services.metrics.inc("newsbot_push_refused_total", via="ping", why="bad_request")
        return 400, b'send a "feed" field: the feed\'s URL or a section slug\n', {}
    polled = await feeds.list_feeds(services.db)
    chosen = [f for f in polled if f.url == wanted] or [f for f in polled if f.rule.section == wanted]
    if not chosen:
        services.metrics.inc("newsbot_push_refused_total", via="ping", why="unknown")
        log.info("ping for a feed not polled feed=%s", redact_url(wanted, settings.url_safe_params))
        return 404, b"no such feed or section\n", {}
    for feed in chosen:
        services.pacing.pinged(feed.id)
        services.feed_schedule.push(feed.id)
    services.metrics.inc("newsbot_pushes_total", len(chosen), via="ping")
    log.info("ping feeds=%s", ",".join(str(f.id) for f in chosen))
    return 202, json.dumps({"accepted": [f.id for f in chosen]}).encode() + b"\n", {}
