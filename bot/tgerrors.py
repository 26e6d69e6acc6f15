"""How to read Telegram's refusals where code must tell them apart (handlers and progress
messages; the dispatcher reads raw answers in bot.stages.deliver)."""

from __future__ import annotations

from telegram.error import BadRequest


def not_modified(exc: BadRequest) -> bool:
    """Telegram refuses an edit that changes nothing; for a redraw that is success."""
    return "message is not modified" in exc.message.casefold()


def message_gone(exc: BadRequest) -> bool:
    """The message to edit was deleted (or is too old to edit)."""
    text = exc.message.casefold()
    return "not found" in text or "can't be edited" in text
