"""What an answer from Telegram means for the message that got it: one rule, no I/O.

Only an answer that singles out the chat or the message can fail it. Everything else says
nothing about the message — Telegram, the network or the token is the problem — and costs
no attempt: the dispatcher pauses sending until the failed method works again.

| answer | verdict |
| --- | --- |
| ok; an edit that changes nothing | SENT |
| 429 | LATER: that chat waits `retry_after`, no attempt |
| `migrate_to_chat_id` | MIGRATED: the chat moved, send there |
| 403; 400 naming a gone chat (blocked, kicked, deactivated, not found, no rights) | GONE |
| 400 "message thread not found" in a forum topic | TOPIC_GONE: the general topic instead |
| 400 about Stars on a paid broadcast | PAID_REFUSED: go on at the free rate |
| 400 "message is too long" for a message of several stories | SPLIT: send them apart |
| 400 the message can never go (bad markup, too long, the message to edit is gone) | REFUSED |
| any other 400 | FAULTY: retried, counted toward NEWSBOT_MAX_ATTEMPTS |
| 5xx, 401, 404, 409, other statuses; no answer (time-out, connection error) | OUTAGE |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.pipeline.botapi import Answer

GONE = ("chat not found", "user is deactivated", "bot was kicked", "bot was blocked",
        "peer_id_invalid", "chat_write_forbidden", "have no rights to send", "not enough rights",
        "bot is not a member", "group chat was deleted", "bot can't initiate conversation",
        "bot can't send messages to bots")  # fmt: skip
TOPIC_GONE = ("message thread not found", "topic_deleted", "topic was deleted", "thread not found")
PAID_REFUSED = ("star", "paid", "balance", "payment")
NOT_MODIFIED = "message is not modified"
TOO_LONG = ("message is too long", "message_too_long", "text is too long")
# 400s that the same request would get again, whatever the wait.
NEVER = (*TOO_LONG, "can't parse entities", "message text is empty", "message to edit not found",
         "message can't be edited", "message_id_invalid", "entities too long",
         "button_data_invalid", "reply markup is too long", "wrong parameter action")  # fmt: skip


class Verdict(enum.Enum):
    SENT = "sent"
    LATER = "later"
    MIGRATED = "migrated"
    GONE = "gone"
    TOPIC_GONE = "topic_gone"
    PAID_REFUSED = "paid_refused"
    SPLIT = "split"
    REFUSED = "refused"
    FAULTY = "faulty"
    OUTAGE = "outage"


@dataclass(frozen=True, slots=True)
class Reading:
    verdict: Verdict
    error: str = ""  # Telegram's words (or the transport's), for the log and the row
    kind: str = ""  # for newsbot_telegram_errors_total{kind}: 429, 403, 400, 5xx, …
    retry_after: float | None = None  # LATER
    migrate_to: int | None = None  # MIGRATED


def read_answer(
    answer: Answer, *, edit: bool = False, paid: bool = False, in_topic: bool = False, stories: int = 1
) -> Reading:
    """What `answer` means for the message it answers (see the table above)."""
    text = answer.description.casefold()
    if answer.ok or (edit and NOT_MODIFIED in text):
        return Reading(Verdict.SENT)
    error = answer.description or f"HTTP {answer.status}"
    if answer.status == 429:
        return Reading(Verdict.LATER, error, "429", retry_after=answer.retry_after)
    if answer.migrate_to is not None:
        return Reading(Verdict.MIGRATED, error, "400", migrate_to=answer.migrate_to)
    if answer.status == 403 or (answer.status == 400 and any(m in text for m in GONE)):
        return Reading(Verdict.GONE, error, "403")
    if answer.status == 400:
        if in_topic and any(m in text for m in TOPIC_GONE):
            return Reading(Verdict.TOPIC_GONE, error, "400")
        if paid and any(m in text for m in PAID_REFUSED):
            return Reading(Verdict.PAID_REFUSED, error, "400")
        if stories > 1 and any(m in text for m in TOO_LONG):
            return Reading(Verdict.SPLIT, error, "400")
        if any(m in text for m in NEVER):
            return Reading(Verdict.REFUSED, error, "400")
        return Reading(Verdict.FAULTY, error, "400")
    return Reading(Verdict.OUTAGE, error, "5xx" if answer.status >= 500 else "other")


def no_answer(kind: str, error: str) -> Reading:
    """A time-out or a connection error: nothing is known about the message."""
    return Reading(Verdict.OUTAGE, error, kind)
