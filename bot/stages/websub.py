"""WebSub subscriber (W3C Recommendation, 23 January 2018): a feed that declares a hub is
pushed, polling stays on as the safety net.

The life of a subscription, one per feed (kept in storage.websub):

1. Discovery (§4): the hub and the topic come from the feed's answer — ``Link: <…>;
   rel="hub"`` / ``rel="self"`` headers first, then the document's own ``<link rel="hub">``
   / ``rel="self"`` (Atom, or atom:link in RSS; ``hubs`` and ``feed_url`` in JSON Feed).
   The topic is the self URL, else the feed's URL.
2. Subscription request (§5.1): after a poll, when NEWSBOT_PUBLIC_URL is set, newsbot POSTs
   ``hub.mode=subscribe``, ``hub.topic``, ``hub.callback`` (NEWSBOT_PUBLIC_URL +
   ``/websub/`` + a random per-feed token), ``hub.secret`` (random, per subscription) and
   ``hub.lease_seconds`` to the hub, through the feed client: a hub at a private address is
   refused like a feed there. The row is pending *before* the request goes, since a hub may
   verify before it answers.
3. Verification of intent (§5.3): the hub GETs the callback with ``hub.challenge``; it is
   echoed only when the token names a pending or active subscription of that very topic and
   the mode is subscribe; everything else is the same 404 as any unknown path, so the
   callbacks tell no caller which feeds exist. ``hub.mode=denied`` ends the subscription.
4. Delivery (§7, §8): a POST to the callback is taken only with a valid ``X-Hub-Signature``
   (``sha1=``, ``sha256=``, ``sha384=`` or ``sha512=`` HMAC of the body with the secret);
   a missing or wrong one is refused — the body ignored, counted
   (``newsbot_push_refused_total{via="websub"}``) and logged — while the answer is still
   2xx, as §8 requires (a forger learns nothing). A signed delivery is the feed's changed
   document: it is read and stored like a fetched one when it reads as a document with
   stories (no request to the site), else the feed is fetched at once (a conditional GET);
   either way at most once a second per feed (bot.pipeline.schedule).
5. Renewal: a new request (same callback and secret) when a tenth of the lease is left (at
   least two NEWSBOT_POLL_MAX, at most half the lease); the feed's next poll is brought
   forward to that moment. A hub that does not verify within VERIFY_WAIT, refuses, or lets
   a lease lapse ends it with one log line; the feed is polled at its own pace again, and
   subscribing is tried again after an hour, doubling up to a day.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

import httpx

from bot.context import Services
from bot.pipeline.cadence import Delivery
from bot.pipeline.transport import ForbiddenAddress
from bot.pipeline.urls import redact_url
from storage import websub
from storage.models import Feed

log = logging.getLogger(__name__)

LEASE_SECONDS: Final = 10 * 86400  # asked for; the hub decides
MIN_LEASE: Final = 60
MAX_LEASE: Final = 30 * 86400
VERIFY_WAIT: Final = 300.0
RETRY_FIRST: Final = 3600.0
RETRY_MAX: Final = 86400.0
_ALGORITHMS: Final = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def parse_link_header(value: str) -> list[tuple[str, frozenset[str]]]:
    """``<url>; rel="hub", <url>; rel=self`` → [(url, {rels})], in order."""
    links = []
    for part in value.split(","):
        target, _, params = part.strip().partition(";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        rels: set[str] = set()
        for param in params.split(";"):
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "rel":
                rels.update(val.strip().strip('"').lower().split())
        links.append((target[1:-1].strip(), frozenset(rels)))
    return links


def hub_and_topic(
    headers: Mapping[str, str], hubs: tuple[str, ...], self_url: str | None, feed_url: str
) -> tuple[str | None, str]:
    """The hub to subscribe at (None: the feed declares none) and the topic (§4)."""
    links = parse_link_header(headers.get("link", ""))
    hub = next((url for url, rels in links if "hub" in rels), None) or next(iter(hubs), None)
    topic = next((url for url, rels in links if "self" in rels), None) or self_url or feed_url
    if hub is not None and not hub.lower().startswith(("http://", "https://")):
        hub = None
    return hub, topic


def signature_ok(secret: str, header: str | None, body: bytes) -> bool:
    """Whether ``X-Hub-Signature: method=hex`` is the body's HMAC with `secret` (§8)."""
    if not header:
        return False
    method, _, given = header.strip().partition("=")
    digest = _ALGORITHMS.get(method.strip().lower())
    if digest is None or not given:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


