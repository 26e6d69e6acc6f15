"""A lean Bot API client for the dispatcher's sends: JSON in, only what delivery needs out.

python-telegram-bot turns every answer into full objects over httpx, which costs about a
millisecond of CPU per message; at a paid broadcast's 1,000 messages a second that is the
whole core. The dispatcher only needs "ok and the message id" or "which error, retry when",
so it posts through one shared aiohttp session (keep-alive connections, one per send in
flight) and reads just that. Handlers keep using python-telegram-bot.

The token is part of every request path and never leaves this module: errors carry a
description that has been scrubbed of it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp


class Unreachable(Exception):
    """No answer from the Bot API: a connection error or a time-out. `kind` is "timeout" or
    "network"; the message never contains the token."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Answer:
    """The Bot API's answer: `ok` with a result, or an error code and description."""

    ok: bool
    status: int
    result: Any = None
    description: str = ""
    retry_after: float | None = None
    migrate_to: int | None = None

    @property
    def message_id(self) -> int:
        result = self.result
        if isinstance(result, dict) and isinstance(result.get("message_id"), int):
            return int(result["message_id"])
        return 0


class Sender(Protocol):
    """What the dispatcher needs of the Bot API (BotApi; the news-day simulation's Telegram)."""

    async def call(self, method: str, params: dict[str, Any]) -> Answer: ...


class BotApi:
    def __init__(self, api_url: str, token: str, *, connections: int = 8, timeout: float = 20.0) -> None:
        self._base = f"{api_url}{token}/"
        self._token = token
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections + 2, enable_cleanup_closed=True),
                timeout=aiohttp.ClientTimeout(total=self._timeout, connect=min(10.0, self._timeout)),
                json_serialize=json.dumps,
                # Telegram answers with JSON whatever it says; never follow a redirect with
                # the token in the path.
                raise_for_status=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<token>")

    async def call(self, method: str, params: dict[str, Any]) -> Answer:
        """One Bot API request; raises `Unreachable` when there is no HTTP answer."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.post(
                self._base + method, data=json.dumps(params), allow_redirects=False,
                headers={"Content-Type": "application/json"},
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            raise Unreachable("timeout", f"no answer to {method} within {self._timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable("network", self._scrub(f"{type(exc).__name__}: {exc}")[:300]) from None
        except asyncio.CancelledError:
            raise
        return _answer(status, body)


def _answer(status: int, body: bytes) -> Answer:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # A proxy's error page (nginx's 502) rather than the Bot API.
        return Answer(False, status, description=f"HTTP {status} without a Bot API answer")
    if data.get("ok") is True:
        return Answer(True, status, result=data.get("result"))
    raw_parameters = data.get("parameters")
    parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
    retry_after = parameters.get("retry_after")
    migrate_to = parameters.get("migrate_to_chat_id")
    code = data.get("error_code")
    return Answer(
        False,
        int(code) if isinstance(code, int) else status,
        description=str(data.get("description") or f"HTTP {status}")[:500],
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        migrate_to=int(migrate_to) if isinstance(migrate_to, int) else None,
    )
