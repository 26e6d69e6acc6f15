"""The delivery core: which message goes next, when, and what each answer means for it —
decided from plain values (the due rows, the limits, the lanes, the outage, the time), with
no I/O. bot.stages.deliver is the shell around it: it reads the rows, renders, sends, and
records what the core decided. Every rule here is tested table-style (tests/test_core.py).

* **Choosing** (`plan`): the lanes' planner (bot.pipeline.lanes) names the chat, the limits
  (bot.pipeline.ratelimit) say whether it may go now, sends in flight are bounded
  (NEWSBOT_SEND_CONCURRENCY, and NEWSBOT_PAID_CONCURRENCY for a paid broadcast), a chat never
  has two sends in flight, corrections take at most EDIT_SHARE of the rate while anything else
  waits, and rows that must wait for the end of a reader's quiet hours are set aside.
* **Answers** (`answered`): bot.pipeline.answers reads the answer; only an answer that singles
  out the chat or the message can fail it. 429: that chat waits `retry_after` (429s from
  STORM_CHATS chats within STORM_WINDOW pause every send). No answer, 5xx, 401, 404: sending
  pauses — every lane — and no row spends an attempt; while paused, one request of the method
  that failed is tried again (the oldest failed one first) after 1, 2, 4 … PROBE_MAX_DELAY
  seconds, and the first one that gets an answer ends the pause.
* **Our own failures** (`broke`): an exception while preparing or sending (a render bug) is not
  Telegram's answer: the row stays due and is tried again after a back-off, never failed, and
  is reported (`undeliverable`) until it goes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo

from bot import localtime
from bot.pipeline.answers import Reading, Verdict
from bot.pipeline.kinds import Kind, batch_kind, held_by_quiet_hours, row_kind
from bot.pipeline.lanes import Planner
from bot.pipeline.ratelimit import RateLimits
from storage.due import DueMessage
from storage.outbox import LANE_EDIT

STORM_CHATS = 3  # 429s from this many chats within STORM_WINDOW → pause every send
STORM_WINDOW = 5.0
STORM_MAX_PAUSE = 30.0
PROBE_MAX_DELAY = 30.0
RETRY_MAX_DELAY = 300.0  # faulty answers (unknown 400s) retried after 2, 4, 8 … at most this
BROKEN_MAX_DELAY = 600.0  # our own failures retried after 2, 4, 8 … at most this
EDIT_SHARE = 0.1  # of the free rate, at most, for corrections while anything else waits
ALONE_SECONDS = 600.0  # a chat whose combined message was too long gets its alerts one by one


@dataclass(frozen=True, slots=True)
class Launch:
    """Send this batch now (the core has counted it in flight)."""

    batch: list[DueMessage]
    kind: Kind
    probe: bool = False  # the one request that tests whether an outage is over

    @property
    def chat_id(self) -> int:
        return self.batch[0].chat_id


@dataclass(frozen=True, slots=True)
class Defer:
    """These rows wait for the end of their reader's quiet hours (wall time `until`)."""

    rows: list[DueMessage]
    until: float

    @property
    def alerts(self) -> list[int]:
        return [m.id for m in self.rows if m.kind == "alert"]

    @property
    def others(self) -> list[int]:
        return [m.id for m in self.rows if m.kind != "alert"]


@dataclass(frozen=True, slots=True)
class Plan:
    steps: list[Launch | Defer]
    wake_at: float  # monotonic: look again by then at the latest


@dataclass(frozen=True, slots=True)
class Action:
    """What to record for a batch after its answer."""

    verdict: Verdict
    error: str = ""
    delay: float = 0.0  # retried after this many seconds
    count_attempt: bool = False
    new_chat_id: int | None = None  # MIGRATED
    thread_id: int | None = None  # TOPIC_GONE


@dataclass
class Outage:
    """Sending paused: `method` failed without an answer about the message."""

    method: str
    error: str
    since: float  # monotonic
    since_wall: float
    chat_id: int  # whose request failed first: tried again first
    delay: float = 1.0
    next_probe: float = 0.0
    probing: bool = False
    tried: set[int] = field(default_factory=set)  # chats whose request failed in this outage


