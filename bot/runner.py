"""The bot's life: open, reach Telegram, run, stop — the same code for `newsbot run` and the
tests.

* One process per database: a lock is taken first (storage.lock.ProcessLock).
* The database and the health endpoint come up before Telegram is reached, so /healthz
  answers "starting" while Telegram is unreachable; reaching it is retried with back-off,
  one log line per attempt.
* Updates come from our own getUpdates loop (long polling): it retries every error with
  back-off (python-telegram-bot's own loop gives up for good after a 401/404), and /healthz
  reports when getUpdates stops answering. An update python-telegram-bot cannot read is
  logged, counted and skipped, not fatal. In webhook mode PTB's webhook server runs.
* SIGTERM/SIGINT stop everything within STOP_SECONDS: the update loop at once, sends in
  flight for up to 10 s (docs/delivery.md), the rest is left queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

from telegram import Update
from telegram.error import Conflict, InvalidToken, TelegramError
from telegram.request import HTTPXRequest

from bot import briefings, channels
from bot.app import (
    UPDATE_CONCURRENCY,
    CountingUpdateProcessor,
    build_app,
    set_command_menus,
    webhook_options,
)
from bot.broadcast import prepare_restart
from bot.clock import Clock, RealClock
from bot.commands.admin import resume_broadcasts
from bot.config import Settings
from bot.context import NewsApp, Services, open_services
from bot.logs import log_loop_errors
from bot.pipeline.botapi import BotApi
from bot.pipeline.ratelimit import RateLimits
from bot.stages import websub
from bot.stages.deliver import Dispatcher
from bot.stages.poll import catch_up_alerts, enqueue_unmatched, start_schedule
from bot.web import WebServer
from storage import feeds, maintenance
from storage.db import StorageError
from storage.lock import ProcessLock

log = logging.getLogger(__name__)

CATCH_UP_SECONDS = 5.0
BRIEFING_TICK_SECONDS = 20.0
MAINTENANCE_SECONDS = 60.0
CONNECT_MAX_DELAY = 60.0
UPDATES_MAX_DELAY = 60.0
LONG_POLL = 30
UPDATES_BACKLOG = 100  # updates taken from Telegram but not yet handled, at most
STOP_SECONDS = 20  # the documented bound on a clean stop


class Runtime:
    """The running bot's parts, in the order they start (and stop in reverse)."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or RealClock()
        self.limits = RateLimits(
            global_rate=settings.global_rate,
            private_interval=settings.private_interval,
            group_per_minute=settings.group_per_minute,
            paid_rate=settings.paid_rate,
        )
        self.updates = CountingUpdateProcessor(UPDATE_CONCURRENCY)
        self.app: NewsApp = build_app(settings, self.limits, self.clock, self.updates)
        self.health: WebServer | None = None
        self.dispatcher: Dispatcher | None = None
        self.api = BotApi(
            settings.api_url, settings.require_token(),
            connections=settings.send_concurrency + settings.paid_concurrency,
            timeout=20.0,
        )
        # The long poll's own connection, as python-telegram-bot keeps one for getUpdates; its
        # answer is read here update by update (`_take_updates`).
        self._polling = HTTPXRequest(
            connection_pool_size=1, connect_timeout=10, read_timeout=LONG_POLL + 10, write_timeout=20,
            pool_timeout=10,
        )
        self._updates: asyncio.Task[None] | None = None
        self._started = False

    @property
    def services(self) -> Services:
        return self.app.bot_data.services

    async def open(self) -> None:
        """The database, and the health endpoint (reporting "starting")."""
        services = await open_services(self.settings, clock=self.clock)
        self.app.bot_data.services = services
        if self.settings.http_port is not None:
            self.health = WebServer(services)
            await self.health.start(self.settings.http_host, self.settings.http_port)

    async def connect(self, stop: asyncio.Event) -> bool:
        """Reach Telegram (getMe), retrying with back-off until it answers or `stop` is set."""
        status = self.services.status
        delay = 1.0
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                await self.app.initialize()
                status.updates_error = None
                return True
            except (TelegramError, OSError) as exc:
                reason = _reason(exc)
                status.updates_error = reason
                log.warning("telegram not reachable at start attempt=%d retry_in=%.0fs error=%s",
                            attempt, delay, reason)
            await self.clock.wait(delay, stop)
            delay = min(delay * 2, CONNECT_MAX_DELAY)
        return False

    async def start(self, *, polling: bool = True) -> None:
        """Everything that needs Telegram: menus, channels, the dispatcher, jobs, updates."""
        services = self.services
        app = self.app
        await set_command_menus(app, self.settings)
        await channels.check(services, app.bot)
        await enqueue_unmatched(services)
        unfinished = await prepare_restart(services)  # before the dispatcher resends
        await self.api.start()
        self.dispatcher = Dispatcher(services, self.api, limits=self.limits)
        await self.dispatcher.start()
        await app.start()
        self._started = True
        jobs = services.jobs
        polled = await feeds.list_feeds(services.db)
        await websub.load(services)
        start_schedule(services, polled)
        jobs.every("alerts", CATCH_UP_SECONDS, lambda: catch_up_alerts(services), first=CATCH_UP_SECONDS)
        jobs.every("briefings", BRIEFING_TICK_SECONDS, lambda: _briefing_job(services), first=2.0)
        jobs.every("maintenance", MAINTENANCE_SECONDS, lambda: _maintenance_job(services), first=30.0)
        resume_broadcasts(services, app.bot, unfinished)
        if self.settings.webhook_url:
            assert app.updater is not None
            await app.updater.start_webhook(**webhook_options(self.settings))
        elif polling:
            await self._polling.initialize()
            self._updates = asyncio.create_task(self._receive(), name="updates")
        services.status.phase = "running"
        feeds_count = len(polled)
        if not feeds_count:
            log.warning("no feeds configured: nothing will be polled (set NEWSBOT_FEEDS or /addfeed)")
        log.info("newsbot running feeds=%d sections=%d", feeds_count, len(services.sections))

    async def _receive(self) -> None:
        """Long polling that never gives up: every error is retried with back-off, one line
        per failed attempt (numbered) and one when getUpdates answers again."""
        app, status, clock = self.app, self.services.status, self.clock
        offset = taken = 0
        delay = 1.0
        failures = 0
        failing_since = 0.0
        # getMe has just answered and this long poll goes out now: healthy from here on, until
        # it fails or stays silent past UPDATES_STALE (a long poll answers after LONG_POLL s
        # when nothing happens, so waiting for its answer reported a healthy start as down).
        status.updates_ok_at = clock.monotonic()
        while True:
            # Take no more from Telegram than the handlers keep up with: what is not fetched
            # waits there (a day at most), not in this process's memory, and a stop finds at
            # most UPDATES_BACKLOG updates still to handle.
            while taken - self.updates.finished >= UPDATES_BACKLOG:
                await self.clock.sleep(0.1)
            try:
                updates, offset = await self._take_updates(offset)
            except asyncio.CancelledError:
                raise
            except (TelegramError, OSError) as exc:
                reason = _reason(exc)
                status.updates_error = reason
                if isinstance(exc, Conflict):
                    reason += " (another copy of this bot is polling: stop it)"
                if not failures:
                    failing_since = clock.monotonic()
                failures += 1
                log.warning("getUpdates failed attempt=%d retry_in=%.0fs error=%s", failures, delay, reason)
                await clock.sleep(delay)
                delay = min(delay * 2, UPDATES_MAX_DELAY)
                continue
            status.updates_ok_at = clock.monotonic()
            status.updates_error = None
            if failures:
                log.info("getUpdates answering again after attempts=%d seconds=%.0f",
                         failures, status.updates_ok_at - failing_since)
                failures = 0
            delay = 1.0
            for update in updates:
                taken += 1
                await app.update_queue.put(update)

    async def _take_updates(self, offset: int) -> tuple[list[Update], int]:
        """One long poll: the updates python-telegram-bot can read, and the next offset.

        Read one by one rather than by `Bot.get_updates`, which refuses the whole answer when
        one update cannot be read (a field python-telegram-bot requires missing, as when
        Telegram changes an object): that update is logged with its id, counted and skipped,
        and the offset moves past it, instead of the same answer failing again for ever."""
        bot = self.app.bot
        query = urlencode({
            "offset": offset, "timeout": LONG_POLL, "limit": UPDATES_BACKLOG,
            "allowed_updates": json.dumps(Update.ALL_TYPES),
        })
        answer = await self._polling.post(f"{bot.base_url}/getUpdates?{query}")
        if not isinstance(answer, list):
            raise TelegramError(f"getUpdates answered {type(answer).__name__}, not a list of updates")
        updates: list[Update] = []
        for item in answer:
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if isinstance(update_id, int):
                offset = max(offset, update_id + 1)
            try:
                update = Update.de_json(item, bot)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                self.services.metrics.inc("newsbot_errors_total", stage="updates")
                log.warning("update cannot be read, skipped update_id=%s error=%s",
                            update_id, f"{type(exc).__name__}: {exc}"[:200])
                continue
            bot.insert_callback_data(update)
            updates.append(update)
        return updates, offset

    async def close(self) -> None:
        """Stop in reverse order, each part bounded in time."""
        if self._started:
            self.services.status.phase = "stopping"
        if self._updates is not None:
            self._updates.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._updates
            await self._polling.shutdown()
        if self.app.bot_data.opened:
            await self.services.feed_schedule.stop()
            await self.services.jobs.stop()
        app = self.app
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop(timeout=10)
        if self.health is not None:
            await self.health.stop()
        await self.api.close()
        with contextlib.suppress(TelegramError, OSError):
            await app.shutdown()
        if self.app.bot_data.opened:
            await self.services.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidToken):
        return "Telegram refused the token (401/404): check NEWSBOT_TOKEN"
    # A proxy's error page instead of the Bot API's JSON: PTB quotes the whole page.
    message = str(exc).split(". Parsing the server response", 1)[0]
    if message != str(exc):
        message += " (an answer that is not the Bot API's)"
    return f"{type(exc).__name__}: {message}"[:300]


