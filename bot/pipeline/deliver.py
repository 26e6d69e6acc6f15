"""The dispatch stage: send due outbox rows to Telegram, within its limits, exactly once.

Every row is claimed (pending → sending) just before its send and marked sent just after, so
a restart resumes the rest; only rows caught in flight by a hard crash can go out twice, and
there are at most `send_concurrency` sends in flight (a combined message counts its alerts).

Limits (settings): about 30 messages/s overall, one message per second to a private chat,
20 per minute to a group. A 429 holds that chat for `retry_after` and retries without
counting an attempt; 429s from several chats at once pause everything for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.callbacks import pack
from bot.render import alert_html, combined_alert_html
from bot.services import Services
from storage import chats, outbox
from storage.db import StorageError
from storage.outbox import DueMessage

log = logging.getLogger(__name__)

COMBINE_OVER = 3  # more alerts than this due at once for one chat → one combined message
COMBINE_MAX = 100
RELOAD_SECONDS = 2.0
STORM_CHATS = 3  # 429s from this many chats within STORM_WINDOW → pause every send
STORM_WINDOW = 5.0
SEND_TIMEOUT = 30.0
GONE = ("chat not found", "user is deactivated", "bot was kicked", "bot was blocked",
        "peer_id_invalid", "chat_write_forbidden", "have no rights to send", "not enough rights")


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


@dataclass
class RateLimits:
    """Sliding windows on the sending side, with a small margin for transit jitter."""

    global_rate: float = 30.0
    private_interval: float = 1.0
    group_per_minute: int = 20
    margin: float = 0.02
    unlimited: bool = False
    _global: deque[float] = field(default_factory=deque)
    _last: dict[int, float] = field(default_factory=dict)
    _groups: dict[int, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _held: dict[int, float] = field(default_factory=dict)
    pause_until: float = 0.0

    @property
    def per_window(self) -> int:
        return max(1, int(self.global_rate))

    def global_ready_at(self, now: float) -> float:
        if self.unlimited:
            return now
        window = self._global
        while window and window[0] <= now - 1.0 - self.margin:
            window.popleft()
        ready = now if len(window) < self.per_window else window[0] + 1.0 + self.margin
        return max(ready, self.pause_until)

    def chat_ready_at(self, chat_id: int, now: float) -> float:
        ready = max(now, self._held.get(chat_id, 0.0), self.pause_until)
        if self.unlimited:
            return ready
        if chat_id > 0:
            last = self._last.get(chat_id)
            if last is not None:
                ready = max(ready, last + self.private_interval + self.margin)
        else:
            window = self._groups.get(chat_id)
            if window:
                while window and window[0] <= now - 60.0:
                    window.popleft()
                if len(window) >= self.group_per_minute:
                    ready = max(ready, window[0] + 60.0 + self.margin)
        return ready

    def record(self, chat_id: int, at: float) -> None:
        if self.unlimited:
            return
        self._global.append(at)
        if chat_id > 0:
            self._last[chat_id] = at
        else:
            self._groups[chat_id].append(at)

    def hold(self, chat_id: int, until: float) -> None:
        self._held[chat_id] = max(self._held.get(chat_id, 0.0), until)

    def forget(self, chat_id: int) -> None:
        self._last.pop(chat_id, None)
        self._groups.pop(chat_id, None)
        self._held.pop(chat_id, None)


def alert_keyboard(message: DueMessage, sections: dict[str, str]) -> InlineKeyboardMarkup | None:
    """Related, and one Mute button per reason the alert matched."""
    row = []
    if message.article_rowid is not None:
        row.append(InlineKeyboardButton("Related", callback_data=pack("rel", message.article_rowid)))
    for index, reason in enumerate(message.reasons[:3]):
        kind, _, value = reason.partition(":")
        name = sections.get(value, value) if kind == "section" else value
        label = f"Mute {name}" if len(message.reasons) > 1 else "Mute"
        row.append(InlineKeyboardButton(label[:40], callback_data=pack("mute", message.id, index)))
    return InlineKeyboardMarkup([row]) if row else None


class Dispatcher:
    """A long-running task sending due outbox rows in priority order (broadcasts first)."""

    def __init__(self, services: Services, bot: Bot, *, limits: RateLimits | None = None) -> None:
        settings = services.settings
        self.services = services
        self.bot = bot
        self.limits = limits or RateLimits(
            global_rate=settings.global_rate,
            private_interval=settings.private_interval,
            group_per_minute=settings.group_per_minute,
        )
        self.concurrency = settings.send_concurrency
        self.max_attempts = settings.max_attempts
        self._slots = asyncio.Semaphore(self.concurrency)
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._view: dict[int, list[DueMessage]] = {}
        self._loaded_at = 0.0
        self._storm: deque[tuple[float, int]] = deque()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.last_loop_at = 0.0

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        reset = await outbox.reset_in_flight(self.services.db)
        if reset:
            log.warning("outbox rows caught in flight by the last stop resent count=%d", reset)
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline, not a per-call timeout
        """Stop taking new rows, let sends in flight finish (bounded), leave the rest queued."""
        self._stopping = True
        self.services.outbox_wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=1.0)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                # Cancelled mid-send: those rows stay 'sending' and are retried at next start.
                await asyncio.wait(pending, timeout=1.0)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except StorageError as exc:
                self.services.metrics.inc("newsbot_errors_total", stage="deliver")
                log.error("dispatcher paused error=%s", exc)
                await self._sleep(1.0)
            except Exception:
                self.services.metrics.inc("newsbot_errors_total", stage="deliver")
                log.exception("dispatcher step failed")
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        wake = self.services.outbox_wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, seconds))

    async def _load(self) -> None:
        self.services.outbox_wake.clear()
        now = time.time()
        view: dict[int, list[DueMessage]] = {}
        for message in await outbox.due_messages(self.services.db, now):
            view.setdefault(message.chat_id, []).append(message)
        self._view = view
        self._loaded_at = now

    async def _step(self) -> None:
        self.last_loop_at = time.time()
        if (
            not self._view
            or self.services.outbox_wake.is_set()
            or time.time() - self._loaded_at > RELOAD_SECONDS
        ):
            await self._load()
        earliest = time.time() + RELOAD_SECONDS
        for chat_id in list(self._view):
            if self._stopping or self.services.outbox_wake.is_set():
                return
            if chat_id in self._busy:
                continue
            now = time.time()
            ready = self.limits.chat_ready_at(chat_id, now)
            if ready > now:
                earliest = min(earliest, ready)
                continue
            ready = self.limits.global_ready_at(now)
            if ready > now:
                await asyncio.sleep(ready - now)
                if self._stopping:
                    return
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                return
            batch = self._take(chat_id)
            self._busy.add(chat_id)
            self.limits.record(chat_id, time.time())
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._view:
            await self._sleep(earliest - time.time())
        else:
            # Nothing loaded: wait for an enqueue, or for retries coming due.
            next_due = await outbox.next_due_at(self.services.db)
            wait = RELOAD_SECONDS if next_due is None else next_due - time.time()
            await self._sleep(min(max(wait, 0.05), RELOAD_SECONDS))

    def _take(self, chat_id: int) -> list[DueMessage]:
        messages = self._view[chat_id]
        first = messages[0]
        alerts = [m for m in messages if m.article is not None]
        if first.article is not None and first.combine and len(alerts) > COMBINE_OVER:
            batch = alerts[:COMBINE_MAX]
        else:
            batch = [first]
        taken = {m.id for m in batch}
        rest = [m for m in messages if m.id not in taken]
        if rest:
            self._view[chat_id] = rest
        else:
            del self._view[chat_id]
        return batch

    def _render(self, batch: Sequence[DueMessage]) -> tuple[str, InlineKeyboardMarkup | None]:
        sections = self.services.section_names
        first = batch[0]
        if first.broadcast_html is not None:
            return first.broadcast_html, None
        if len(batch) == 1 and first.article is not None:
            return alert_html(first.article, first.reasons, sections), alert_keyboard(first, sections)
        items = [(m.article, m.reasons) for m in batch if m.article is not None]
        return combined_alert_html(items, sections), None

    async def _send(self, batch: list[DueMessage]) -> None:
        chat_id = batch[0].chat_id
        try:
            claimed = set(await outbox.claim(self.services.db, [m.id for m in batch]))
            batch = [m for m in batch if m.id in claimed]
            if batch:
                await self._deliver(batch)
        except StorageError as exc:
            log.error("delivery state not saved chat_id=%d error=%s", chat_id, exc)
        except Exception as exc:
            # A bug, not Telegram: keep the row out of the way, counted and logged.
            log.exception("delivery failed chat_id=%d", chat_id)
            self.services.metrics.inc("newsbot_messages_failed_total", len(batch))
            with contextlib.suppress(StorageError):
                await outbox.mark_failed(self.services.db, [m.id for m in batch], f"internal: {exc!r}")
        finally:
            self._busy.discard(chat_id)
            self._slots.release()

    async def _deliver(self, batch: list[DueMessage]) -> None:
        services = self.services
        metrics = services.metrics
        first = batch[0]
        ids = [m.id for m in batch]
        text, keyboard = self._render(batch)
        started = time.monotonic()
        try:
            sent = await asyncio.wait_for(
                self.bot.send_message(
                    first.chat_id,
                    text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                    link_preview_options=LinkPreviewOptions(
                        is_disabled=not first.link_previews or len(batch) > 1
                    ),
                ),
                timeout=SEND_TIMEOUT,
            )
        except RetryAfter as exc:
            await self._on_429(batch, _seconds(exc.retry_after))
            return
        except ChatMigrated as exc:
            new_id = int(exc.new_chat_id)
            log.info("chat migrated chat_id=%d new_chat_id=%d", first.chat_id, new_id)
            await chats.migrate_chat(services.db, first.chat_id, new_id)
            services.matcher.rename_chat(first.chat_id, new_id)
            self.limits.forget(first.chat_id)
            await outbox.retry_later(
                services.db, ids, at=time.time(), error="migrated", count_attempt=False,
                max_attempts=self.max_attempts,
            )
            services.outbox_wake.set()
            return
        except Forbidden as exc:
            await self._on_gone(first.chat_id, exc.message)
            return
        except BadRequest as exc:
            if any(marker in exc.message.casefold() for marker in GONE):
                await self._on_gone(first.chat_id, exc.message)
                return
            # The message itself is wrong; sending it again will not help.
            log.error("message refused chat_id=%d outbox_ids=%s error=%s", first.chat_id, ids, exc.message)
            metrics.inc("newsbot_telegram_errors_total", kind="400")
            metrics.inc("newsbot_messages_failed_total", len(batch))
            await outbox.mark_failed(services.db, ids, exc.message)
            return
        except (NetworkError, TimeoutError) as exc:
            # TimedOut and 5xx: the message may or may not have arrived; retrying is the only
            # way not to lose it.
            kind = "timeout" if isinstance(exc, TimedOut | TimeoutError) else "5xx"
            await self._on_transient(batch, kind, str(exc) or kind)
            return
        metrics.observe("newsbot_send_seconds", time.monotonic() - started)
        now = time.time()
        await outbox.mark_sent(services.db, ids, sent.message_id, now)
        kind = "broadcast" if first.broadcast_id is not None else "alert"
        metrics.inc("newsbot_messages_sent_total", len(batch), kind=kind)

    async def _on_429(self, batch: list[DueMessage], retry_after: float) -> None:
        chat_id = batch[0].chat_id
        now = time.time()
        self.services.metrics.inc("newsbot_telegram_errors_total", kind="429")
        self.limits.hold(chat_id, now + retry_after)
        self._storm.append((now, chat_id))
        while self._storm and self._storm[0][0] < now - STORM_WINDOW:
            self._storm.popleft()
        if len({c for _, c in self._storm}) >= STORM_CHATS:
            # Many chats limited at once means the bot as a whole is over its limit.
            self.limits.pause_until = max(self.limits.pause_until, now + min(retry_after, 30.0))
            log.warning("429 storm: pausing all sends seconds=%.1f", min(retry_after, 30.0))
        log.info("429 chat_id=%d retry_after=%.1f", chat_id, retry_after)
        await outbox.retry_later(
            self.services.db, [m.id for m in batch], at=now + retry_after, error="429",
            count_attempt=False, max_attempts=self.max_attempts,
        )

    async def _on_gone(self, chat_id: int, reason: str) -> None:
        self.services.metrics.inc("newsbot_telegram_errors_total", kind="403")
        if await chats.deactivate_chat(self.services.db, chat_id, reason):
            log.info("chat inactive chat_id=%d reason=%s", chat_id, reason)
        self.services.matcher.set_silenced(chat_id, True)
        self.services.metrics.inc("newsbot_messages_blocked_total")
        self._view.pop(chat_id, None)

    async def _on_transient(self, batch: list[DueMessage], kind: str, error: str) -> None:
        self.services.metrics.inc("newsbot_telegram_errors_total", kind=kind)
        attempts = max(m.attempts for m in batch) + 1
        delay = min(2.0 ** attempts, 300.0)
        failed = await outbox.retry_later(
            self.services.db, [m.id for m in batch], at=time.time() + delay, error=error,
            count_attempt=True, max_attempts=self.max_attempts,
        )
        if failed:
            self.services.metrics.inc("newsbot_messages_failed_total", len(failed))
            log.error("message failed after %d attempts chat_id=%d error=%s", attempts, batch[0].chat_id, error)
        else:
            log.warning("send retry chat_id=%d in=%.0fs error=%s", batch[0].chat_id, delay, error)
