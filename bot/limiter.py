"""Replies to commands under the same flood limits as alerts.

python-telegram-bot calls `process_request` for every Bot API request a handler makes; the
ones that put a message in a chat (sends and edits) wait for that chat's and the global
windows of the dispatcher's `RateLimits`, and are counted there, so a reader flooding the bot
with commands cannot push it over Telegram's limits, and replies share the rate with alerts
instead of adding to it. Replies do not queue behind the outbox: they take the next free slot,
within their share of the rate while alerts wait too (bot.pipeline.ratelimit.SHARE).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.clock import Clock
from bot.locks import ChatLocks
from bot.pipeline.ratelimit import RateLimits

Result = bool | dict[str, Any] | list[dict[str, Any]]
# Bot API methods that make or change a message in a chat.
LIMITED = frozenset(
    {
        "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "copyMessage",
        "forwardMessage", "editMessageText", "editMessageReplyMarkup", "editMessageCaption",
    }
)  # fmt: skip


class SharedLimiter(BaseRateLimiter[None]):
    def __init__(self, limits: RateLimits, clock: Clock) -> None:
        self.limits = limits
        self.clock = clock
        # One reply at a time per chat (handlers run concurrently): a chat's window only
        # knows a send once it is answered, like the dispatcher's busy chats.
        self._chats = ChatLocks()

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> Result:
        chat_id = data.get("chat_id")
        if endpoint not in LIMITED or not isinstance(chat_id, int):
            return await callback(*args, **kwargs)
        async with self._chats.hold(chat_id):
            return await self._send(callback, args, kwargs, chat_id)

    async def _send(
        self, callback: Callable[..., Coroutine[Any, Any, Result]], args: Any, kwargs: dict[str, Any],
        chat_id: int,
    ) -> Result:
        limits, clock = self.limits, self.clock
        # Polled, not signalled: the windows open by the passing of time alone.
        limits.replies_waiting += 1
        try:
            while (wait := limits.ready_at(chat_id, clock.monotonic(), reply=True) - clock.monotonic()) > 0:
                await clock.sleep(min(wait, 5.0))
        finally:
            limits.replies_waiting -= 1
        limits.begin(reply=True)
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            seconds = exc.retry_after
            delay = seconds.total_seconds() if not isinstance(seconds, int | float) else float(seconds)
            limits.hold(chat_id, clock.monotonic() + delay)
            raise
        finally:
            limits.end(chat_id, clock.monotonic(), reply=True)
