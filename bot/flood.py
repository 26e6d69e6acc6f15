"""A sender that sends too much: answered once, then ignored for a while.

Runs before every handler (group -1). Each chat, and each user, may send FLOOD_UPDATES
updates (commands, texts, button presses, inline queries) in FLOOD_WINDOW seconds; beyond
that they get one "Slow down" and nothing more for QUIET_FOR seconds. An update counts for
its chat and for its sender (one count in a private chat, where they are the same id), so
a user who floods inline queries from any chat has their commands ignored too, and a busy
group is limited as a whole. An inline query over the limit gets no answer at all (Telegram
shows no results); since "Slow down" cannot be said there, it is said on the user's next
command or button press. Memory follows recent traffic only.
"""

from __future__ import annotations

import logging
from collections import deque

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.context import NewsContext
from bot.i18n import N_, _

log = logging.getLogger(__name__)

FLOOD_UPDATES = 12
FLOOD_WINDOW = 10.0
QUIET_FOR = 60.0
SLOW_DOWN = N_("Slow down, please: you sent a lot in a few seconds. I will answer again in a minute.")
_RANK = {"ok": 0, "ignore": 1, "warn": 2}


class FloodGuard:
    def __init__(self) -> None:
        self._recent: dict[int, deque[float]] = {}
        self._quiet_until: dict[int, float] = {}
        self._untold: set[int] = set()  # ignored without being told (an inline query)
        self._checked = 0.0

    def admit(self, chat_id: int, now: float) -> str:
        """"ok", "warn" (answer once and ignore) or "ignore", for one sender (a chat or a
        user id)."""
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
        self._untold &= self._quiet_until.keys()

    def verdict(self, keys: set[int], now: float, *, can_tell: bool) -> tuple[str, bool]:
        """The update's verdict from its counts (the worst of them), and whether one of them
        has just gone quiet. "warn" also for a sender ignored so far without being told,
        once the update is one that can carry the answer."""
        verdicts = [(key, self.admit(key, now)) for key in keys]
        worst = max((v for _, v in verdicts), key=_RANK.__getitem__)
        warned = {key for key, v in verdicts if v == "warn"}
        if not can_tell:
            self._untold |= warned
            return ("ok" if worst == "ok" else "ignore"), bool(warned)
        owed = keys & self._untold
        self._untold -= owed
        return ("warn" if worst == "ignore" and owed else worst), bool(warned)

    async def __call__(self, update: Update, context: NewsContext) -> None:
        if update.my_chat_member is not None:
            return
        chat, user = update.effective_chat, update.effective_user
        if update.inline_query is not None:
            keys = {update.inline_query.from_user.id}
        elif chat is not None:
            keys = {chat.id} | ({user.id} if user is not None else set())
        else:
            return
        now = context.services.clock.monotonic()
        verdict, quiet_now = self.verdict(keys, now, can_tell=update.inline_query is None)
        if verdict == "ok":
            return
        context.services.metrics.inc("newsbot_flood_refusals_total")
        if quiet_now:
            if chat is not None:
                log.warning("flood: chat ignored chat_id=%d seconds=%.0f", chat.id, QUIET_FOR)
            else:
                log.warning("flood: user ignored user_id=%d seconds=%.0f", min(keys), QUIET_FOR)
        if verdict == "warn":
            if update.callback_query is not None:
                await update.callback_query.answer(_(SLOW_DOWN), show_alert=True)
            elif update.effective_message is not None:
                await update.effective_message.reply_text(_(SLOW_DOWN), do_quote=False)
        elif update.callback_query is not None:
            await update.callback_query.answer()
        raise ApplicationHandlerStop
