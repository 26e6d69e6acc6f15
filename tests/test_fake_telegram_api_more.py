"""The fake Bot API server's paid broadcasts and edit limits, exercised over real HTTP
(httpx and python-telegram-bot)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
)
from telegram.error import BadRequest

from tests.fakes.telegram_api import (
    EDIT_TIME_LIMIT,
    PAID_BROADCAST_REFUSED,
    FakeTelegram,
)

TOKEN = "123:ABC"


def form(params: dict[str, Any]) -> dict[str, str]:
    """Encode parameters the way python-telegram-bot does: JSON for non-strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}


async def api(client: httpx.AsyncClient, method: str, **params: Any) -> tuple[int, Any]:
    response = await client.post(method, data=form(params))
    return response.status_code, response.json()


async def ok(client: httpx.AsyncClient, method: str, **params: Any) -> Any:
    status, body = await api(client, method, **params)
    assert status == 200, body
    return body["result"]


async def error(client: httpx.AsyncClient, method: str, **params: Any) -> tuple[int, str]:
    status, body = await api(client, method, **params)
    assert body["ok"] is False and body["error_code"] == status, body
    return status, body["description"]


def keyboard(**buttons: str) -> dict[str, Any]:
    """An inline keyboard; a value starting with http is a URL button, else callback data."""
    return {
        "inline_keyboard": [
            [
                {"text": text, "url": value}
                if value.startswith("http")
                else {"text": text, "callback_data": value}
                for text, value in buttons.items()
            ]
        ]
    }


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def client(tg: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=10) as http:
        yield http


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=tg.api_url, base_file_url=tg.file_url) as ptb:
        yield ptb


# --------------------------------------------------------------------------- paid broadcasts


