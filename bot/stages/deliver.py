"""The dispatch stage's shell: read the due rows, render, send, record — what bot.pipeline.core
decided, exactly once.

Every row is claimed (pending → sending) just before its send and marked sent just after, so
a restart resumes the rest; only rows caught in flight by a hard crash can go out twice, and
there are at most `send_concurrency` sends in flight (a combined message counts its alerts),
plus up to `paid_concurrency` sends of a paid broadcast. docs/delivery.md states the
guarantees for operators.

The shell keeps a view of the rows due within RELOAD_SECONDS and reads it again at once when
`services.outbox_wake` is set (a new broadcast or alert is seen within one send), when a lane
it could not load whole runs low, when nothing is left and the next row comes due, and at the
latest every RELOAD_SECONDS. Due times are wall times kept in the database; they are compared
with a `WallMark`, so a step of the system clock never holds a row (waits run on the
monotonic clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any

from bot.clock import WallMark
from bot.context import Services
from bot.pipeline.answers import Reading, Verdict, no_answer, read_answer
from bot.pipeline.botapi import Answer, Sender, Unreachable
from bot.pipeline.core import Action, Core, Defer, Launch
from bot.pipeline.kinds import EDIT, batch_kind
from bot.pipeline.lanes import COMBINE_MAX, Planner
from bot.pipeline.ratelimit import RateLimits
from bot.stages import compose
from bot.stages.compose import Request
from storage import broadcasts, chats, due, outbox
from storage.db import GroupCommit, StorageError
from storage.due import DueMessage
from storage.outbox import LANES, SentBatch

log = logging.getLogger(__name__)

RELOAD_SECONDS = 30.0  # the view's horizon and its longest life
LOAD_PER_LANE = 2000
LOW_WATER = 200  # a view that held a lane's whole load is read again when down to this
SAVE_TRIES = 4  # a delivered message's record gets this many tries against a busy database


class Dispatcher:
    """A long-running task sending due outbox rows, as its core decides."""

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
        limits = limits or RateLimits(
            global_rate=settings.global_rate,
            private_interval=settings.private_interval,
            group_per_minute=settings.group_per_minute,
            paid_rate=settings.paid_rate,
        )
        # An empty Planner is falsy (it has a length): `planner or Planner()` would drop it.
        self.core = Core(
            limits, planner if planner is not None else Planner(), zone_of=services.chat_zone,
            concurrency=settings.send_concurrency, paid_concurrency=settings.paid_concurrency,
            global_rate=settings.global_rate,
        )
        self.max_attempts = settings.max_attempts
        self._mark = WallMark(self.clock)
        self._writes = GroupCommit(services.db)
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered: set[asyncio.Task[None]] = set()  # answer back, saving the outcome
        self._loaded_at = -math.inf
        self._partial: set[int] = set()  # lanes the last load could not read whole
        self._next_due = math.inf  # monotonic time the next unloaded row comes due
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def limits(self) -> RateLimits:
        return self.core.limits

    @property
    def planner(self) -> Planner:
        return self.core.planner

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def in_flight(self) -> int:
        return self.core.in_flight

    @property
    def tasks(self) -> int:
        """Tasks of this dispatcher still running (sends, deferrals)."""
        return len(self._tasks)

    @property
    def paused_for_outage(self) -> bool:
        return self.core.outage is not None

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
        # Rows coming due before the next reload (a 429 or back-off ending) are loaded too, their
        # chat held until then, so that they go on time rather than at the reload after.
        wall = self._mark.now()
        rows: list[DueMessage] = []
        self._partial = set()
        for lane in LANES:
            found = await due.due_messages(self.services.db, lane, wall + RELOAD_SECONDS, LOAD_PER_LANE)
            if len(found) >= LOAD_PER_LANE:
                self._partial.add(lane)
            rows += found
        mono = self.clock.monotonic()
        self.core.view(rows, mono=mono, wall=wall)
        self._next_due = math.inf
        self._loaded_at = mono

    def _running_low(self) -> bool:
        """A lane that was not read whole is down to LOW_WATER rows in the view."""
        if not self._partial:
            return False
        waiting = self.planner.waiting()
        return any(waiting[lane] < LOW_WATER for lane in self._partial)

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
        plan = self.core.plan(clock.monotonic(), clock.time())
        for step in plan.steps:
            if isinstance(step, Launch):
                self._spawn(self._send(step), f"send-{step.chat_id}")
            else:
                self._spawn(self._defer(step), f"defer-{step.rows[0].chat_id}")
        wake_at = min(plan.wake_at, clock.monotonic() + RELOAD_SECONDS)
        if not self.planner and not self.in_flight and self._next_due == math.inf:
            # Nothing due and nothing in flight: wait for an enqueue, or for retries coming due.
            next_due = await due.next_due_at(self.services.db)
            if next_due is not None:
                self._next_due = clock.monotonic() + max(0.05, next_due - self._mark.now())
                wake_at = min(wake_at, self._next_due)
        # Always yield: even "ready now" waits for the loop's next turn, never spins it.
        await clock.wait(max(0.0, wake_at - clock.monotonic()), wake, self._changed)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Sends and deferrals handle their own errors; anything that escapes is a bug.
            self.services.metrics.inc("newsbot_errors_total", stage="deliver")
            log.error("delivery task failed task=%s error=%r", task.get_name(), exc, exc_info=exc)

    # --- quiet hours --------------------------------------------------------------------------

    async def _defer(self, defer: Defer) -> None:
        chat_id = defer.rows[0].chat_id
        try:
            if defer.alerts:
                await outbox.defer(self.services.db, defer.alerts, until=defer.until, digest="overnight")
            if defer.others:
                await outbox.defer(self.services.db, defer.others, until=defer.until, digest=None)
            log.info("quiet hours: held chat_id=%d rows=%d until=%.0f", chat_id, len(defer.rows), defer.until)
        except StorageError as exc:
            # The rows stay due: the next look finds them still in quiet hours.
            log.error("quiet hours not saved chat_id=%d error=%s", chat_id, exc)
        finally:
            self.core.deferred(defer)
            self._changed.set()

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, launch: Launch) -> None:
        clock, core = self.clock, self.core
        answered = went_out = False
        try:
            if self.planner.gathers(launch.batch, clock.time()):
                launch = await self._gather(launch)
            ids = [m.id for m in launch.batch]
            claimed = set(await self._writes.run(lambda conn: outbox.claim_in(conn, ids)))
            # Rows cancelled meanwhile (a /stop, a stopped broadcast) are not sent.
            batch = [m for m in launch.batch if m.id in claimed]
            if not batch:
                return
            sending = replace(launch, batch=batch, kind=batch_kind(batch, paid_refused=not launch.kind.paid))
            request = await self._request(sending)
            if request is None:
                return
            went_out = True
            started = clock.monotonic()
            answer: Answer | None = None
            try:
                answer = await self.api.call(request.method, request.params)
            except Unreachable as exc:
                reading = no_answer(exc.kind, str(exc))
            else:
                self.services.metrics.observe_send(clock.monotonic() - started)
                reading = read_answer(
                    answer, edit=sending.kind is EDIT, paid=sending.kind.paid,
                    in_topic=batch[0].thread_id is not None, stories=len(batch),
                )
            outage = core.outage
            action = core.answered(sending, reading, clock.monotonic(), clock.time())
            answered = True
            if (task := asyncio.current_task()) is not None:
                self._answered.add(task)
            self._outage_news(outage, sending, reading)
            await self._record(sending, request, answer, reading, action)
        except StorageError as exc:
            log.error("delivery state not saved chat_id=%d outbox_ids=%s error=%s",
                      launch.chat_id, [m.id for m in launch.batch], exc)
        except Exception as exc:
            await self._broke(launch, exc)
        finally:
            core.finished(launch, clock.monotonic(), answered=answered, went_out=went_out)
            if (task := asyncio.current_task()) is not None:
                self._answered.discard(task)
            self._sync_status()
            self._changed.set()

    async def _gather(self, launch: Launch) -> Launch:
        """The chat's other due alerts that go with a batch that waited (lanes.Planner.gathers),
        read from the database: the view holds only the oldest rows of each lane."""
        first = launch.batch[0]
        more = await due.due_alerts_for_chat(
            self.services.db, first.chat_id, first.thread_id, self._mark.now(), COMBINE_MAX
        )
        return self.core.gather(launch, more)

    async def _request(self, launch: Launch) -> Request | None:
        """What the batch says; None when there is nothing to send (recorded here)."""
        request = await compose.RENDERERS[launch.kind.name](self.services, launch.batch)
        ids = [m.id for m in launch.batch]
        now = self.clock.time()
        if request is None:
            await outbox.mark_failed(self.services.db, ids, "the message it corrects is gone", now=now)
            return None
        if request.unchanged:
            await outbox.finish_unchanged_edit(self.services.db, ids, now=now)
            return None
        if request.empty:
            # The stories it looked at count as briefed, so the next briefing starts after them.
            await outbox.finish_empty_briefing(self.services.db, ids, now=now)
            first = launch.batch[0]
            await chats.set_last_briefing(self.services.db, first.chat_id, first.next_attempt_at)
            return None
        if self.core.silent(launch.batch, now):
            request.params["disable_notification"] = True
        return request

    async def _broke(self, launch: Launch, exc: Exception) -> None:
        """Our own failure (a render bug, a library error): not Telegram's answer, so the rows
        stay due and are tried again after a back-off; logged once per story."""
        action, new = self.core.broke(launch, f"{type(exc).__name__}: {exc}")
        self.services.metrics.inc("newsbot_delivery_errors_total", len(launch.batch))
        if new:
            stories = sorted({m.article.id for m in launch.batch if m.article is not None})
            log.error("message not prepared, kept to try again story_ids=%s kind=%s chat_id=%d error=%s",
                      ",".join(stories) or "-", launch.kind.name, launch.chat_id, action.error, exc_info=exc)
        with contextlib.suppress(StorageError):
            await self._retry(launch.batch, action)

    # --- recording the answer --------------------------------------------------------------------

    async def _record(
        self, launch: Launch, request: Request, answer: Answer | None, reading: Reading, action: Action
    ) -> None:
        batch, services = launch.batch, self.services
        verdict = action.verdict
        if verdict is Verdict.SENT:
            assert answer is not None
            await self._sent(launch, request, answer.message_id or (batch[0].target_id or 0))
            return
        services.metrics.inc("newsbot_telegram_errors_total", kind=reading.kind)
        chat_id = launch.chat_id
        if verdict is Verdict.LATER:
            log.info("429 chat_id=%d retry_after=%.1f", chat_id, action.delay)
            await self._retry(batch, action)
        elif verdict in (Verdict.OUTAGE, Verdict.SPLIT):
            await self._retry(batch, action)
        elif verdict is Verdict.MIGRATED:
            await self._migrated(batch, action)
        elif verdict is Verdict.GONE:
            await self._gone(chat_id, action.error)
        elif verdict is Verdict.TOPIC_GONE:
            assert action.thread_id is not None
            log.info("forum topic gone, using the general topic chat_id=%d thread_id=%d", chat_id, action.thread_id)
            await outbox.move_to_general_topic(services.db, chat_id, action.thread_id)
            services.matcher.clear_thread(chat_id, action.thread_id)
            await self._retry([replace(m, thread_id=None) for m in batch], action)
        elif verdict is Verdict.PAID_REFUSED:
            broadcast_id = batch[0].broadcast_id
            assert broadcast_id is not None
            if await broadcasts.fall_back_to_free(services.db, broadcast_id, action.error):
                log.warning("paid broadcast refused, going on at the free rate broadcast_id=%d reason=%s",
                            broadcast_id, action.error)
            await self._retry(batch, action)
        elif verdict is Verdict.FAULTY:
            failed = await self._retry(batch, action)
            if failed:
                services.metrics.inc("newsbot_messages_failed_total", len(failed))
                log.error("message failed after %d attempts chat_id=%d error=%s", self.max_attempts, chat_id, action.error)
            else:
                log.warning("send retry chat_id=%d in=%.0fs error=%s", chat_id, action.delay, action.error)
        else:  # REFUSED: the message itself is wrong; sending it again will not help.
            ids = [m.id for m in batch]
            log.error("message refused chat_id=%d outbox_ids=%s error=%s", chat_id, ids, action.error)
            services.metrics.inc("newsbot_messages_failed_total", len(batch))
            await outbox.mark_failed(services.db, ids, action.error, now=self.clock.time())

    async def _sent(self, launch: Launch, request: Request, message_id: int) -> None:
        batch = launch.batch
        first = batch[0]
        sent = SentBatch(
            ids=tuple(m.id for m in batch), message_id=message_id, kind=first.kind,
            published=tuple(m.article.published_at for m in batch if m.article is not None),
            shown=tuple(
                (m.id, "|".join(m.reasons), m.article.revision, "|".join(m.article.sections))
                for m in batch if m.kind in ("alert", "post") and m.article is not None
            ),
            text_hash=request.text_hash, edit_interval=self.services.settings.edit_interval,
        )
        # The message is out: losing this write would send it again after a restart, so a
        # busy database gets a few more chances before the row is left 'sending'.
        now = self.clock.time()
        for attempt in range(SAVE_TRIES):
            try:
                await self._writes.run(lambda conn: outbox.mark_sent_in(conn, sent, now))
                break
            except StorageError:
                if attempt == SAVE_TRIES - 1:
                    raise
                await self.clock.sleep(0.5 * (attempt + 1))
        if first.kind == "briefing":
            await chats.set_last_briefing(self.services.db, first.chat_id, first.next_attempt_at)
        metrics = self.services.metrics
        metrics.inc("newsbot_messages_sent_total", len(batch), kind=first.kind)
        for lane, count in Counter(m.lane for m in batch).items():
            metrics.inc("newsbot_lane_messages_sent_total", count, lane=outbox.lane_name(lane))
        if sent.kind == "alert":
            for published in sent.published:
                metrics.observe_alert_latency(now - published)
        self.services.status.sent(self.clock.monotonic())

    async def _retry(self, batch: Sequence[DueMessage], action: Action) -> list[int]:
        failed = await outbox.retry_later(
            self.services.db, [m.id for m in batch], at=self.clock.time() + action.delay, error=action.error,
            count_attempt=action.count_attempt, max_attempts=self.max_attempts, now=self.clock.time(),
        )
        self.core.retried(
            [m for m in batch if m.id not in failed], delay=action.delay, mono=self.clock.monotonic(),
            count_attempt=action.count_attempt,
        )
        return failed

    async def _migrated(self, batch: list[DueMessage], action: Action) -> None:
        services = self.services
        old_id, new_id = batch[0].chat_id, action.new_chat_id
        assert new_id is not None
        log.info("chat migrated chat_id=%d new_chat_id=%d", old_id, new_id)
        await chats.migrate_chat(services.db, old_id, new_id, now=self.clock.time())
        services.matcher.rename_chat(old_id, new_id)
        await outbox.retry_later(
            services.db, [m.id for m in batch], at=self.clock.time(), error="migrated",
            count_attempt=False, max_attempts=self.max_attempts, now=self.clock.time(),
        )
        # The view still names the old id: reload it from the moved rows.
        self.core.forget_chat(old_id)
        services.outbox_wake.set()

    async def _gone(self, chat_id: int, reason: str) -> None:
        services = self.services
        was_active, blocked = await outbox.block_chat(services.db, chat_id, reason, now=self.clock.time())
        if was_active:
            log.info("chat inactive chat_id=%d reason=%s cancelled=%d", chat_id, reason, blocked)
        services.matcher.set_silenced(chat_id, True)
        services.metrics.inc("newsbot_messages_blocked_total", blocked)
        self.core.forget_chat(chat_id)

    # --- outages --------------------------------------------------------------------------------

    def _outage_news(self, before: Any, launch: Launch, reading: Reading) -> None:
        """One line when sending pauses and one when it resumes."""
        after = self.core.outage
        if before is None and after is not None:
            self.services.metrics.inc("newsbot_telegram_outages_total")
            log.error("telegram not answering: sending paused, nothing is lost method=%s error=%s",
                      after.method, reading.error)
        elif before is not None and after is None:
            log.warning("telegram answers again: sending resumed method=%s after=%.0fs",
                        before.method, self.clock.monotonic() - before.since)
            self.services.outbox_wake.set()
        elif before is not None and launch.probe:
            log.info("telegram still not answering method=%s retry_in=%.0fs error=%s",
                     before.method, before.delay, reading.error)

    def _sync_status(self) -> None:
        status, outage = self.services.status, self.core.outage
        status.telegram_down_since = outage.since_wall if outage is not None else None
        status.telegram_paused_method = outage.method if outage is not None else None
        status.undeliverable = self.core.undeliverable