def callback_url(public_url: str, token: str) -> str:
    return f"{public_url}/websub/{token}"


def _retry_after(failures: int) -> float:
    return min(RETRY_MAX, RETRY_FIRST * 2.0 ** min(20, max(0, failures - 1)))


def _renew_margin(lease: float, poll_max: float) -> float:
    return min(max(lease / 10, 2 * poll_max), lease / 2)


async def load(services: Services) -> None:
    """At start: active leases make their feeds pushed (polled slowly) until they end."""
    now = services.clock.time()
    for sub in await websub.all_subscriptions(services.db):
        services.pacing.websub(sub.feed_id, sub.expires_at if sub.active(now) else None)


async def maintain(services: Services, feed: Feed, hub: str | None, topic: str | None) -> float | None:
    """After a poll: subscribe, renew, or notice a hub that never verified or a lease that
    lapsed. `hub` and `topic` as the answer declared them (None on a 304). Returns seconds
    until the subscription needs looking at again (a renewal), or None."""
    settings = services.settings
    if settings.public_url is None:
        return None
    db, now = services.db, services.clock.time()
    row = await websub.get(db, feed.id)
    if hub is None:
        if row is None:
            return None
        hub, topic = row.hub, row.topic
    topic = topic or feed.url
    shown = redact_url(hub, settings.url_safe_params)
    if row is not None and row.state == "active" and not row.active(now):
        await websub.ended(db, feed.id, "lapsed", "the lease ended without a renewal")
        services.pacing.websub(feed.id, None)
        log.warning("websub lease lapsed feed_id=%d hub=%s: polling at the feed's own pace", feed.id, shown)
        row = await websub.get(db, feed.id)
    if row is not None and row.state == "pending" and now - row.requested_at > VERIFY_WAIT:
        await websub.ended(db, feed.id, "failed", f"the hub did not verify within {VERIFY_WAIT:g} s")
        log.warning("websub hub never verified feed_id=%d hub=%s: polling at the feed's own pace", feed.id, shown)
        row = await websub.get(db, feed.id)
    if row is None or (row.hub, row.topic) != (hub, topic):
        await subscribe(services, feed, hub, topic, token=secrets.token_urlsafe(24), secret=secrets.token_hex(32))
        return VERIFY_WAIT
    if row.state in ("failed", "denied", "lapsed"):
        retry_at = row.requested_at + _retry_after(row.failures)
        if now < retry_at:
            return None
        await subscribe(services, feed, hub, topic, token=secrets.token_urlsafe(24), secret=secrets.token_hex(32))
        return VERIFY_WAIT
    if row.state == "pending":
        return max(1.0, row.requested_at + VERIFY_WAIT - now)
    assert row.expires_at is not None
    lease = float(row.lease_seconds or LEASE_SECONDS)
    renew_at = row.expires_at - _renew_margin(lease, settings.poll_max)
    if now < renew_at:
        return max(1.0, renew_at - now)
    if now - row.requested_at > VERIFY_WAIT:  # not asked yet, or the last renewal went unanswered
        await subscribe(services, feed, hub, topic, token=row.token, secret=row.secret)
        return max(1.0, min(VERIFY_WAIT, row.expires_at - now))
    return max(1.0, min(row.requested_at + VERIFY_WAIT, row.expires_at) - now)


