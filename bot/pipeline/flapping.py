"""Headlines that will not settle: a story whose title changed more than FLAP_CHANGES times
within FLAP_WINDOW is logged once as flapping (and counted), so an operator can see which
feed keeps rewriting itself. Its readers are protected elsewhere: one pending edit per
message, at most one edit per NEWSBOT_EDIT_INTERVAL (storage.outbox.queue_edit)."""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

log = logging.getLogger(__name__)

FLAP_CHANGES = 5
FLAP_WINDOW = 3600.0
WATCHED = 10_000  # stories remembered at most (the least recently changed are forgotten)


class FlapWatch:
    def __init__(self) -> None:
        self._changes: OrderedDict[str, deque[float]] = OrderedDict()
        self._flagged: OrderedDict[str, None] = OrderedDict()

    def changed(self, story_id: str, title: str, now: float) -> bool:
        """A correction of `story_id` at `now` (monotonic); True when it starts flapping."""
        times = self._changes.pop(story_id, None) or deque()
        times.append(now)
        while times and times[0] <= now - FLAP_WINDOW:
            times.popleft()
        self._changes[story_id] = times
        while len(self._changes) > WATCHED:
            self._changes.popitem(last=False)
        if len(times) <= FLAP_CHANGES or story_id in self._flagged:
            return False
        self._flagged[story_id] = None
        while len(self._flagged) > WATCHED:
            self._flagged.popitem(last=False)
        log.warning("story flapping: its headline changed %d times within an hour story_id=%s title=%r",
                    len(times), story_id, title[:120])
        return True