async def _briefing_job(services: Services) -> None:
    try:
        await briefings.schedule(services, services.clock.time())
    except StorageError as exc:
        log.error("briefings not queued, retried next tick error=%s", exc)


async def _maintenance_job(services: Services) -> None:
    """Retention in small batches (more while there is a backlog), then freed pages back to
    the file system and the write-ahead log checkpointed."""
    settings = services.settings
    try:
        for _ in range(10):
            pruned = await maintenance.prune(
                services.db, outbox_days=settings.outbox_days, archive_days=settings.archive_days,
                now=services.clock.time(),
            )
            if pruned.total:
                log.info("retention outbox=%d held=%d articles=%d counters=%d seen=%d",
                         pruned.outbox, pruned.held, pruned.articles, pruned.counters, pruned.seen)
            if max(pruned.outbox, pruned.articles) < maintenance.BATCH:
                break
        await services.db.maintain()
    except StorageError as exc:
        log.error("maintenance failed, retried next tick error=%s", exc)


@asynccontextmanager
async def running(
    settings: Settings, *, polling: bool = True, stop: asyncio.Event | None = None, clock: Clock | None = None
) -> AsyncIterator[Runtime]:
    """The bot, started (or, when `stop` is set before Telegram answered, not) and stopped.
    `clock`: the one clock (the system's unless given; the tests give a simulated one)."""
    lock = ProcessLock(Path(settings.db_path))
    lock.acquire()
    runtime = Runtime(settings, clock)
    try:
        await runtime.open()
        if await runtime.connect(stop or asyncio.Event()):
            await runtime.start(polling=polling)
        yield runtime
    finally:
        try:
            await asyncio.wait_for(runtime.close(), timeout=STOP_SECONDS)
        finally:
            lock.release()


def run_bot(settings: Settings, clock: Clock) -> int:
    return asyncio.run(_serve(settings, clock))


async def _serve(settings: Settings, clock: Clock) -> int:
    loop = asyncio.get_running_loop()
    log_loop_errors(loop)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings, stop=stop, clock=clock):
        await stop.wait()
    log.info("newsbot stopped")
    return 0
