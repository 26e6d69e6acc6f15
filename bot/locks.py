"""One lock per chat, for changes that must reach the database and the matcher together.

A reader's commands run concurrently (updates are handled 16 at a time), so /follow and
/stop from one chat can interleave at every await: /follow writes its row, /stop empties
the matcher and deletes the chat, then /follow adds to the matcher a subscription whose
row is gone. Holding the chat's lock across both steps makes each change whole. A lock
exists only while someone holds or waits for it, so memory follows the chats busy now.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ChatLocks:
    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, chat_id: int) -> AsyncIterator[None]:
        """The chat's lock, for the body of the `async with` (not re-entrant)."""
        lock, users = self._locks.get(chat_id) or (asyncio.Lock(), 0)
        self._locks[chat_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[chat_id]
            if users > 1:
                self._locks[chat_id] = (lock, users - 1)
            else:
                del self._locks[chat_id]

    def __len__(self) -> int:
        return len(self._locks)