async def test_paid_messages_meet_the_paid_global_limit(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.enforce_limits(global_per_second=5, paid_per_second=8)
    for chat in range(1, 6):
        await ok(client, "sendMessage", chat_id=chat, text="free")
    status, description = await error(client, "sendMessage", chat_id=6, text="free")
    assert (status, description) == (429, "Too Many Requests: retry after 1")
    # Paid messages count every send in the window against the higher limit: 5 + 3 = 8.
    await ok(client, "sendMessage", chat_id=7, text="paid", allow_paid_broadcast=True)
    await ok(client, "sendMessage", chat_id=8, text="paid", allow_paid_broadcast="true")
    response = await client.post(
        "sendMessage", json={"chat_id": 9, "text": "paid", "allow_paid_broadcast": True}
    )
    assert response.status_code == 200
    status, _ = await error(client, "sendMessage", chat_id=10, text="p", allow_paid_broadcast=True)
    assert status == 429

    free, paid = tg.violations
    assert (free.kind, free.chat_id, free.paid) == ("global", 6, False)
    assert (paid.kind, paid.chat_id, paid.paid) == ("global", 10, True)
    assert paid.detail == "9 sends within 1 s (paid limit 8)"
    assert tg.paid_sent_count == 3
    # All three went beyond the free 5 per second, so Telegram charges for each.
    assert tg.paid_billed_count == 3


async def test_free_limit_counts_only_free_messages(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.enforce_limits(global_per_second=3)
    for chat in range(1, 4):
        await ok(client, "sendMessage", chat_id=chat, text="paid", allow_paid_broadcast=True)
    assert tg.paid_billed_count == 0  # within the free allowance: not billed
    for chat in range(4, 7):
        await ok(client, "sendMessage", chat_id=chat, text="paid", allow_paid_broadcast=True)
    # Six paid messages in the window do not use up the three free ones.
    for chat in range(7, 10):
        await ok(client, "sendMessage", chat_id=chat, text="free")
    assert (await error(client, "sendMessage", chat_id=10, text="free"))[0] == 429
    assert tg.paid_sent_count == 6 and tg.paid_billed_count == 3
    # allow_paid_broadcast=false is a free message.
    tg.enforce_limits(global_per_second=1)
    await ok(client, "sendMessage", chat_id=11, text="x", allow_paid_broadcast=False)
    assert (await error(client, "sendMessage", chat_id=12, text="x"))[0] == 429
    assert tg.paid_sent_count == 6


async def test_paid_messages_still_meet_chat_and_group_limits(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.enforce_limits(group_per_minute=2)
    await ok(client, "sendMessage", chat_id=5, text="x", allow_paid_broadcast=True)
    status, _ = await error(client, "sendMessage", chat_id=5, text="x", allow_paid_broadcast=True)
    assert status == 429
    for _ in range(2):
        await ok(client, "sendMessage", chat_id=-100, text="x", allow_paid_broadcast=True)
    status, _ = await error(
        client, "sendMessage", chat_id=-100, text="x", allow_paid_broadcast=True
    )
    assert status == 429
    assert [(v.kind, v.paid) for v in tg.violations] == [("private_chat", True), ("group", True)]
    assert tg.paid_sent_count == 3


async def test_refuse_paid_after_the_stars_run_out(
    tg: FakeTelegram, client: httpx.AsyncClient, bot: Bot
) -> None:
    tg.refuse_paid(after=2)
    await ok(client, "sendMessage", chat_id=1, text="x", allow_paid_broadcast=True)
    photo = "https://example.org/p.jpg"
    await ok(client, "sendPhoto", chat_id=2, photo=photo, allow_paid_broadcast=True)
    status, description = await error(
        client, "sendMessage", chat_id=3, text="x", allow_paid_broadcast=True
    )
    assert (status, description) == (400, PAID_BROADCAST_REFUSED)
    assert description == "Bad Request: BALANCE_TOO_LOW"
    with pytest.raises(BadRequest) as refused:
        await bot.send_message(4, "x", allow_paid_broadcast=True)
    assert refused.value.message.upper() == "BALANCE_TOO_LOW"  # PTB capitalizes it
    await bot.send_message(4, "free messages are not affected")
    assert tg.paid_sent_count == 2
    assert [m.get("text") for m in tg.sent_messages()] == ["x", "free messages are not affected"]

    tg.accept_paid()
    await bot.send_message(5, "x", allow_paid_broadcast=True)
    tg.refuse_paid("Bad Request: custom", after=0)
    assert (await error(client, "sendMessage", chat_id=6, text="x", allow_paid_broadcast=1))[
        1
    ] == "Bad Request: custom"
    tg.clear_faults()
    await ok(client, "sendMessage", chat_id=6, text="x", allow_paid_broadcast="yes")
    assert tg.paid_sent_count == 4
    tg.clear()
    assert tg.paid_sent_count == 0


# --------------------------------------------------------------------------- edits


async def test_edits_count_toward_the_private_chat_interval(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.enforce_limits()
    sent = await ok(client, "sendMessage", chat_id=5, text="v1")
    status, description = await error(
        client, "editMessageText", chat_id=5, message_id=sent["message_id"], text="v2"
    )
    assert (status, description) == (429, "Too Many Requests: retry after 1")
    status, _ = await error(
        client,
        "editMessageReplyMarkup",
        chat_id=5,
        message_id=sent["message_id"],
        reply_markup=keyboard(More="more"),
    )
    assert status == 429
    assert [(v.kind, v.method, v.chat_id) for v in tg.violations] == [
        ("private_chat", "editMessageText", 5),
        ("private_chat", "editMessageReplyMarkup", 5),
    ]
    assert tg.message(5, sent["message_id"]) == sent  # refused edits change nothing

    tg.enforce_limits(per_chat_interval=0.1)
    await asyncio.sleep(0.12)
    edited = await ok(
        client, "editMessageText", chat_id=5, message_id=sent["message_id"], text="v2"
    )
    assert edited["text"] == "v2" and edited["edit_date"] >= sent["date"]
    status, _ = await error(client, "sendMessage", chat_id=5, text="right after an edit")
    assert status == 429
    # "Not modified" stays what it was, and is refused before the limits are looked at.
    await asyncio.sleep(0.12)
    status, description = await error(
        client, "editMessageText", chat_id=5, message_id=sent["message_id"], text="v2"
    )
    assert status == 400 and description.startswith("Bad Request: message is not modified")
    assert len(tg.violations) == 1


async def test_edits_count_in_group_and_free_global_windows(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    older = await ok(client, "sendMessage", chat_id=3, text="sent before the limits")
    tg.enforce_limits(group_per_minute=3)
    sent = await ok(client, "sendMessage", chat_id=-100, text="0")
    for text in ("1", "2"):
        await ok(client, "editMessageText", chat_id=-100, message_id=sent["message_id"], text=text)
    status, _ = await error(
        client, "editMessageText", chat_id=-100, message_id=sent["message_id"], text="3"
    )
    assert status == 429
    [violation] = tg.violations
    assert (violation.kind, violation.method, violation.paid) == ("group", "editMessageText", False)

    tg.enforce_limits(global_per_second=2, paid_per_second=10)
    await ok(client, "sendMessage", chat_id=1, text="a")
    await ok(client, "editMessageText", chat_id=-100, message_id=sent["message_id"], text="4")
    status, _ = await error(
        client, "editMessageText", chat_id=3, message_id=older["message_id"], text="b"
    )
    assert status == 429
    # A paid message is still let through: edits are free sends in the paid window.
    await ok(client, "sendMessage", chat_id=2, text="paid", allow_paid_broadcast=True)
    assert [v.kind for v in tg.violations] == ["global"]


async def test_old_messages_cannot_be_edited(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    sent = await ok(client, "sendMessage", chat_id=9, text="v1", reply_markup=keyboard(A="a"))
    mid = sent["message_id"]
    aged = tg.age_message(9, mid, EDIT_TIME_LIMIT - 60)
    assert aged["date"] == sent["date"] - EDIT_TIME_LIMIT + 60
    edited = await ok(client, "editMessageText", chat_id=9, message_id=mid, text="v2")
    assert edited["date"] == aged["date"] and edited["edit_date"] >= sent["date"]

    tg.age_message(9, mid, 120)
    status, description = await error(
        client, "editMessageText", chat_id=9, message_id=mid, text="v3"
    )
    assert (status, description) == (400, "Bad Request: message can't be edited")
    status, description = await error(
        client, "editMessageReplyMarkup", chat_id=9, message_id=mid, reply_markup=keyboard(B="b")
    )
    assert description == "Bad Request: message can't be edited"
    assert tg.message(9, mid)["text"] == "v2"  # type: ignore[index]
    assert await ok(client, "deleteMessage", chat_id=9, message_id=mid) is True
    with pytest.raises(LookupError):
        tg.age_message(9, mid, 1)

    # Telegram itself lets a bot edit its own messages at any age.
    with FakeTelegram(TOKEN, edit_time_limit=None) as lenient:
        async with httpx.AsyncClient(base_url=f"{lenient.url}/bot{TOKEN}/") as http:
            old = await ok(http, "sendMessage", chat_id=9, text="v1")
            lenient.age_message(9, old["message_id"], 30 * 86400)
            await ok(http, "editMessageText", chat_id=9, message_id=old["message_id"], text="v2")
