"""Telegram's flood limits, kept on the sending side (monotonic clock, times passed in).

Telegram counts a message when it arrives, which is some time between the moment the
request starts and the moment its answer is back. So a send in flight counts as happening
*now*, and once answered it counts at the time of the answer: a window built that way can
never hold fewer sends than Telegram's own, whatever the latency (a slow answer, a loaded
machine), and `margin` only has to cover clock granularity. The cost is one round trip per
window slot (a few ms on a 1 s window).

Windows: the free global rate (messages without allow_paid_broadcast), the paid rate (every
message counts there), one message per `private_interval` to a private chat, and
`group_per_minute` to a group or channel. Edits count like sends. A chat can be held (a 429
for it), and everything can be paused (a 429 storm).

Replies to commands and the outbox share the free rate: whenever both have something waiting,
neither takes more than SHARE (two thirds) of it in any second, so each keeps at least a third
— a reader flooding the bot with commands cannot hold alerts back, and a fan-out cannot make
replies wait. Whoever is alone takes everything.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field

SHARE = 2 / 3  # of the free rate, for replies or the outbox, while the other waits too


@dataclass
class RateLimits:
    global_rate: float = 30.0
    private_interval: float = 1.0
    group_per_minute: int = 20
    paid_rate: float = 1000.0
    margin: float = 0.005
    unlimited: bool = False
    _free: deque[float] = field(default_factory=deque)
    _all: deque[float] = field(default_factory=deque)
    _free_in_flight: int = 0
    _paid_in_flight: int = 0
    _last: dict[int, float] = field(default_factory=dict)
    _groups: dict[int, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _held: dict[int, float] = field(default_factory=dict)
    _replies: deque[float] = field(default_factory=deque)  # free sends of replies
    _outbox: deque[float] = field(default_factory=deque)  # free sends of the outbox
    _replies_in_flight: int = 0
    replies_waiting: int = 0  # replies waiting for a slot now
    outbox_waiting: bool = False  # the outbox has a message ready that the rate holds back
    pause_until: float = 0.0

    def _window_ready(self, window: deque[float], in_flight: int, per_second: float, now: float) -> float:
        while window and window[0] <= now - 1.0 - self.margin:
            window.popleft()
        over = len(window) + in_flight - max(1, int(per_second))
        if over < 0:
            return now
        if over < len(window):
            return window[over] + 1.0 + self.margin
        # Sends in flight alone fill the window: the next answer tells when.
        return now + 1.0

    def global_ready_at(self, now: float, *, paid: bool = False) -> float:
        """When the next send may start (`now` if it may start at once)."""
        if self.unlimited:
            return max(now, self.pause_until)
        in_flight = self._free_in_flight + self._paid_in_flight
        ready = self._window_ready(self._all, in_flight, self.paid_rate, now)
        if not paid:
            ready = max(ready, self._window_ready(self._free, self._free_in_flight, self.global_rate, now))
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

    def ready_at(self, chat_id: int, now: float, *, paid: bool = False, reply: bool = False) -> float:
        ready = max(self.chat_ready_at(chat_id, now), self.global_ready_at(now, paid=paid))
        if paid or self.unlimited:
            return ready
        return max(ready, self.share_ready_at(now, reply=reply))

    def share_ready_at(self, now: float, *, reply: bool) -> float:
        """When replies (or the outbox) may take another free slot without going over their
        SHARE while the other side waits too."""
        other_waits = self.outbox_waiting if reply else self.replies_waiting > 0
        if not other_waits:
            return now
        window = self._replies if reply else self._outbox
        while window and window[0] <= now - 1.0 - self.margin:
            window.popleft()
        # Sends in flight count as now, as in the global window.
        in_flight = self._replies_in_flight if reply else self._free_in_flight - self._replies_in_flight
        over = len(window) + in_flight - max(1, math.ceil(self.global_rate * SHARE))
        if over < 0:
            return now
        if over < len(window):
            return window[over] + 1.0 + self.margin
        return now + 1.0

    def begin(self, *, paid: bool = False, reply: bool = False) -> None:
        """A send is starting: it counts as happening now until `end`."""
        if paid:
            self._paid_in_flight += 1
        else:
            self._free_in_flight += 1
            self._replies_in_flight += 1 if reply else 0

    def end(self, chat_id: int, at: float, *, sent: bool = True, paid: bool = False, reply: bool = False) -> None:
        """Its answer came back at `at` (or, with `sent=False`, no request went out)."""
        if paid:
            self._paid_in_flight = max(0, self._paid_in_flight - 1)
        else:
            self._free_in_flight = max(0, self._free_in_flight - 1)
            if reply:
                self._replies_in_flight = max(0, self._replies_in_flight - 1)
        if sent:
            self.record(chat_id, at, paid=paid, reply=reply)

    def record(self, chat_id: int, at: float, *, paid: bool = False, reply: bool = False) -> None:
        """A send that Telegram counted no later than `at`."""
        if self.unlimited:
            return
        self._all.append(at)
        if not paid:
            self._free.append(at)
            (self._replies if reply else self._outbox).append(at)
        if chat_id > 0:
            self._last[chat_id] = at
        else:
            self._groups[chat_id].append(at)

    def prune(self, now: float) -> None:
        """Forget chats whose limits no longer matter, so memory follows recent traffic only."""
        for window in (self._replies, self._outbox):
            while window and window[0] <= now - 1.0 - self.margin:
                window.popleft()
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
