"""A chat that sends too much: answered once, then ignored for a while.

Runs before every handler (group -1). Each chat may send FLOOD_UPDATES updates (commands,
texts, button presses) in FLOOD_WINDOW seconds; beyond that it gets one "Slow down" and
nothing more for QUIET_FOR seconds. Memory follows recent traffic only.
"""

from __future__ import annotations

import logging
from collections import deque

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.context import NewsContext

log = logging.getLogger(__name__)

FLOOD_UPDATES = 12
FLOOD_WINDOW = 10.0
QUIET_FOR = 60.0
SLOW_DOWN = "Slow down, please: you sent a lot in a few seconds. I will answer again in a minute."


class FloodGuard:
    def __init__(self) -> None:
        self._recent: dict[int, deque[float]] = {}
        self._quiet_until: dict[int, float] = {}
        self._checked = 0.0

    def admit(self, chat_id: int, now: float) -> str:
        """"ok", "warn" (answer once and ignore) or "ignore"."""
        if now - self._checked > FLOOD_WINDOW:
            self._forget(now)
        if self._quiet_until.get(chat_id, 0.0) > now:
            return "ignore"
        recent = self._recent.setdefault(chat_id, deque())
        while recent and recent[0] <= now - FLOOD_WINDOW:
            recent.popleft()
        recent.append(now)
        if len(recent) > FLOOD_UPDATES:
            self._quiet_until[chat_id] = now + QUIET_FOR
            recent.clear()
            return "warn"
        return "ok"

    def _forget(self, now: float) -> None:
        self._checked = now
        self._recent = {c: d for c, d in self._recent.items() if d and d[-1] > now - FLOOD_WINDOW}
        self._quiet_until = {c: t for c, t in self._quiet_until.items() if t > now}

    async def __call__(self, update: Update, context: NewsContext) -> None:
        chat = update.effective_chat
        if chat is None or update.my_chat_member is not None or update.inline_query is not None:
            return
        verdict = self.admit(chat.id, context.services.clock.monotonic())
        if verdict == "ok":
            return
        context.services.metrics.inc("newsbot_flood_refusals_total")
        if verdict == "warn":
            log.warning("flood: chat ignored chat_id=%d seconds=%.0f", chat.id, QUIET_FOR)
            if update.callback_query is not None:
                await update.callback_query.answer(SLOW_DOWN, show_alert=True)
            elif update.effective_message is not None:
                await update.effective_message.reply_text(SLOW_DOWN, do_quote=False)
        elif update.callback_query is not None:
            await update.callback_query.answer()
        raise ApplicationHandlerStop
