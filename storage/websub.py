"""The websub table: one WebSub subscription per feed (bot.stages.websub decides, this
keeps). The token names the callback URL and the secret signs deliveries: neither is ever
shown or logged.

States: pending (asked, the hub has not verified yet), active (verified; until
`expires_at`), failed (the hub refused, or never verified), lapsed (the lease ended without
a renewal), denied (the hub said no after all, `hub.mode=denied`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from storage.db import Database


@dataclass(frozen=True, slots=True)
class Subscription:
    feed_id: int
    hub: str
    topic: str
    token: str = field(repr=False)
    secret: str = field(repr=False)
    state: str
    requested_at: float
    lease_seconds: int | None
    expires_at: float | None
    verified_at: float | None
    last_push_at: float | None
    failures: int
    last_error: str | None

    def active(self, now: float) -> bool:
        return self.state == "active" and self.expires_at is not None and self.expires_at > now


def _row(row: sqlite3.Row | None) -> Subscription | None:
    if row is None:
        return None
    return Subscription(
        feed_id=row["feed_id"], hub=row["hub"], topic=row["topic"], token=row["token"], secret=row["secret"],
        state=row["state"], requested_at=row["requested_at"], lease_seconds=row["lease_seconds"],
        expires_at=row["expires_at"], verified_at=row["verified_at"], last_push_at=row["last_push_at"],
        failures=row["failures"], last_error=row["last_error"],
    )


async def get(db: Database, feed_id: int) -> Subscription | None:
    return _row(await db.fetchone("SELECT * FROM websub WHERE feed_id = ?", (feed_id,)))


async def by_token(db: Database, token: str) -> Subscription | None:
    return _row(await db.fetchone("SELECT * FROM websub WHERE token = ?", (token,)))


async def all_subscriptions(db: Database) -> list[Subscription]:
    return [s for s in map(_row, await db.fetchall("SELECT * FROM websub ORDER BY feed_id")) if s is not None]


async def requested(
    db: Database, feed_id: int, *, hub: str, topic: str, token: str, secret: str, now: float
) -> Subscription:
    """A subscription request is going to the hub: the row is pending, with this token and
    secret (a renewal passes the ones it has)."""
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO websub (feed_id, hub, topic, token, secret, state, requested_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT(feed_id) DO UPDATE SET "
            "hub = excluded.hub, topic = excluded.topic, token = excluded.token, secret = excluded.secret, "
            # A renewal of an active lease stays active (and pushes keep working) until the
            # hub verifies again or the lease ends.
            "state = CASE WHEN websub.state = 'active' AND websub.token = excluded.token "
            "AND websub.expires_at > excluded.requested_at THEN 'active' ELSE 'pending' END, "
            "expires_at = CASE WHEN websub.state = 'active' AND websub.token = excluded.token "
            "AND websub.expires_at > excluded.requested_at THEN websub.expires_at END, "
            "requested_at = excluded.requested_at",
            (feed_id, hub, topic, token, secret, now),
        )
    found = await get(db, feed_id)
    assert found is not None
    return found


async def verified(db: Database, feed_id: int, *, lease_seconds: int, now: float) -> None:
    await db.execute(
        "UPDATE websub SET state = 'active', lease_seconds = ?, expires_at = ?, verified_at = ?, "
        "failures = 0, last_error = NULL WHERE feed_id = ?",
        (lease_seconds, now + lease_seconds, now, feed_id),
    )


async def ended(db: Database, feed_id: int, state: str, error: str) -> None:
    """The subscription stopped working: failed, lapsed or denied (one more failure)."""
    await db.execute(
        "UPDATE websub SET state = ?, last_error = ?, failures = failures + (? <> 'lapsed') WHERE feed_id = ?",
        (state, error[:300], state, feed_id),
    )


async def pushed(db: Database, feed_id: int, *, now: float) -> None:
    await db.execute("UPDATE websub SET last_push_at = ? WHERE feed_id = ?", (now, feed_id))


async def forget(db: Database, feed_id: int) -> None:
    await db.execute("DELETE FROM websub WHERE feed_id = ?", (feed_id,))
