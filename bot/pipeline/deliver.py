"""The dispatch stage: send due outbox rows to Telegram, within its limits, exactly once.

Every row is claimed (pending → sending) just before its send and marked sent just after, so
a restart resumes the rest; only rows caught in flight by a hard crash can go out twice, and
there are at most `send_concurrency` sends in flight (a combined message counts its alerts).

Limits (settings): about 30 messages/s overall, one message per second to a private chat,
20 per minute to a group, counted so that Telegram's own count at arrival can never be higher
(see RateLimits). A 429 holds that chat for `retry_after` and retries without counting an
attempt; 429s from several chats at once pause everything for a moment. docs/delivery.md
states the guarantees for operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiosqlite
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.callbacks import pack
from bot.render import alert_html, combined_alert_html, reason_name
from bot.services import Services
from storage import chats, outbox
from storage.db import Database, StorageError
from storage.outbox import DueMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    """Telegram's flood limits, kept on the sending side on the monotonic clock.

    Telegram counts a message when it arrives, which is some time between the moment the
    request starts and the moment its answer is back. So a send in flight counts as
    happening *now*, and once answered it counts at the time of the answer: a window built
    that way can never hold fewer sends than Telegram's own, whatever the latency (a slow
    answer, a delayed claim, a loaded machine), and `margin` only has to cover clock
    granularity. The cost is one round trip per window slot (a few ms on a 1 s window).
    """

    global_rate: float = 30.0
    private_interval: float = 1.0
    group_per_minute: int = 20
    margin: float = 0.005
    unlimited: bool = False
    _global: deque[float] = field(default_factory=deque)
    _in_flight: int = 0
    _last: dict[int, float] = field(default_factory=dict)
    _groups: dict[int, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _held: dict[int, float] = field(default_factory=dict)
    pause_until: float = 0.0

    @property
    def per_window(self) -> int:
        return max(1, int(self.global_rate))

    def global_ready_at(self, now: float) -> float:
        """When the next send may start (`now` if it may start at once)."""
        if self.unlimited:
            return max(now, self.pause_until)
        window = self._global
        while window and window[0] <= now - 1.0 - self.margin:
            window.popleft()
        over = len(window) + self._in_flight - self.per_window
        if over < 0:
            ready = now
        elif over < len(window):
            ready = window[over] + 1.0 + self.margin
        else:
            # Sends in flight alone fill the window: the next answer tells when.
            ready = now + 1.0
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
                while window and window[0] <= now - 60.0 - self.margin:
                    window.popleft()
                if len(window) >= self.group_per_minute:
                    ready = max(ready, window[-self.group_per_minute] + 60.0 + self.margin)
        return ready

    def begin(self) -> None:
        """A send is starting: it counts as happening now until `end`."""
        self._in_flight += 1

    def end(self, chat_id: int, at: float, *, sent: bool = True) -> None:
        """Its answer came back at `at` (or, with `sent=False`, no request went out)."""
        self._in_flight = max(0, self._in_flight - 1)
        if sent:
            self.record(chat_id, at)

    def record(self, chat_id: int, at: float) -> None:
        """A send that Telegram counted no later than `at`."""
        if self.unlimited:
            return
        self._global.append(at)
        if chat_id > 0:
            self._last[chat_id] = at
        else:
            self._groups[chat_id].append(at)

    def prune(self, now: float) -> None:
        """Forget chats whose limits no longer matter, so memory follows recent traffic only."""
        horizon = now - max(self.private_interval, 0.0) - self.margin
        self._last = {c: t for c, t in self._last.items() if t > horizon}
        self._held = {c: t for c, t in self._held.items() if t > now}
        for chat_id in [c for c, w in self._groups.items() if not w or w[-1] <= now - 60.0 - self.margin]:
            del self._groups[chat_id]

    def hold(self, chat_id: int, until: float) -> None:
        self._held[chat_id] = max(self._held.get(chat_id, 0.0), until)

    def forget(self, chat_id: int) -> None:
        self._last.pop(chat_id, None)
        self._groups.pop(chat_id, None)
        self._held.pop(chat_id, None)


class GroupCommit:
    """Claims and sent-marks that arrive while one transaction runs share the next one.

    Every send writes twice (pending → sending, then sent); with several sends in flight, one
    commit and one turn of the writer lock serve them all. Nothing is reported done before
    its commit, so the crash bound is unchanged.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ops: list[tuple[Callable[[aiosqlite.Connection], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="outbox-writes")
        return await future

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a deadline for shutdown
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=timeout)

    async def _flush(self) -> None:
        while self._ops:
            ops, self._ops = self._ops, []
            try:
                async with self._db.write() as conn:
                    results = [await op(conn) for op, _ in ops]
            except Exception as exc:
                for _, future in ops:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(ops, results, strict=True):
                    if not future.done():  # a caller cancelled at stop no longer waits
                        future.set_result(result)


def alert_keyboard(message: DueMessage, sections: dict[str, str]) -> InlineKeyboardMarkup | None:
    """Related, and one Mute button per reason the alert matched."""
    row = []
    if message.article_rowid is not None:
        row.append(InlineKeyboardButton("Related", callback_data=pack("rel", message.article_rowid)))
    for index, reason in enumerate(message.reasons[:3]):
        label = f"Mute {reason_name(reason, sections)}" if len(message.reasons) > 1 else "Mute"
        row.append(InlineKeyboardButton(label[:40], callback_data=pack("mute", message.id, index)))
    return InlineKeyboardMarkup([row]) if row else None


class Dispatcher:
    """A long-running task sending due outbox rows in priority order (broadcasts first).

    It keeps a view of the due rows (reloaded every RELOAD_SECONDS, or at once when
    `services.outbox_wake` is set, so a new broadcast overtakes the alerts within one send)
    and walks it chat by chat, starting a send whenever that chat's and the global limits
    allow and fewer than `send_concurrency` sends are in flight. A finished send wakes the
    walk, so a chat's next message goes as soon as its interval allows.
    """

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
        self._writes = GroupCommit(services.db)
        self._busy: set[int] = set()  # chats with a send in flight
        self._taken: set[int] = set()  # outbox ids in flight: a reload must not offer them again
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0  # sends started and not yet finished (their tasks may linger a tick)
        self._answered: set[asyncio.Task[None]] = set()  # answer back, saving the outcome
        self._view: dict[int, list[DueMessage]] = {}
        self._loaded_at = 0.0
        self._storm: deque[tuple[float, int]] = deque()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._finished = 0  # sends finished so far; a change means "look again"
        self._changed = asyncio.Event()
        self.last_loop_at = 0.0

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def in_flight(self) -> int:
        return self._running

    async def start(self) -> None:
        reset = await outbox.reset_in_flight(self.services.db)
        if reset:
            log.warning("outbox rows caught in flight by the last stop resent count=%d", reset)
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline, not a per-call timeout
        """Stop taking new rows, let sends in flight finish (bounded), leave the rest queued."""
        self._stopping = True
        self._changed.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=1.0)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            # Sends still waiting for Telegram are given up: their rows stay 'sending' and are
            # resent at the next start (the documented duplicate bound). A send whose answer is
            # back is only saving it, and is let finish so that a delivered message is marked.
            waiting = pending - self._answered
            for task in waiting:
                task.cancel()
            if pending:
                log.warning("sends still in flight at stop count=%d", len(waiting))
                await asyncio.wait(pending, timeout=5.0)
        await self._writes.drain(timeout=5.0)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except StorageError as exc:
                self.services.metrics.inc("newsbot_errors_total", stage="deliver")
                log.error("dispatcher paused error=%s", exc)
                await self._wait(1.0, self._finished)
            except Exception:
                self.services.metrics.inc("newsbot_errors_total", stage="deliver")
                log.exception("dispatcher step failed")
                await self._wait(1.0, self._finished)

    async def _wait(self, seconds: float, seen: int) -> None:
        """Sleep up to `seconds`; wake early on new rows, on stop, or when a send finished
        after the caller looked (`seen` is the `_finished` count it looked at)."""
        wake = self.services.outbox_wake
        if seconds <= 0 or self._stopping or wake.is_set() or self._finished != seen:
            return
        self._changed.clear()
        waiters = [
            asyncio.ensure_future(wake.wait()),
            asyncio.ensure_future(self._changed.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _load(self) -> None:
        self.services.outbox_wake.clear()
        self.limits.prune(time.monotonic())
        # Rows coming due before the next reload (a 429 or back-off ending) are loaded too, their
        # chat held until then, so that they go on time rather than at the reload after.
        wall = time.time()
        view: dict[int, list[DueMessage]] = {}
        for message in await outbox.due_messages(self.services.db, wall + RELOAD_SECONDS):
            if message.id not in self._taken:
                view.setdefault(message.chat_id, []).append(message)
        mono = time.monotonic()
        for chat_id, messages in view.items():
            due = min(m.next_attempt_at for m in messages)
            if due > wall:
                self.limits.hold(chat_id, mono + (due - wall))
        self._view = view
        self._loaded_at = mono

    async def _step(self) -> None:
        self.last_loop_at = time.time()
        wake = self.services.outbox_wake
        if not self._view or wake.is_set() or time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            await self._load()
        seen = self._finished
        wake_at = time.monotonic() + RELOAD_SECONDS
        for chat_id in list(self._view):
            if self._stopping or wake.is_set():
                return
            if chat_id in self._busy or chat_id not in self._view:
                continue
            if self._running >= self.concurrency:
                await self._wait(RELOAD_SECONDS, self._finished)
                return  # and look again from the top: the view is in priority order
            now = time.monotonic()
            ready = self.limits.chat_ready_at(chat_id, now)
            if ready > now:
                wake_at = min(wake_at, ready)
                continue
            ready = self.limits.global_ready_at(now)
            if ready > now:
                await self._wait(ready - now, self._finished)
                return
            self._launch(chat_id)
        if self._view or self._running:
            await self._wait(wake_at - time.monotonic(), seen)
        else:
            # Nothing due and nothing in flight: wait for an enqueue, or for retries coming due.
            next_due = await outbox.next_due_at(self.services.db)
            wait = RELOAD_SECONDS if next_due is None else next_due - time.time()
            await self._wait(min(max(wait, 0.05), RELOAD_SECONDS), seen)

    def _launch(self, chat_id: int) -> None:
        batch = self._take(chat_id)
        self._busy.add(chat_id)
        self._taken.update(m.id for m in batch)
        self.limits.begin()
        self._running += 1
        task = asyncio.create_task(self._send(batch), name=f"send-{chat_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if not rest:
            del self._view[chat_id]
        elif rest[0].priority < first.priority:
            # The view is walked in order: a chat whose next row ranks lower (an alert after its
            # broadcast) goes to the back, behind other chats' broadcasts still to send.
            del self._view[chat_id]
            self._view[chat_id] = rest
        else:
            self._view[chat_id] = rest
        return batch

    def _put_back(self, batch: Sequence[DueMessage]) -> None:
        """Rows retried later go back to the front of their chat's queue (the chat is held), so
        they need no reload to be picked up again; a reload replaces them with what is due."""
        chat_id = batch[0].chat_id
        self._view[chat_id] = [*batch, *self._view.get(chat_id, [])]

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
        ids = [m.id for m in batch]
        counted = True  # the limiter still counts this send as in flight
        went_out = False
        try:
            claimed = set(await self._writes.run(lambda conn: outbox.claim_in(conn, ids)))
            batch = [m for m in batch if m.id in claimed]
            if batch:
                went_out = True
                text, keyboard = self._render(batch)
                started = time.monotonic()
                try:
                    sent = await asyncio.wait_for(self._request(batch, text, keyboard), SEND_TIMEOUT)
                except (TelegramError, TimeoutError) as exc:
                    # The answer is back (or given up on): from here on the send counts at
                    # this moment, not as "now", and the bookkeeping below costs no slot.
                    self._answer_back(chat_id)
                    counted = False
                    await self._on_error(batch, exc)
                else:
                    self._answer_back(chat_id)
                    counted = False
                    self.services.metrics.observe("newsbot_send_seconds", time.monotonic() - started)
                    await self._on_sent(batch, sent.message_id)
        except StorageError as exc:
            log.error("delivery state not saved chat_id=%d outbox_ids=%s error=%s", chat_id, ids, exc)
        except Exception as exc:
            # A bug, not Telegram: keep the row out of the way, counted and logged.
            log.exception("delivery failed chat_id=%d", chat_id)
            self.services.metrics.inc("newsbot_messages_failed_total", len(batch))
            with contextlib.suppress(StorageError):
                await outbox.mark_failed(self.services.db, [m.id for m in batch], f"internal: {exc!r}")
        finally:
            if counted:
                self.limits.end(chat_id, time.monotonic(), sent=went_out)
            self._running -= 1
            self._answered.discard(asyncio.current_task())
            self._busy.discard(chat_id)
            self._taken.difference_update(ids)
            self._finished += 1
            self._changed.set()

    def _answer_back(self, chat_id: int) -> None:
        self.limits.end(chat_id, time.monotonic())
        task = asyncio.current_task()
        if task is not None:
            self._answered.add(task)

    async def _request(
        self, batch: Sequence[DueMessage], text: str, keyboard: InlineKeyboardMarkup | None
    ) -> Message:
        first = batch[0]
        return await self.bot.send_message(
            first.chat_id,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
            link_preview_options=LinkPreviewOptions(
                is_disabled=not first.link_previews or len(batch) > 1
            ),
        )

    async def _on_sent(self, batch: Sequence[DueMessage], message_id: int) -> None:
        await self._mark_sent([m.id for m in batch], message_id)
        kind = "broadcast" if batch[0].broadcast_id is not None else "alert"
        self.services.metrics.inc("newsbot_messages_sent_total", len(batch), kind=kind)

    async def _on_error(self, batch: list[DueMessage], exc: TelegramError | TimeoutError) -> None:
        services = self.services
        metrics = services.metrics
        first = batch[0]
        ids = [m.id for m in batch]
        if isinstance(exc, RetryAfter):
            await self._on_429(batch, _seconds(exc.retry_after))
        elif isinstance(exc, ChatMigrated):
            await self._on_migrated(batch, int(exc.new_chat_id))
        elif isinstance(exc, Forbidden):
            await self._on_gone(first.chat_id, exc.message)
        elif isinstance(exc, BadRequest):
            if any(marker in exc.message.casefold() for marker in GONE):
                await self._on_gone(first.chat_id, exc.message)
                return
            # The message itself is wrong; sending it again will not help.
            log.error("message refused chat_id=%d outbox_ids=%s error=%s", first.chat_id, ids, exc.message)
            metrics.inc("newsbot_telegram_errors_total", kind="400")
            metrics.inc("newsbot_messages_failed_total", len(batch))
            await outbox.mark_failed(services.db, ids, exc.message)
        elif isinstance(exc, NetworkError | TimeoutError):
            # TimedOut and 5xx: the message may or may not have arrived; retrying is the only
            # way not to lose it (and the documented way it can arrive twice).
            kind = "timeout" if isinstance(exc, TimedOut | TimeoutError) else "5xx"
            await self._on_transient(batch, kind, str(exc) or kind)
        else:
            # Anything else Telegram says (401, 404, 409…) is not about this message: retry
            # with back-off rather than drop it at once.
            await self._on_transient(batch, "other", str(exc) or type(exc).__name__)

    async def _mark_sent(self, ids: list[int], message_id: int) -> None:
        # The message is out: losing this write would send it again after a restart, so a
        # busy database gets a few more chances before the row is left 'sending'.
        now = time.time()
        for attempt in range(4):
            try:
                await self._writes.run(lambda conn: outbox.mark_sent_in(conn, ids, message_id, now))
                return
            except StorageError:
                if attempt == 3:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))

    async def _on_429(self, batch: list[DueMessage], retry_after: float) -> None:
        chat_id = batch[0].chat_id
        now = time.monotonic()
        retry_after = max(retry_after, 0.0)
        self.services.metrics.inc("newsbot_telegram_errors_total", kind="429")
        self.limits.hold(chat_id, now + retry_after)
        self._storm.append((now, chat_id))
        while self._storm and self._storm[0][0] < now - STORM_WINDOW:
            self._storm.popleft()
        if len({c for _, c in self._storm}) >= STORM_CHATS:
            # Many chats limited at once means the bot as a whole is over its limit.
            pause = min(retry_after, 30.0)
            if now + pause > self.limits.pause_until + 0.5:
                log.warning("429 storm: pausing all sends seconds=%.1f", pause)
            self.limits.pause_until = max(self.limits.pause_until, now + pause)
        log.info("429 chat_id=%d retry_after=%.1f", chat_id, retry_after)
        # Never given up on: a 429 is "later", so it costs no attempt.
        await outbox.retry_later(
            self.services.db, [m.id for m in batch], at=time.time() + retry_after, error="429",
            count_attempt=False, max_attempts=self.max_attempts,
        )
        self._put_back(batch)

    async def _on_migrated(self, batch: list[DueMessage], new_id: int) -> None:
        services = self.services
        old_id = batch[0].chat_id
        log.info("chat migrated chat_id=%d new_chat_id=%d", old_id, new_id)
        await chats.migrate_chat(services.db, old_id, new_id)
        services.matcher.rename_chat(old_id, new_id)
        self.limits.forget(old_id)
        await outbox.retry_later(
            services.db, [m.id for m in batch], at=time.time(), error="migrated",
            count_attempt=False, max_attempts=self.max_attempts,
        )
        # The view still names the old id: reload it from the moved rows.
        self._view.pop(old_id, None)
        services.outbox_wake.set()

    async def _on_gone(self, chat_id: int, reason: str) -> None:
        services = self.services
        services.metrics.inc("newsbot_telegram_errors_total", kind="403")
        cancelled = await outbox.queued_for_chat(services.db, chat_id)
        if await chats.deactivate_chat(services.db, chat_id, reason):
            log.info("chat inactive chat_id=%d reason=%s cancelled=%d", chat_id, reason, cancelled)
        services.matcher.set_silenced(chat_id, True)
        services.metrics.inc("newsbot_messages_blocked_total", cancelled)
        self.limits.forget(chat_id)
        self._view.pop(chat_id, None)

    async def _on_transient(self, batch: list[DueMessage], kind: str, error: str) -> None:
        chat_id = batch[0].chat_id
        self.services.metrics.inc("newsbot_telegram_errors_total", kind=kind)
        attempts = max(m.attempts for m in batch) + 1
        delay = min(2.0**attempts, 300.0)
        failed = set(
            await outbox.retry_later(
                self.services.db, [m.id for m in batch], at=time.time() + delay, error=error,
                count_attempt=True, max_attempts=self.max_attempts,
            )
        )
        if failed:
            self.services.metrics.inc("newsbot_messages_failed_total", len(failed))
            log.error("message failed after %d attempts chat_id=%d error=%s", attempts, chat_id, error)
        else:
            log.warning("send retry chat_id=%d in=%.0fs error=%s", chat_id, delay, error)
        retry = [replace(m, attempts=m.attempts + 1) for m in batch if m.id not in failed]
        if retry:
            self.limits.hold(chat_id, time.monotonic() + delay)
            self._put_back(retry)