@dataclass
class Core:
    limits: RateLimits
    planner: Planner
    zone_of: Callable[[str | None], tzinfo]
    concurrency: int = 8
    paid_concurrency: int = 64
    global_rate: float = 30.0
    busy: set[int] = field(default_factory=set)  # chats with a send in flight
    taken: set[int] = field(default_factory=set)  # row ids in flight or being deferred
    running: int = 0
    running_paid: int = 0
    free: set[int] = field(default_factory=set)  # broadcasts Telegram refused to send paid
    outage: Outage | None = None
    broken: dict[int, tuple[str, int]] = field(default_factory=dict)  # row id → (our error, tries)
    troubled: dict[int, int] = field(default_factory=dict)  # row id → sends with no answer about it
    _storm: deque[tuple[float, int]] = field(default_factory=deque)
    _edits: deque[float] = field(default_factory=deque)  # when edits were launched
    _alone: dict[int, float] = field(default_factory=dict)  # chat → until (monotonic)
    _faulty: set[str] = field(default_factory=set)  # stories (…) our failures were logged for
    _any_paid: bool = False

    # --- the view -------------------------------------------------------------------------

    def view(self, rows: Sequence[DueMessage], *, mono: float, wall: float) -> None:
        """A fresh view of the due rows (those in flight left out). Rows that come due later
        (a retry, a 429) hold their chat until then; `wall` is the step-proof wall time the
        rows' due times are compared with (bot.clock.WallMark)."""
        self.limits.prune(mono)
        self.planner.replace(rows, self.taken)
        self._any_paid = any(self._paid(m) for m in rows)
        for message in rows:
            if message.next_attempt_at > wall:
                self.limits.hold(message.chat_id, mono + (message.next_attempt_at - wall))

    def _paid(self, message: DueMessage) -> bool:
        return row_kind(message, paid_refused=message.broadcast_id in self.free).paid

    @property
    def in_flight(self) -> int:
        return self.running + self.running_paid

    # --- choosing ---------------------------------------------------------------------------

    def plan(self, mono: float, wall: float) -> Plan:
        """Everything that may start now, and when to look again."""
        steps: list[Launch | Defer] = []
        wake = math.inf
        outage = self.outage
        if outage is not None and (outage.probing or mono < outage.next_probe):
            self.limits.outbox_waiting = False
            return Plan(steps, outage.next_probe if not outage.probing else math.inf)
        held_by_rate = False
        while True:
            gate = self.limits.global_ready_at(mono)
            if gate > mono and not self._any_paid:
                # The global window is full: no chat may go before it opens, whatever its own
                # limits say, so there is no need to ask the planner about every one of them.
                wake = min(wake, gate)
                held_by_rate = True
                break
            if self.running >= self.concurrency and (
                not self._any_paid or self.running_paid >= self.paid_concurrency
            ):
                held_by_rate = True  # waiting for room, which replies must leave it its share of
                break  # no room in flight: the next finished send wakes the shell
            chat_id, at = self._pick(mono)
            if chat_id is None:
                wake = min(wake, at)
                held_by_rate = at <= mono + 1.0  # the rate's windows, not the chats' own limits
                break
            batch = self._take(chat_id, mono, wall)
            held, batch = self._quiet(batch, wall)
            if held is not None:
                self.taken.update(m.id for m in held.rows)
                steps.append(held)
            if not batch:
                continue
            launch = Launch(batch, batch_kind(batch, paid_refused=batch[0].broadcast_id in self.free),
                            probe=outage is not None)
            self._launch(launch, mono)
            steps.append(launch)
            if outage is not None:
                outage.probing = True
                break
        # Replies to commands keep to their share of the rate while alerts wait for it.
        self.limits.outbox_waiting = bool(self.planner) and held_by_rate
        return Plan(steps, wake)

    def _pick(self, mono: float) -> tuple[int | None, float]:
        outage = self.outage
        if outage is None:
            return self.planner.pick(mono, self._ready_at, self.busy)
        # The oldest failed request first; then other chats' requests of the method that
        # failed, so that one chat Telegram keeps failing cannot hold everyone back.
        first = self.planner.first(outage.chat_id)
        if (
            outage.chat_id not in outage.tried and first is not None and outage.chat_id not in self.busy
            and self._ready_at(first, mono) <= mono
        ):
            self.planner.charge(first)
            return outage.chat_id, mono
        chat_id, at = self.planner.pick(mono, self._ready_at, self.busy | outage.tried)
        if chat_id is None and outage.tried:
            outage.tried.clear()
            chat_id, at = self.planner.pick(mono, self._ready_at, self.busy)
        return chat_id, at

    def _ready_at(self, message: DueMessage, now: float) -> float:
        paid = self._paid(message)
        if (self.running_paid >= self.paid_concurrency) if paid else (self.running >= self.concurrency):
            return math.inf  # no room in flight: the next finished send wakes the loop
        if self.outage is not None and row_kind(message).method != self.outage.method:
            return math.inf  # only the failed method can tell whether it works again
        at = self.limits.ready_at(message.chat_id, now, paid=paid)
        if message.lane == LANE_EDIT and self._others_waiting():
            at = max(at, self._edit_share_at(now))
        return at

    def _others_waiting(self) -> bool:
        return any(n for lane, n in self.planner.waiting().items() if lane != LANE_EDIT)

    def _edit_share_at(self, now: float) -> float:
        window = self._edits
        while window and window[0] <= now - 1.0:
            window.popleft()
        cap = max(1, math.floor(self.global_rate * EDIT_SHARE))
        return now if len(window) < cap else window[-cap] + 1.0

    def _take(self, chat_id: int, mono: float, wall: float) -> list[DueMessage]:
        batch = self.planner.take(chat_id, now=wall)
        if len(batch) > 1 and self._alone.get(chat_id, -math.inf) > mono:
            self.planner.put_back(batch[1:])
            batch = batch[:1]
        return batch

    def _quiet(self, batch: list[DueMessage], wall: float) -> tuple[Defer | None, list[DueMessage]]:
        """Rows that wait for the end of the reader's quiet hours (mode "hold"), and the rest."""
        chat = batch[0].chat
        if chat.quiet_start is None or chat.quiet_mode != "hold":
            return None, batch
        until = localtime.quiet_until(chat.quiet_start, chat.quiet_end, self.zone_of(chat.timezone), wall)
        if until is None:
            return None, batch
        held = [m for m in batch if held_by_quiet_hours(m)]
        if not held:
            return None, batch
        return Defer(held, until), [m for m in batch if m not in held]

    def silent(self, batch: Sequence[DueMessage], wall: float) -> bool:
        """Whether to send without sound: the reader's quiet hours in "silent" mode, unless
        the newsroom marked the broadcast urgent."""
        chat = batch[0].chat
        if chat.quiet_mode != "silent" or (batch[0].kind == "broadcast" and batch[0].urgent):
            return False
        zone = self.zone_of(chat.timezone)
        return localtime.quiet_until(chat.quiet_start, chat.quiet_end, zone, wall) is not None

    def _launch(self, launch: Launch, mono: float) -> None:
        self.busy.add(launch.chat_id)
        self.taken.update(m.id for m in launch.batch)
        self.limits.begin(paid=launch.kind.paid)
        if launch.kind.paid:
            self.running_paid += 1
        else:
            self.running += 1
        if launch.kind.lane == LANE_EDIT:
            self._edits.append(mono)

    def gather(self, launch: Launch, more: Iterable[DueMessage]) -> Launch:
        """The chat's other due alerts (read beyond the view) that go with a batch that
        waited (lanes.Planner.gathers)."""
        merged = self.planner.gather(launch.batch, (m for m in more if m.id not in self.taken))
        self.taken.update(m.id for m in merged)
        return replace(launch, batch=merged, kind=batch_kind(merged))

    def deferred(self, defer: Defer) -> None:
        """Its rows are written back with their new due time."""
        self.taken.difference_update(m.id for m in defer.rows)

    # --- answers ----------------------------------------------------------------------------

    def answered(self, launch: Launch, reading: Reading, mono: float, wall: float) -> Action:
        """Telegram answered (or did not, for OUTAGE readings): the send is counted where it
        happened, and what to record is decided."""
        self.limits.end(launch.chat_id, mono, paid=launch.kind.paid)
        verdict, batch = reading.verdict, launch.batch
        if verdict is not Verdict.OUTAGE:
            self._telegram_answers(launch, mono)
            for message in batch:
                self.troubled.pop(message.id, None)
        if verdict is Verdict.SENT:
            for message in batch:
                self.broken.pop(message.id, None)
            return Action(verdict)
        if verdict is Verdict.LATER:
            return self._later(launch, reading, mono)
        if verdict is Verdict.OUTAGE:
            self._outage(launch, reading, mono, wall)
            return Action(verdict, error=f"outage: {reading.error}", delay=self._trouble(batch))
        if verdict is Verdict.SPLIT:
            self._alone[launch.chat_id] = mono + ALONE_SECONDS
            return Action(verdict, error=reading.error)
        if verdict is Verdict.PAID_REFUSED:
            if batch[0].broadcast_id is not None:
                self.free.add(batch[0].broadcast_id)
            return Action(verdict, error=reading.error)
        if verdict is Verdict.MIGRATED:
            return Action(verdict, error=reading.error, new_chat_id=reading.migrate_to)
        if verdict is Verdict.TOPIC_GONE:
            return Action(verdict, error=reading.error, thread_id=batch[0].thread_id)
        if verdict is Verdict.FAULTY:
            attempts = max(m.attempts for m in batch) + 1
            delay = min(2.0**attempts, RETRY_MAX_DELAY)
            return Action(verdict, error=reading.error, delay=delay, count_attempt=True)
        return Action(verdict, error=reading.error)  # GONE, REFUSED

    def _later(self, launch: Launch, reading: Reading, mono: float) -> Action:
        retry_after = max(reading.retry_after or 1.0, 0.0)
        self._storm.append((mono, launch.chat_id))
        while self._storm and self._storm[0][0] < mono - STORM_WINDOW:
            self._storm.popleft()
        if len({chat for _, chat in self._storm}) >= STORM_CHATS:
            # Many chats limited at once means the bot as a whole is over its limit.
            self.limits.pause_until = max(self.limits.pause_until, mono + min(retry_after, STORM_MAX_PAUSE))
        # Never given up on: a 429 is "later", so it costs no attempt.
        return Action(Verdict.LATER, error="429", delay=retry_after)

    def storming(self, mono: float) -> bool:
        return self.limits.pause_until > mono

    def _outage(self, launch: Launch, reading: Reading, mono: float, wall: float) -> None:
        outage = self.outage
        if outage is None:
            self.outage = Outage(
                method=launch.kind.method, error=reading.error, since=mono, since_wall=wall,
                chat_id=launch.chat_id, next_probe=mono + 1.0,
            )
        elif launch.probe:
            outage.probing = False
            outage.tried.add(launch.chat_id)
            outage.delay = min(outage.delay * 2, PROBE_MAX_DELAY)
            outage.next_probe = mono + outage.delay
            outage.error = reading.error

    def _trouble(self, batch: Sequence[DueMessage]) -> float:
        """How long rows whose send got no answer about them wait: at once the first time
        (the oldest failed request is what tells whether the outage is over), then 2, 4, 8 …
        seconds — no attempt is spent, but a chat Telegram keeps failing is not retried in a
        loop."""
        if len(self.troubled) > 100_000:
            self.troubled.clear()  # a bound; the worst case is a retry sooner than planned
        failures = 0
        for message in batch:
            failures = max(failures, self.troubled.get(message.id, 0) + 1)
            self.troubled[message.id] = failures
        return 0.0 if failures <= 1 else min(2.0 ** (failures - 1), RETRY_MAX_DELAY)

    def _telegram_answers(self, launch: Launch, mono: float) -> None:
        """An answer about the message: the method works (an outage of it is over)."""
        outage = self.outage
        if outage is not None and launch.kind.method == outage.method:
            self.outage = None

    def probe_lost(self) -> None:
        """The probe never got to Telegram (our own failure): the next one may go."""
        if self.outage is not None:
            self.outage.probing = False

    def broke(self, launch: Launch, error: str) -> tuple[Action, bool]:
        """An exception of ours while preparing or sending: the rows stay due, retried after
        a back-off. Returns the action and whether this failure is new for its story (or
        broadcast, or briefing): worth one log line, however many chats it holds back."""
        keys = {_fault_key(m) for m in launch.batch}
        new = not keys <= self._faulty
        if len(self._faulty) > 10_000:
            self._faulty.clear()
        self._faulty |= keys
        tries = 1 + max(self.broken.get(m.id, ("", 0))[1] for m in launch.batch)
        for message in launch.batch:
            self.broken[message.id] = (error, tries)
        if launch.probe:
            self.probe_lost()
        return Action(Verdict.OUTAGE, error=f"internal: {error}", delay=min(2.0**tries, BROKEN_MAX_DELAY)), new

    @property
    def undeliverable(self) -> int:
        """Rows our own failures keep from going (reported by /healthz)."""
        return len(self.broken)

    # --- after the answer is recorded -----------------------------------------------------

    def retried(self, rows: Sequence[DueMessage], *, delay: float, mono: float, count_attempt: bool) -> None:
        """Rows back to pending after `delay`: held in memory until then (a reload replaces
        them with what the database says)."""
        if not rows:
            return
        retry = [replace(m, attempts=m.attempts + (1 if count_attempt else 0)) for m in rows]
        if delay > 0:
            self.limits.hold(retry[0].chat_id, mono + delay)
        self.planner.put_back(retry)

    def finished(self, launch: Launch, mono: float, *, answered: bool, went_out: bool) -> None:
        """The send is over (answered or not); its chat and rows are free again."""
        if not answered:
            self.limits.end(launch.chat_id, mono, sent=went_out, paid=launch.kind.paid)
            if launch.probe:
                self.probe_lost()
        if launch.kind.paid:
            self.running_paid -= 1
        else:
            self.running -= 1
        self.busy.discard(launch.chat_id)
        self.taken.difference_update(m.id for m in launch.batch)

    def forget_chat(self, chat_id: int) -> None:
        """A chat that is gone (blocked, migrated): nothing of it stays in the view."""
        self.limits.forget(chat_id)
        self.planner.drop_chat(chat_id)


def _fault_key(message: DueMessage) -> str:
    if message.article is not None:
        return f"story:{message.article.id}"
    if message.broadcast_id is not None:
        return f"broadcast:{message.broadcast_id}"
    return f"{message.kind}:{message.key}"