async def subscribe(services: Services, feed: Feed, hub: str, topic: str, *, token: str, secret: str) -> bool:
    """Send a subscription request (§5.1); True when the hub accepted it (202/204)."""
    settings = services.settings
    assert settings.public_url is not None
    shown = redact_url(hub, settings.url_safe_params)
    await websub.requested(services.db, feed.id, hub=hub, topic=topic, token=token, secret=secret,
                           now=services.clock.time())
    form = {
        "hub.mode": "subscribe",
        "hub.topic": topic,
        "hub.callback": callback_url(settings.public_url, token),
        "hub.secret": secret,
        "hub.lease_seconds": str(LEASE_SECONDS),
    }
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            response = await services.http.post(hub, data=form)
        status = response.status_code
        await response.aclose()
        problem = None if status in (202, 204) else f"the hub answered HTTP {status}"
    except TimeoutError:
        problem = f"no answer from the hub within {settings.fetch_timeout:g} s"
    except httpx.ConnectError as exc:
        problem = (f"the hub's host {exc.__cause__} (NEWSBOT_FEED_ALLOW_PRIVATE=1 allows hubs inside the network)"
                   if isinstance(exc.__cause__, ForbiddenAddress) else "cannot connect to the hub")
    except httpx.HTTPError as exc:
        problem = f"the hub's answer could not be read ({type(exc).__name__})"
    if problem is not None:
        await websub.ended(services.db, feed.id, "failed", problem)
        services.metrics.inc("newsbot_errors_total", stage="websub")
        log.warning("websub subscription refused feed_id=%d hub=%s error=%s: polling at the feed's own pace",
                    feed.id, shown, problem)
        return False
    log.info("websub subscription requested feed_id=%d hub=%s", feed.id, shown)
    return True


async def on_verify(services: Services, token: str, query: str) -> tuple[int, bytes]:
    """The hub's verification of intent (GET on the callback): (status, body)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    row = await websub.by_token(services.db, token)
    mode, topic = params.get("hub.mode", ""), params.get("hub.topic", "")
    if row is None or topic != row.topic:
        return 404, b"not found\n"
    now = services.clock.time()
    if mode == "denied" and row.state in ("pending", "active"):
        reason = " ".join(params.get("hub.reason", "no reason given").split())[:200]
        await websub.ended(services.db, row.feed_id, "denied", f"the hub denied the subscription: {reason}")
        services.pacing.websub(row.feed_id, None)
        log.warning("websub subscription denied feed_id=%d reason=%s: polling at the feed's own pace",
                    row.feed_id, reason)
        return 200, b""
    challenge = params.get("hub.challenge", "")
    if mode != "subscribe" or row.state not in ("pending", "active") or not challenge or len(challenge) > 1024:
        return 404, b"not found\n"
    lease_text = params.get("hub.lease_seconds", "")
    lease = int(lease_text) if lease_text.isdigit() else LEASE_SECONDS
    lease = max(MIN_LEASE, min(MAX_LEASE, lease))
    await websub.verified(services.db, row.feed_id, lease_seconds=lease, now=now)
    services.pacing.websub(row.feed_id, now + lease)
    log.info("websub subscription verified feed_id=%d lease=%ds", row.feed_id, lease)
    return 200, challenge.encode()


async def on_delivery(services: Services, token: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
    """A content distribution (POST on the callback): (status, body)."""
    row = await websub.by_token(services.db, token)
    if row is None:
        return 404, b"not found\n"
    now = services.clock.time()
    if not signature_ok(row.secret, headers.get("x-hub-signature"), body):
        services.metrics.inc("newsbot_push_refused_total", via="websub", why="signature")
        log.warning("websub delivery refused feed_id=%d: %s signature (body ignored)", row.feed_id,
                    "missing" if not headers.get("x-hub-signature") else "wrong")
        return 202, b""
    if not row.active(now):
        services.metrics.inc("newsbot_push_refused_total", via="websub", why="inactive")
        log.info("websub delivery for a subscription that is not active feed_id=%d state=%s (ignored)",
                 row.feed_id, row.state)
        return 202, b""
    if services.feed_schedule.due_in(row.feed_id) is None:  # removed since: its lease just runs out
        services.metrics.inc("newsbot_push_refused_total", via="websub", why="not_polled")
        return 202, b""
    services.metrics.inc("newsbot_pushes_total", via="websub")
    await websub.pushed(services.db, row.feed_id, now=now)
    services.pacing.delivered(row.feed_id)
    # The latest delivery per feed waits for the feed's poll (at most one a feed).
    services.deliveries[row.feed_id] = Delivery(body, headers.get("content-type"))
    services.feed_schedule.push(row.feed_id)
    return 202, b""
