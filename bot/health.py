"""What the operator's endpoints say: /healthz (JSON) and /metrics (Prometheus text), served
by bot.web. It starts before Telegram is reached, so a bot that cannot reach Telegram says
so ("starting") instead of saying nothing.

/healthz is 200 only when every check passes (docs/operations.md lists them): the database
answers *and takes a write*, the bot's own last write did not fail, and it is still the file
the bot opened; the dispatcher runs;
updates arrive (long polling: getUpdates answered within UPDATES_STALE seconds); Telegram
answers sends; a feed was polled successfully within 3 of its longest intervals + 60 s
(NEWSBOT_POLL_SECONDS when set, else NEWSBOT_POLL_MAX: adaptive polling and pushed feeds may
wait that long between polls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.context import Services
from storage import broadcasts, chats, due, feeds, stats
from storage.outbox import LANE_NAMES

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # a database check slower than this counts as a failure
UPDATES_STALE = 90.0  # long polls last 30 s: three missed in a row is deafness
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Health:
    status: str  # ok, starting, unhealthy
    database: bool
    dispatcher: bool
    updates: bool
    telegram: bool
    last_poll_age_seconds: float | None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "database": self.database,
            "dispatcher": self.dispatcher,
            "updates": self.updates,
            "telegram": self.telegram,
            "last_poll_age_seconds": None
            if self.last_poll_age_seconds is None
            else round(self.last_poll_age_seconds, 1),
        }
        if self.reasons:
            body["reasons"] = list(self.reasons)
        return body


def _utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stale_after(services: Services) -> float:
    settings = services.settings
    return 3 * (settings.poll_seconds if settings.poll_fixed else settings.poll_max) + 60


async def _database_problem(services: Services) -> str | None:
    """None when the database answers a read and commits a write in time, and the bot's own
    last write (a poll's store, the dispatcher's marks, a reader's change) did not fail: a
    nearly full disk or a damaged table can refuse those while the check's one row goes in."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await stats.database_ok(services.db)
            await stats.database_writable(services.db, now=services.clock.time())
    except TimeoutError:
        return f"database: no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # any failure to answer is the finding, not an error of ours
        return f"database: {exc}"
    failed = services.db.last_write_error
    if failed is not None:
        return f"database: the last write failed: {failed}"
    return None


async def _last_poll_age(services: Services, now: float, database: bool) -> float | None:
    """Seconds since a feed was last polled successfully: this process's own figure, else
    the stored one (so a restart does not hide a feed outage)."""
    seen = services.metrics.last_poll_success
    if seen is not None:
        return max(0.0, services.clock.monotonic() - seen)
    if not database:
        return None
    with contextlib.suppress(Exception):
        return await feeds.last_success_age(services.db, now)
    return None


def _updates_problem(services: Services, mono: float) -> str | None:
    status = services.status
    if status.webhook:
        return None
    if status.updates_ok_at is None:
        detail = f" ({status.updates_error})" if status.updates_error else ""
        return f"updates: getUpdates has not answered yet{detail}"
    silent = mono - status.updates_ok_at
    if status.updates_error is not None:
        # getUpdates answers, with an error (401/404/409…): no update arrives meanwhile.
        return f"updates: getUpdates failing for {silent:.0f} s: {status.updates_error}"
    if silent > UPDATES_STALE:
        detail = f": {status.updates_error}" if status.updates_error else ""
        return f"updates: no answer from getUpdates for {silent:.0f} s{detail}"
    return None


async def check_health(services: Services, now: float) -> Health:
    status = services.status
    reasons = []
    problem = await _database_problem(services)
    database = problem is None
    if problem:
        reasons.append(problem)
    if status.phase == "running" and not status.dispatcher_alive:
        reasons.append("dispatcher: not running")
    updates_problem = _updates_problem(services, services.clock.monotonic()) if status.phase == "running" else None
    if updates_problem:
        reasons.append(updates_problem)
    telegram = status.telegram_down_since is None
    if not telegram:
        method = status.telegram_paused_method or "sending"
        reasons.append(
            f"telegram: {method} failing since {_utc(status.telegram_down_since or now)} "
            f"({now - (status.telegram_down_since or now):.0f} s); sending paused, nothing lost"
        )
    if status.undeliverable:
        reasons.append(
            f"delivery: {status.undeliverable} message(s) could not be prepared (a fault of ours, "
            "see the log); kept, and tried again"
        )
    age = await _last_poll_age(services, now, database)
    limit = stale_after(services)
    if age is not None and age > limit:
        reasons.append(f"poll: last success {age:.0f} s ago (limit {limit:.0f} s)")
    elif age is None and database and services.clock.monotonic() - services.metrics.started_at > limit:
        # Never polled successfully, long after start: stale, if there is anything to poll.
        with contextlib.suppress(Exception):
            if (await stats.feed_counts(services.db)).enabled:
                reasons.append(f"poll: no successful poll since start (limit {limit:.0f} s)")
    if status.phase != "running":
        detail = f" ({status.updates_error})" if status.updates_error else ""
        reasons.insert(0, f"{status.phase}: Telegram not reached yet{detail}")
        verdict = status.phase
    else:
        verdict = "unhealthy" if reasons else "ok"
    return Health(
        verdict, database, status.dispatcher_alive, updates_problem is None and status.phase == "running",
        telegram, age, tuple(reasons),
    )


async def metrics_text(services: Services, now: float) -> bytes:
    """The counters and histograms of `Metrics`, plus gauges read from the database."""
    status = services.status
    gauges: dict[str, float | dict[str, float]] = {
        "newsbot_dispatcher_up": 1.0 if status.dispatcher_alive else 0.0,
        "newsbot_updates_up": 0.0 if _updates_problem(services, services.clock.monotonic()) else 1.0,
        "newsbot_telegram_up": 1.0 if status.telegram_down_since is None else 0.0,
        "newsbot_sending_paused_since": status.telegram_down_since or 0.0,
        "newsbot_undeliverable_messages": float(status.undeliverable),
        "newsbot_uptime_seconds": services.clock.monotonic() - services.metrics.started_at,
    }
    database = await _database_problem(services) is None
    gauges["newsbot_database_up"] = 1.0 if database else 0.0
    if database:
        try:
            readers = await chats.chat_counts(services.db)
            feed_counts = await stats.feed_counts(services.db)
            backlog = await due.backlog(services.db)
            polled = await feeds.list_feeds(services.db)
            gauges.update({
                "newsbot_outbox_backlog": {LANE_NAMES[lane]: float(backlog.pending.get(lane, 0)) for lane in LANE_NAMES},
                "newsbot_outbox_held": float(backlog.held),
                "newsbot_readers_active": float(readers["active"]),
                "newsbot_readers_paused": float(readers["paused"]),
                "newsbot_readers_inactive": float(readers["inactive"]),
                "newsbot_feeds_enabled": float(feed_counts.enabled),
                "newsbot_feeds_failing": float(feed_counts.failing),
                "newsbot_feed_failing": {str(f.id): float(f.error_count > 0) for f in polled},
                "newsbot_feed_errors": {str(f.id): float(f.error_count) for f in polled},
                "newsbot_feed_interval_seconds": {
                    str(f.id): float(services.pacing.pace(f.id).interval or 0.0) for f in polled
                },
                "newsbot_feed_requests_last_hour": {
                    str(f.id): float(services.pacing.requests_last_hour(f.id)) for f in polled
                },
                "newsbot_feed_pushed": {str(f.id): float(services.pacing.push_works(f.id)) for f in polled},
                "newsbot_broadcasts_sending": float(await broadcasts.count_sending(services.db)),
                "newsbot_database_bytes": float(await services.db.size()),
            })  # fmt: skip
        except Exception as exc:  # serve what is known rather than nothing
            log.warning("metrics: database gauges unavailable error=%s", exc)
    age = await _last_poll_age(services, now, database)
    if age is not None:
        gauges["newsbot_last_poll_age_seconds"] = age
    return services.metrics.render(gauges)
