"""The handlers' error handler: every failure logged (with its traceback, token redacted)
and counted; the chat told "something went wrong" at most once a minute, so a reader who
keeps hitting a failure is not flooded with apologies."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from bot.context import NewsContext
from bot.i18n import N_, _
from storage.db import StorageError

log = logging.getLogger(__name__)

NOTICE = N_("Sorry, something went wrong. Please try again in a moment.")
# The database refused a write (disk full, file gone): the reader's change is not saved.
NOT_SAVED = N_("Sorry, that could not be saved — please try again later")
NOTICE_EVERY = 60.0


class ErrorNotices:
    def __init__(self) -> None:
        self._last: dict[int, float] = {}

    def due(self, chat_id: int, now: float) -> bool:
        if len(self._last) > 10_000:
            self._last = {c: t for c, t in self._last.items() if t > now - NOTICE_EVERY}
        if self._last.get(chat_id, -NOTICE_EVERY) > now - NOTICE_EVERY:
            return False
        self._last[chat_id] = now
        return True

    async def __call__(self, update: object, context: NewsContext) -> None:
        log.error("handler failed error=%s", context.error, exc_info=context.error)
        if context.bot_data.opened:
            context.services.metrics.inc("newsbot_errors_total", stage="handler")
        if not isinstance(update, Update) or update.effective_chat is None:
            return
        chat_id = update.effective_chat.id
        if not context.bot_data.opened or not self.due(chat_id, context.services.clock.monotonic()):
            return
        try:
            notice = _(NOT_SAVED if isinstance(context.error, StorageError) else NOTICE)
            await context.bot.send_message(chat_id, notice)
        except TelegramError:  # the chat may be unreachable; the log already has the cause
            log.debug("error notice not sent chat_id=%s", chat_id)
