"""Which message goes next: priority lanes, shared fairly, and what goes together.

Four lanes (storage.outbox): broadcasts (0), personal messages (1: keyword alerts,
briefings, channel posts), section alerts (2: broad fan-outs) and corrections (3).

The rule: each lane has a weight — broadcasts 16, personal 8, sections 2, corrections 1 — and
whenever several lanes have a message ready to go, they share the sends in that proportion
(stride scheduling: the lane that has had the least of its share goes next). A lane with
nothing ready lends its turns to the others, so a lone section fan-out runs at the full rate,
and no alert lane with something ready gets less than 2/27 ≈ 7 % of the sends. Within a
lane, oldest first. A reader's keyword alert therefore waits behind a few sends, not behind
another chat's section fan-out; a broadcast gets most of the rate, not all of it; and
corrections, besides their small weight, never take more than EDIT_SHARE of the rate while
anything else waits (bot.pipeline.core).

`Planner(fifo=True)` is the policy of newsbot 0.1, kept for the news-day benchmark:
broadcasts strictly first, then every alert in one queue, oldest first.

Once a chat is chosen, what it gets is decided by its own queue, in the order of
bot.pipeline.kinds (broadcasts, then alerts, then briefings and posts, then edits): a
broadcast, a briefing or an edit as it is; alerts oldest-published first, several due at once as one combined
message when the reader combines bursts — more than COMBINE_OVER, or two or more once the
oldest has waited COMBINE_WAITED (a section alert held up by a fan-out goes with what came
due behind it, including alerts for that chat the view does not hold: `gathers` tells the
dispatcher to read them, `gather` adds them) — and held alerts (after /resume or quiet
hours) always as one message; only alerts bound for the same forum topic go together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from bot.pipeline.kinds import row_kind
from storage.due import DueMessage
from storage.outbox import LANE_BROADCAST, LANE_EDIT, LANE_PERSONAL, LANE_SECTION, LANES

WEIGHTS = {LANE_BROADCAST: 16.0, LANE_PERSONAL: 8.0, LANE_SECTION: 2.0, LANE_EDIT: 1.0}
COMBINE_OVER = 3  # more alerts than this due at once for one chat → one combined message
COMBINE_WAITED = 60.0  # an alert that waited this long goes together with the others due
COMBINE_MAX = 100
# How far down a lane to look for a chat that may be sent to now.
SCAN = 4000


def _rank(message: DueMessage) -> tuple[int, float, int]:
    published = message.article.published_at if message.article is not None else 0.0
    return (row_kind(message).rank, published, message.id)


class Planner:
    def __init__(self, *, fifo: bool = False, weights: dict[int, float] | None = None) -> None:
        self.fifo = fifo
        self.weights = weights or WEIGHTS
        self._view: dict[int, list[DueMessage]] = {}
        self._lanes: dict[int, dict[int, None]] = {lane: {} for lane in LANES}
        self._pass: dict[int, float] = dict.fromkeys(LANES, 0.0)
        self._clock = 0.0  # the pass of the lane that went last
        self._counts: dict[int, int] = dict.fromkeys(LANES, 0)  # rows in the view per lane

    def __bool__(self) -> bool:
        return bool(self._view)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._view.values())

    def _lane(self, message: DueMessage) -> int:
        if self.fifo and message.lane != LANE_BROADCAST:
            return LANE_PERSONAL  # one queue for every alert
        return message.lane

    def replace(self, rows: Iterable[DueMessage], skip: set[int]) -> None:
        """A fresh view: `rows` in each lane's order (oldest first), minus ids in `skip`."""
        view: dict[int, list[DueMessage]] = {}
        lanes: dict[int, dict[int, None]] = {lane: {} for lane in LANES}
        for message in rows:
            if message.id in skip:
                continue
            view.setdefault(message.chat_id, []).append(message)
            lanes[self._lane(message)].setdefault(message.chat_id)
        if self.fifo:
            # 0.1 walked every alert in one order: by due time, then id.
            merged = sorted(
                (m for rows in view.values() for m in rows if m.lane != LANE_BROADCAST),
                key=lambda m: (m.next_attempt_at, m.id),
            )
            lanes[LANE_PERSONAL] = dict.fromkeys(m.chat_id for m in merged)
        counts = dict.fromkeys(LANES, 0)
        for messages in view.values():
            messages.sort(key=_rank)
            for message in messages:
                counts[message.lane] += 1
        self._counts = counts
        for lane in LANES:
            if lanes[lane] and not self._lanes[lane]:
                # A lane coming back from idle starts level with the others, not ahead.
                self._pass[lane] = max(self._pass[lane], self._clock)
        self._view, self._lanes = view, lanes

    def pick(
        self, now: float, ready_at: Callable[[DueMessage, float], float], busy: set[int]
    ) -> tuple[int | None, float]:
        """(the chat to send to now, now), or (None, when to look again). `ready_at` tells
        when a chat's next message may go (its limits), judged at `now`."""
        wake = math.inf
        for lane in self._lane_order():
            scanned = 0
            for chat_id in self._lanes[lane]:
                scanned += 1
                if scanned > SCAN:
                    break
                if chat_id in busy:
                    continue
                at = ready_at(self._view[chat_id][0], now)
                if at <= now:
                    self._charge(lane)
                    return chat_id, now
                wake = min(wake, at)
        return None, wake

    def first(self, chat_id: int) -> DueMessage | None:
        """The message `chat_id` would get next, if the view holds any for it."""
        rows = self._view.get(chat_id)
        return rows[0] if rows else None

    def charge(self, message: DueMessage) -> None:
        """A turn taken outside `pick` (an outage's retry) is charged to its lane."""
        self._charge(self._lane(message))

    def _lane_order(self) -> list[int]:
        active = [lane for lane in LANES if self._lanes[lane]]
        if self.fifo:
            return active
        return sorted(active, key=lambda lane: (self._pass[lane], lane))

    def _charge(self, lane: int) -> None:
        if self.fifo:
            return
        self._pass[lane] += 1.0 / self.weights[lane]
        self._clock = self._pass[lane]

    def take(self, chat_id: int, *, now: float | None = None) -> list[DueMessage]:
        """The next message for `chat_id` (one row, or the alerts that go together), out of
        the view. `now` (wall clock) tells how long its alerts have waited."""
        messages = self._view[chat_id]
        first = messages[0]
        batch = [first]
        if first.kind == "alert":
            alerts = [m for m in messages if m.kind == "alert" and m.thread_id == first.thread_id]
            if any(m.digest for m in alerts) or (first.chat.combine and self._combine(alerts, now)):
                batch = alerts[:COMBINE_MAX]
        taken = {m.id for m in batch}
        rest = [m for m in messages if m.id not in taken]
        self._forget(chat_id, batch, rest)
        return batch

    def gathers(self, batch: Sequence[DueMessage], now: float) -> bool:
        """Whether the chat's other due alerts, beyond the view, should join `batch`: alerts
        the reader combines, the oldest of which has waited COMBINE_WAITED (with lanes)."""
        first = batch[0]
        return (
            not self.fifo
            and first.kind == "alert"
            and first.digest is None
            and first.chat.combine
            and len(batch) < COMBINE_MAX
            and now - min(m.created_at for m in batch) >= COMBINE_WAITED
        )

    def gather(self, batch: Sequence[DueMessage], more: Iterable[DueMessage]) -> list[DueMessage]:
        """`batch` with the alerts of `more` that may go with it (same topic, not already in
        it, up to COMBINE_MAX, oldest-published first); the ones taken leave the view."""
        first = batch[0]
        have = {m.id for m in batch}
        extra = [
            m for m in more
            if m.id not in have and m.kind == "alert" and m.digest is None
            and m.thread_id == first.thread_id
        ]  # fmt: skip
        if not extra:
            return list(batch)
        merged = sorted([*batch, *extra], key=_rank)[:COMBINE_MAX]
        joined = {m.id for m in merged} - have
        rows = self._view.get(first.chat_id)
        if rows is not None:
            taken = [m for m in rows if m.id in joined]
            if taken:
                self._forget(first.chat_id, taken, [m for m in rows if m.id not in joined])
        return merged

    def _combine(self, alerts: Sequence[DueMessage], now: float | None) -> bool:
        """More than COMBINE_OVER due at once (a burst); or, with lanes, an alert that has
        waited COMBINE_WAITED while others came due for the same chat: one message for them
        all is sooner for the reader and one send instead of several for everyone else."""
        if len(alerts) > COMBINE_OVER:
            return True
        if self.fifo or now is None or len(alerts) < 2:
            return False
        return now - min(m.created_at for m in alerts) >= COMBINE_WAITED

    def _forget(self, chat_id: int, batch: Sequence[DueMessage], rest: list[DueMessage]) -> None:
        for message in batch:
            self._counts[message.lane] -= 1
        if rest:
            self._view[chat_id] = rest
        else:
            del self._view[chat_id]
        remaining = {self._lane(m) for m in rest}
        for lane in {self._lane(m) for m in batch} - remaining:
            self._lanes[lane].pop(chat_id, None)

    def put_back(self, batch: Sequence[DueMessage]) -> None:
        """Rows retried later go back to the front of their chat's queue (the chat is held),
        so they need no reload to be picked up again; a reload replaces them with what is due."""
        chat_id = batch[0].chat_id
        self._view[chat_id] = sorted([*batch, *self._view.get(chat_id, [])], key=_rank)
        for message in batch:
            self._counts[message.lane] += 1
        for lane in {self._lane(m) for m in batch}:
            self._lanes[lane].setdefault(chat_id)

    def drop_chat(self, chat_id: int) -> list[DueMessage]:
        rows = self._view.pop(chat_id, [])
        for message in rows:
            self._counts[message.lane] -= 1
        for lane in LANES:
            self._lanes[lane].pop(chat_id, None)
        return rows

    def waiting(self) -> dict[int, int]:
        """Rows in the view per lane."""
        return dict(self._counts)

