"""The dispatch stage: send due outbox rows to Telegram, within its limits, exactly once.

Every row is claimed (pending → sending) just before its send and marked sent just after, so
a restart resumes the rest; only rows caught in flight by a hard crash can go out twice, and
there are at most `send_concurrency` sends in flight (a combined message counts its alerts),
plus up to `paid_concurrency` sends of a paid broadcast (1,000 a second with a 50 ms round
trip needs about 50 in flight).
docs/delivery.md states the guarantees for operators.

Which chat goes next is `lanes.Planner`'s decision; whether it may go now is
`ratelimit.RateLimits`'; the request goes through `botapi.BotApi`. This module reads the
due rows, renders what each message says, and turns every answer into the row's next state:

* 429: that chat is held for `retry_after`, the row retried without counting an attempt;
  429s from several chats at once pause every send for a moment.
* No answer, 5xx, 401/404 (Telegram or the network is down, or the token was revoked): a
  cheap getMe decides. If Telegram does not answer it either, sending pauses — no row spends
  an attempt — and getMe is asked again with back-off until it answers; then everything
  resumes. If it answers, the error singled out this message or chat: the attempt counts.
* 403 and "chat not found"-like answers: the chat leaves the audience, its queue is blocked.
* Other 400s: that message is refused for good ('failed'), except for answers that say
  where to send instead (a group became a supergroup, a forum topic was deleted) or that a
  paid broadcast must go at the free rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot import briefings, localtime, render
from bot.context import Services
from bot.pipeline.botapi import Answer, Sender, Unreachable
from bot.pipeline.lanes import COMBINE_MAX, Planner
from bot.pipeline.ratelimit import RateLimits
from storage import broadcasts, chats, outbox
from storage.db import GroupCommit, StorageError
from storage.outbox import LANES, DueMessage, SentBatch

log = logging.getLogger(__name__)

RELOAD_SECONDS = 30.0  # the view's horizon and its longest life
LOAD_PER_LANE = 2000
LOW_WATER = 200  # a view that held a lane's whole load is read again when down to this
STORM_CHATS = 3  # 429s from this many chats within STORM_WINDOW → pause every send
STORM_WINDOW = 5.0
PROBE_FRESH = 2.0  # one getMe answers for every failure within this many seconds
PROBE_MAX_DELAY = 30.0
TRANSIENT_MAX_DELAY = 300.0
GONE = ("chat not found", "user is deactivated", "bot was kicked", "bot was blocked",
        "peer_id_invalid", "chat_write_forbidden", "have no rights to send", "not enough rights",
        "bot is not a member", "group chat was deleted")  # fmt: skip
TOPIC_GONE = ("message thread not found", "topic_deleted", "topic was deleted", "thread not found")
PAID_REFUSED = ("star", "paid", "balance", "payment")
NOT_MODIFIED = "message is not modified"


@dataclass(frozen=True, slots=True)
class Request:
    """What one batch sends: the method, its parameters, and how to count it."""

    method: str
    params: dict[str, Any]
    paid: bool = False


class Dispatcher:
    """A long-running task sending due outbox rows lane by lane.

    It keeps a view of the rows due within RELOAD_SECONDS (their chats held until due) and
    reads it again at once when `services.outbox_wake` is set (a new broadcast or keyword
    alert is seen within one send), when a lane it could not load whole runs low, when
    nothing is left and the next row comes due, and at the latest every RELOAD_SECONDS. It
    asks the planner for the next chat whenever a send may start; a finished send wakes it,
    so a chat's next message goes as soon as its interval allows.
    """

    def __init__(
        self,
        services: Services,
        api: Sender,
        *,
        limits: RateLimits | None = None,
        planner: Planner | None = None,
    ) -> None:
        settings = services.settings
        self.services = services
        self.api = api
        self.clock = services.clock
        self.limits = limits or RateLimits(
            global_rate=settings.global_rate,
            private_interval=settings.private_interval,
            group_per_minute=settings.group_per_minute,
            paid_rate=settings.paid_rate,
        )
        # An empty Planner is falsy (it has a length): `planner or Planner()` would drop it.
        self.planner = planner if planner is not None else Planner()
        self.concurrency = settings.send_concurrency
        self.paid_concurrency = settings.paid_concurrency
        self.max_attempts = settings.max_attempts
        self._writes = GroupCommit(services.db)
        self._busy: set[int] = set()  # chats with a send in flight
        self._taken: set[int] = set()  # outbox ids in flight: a reload must not offer them again
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered: set[asyncio.Task[None]] = set()  # answer back, saving the outcome
        self._running = 0
        self._running_paid = 0
        self._loaded_at = -math.inf
        self._partial: set[int] = set()  # lanes the last load could not read whole
        self._any_paid = False  # the view holds rows of a paid broadcast
        self._next_due = math.inf  # monotonic time the next unloaded row comes due
        self._storm: deque[tuple[float, int]] = deque()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._free: set[int] = set()  # broadcasts Telegram refused to send paid
        self._probe: asyncio.Task[bool] | None = None
        self._probed_at = -math.inf
        self._outage: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def in_flight(self) -> int:
        return self._running + self._running_paid

    @property
    def tasks(self) -> int:
        """Tasks of this dispatcher still running (sends, deferrals)."""
        return len(self._tasks)

    @property
    def paused_for_outage(self) -> bool:
        return self._outage is not None and not self._outage.done()

    async def start(self) -> None:
        reset = await outbox.reset_in_flight(self.services.db)
        if reset:
            log.warning("outbox rows caught in flight by the last stop resent count=%d", reset)
        self._task = asyncio.create_task(self._run(), name="dispatcher")
        self.services.status.dispatcher_alive = True

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline, not a per-call timeout
        """Stop taking new rows, let sends in flight finish (bounded), leave the rest queued."""
        self._stopping = True
        self._changed.set()
        for task in (self._outage, self._probe):
            if task is not None:
                task.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=1.0)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self.services.status.dispatcher_alive = False
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

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except StorageError as exc:
                self.services.metrics.inc("newsbot_errors_total", stage="deliver")
                log.error("dispatcher paused error=%s", exc)
                await self.clock.wait(1.0, self._changed)
            except Exception:
                self.services.metrics.inc("newsbot_errors_total", stage="deliver")
                log.exception("dispatcher step failed")
                await self.clock.wait(1.0, self._changed)
        self.services.status.dispatcher_alive = False

    async def _load(self) -> None:
        self.services.outbox_wake.clear()
        clock = self.clock
        self.limits.prune(clock.monotonic())
        # Rows coming due before the next reload (a 429 or back-off ending) are loaded too, their
        # chat held until then, so that they go on time rather than at the reload after.
        wall = clock.time()
        rows: list[DueMessage] = []
        self._partial = set()
        for lane in LANES:
            found = await outbox.due_messages(self.services.db, lane, wall + RELOAD_SECONDS, LOAD_PER_LANE)
            if len(found) >= LOAD_PER_LANE:
                self._partial.add(lane)
            rows += found
        self.planner.replace(rows, self._taken)
        self._any_paid = any(self._paid(m) for m in rows)
        self._next_due = math.inf
        mono = clock.monotonic()
        for message in rows:
            if message.next_attempt_at > wall:
                self.limits.hold(message.chat_id, mono + (message.next_attempt_at - wall))
        self._loaded_at = mono

    def _running_low(self) -> bool:
        """A lane that was not read whole is down to LOW_WATER rows in the view."""
        if not self._partial:
            return False
        waiting = self.planner.waiting()
        return any(waiting[lane] < LOW_WATER for lane in self._partial)

    def _ready_at(self, message: DueMessage, now: float) -> float:
        paid = self._paid(message)
        if (self._running_paid >= self.paid_concurrency) if paid else (self._running >= self.concurrency):
            return math.inf  # no room in flight: the next finished send wakes the loop
        return self.limits.ready_at(message.chat_id, now, paid=paid)

    def _paid(self, message: DueMessage) -> bool:
        return message.kind == "broadcast" and message.paid and message.broadcast_id not in self._free

    async def _step(self) -> None:
        clock, wake = self.clock, self.services.outbox_wake
        now = clock.monotonic()
        if (
            wake.is_set()
            or now - self._loaded_at > RELOAD_SECONDS
            or self._running_low()
            or (not self.planner and now >= self._next_due)
        ):
            await self._load()
        self._changed.clear()
        wake_at = clock.monotonic() + RELOAD_SECONDS
        while not self._stopping and not wake.is_set():
            now = clock.monotonic()
            gate = self.limits.global_ready_at(now)
            if gate > now and not self._any_paid:
                # The global window is full: no chat may go before it opens, whatever its own
                # limits say, so there is no need to ask the planner about every one of them.
                wake_at = min(wake_at, gate)
                break
            if self._running >= self.concurrency and (not self._any_paid or self._running_paid >= self.paid_concurrency):
                break  # no room in flight for any row: the next finished send wakes the loop
            chat_id, at = self.planner.pick(now, self._ready_at, self._busy)
            if chat_id is None:
                wake_at = min(wake_at, at)
                break
            batch = self.planner.take(chat_id, now=clock.time())
            held = self._quiet(batch)
            if held:
                self._defer(held)
                batch = [m for m in batch if m not in held]
                if not batch:
                    continue
            self._launch(batch)
        if not self.planner and not self.in_flight and self._next_due == math.inf:
            # Nothing due and nothing in flight: wait for an enqueue, or for retries coming due.
            next_due = await outbox.next_due_at(self.services.db)
            if next_due is not None:
                self._next_due = clock.monotonic() + max(0.05, next_due - clock.time())
                wake_at = min(wake_at, self._next_due)
        # Always yield: even "ready now" waits for the loop's next turn, never spins it.
        await clock.wait(max(0.0, wake_at - clock.monotonic()), wake, self._changed)

    # --- quiet hours --------------------------------------------------------------------------

    def _quiet(self, batch: Sequence[DueMessage]) -> list[DueMessage]:
        """Rows that must wait for the end of the reader's quiet hours (mode "hold")."""
        chat = batch[0].chat
        if chat.quiet_start is None or chat.quiet_mode != "hold":
            return []
        until = self._quiet_until(chat.quiet_start, chat.quiet_end, chat.timezone)
        if until is None:
            return []
        return [m for m in batch if m.kind in ("alert", "briefing") or (m.kind == "broadcast" and not m.urgent)]

    def _quiet_until(self, start: int | None, end: int | None, zone: str | None) -> float | None:
        return localtime.quiet_until(start, end, self.services.chat_zone(zone), self.clock.time())

    def _defer(self, rows: Sequence[DueMessage]) -> None:
        chat = rows[0].chat
        until = self._quiet_until(chat.quiet_start, chat.quiet_end, chat.timezone)
        if until is None:  # the quiet hours just ended
            self.planner.put_back(rows)
            return
        ids = [m.id for m in rows if m.kind == "alert"]
        others = [m.id for m in rows if m.kind != "alert"]
        self._taken.update(m.id for m in rows)

        async def write() -> None:
            try:
                if ids:
                    await outbox.defer(self.services.db, ids, until=until, digest="overnight")
                if others:
                    await outbox.defer(self.services.db, others, until=until, digest=None)
            finally:
                self._taken.difference_update(m.id for m in rows)
            log.info("quiet hours: held chat_id=%d rows=%d until=%.0f", chat.id, len(rows), until)

        self._spawn(write(), f"defer-{chat.id}")

    # --- sending ------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _launch(self, batch: list[DueMessage]) -> None:
        chat_id = batch[0].chat_id
        paid = self._paid(batch[0])
        self._busy.add(chat_id)
        self._taken.update(m.id for m in batch)
        self.limits.begin(paid=paid)
        if paid:
            self._running_paid += 1
        else:
            self._running += 1
        self._spawn(self._send(batch, paid), f"send-{chat_id}")

    async def _send(self, batch: list[DueMessage], paid: bool) -> None:
        chat_id = batch[0].chat_id
        ids = [m.id for m in batch]
        counted = True  # the limiter still counts this send as in flight
        went_out = False
        try:
            if self.planner.gathers(batch, self.clock.time()):
                batch = await self._gather(batch)
                ids = [m.id for m in batch]
            claimed = set(await self._writes.run(lambda conn: outbox.claim_in(conn, ids)))
            batch = [m for m in batch if m.id in claimed]
            request = await self._compose(batch, paid) if batch else None
            if request is not None:
                went_out = True
                started = self.clock.monotonic()
                try:
                    answer = await self.api.call(request.method, request.params)
                except Unreachable as exc:
                    self._answer_back(chat_id, paid)
                    counted = False
                    await self._on_transient(batch, exc.kind, str(exc))
                else:
                    self._answer_back(chat_id, paid)
                    counted = False
                    self.services.metrics.observe_send(self.clock.monotonic() - started)
                    await self._on_answer(batch, request, answer)
        except StorageError as exc:
            log.error("delivery state not saved chat_id=%d outbox_ids=%s error=%s", chat_id, ids, exc)
        except Exception as exc:
            # A bug, not Telegram: keep the row out of the way, counted and logged.
            log.exception("delivery failed chat_id=%d", chat_id)
            self.services.metrics.inc("newsbot_messages_failed_total", len(batch))
            with contextlib.suppress(StorageError):
                await outbox.mark_failed(self.services.db, ids, f"internal: {exc!r}", now=self.clock.time())
        finally:
            if counted:
                self.limits.end(chat_id, self.clock.monotonic(), sent=went_out, paid=paid)
            if paid:
                self._running_paid -= 1
            else:
                self._running -= 1
            self._answered.discard(asyncio.current_task())
            self._busy.discard(chat_id)
            self._taken.difference_update(ids)
            self._changed.set()

    async def _gather(self, batch: list[DueMessage]) -> list[DueMessage]:
        """The chat's other due alerts that go with a batch that waited (lanes.Planner.gathers),
        read from the database: the view holds only the oldest rows of each lane."""
        first = batch[0]
        more = await outbox.due_alerts_for_chat(
            self.services.db, first.chat_id, first.thread_id, self.clock.time(), COMBINE_MAX
        )
        merged = self.planner.gather(batch, (m for m in more if m.id not in self._taken))
        self._taken.update(m.id for m in merged)
        return merged

    def _answer_back(self, chat_id: int, paid: bool) -> None:
        self.limits.end(chat_id, self.clock.monotonic(), paid=paid)
        task = asyncio.current_task()
        if task is not None:
            self._answered.add(task)

    # --- what a batch says ---------------------------------------------------------------------

    async def _compose(self, batch: Sequence[DueMessage], paid: bool) -> Request | None:
        first = batch[0]
        chat = first.chat
        sections = self.services.section_names
        zone = self.services.chat_zone(chat.timezone)
        params: dict[str, Any] = {"chat_id": chat.id, "parse_mode": "HTML"}
        if first.kind == "edit":
            return await self._compose_edit(first, params)
        if first.kind == "broadcast":
            text, keyboard = first.broadcast_html or "", None
            if paid:
                params["allow_paid_broadcast"] = True
        elif first.kind == "briefing":
            rendered = await briefings.compose(self.services, first)
            text, keyboard = rendered.html, rendered.keyboard
        elif first.kind == "post":
            assert first.article is not None
            rendered = render.alert(first.article, (), sections, zone, row_id=first.id, buttons=False)
            text, keyboard = rendered.html, None
        elif len(batch) == 1 and not first.digest:
            assert first.article is not None
            rendered = render.alert(first.article, first.reasons, sections, zone, row_id=first.id)
            text, keyboard = rendered.html, rendered.keyboard
        else:
            rendered = render.combined(_items(batch), sections, zone, digest=first.digest)
            text, keyboard = rendered.html, rendered.keyboard
        params["text"] = text
        params["link_preview_options"] = {
            "is_disabled": not chat.link_previews or first.kind != "alert" or len(batch) > 1
        }
        if keyboard is not None:
            params["reply_markup"] = keyboard.to_dict()
        if first.thread_id is not None:
            params["message_thread_id"] = first.thread_id
        urgent = first.kind == "broadcast" and first.urgent
        quiet = self._quiet_until(chat.quiet_start, chat.quiet_end, chat.timezone)
        if chat.quiet_mode == "silent" and not urgent and quiet is not None:
            params["disable_notification"] = True
        return Request("sendMessage", params, paid=paid)

    async def _compose_edit(self, edit: DueMessage, params: dict[str, Any]) -> Request | None:
        """A correction: the message as it was sent, with the corrected stories' new title and
        link and an "updated" mark, keeping its buttons."""
        assert edit.target_id is not None
        rows = await outbox.message_rows(self.services.db, edit.chat_id, edit.target_id)
        if not rows or rows[0].article is None:
            await outbox.mark_failed(self.services.db, [edit.id], "the message it corrects is gone", now=self.clock.time())
            return None
        first = rows[0]
        zone = self.services.chat_zone(first.chat.timezone)
        sections = self.services.section_names
        if first.kind == "post" or (len(rows) == 1 and not first.digest):
            assert first.article is not None
            rendered = render.alert(
                first.article, first.reasons, sections, zone, row_id=first.id,
                updated=first.shows_old_version, buttons=first.kind != "post",
            )
        else:
            rendered = render.combined(_items(rows), sections, zone, digest=first.digest)
        params.update(message_id=edit.target_id, text=rendered.html)
        params["link_preview_options"] = {"is_disabled": not first.chat.link_previews or len(rows) > 1}
        if rendered.keyboard is not None:
            params["reply_markup"] = rendered.keyboard.to_dict()
        return Request("editMessageText", params)

    # --- answers ------------------------------------------------------------------------------

    async def _on_answer(self, batch: list[DueMessage], request: Request, answer: Answer) -> None:
        first = batch[0]
        description = answer.description.casefold()
        if answer.ok or (first.kind == "edit" and NOT_MODIFIED in description):
            message_id = answer.message_id or (first.target_id or 0)
            await self._on_sent(batch, message_id)
        elif answer.status == 429:
            await self._on_429(batch, answer.retry_after or 1.0)
        elif answer.migrate_to is not None:
            await self._on_migrated(batch, answer.migrate_to)
        elif answer.status == 403 or (answer.status == 400 and any(m in description for m in GONE)):
            await self._on_gone(first.chat_id, answer.description)
        elif answer.status == 400 and first.thread_id is not None and any(m in description for m in TOPIC_GONE):
            await self._on_topic_gone(batch, first.thread_id)
        elif answer.status == 400 and request.paid and any(m in description for m in PAID_REFUSED):
            await self._on_paid_refused(batch, answer.description)
        elif answer.status == 400:
            await self._on_refused(batch, answer.description)
        else:
            # 5xx, 401, 404, 409…: not about this message; maybe about Telegram itself.
            kind = "5xx" if answer.status >= 500 else "other"
            await self._on_transient(batch, kind, answer.description or f"HTTP {answer.status}")

    async def _on_sent(self, batch: Sequence[DueMessage], message_id: int) -> None:
        first = batch[0]
        sent = SentBatch(
            ids=tuple(m.id for m in batch), message_id=message_id, kind=first.kind,
            published=tuple(m.article.published_at for m in batch if m.article is not None),
            shown=tuple(
                (m.id, "|".join(m.reasons), m.article.revision, "|".join(m.article.sections))
                for m in batch if m.kind in ("alert", "post") and m.article is not None
            ),
        )
        # The message is out: losing this write would send it again after a restart, so a
        # busy database gets a few more chances before the row is left 'sending'.
        now = self.clock.time()
        for attempt in range(4):
            try:
                await self._writes.run(lambda conn: outbox.mark_sent_in(conn, sent, now))
                break
            except StorageError:
                if attempt == 3:
                    raise
                await self.clock.sleep(0.5 * (attempt + 1))
        if first.kind == "briefing":
            await chats.set_last_briefing(self.services.db, first.chat_id, first.next_attempt_at)
        self.services.metrics.inc("newsbot_messages_sent_total", len(batch), kind=first.kind)
        self.services.status.sent(self.clock.monotonic())

    async def _on_429(self, batch: list[DueMessage], retry_after: float) -> None:
        chat_id = batch[0].chat_id
        now = self.clock.monotonic()
        retry_after = max(retry_after, 0.0)
        self.services.metrics.inc("newsbot_telegram_errors_total", kind="429")
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
        await self._retry(batch, delay=retry_after, error="429", count_attempt=False)

    async def _retry(self, batch: list[DueMessage], *, delay: float, error: str, count_attempt: bool) -> list[int]:
        failed = await outbox.retry_later(
            self.services.db, [m.id for m in batch], at=self.clock.time() + delay, error=error,
            count_attempt=count_attempt, max_attempts=self.max_attempts, now=self.clock.time(),
        )
        retry = [
            replace(m, attempts=m.attempts + (1 if count_attempt else 0))
            for m in batch if m.id not in failed
        ]
        if retry:
            self.limits.hold(retry[0].chat_id, self.clock.monotonic() + delay)
            self.planner.put_back(retry)
        return failed

    async def _on_migrated(self, batch: list[DueMessage], new_id: int) -> None:
        services = self.services
        old_id = batch[0].chat_id
        log.info("chat migrated chat_id=%d new_chat_id=%d", old_id, new_id)
        await chats.migrate_chat(services.db, old_id, new_id, now=self.clock.time())
        services.matcher.rename_chat(old_id, new_id)
        self.limits.forget(old_id)
        await outbox.retry_later(
            services.db, [m.id for m in batch], at=self.clock.time(), error="migrated",
            count_attempt=False, max_attempts=self.max_attempts, now=self.clock.time(),
        )
        # The view still names the old id: reload it from the moved rows.
        self.planner.drop_chat(old_id)
        services.outbox_wake.set()

    async def _on_gone(self, chat_id: int, reason: str) -> None:
        services = self.services
        services.metrics.inc("newsbot_telegram_errors_total", kind="403")
        was_active, blocked = await outbox.block_chat(services.db, chat_id, reason, now=self.clock.time())
        if was_active:
            log.info("chat inactive chat_id=%d reason=%s cancelled=%d", chat_id, reason, blocked)
        services.matcher.set_silenced(chat_id, True)
        services.metrics.inc("newsbot_messages_blocked_total", blocked)
        self.limits.forget(chat_id)
        self.planner.drop_chat(chat_id)

    async def _on_topic_gone(self, batch: list[DueMessage], thread_id: int) -> None:
        chat_id = batch[0].chat_id
        log.info("forum topic gone, using the general topic chat_id=%d thread_id=%d", chat_id, thread_id)
        await outbox.move_to_general_topic(self.services.db, chat_id, thread_id)
        self.services.matcher.clear_thread(chat_id, thread_id)
        moved = [replace(m, thread_id=None) for m in batch]
        await self._retry(moved, delay=0.0, error="topic deleted", count_attempt=False)

    async def _on_paid_refused(self, batch: list[DueMessage], reason: str) -> None:
        broadcast_id = batch[0].broadcast_id
        assert broadcast_id is not None
        self._free.add(broadcast_id)
        if await broadcasts.fall_back_to_free(self.services.db, broadcast_id, reason):
            log.warning("paid broadcast refused, going on at the free rate broadcast_id=%d reason=%s",
                        broadcast_id, reason)
        await self._retry(batch, delay=0.0, error="paid sending refused", count_attempt=False)

    async def _on_refused(self, batch: list[DueMessage], reason: str) -> None:
        # The message itself is wrong; sending it again will not help.
        ids = [m.id for m in batch]
        log.error("message refused chat_id=%d outbox_ids=%s error=%s", batch[0].chat_id, ids, reason)
        self.services.metrics.inc("newsbot_telegram_errors_total", kind="400")
        self.services.metrics.inc("newsbot_messages_failed_total", len(batch))
        await outbox.mark_failed(self.services.db, ids, reason, now=self.clock.time())

    # --- outages --------------------------------------------------------------------------------

    async def _on_transient(self, batch: list[DueMessage], kind: str, error: str) -> None:
        """No answer, or one that is not about this message: is Telegram there at all?"""
        chat_id = batch[0].chat_id
        self.services.metrics.inc("newsbot_telegram_errors_total", kind=kind)
        if not await self._telegram_answers():
            self._enter_outage(error)
            await self._retry(batch, delay=0.0, error=f"outage: {error}", count_attempt=False)
            return
        attempts = max(m.attempts for m in batch) + 1
        delay = min(2.0**attempts, TRANSIENT_MAX_DELAY)
        failed = await self._retry(batch, delay=delay, error=error, count_attempt=True)
        if failed:
            self.services.metrics.inc("newsbot_messages_failed_total", len(failed))
            log.error("message failed after %d attempts chat_id=%d error=%s", attempts, chat_id, error)
        else:
            log.warning("send retry chat_id=%d in=%.0fs error=%s", chat_id, delay, error)

    async def _telegram_answers(self) -> bool:
        """Whether a getMe gets an answer now; one probe serves every failure close in time."""
        if self.paused_for_outage:
            return False
        if self._probe is None or (self._probe.done() and self.clock.monotonic() - self._probed_at > PROBE_FRESH):
            self._probed_at = self.clock.monotonic()
            self._probe = asyncio.create_task(self._get_me(), name="telegram-probe")
        return await asyncio.shield(self._probe)

    async def _get_me(self) -> bool:
        try:
            answer = await self.api.call("getMe", {})
        except Unreachable:
            return False
        return answer.ok

    def _enter_outage(self, error: str) -> None:
        if self.paused_for_outage:
            return
        status = self.services.status
        status.telegram_down_since = self.clock.time()
        self.limits.pause_until = math.inf
        self.services.metrics.inc("newsbot_telegram_outages_total")
        log.error("telegram not answering: sending paused, nothing is lost error=%s", error)
        self._outage = asyncio.create_task(self._wait_for_telegram(), name="telegram-outage")

    async def _wait_for_telegram(self) -> None:
        delay = 1.0
        started = self.clock.monotonic()
        while not self._stopping:
            await self.clock.sleep(delay)
            if await self._get_me():
                break
            delay = min(delay * 2, PROBE_MAX_DELAY)
        self.limits.pause_until = 0.0
        self.services.status.telegram_down_since = None
        self._probed_at = -math.inf
        log.warning("telegram answers again: sending resumed after=%.0fs", self.clock.monotonic() - started)
        self.services.outbox_wake.set()
        self._changed.set()


def _items(rows: Sequence[DueMessage]) -> list[render.Item]:
    return [
        render.Item(row_id=m.id, article=m.article, reasons=m.reasons, updated=m.shows_old_version)
        for m in rows
        if m.article is not None
    ]
