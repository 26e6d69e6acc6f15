"""The kinds of message newsbot sends, in one table: each kind's lane, its place in a chat's
queue, the rate it goes at, what quiet hours do to it, and how a failure counts.

| kind | rows | lane | in a chat's queue | rate | quiet hours (hold) | method |
| --- | --- | --- | --- | --- | --- | --- |
| alert | one story | personal (keyword) or sections | 1 | free | held | sendMessage |
| combined | several alerts, or held ones | as its alerts | 1 | free | held | sendMessage |
| broadcast | an admin's message | broadcasts | 0 | free | held unless urgent | sendMessage |
| paid | a broadcast sent fast | broadcasts | 0 | paid | held unless urgent | sendMessage |
| briefing | a reader's briefing | personal | 2 | free | held | sendMessage |
| post | a story for a section's channel | personal | 2 | free | — | sendMessage |
| edit | a correction of a sent message | corrections | 3 | free, a share | — | editMessageText |
| reply | an answer to a command (not queued) | — | — | free, a share | — | any |

"In a chat's queue": when a chat's turn comes, its lowest number goes first, so a reader's
new alert never waits behind an edit. Every kind a chat gets counts toward that chat's own
limit (one message a second, 20 a minute in groups). Attempts: only answers that single out
the message or the chat count (bot.pipeline.answers); every kind alike.

What each kind says is rendered by bot.stages.compose (`compose.RENDERERS`, by kind name);
this table knows nothing of the running bot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from storage.due import DueMessage
from storage.outbox import LANE_BROADCAST, LANE_EDIT, LANE_PERSONAL


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    rank: int
    paid: bool = False
    quiet: Literal["held", "urgent", "never"] = "held"  # "urgent": held unless urgent
    method: str = "sendMessage"
    lane: int | None = None  # None: the row's own (an alert's depends on why it matched)


ALERT = Kind("alert", 1)
COMBINED = Kind("combined", 1)
BROADCAST = Kind("broadcast", 0, quiet="urgent", lane=LANE_BROADCAST)
PAID = Kind("paid", 0, paid=True, quiet="urgent", lane=LANE_BROADCAST)
BRIEFING = Kind("briefing", 2, lane=LANE_PERSONAL)
POST = Kind("post", 2, quiet="never", lane=LANE_PERSONAL)
EDIT = Kind("edit", 3, quiet="never", method="editMessageText", lane=LANE_EDIT)

# A row's kind as stored → its kind when it goes alone.
BY_ROW = {"alert": ALERT, "broadcast": BROADCAST, "briefing": BRIEFING, "post": POST, "edit": EDIT}


def row_kind(message: DueMessage, *, paid_refused: bool = False) -> Kind:
    """The kind of one row as it waits (a broadcast sent fast is `PAID` until Telegram
    refuses paid sending for it)."""
    if message.kind == "broadcast" and message.paid and not paid_refused:
        return PAID
    return BY_ROW.get(message.kind, ALERT)


def batch_kind(batch: Sequence[DueMessage], *, paid_refused: bool = False) -> Kind:
    """The kind of what one send carries: several alerts, or held ones, are `COMBINED`."""
    first = batch[0]
    if first.kind == "alert" and (len(batch) > 1 or first.digest):
        return COMBINED
    return row_kind(first, paid_refused=paid_refused)


def held_by_quiet_hours(message: DueMessage) -> bool:
    """Whether this row waits for the end of its reader's quiet hours (mode "hold")."""
    kind = row_kind(message)
    return kind.quiet == "held" or (kind.quiet == "urgent" and not message.urgent)
