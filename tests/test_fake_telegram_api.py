"""The fake Bot API server, exercised over real HTTP (httpx, raw sockets and PTB)."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.telegram_api import (
    MAX_MESSAGE_LENGTH,
    FakeTelegram,
    parse_telegram_html,
    validate_telegram_html,
)
from tests.simtime import SimClock

TOKEN = "123:ABC"
BAD_HTML = "Bad Request: can't parse entities: "


def form(params: dict[str, Any]) -> dict[str, str]:
    """Encode parameters the way python-telegram-bot does: JSON for non-strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}


async def api(client: httpx.AsyncClient, method: str, **params: Any) -> tuple[int, Any]:
    response = await client.post(method, data=form(params))
    return response.status_code, response.json()


async def ok(client: httpx.AsyncClient, method: str, **params: Any) -> Any:
    status, body = await api(client, method, **params)
    assert status == 200, body
    assert body["ok"] is True
    return body["result"]


async def error(client: httpx.AsyncClient, method: str, **params: Any) -> tuple[int, Any]:
    status, body = await api(client, method, **params)
    assert body["ok"] is False
    assert body["error_code"] == status
    return status, body


def keyboard(*data: str) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": d or "?", "callback_data": d} for d in data]]}


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
async def sim_server(clock: SimClock) -> AsyncIterator[FakeTelegram]:
    """The fake on the test's loop, on simulated time: for tests of its delays and limits,
    which then cost no real time."""
    async with FakeTelegram(TOKEN).here(clock) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def sim_client(sim_server: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{sim_server.url}/bot{TOKEN}/", timeout=10) as http:
        yield http


# --------------------------------------------------------------------------- routing


async def test_get_me_routing_and_errors(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    me = await ok(client, "getMe")
    assert me["id"] == 123 and me["is_bot"] is True
    assert me["username"] == "newsbot_test_bot"
    assert me["can_join_groups"] is True
    # Method names are case-insensitive and GET with a query string works, like Telegram.
    assert (await client.get("getme")).json()["result"]["id"] == 123
    response = await client.get("sendMessage?chat_id=5&text=hi")
    assert response.json()["result"]["text"] == "hi"

    unknown = await client.post("sendTelepathy")
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    wrong = await client.post(f"{tg.url}/bot999:WRONG/getMe")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert (await client.post(f"{tg.url}/botnonsense/getMe")).status_code == 404
    assert (await client.get(f"{tg.url}/")).status_code == 404
    assert [c.method for c in tg.calls()] == ["getMe", "getMe", "sendMessage", "sendTelepathy"]


async def test_raw_http_keep_alive_pipelining_and_chunked(tg: FakeTelegram) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
    try:
        body = b"chat_id=7&text=one"
        request = (
            f"POST /bot{TOKEN}/sendMessage HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        pieces = ['{"chat_id": 7, "', 'text":"two"}']
        chunks = "".join(f"{len(piece):x}\r\n{piece}\r\n" for piece in pieces)
        chunked = (
            f"POST /bot{TOKEN}/sendMessage HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n{chunks}0\r\n\r\n"
        ).encode()
        writer.write(request + chunked)  # two pipelined requests in one segment
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)  # the server closes after the 2nd
    finally:
        writer.close()
        await writer.wait_closed()
    first, second = raw.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and b"Connection: keep-alive" in first
    assert second.startswith(b"200 OK") and b"Connection: close" in second
    assert [m["text"] for m in tg.sent_messages(7)] == ["one", "two"]
    assert [m["message_id"] for m in tg.sent_messages(7)] == [1, 2]


# --------------------------------------------------------------------------- sendMessage


async def test_send_message_result_and_recording(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    markup = keyboard("more:1", "stop")
    first = await ok(client, "sendMessage", chat_id=42, text="123", reply_markup=markup)
    second = await ok(client, "sendMessage", chat_id=42, text="second")
    other = await ok(client, "sendMessage", chat_id=-1001, text="group")

    assert first["message_id"] == 1 and second["message_id"] == 2 and other["message_id"] == 1
    assert first["chat"] == {"id": 42, "type": "private"}
    assert other["chat"]["type"] == "supergroup" and other["chat"]["id"] == -1001
    assert first["from"]["id"] == 123 and first["from"]["is_bot"] is True
    assert abs(first["date"] - time.time()) < 5
    assert first["text"] == "123"  # a String parameter stays a string even if it looks numeric
    assert first["reply_markup"] == markup
    assert "reply_markup" not in second

    [call, *_] = tg.calls("sendmessage")
    assert call.params == {"chat_id": 42, "text": "123", "reply_markup": markup}
    assert call.chat_id == 42 and call.ok and call.result == first
    assert [m["text"] for m in tg.sent_messages(42)] == ["123", "second"]
    assert [m["text"] for m in tg.sent_messages()] == ["123", "second", "group"]
    assert {k: len(v) for k, v in tg.messages_by_chat().items()} == {42: 2, -1001: 1}
    assert tg.message(42, 2) == second

    tg.clear()
    assert tg.calls() == [] and tg.sent_messages() == [] and tg.messages_by_chat() == {}
    assert (await ok(client, "sendMessage", chat_id=42, text="x"))["message_id"] == 3


async def test_json_bodies_and_channel_usernames(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "sendMessage", json={"chat_id": "@news_channel", "text": "hello", "parse_mode": "HTML"}
    )
    message = response.json()["result"]
    assert message["chat"]["type"] == "channel"
    assert message["chat"]["username"] == "news_channel"
    assert message["chat"]["id"] < 0
    assert tg.calls()[0].chat_id == "@news_channel"


async def test_html_is_parsed_into_text_and_entities(client: httpx.AsyncClient) -> None:
    message = await ok(
        client,
        "sendMessage",
        chat_id=1,
        parse_mode="HTML",
        text='  <b>Bold</b> <a href="https://example.org/a?b=1&amp;c=2">link</a> &lt;3 '
        '<pre><code class="language-python">x = 1</code></pre> 😀<i>é</i>\n',
    )
    assert message["text"] == "Bold link <3 x = 1 😀é"
    assert message["entities"] == [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "text_link", "offset": 5, "length": 4, "url": "https://example.org/a?b=1&c=2"},
        {"type": "pre", "offset": 13, "length": 5, "language": "python"},
        # Offsets count UTF-16 code units: the emoji takes two.
        {"type": "italic", "offset": 21, "length": 1},
    ]


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"text": ""}, "Bad Request: message text is empty"),
        ({"text": " \n "}, "Bad Request: message text is empty"),
        ({"text": "<b></b>", "parse_mode": "HTML"}, "Bad Request: message text is empty"),
        ({"text": "x" * (MAX_MESSAGE_LENGTH + 1)}, "Bad Request: message is too long"),
        (
            {"text": "<b>" + "x" * (MAX_MESSAGE_LENGTH + 1) + "</b>", "parse_mode": "HTML"},
            "Bad Request: message is too long",
        ),
        (
            {"text": "a <br> b", "parse_mode": "HTML"},
            BAD_HTML + 'Unsupported start tag "br" at byte offset 2',
        ),
        (
            {"text": "1 < 2", "parse_mode": "HTML"},
            BAD_HTML + 'Unsupported start tag "" at byte offset 2',
        ),
        (
            {"text": "<b>bold", "parse_mode": "HTML"},
            BAD_HTML + 'Can\'t find end tag corresponding to start tag "b"',
        ),
        (
            {"text": "<b><i>x</b></i>", "parse_mode": "HTML"},
            BAD_HTML + 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"',
        ),
        ({"text": "Tom & Jerry", "parse_mode": "HTML"}, None),
        ({"text": "x", "parse_mode": "Klingon"}, "Bad Request: unsupported parse_mode"),
        ({"text": "x", "reply_markup": keyboard("d" * 65)}, "Bad Request: BUTTON_DATA_INVALID"),
        ({"text": "x", "reply_markup": keyboard("é" * 33)}, "Bad Request: BUTTON_DATA_INVALID"),
        ({"text": "x", "reply_markup": keyboard("")}, "Bad Request: BUTTON_DATA_INVALID"),
        ({"text": "x", "reply_markup": "{not json"}, "Bad Request: can't parse reply keyboard"),
        ({"text": "x", "reply_to_message_id": 99}, "Bad Request: message to be replied not found"),
        ({}, "Bad Request: message text is empty"),
    ],
)
async def test_send_message_validation(
    tg: FakeTelegram, client: httpx.AsyncClient, params: dict[str, Any], description: str | None
) -> None:
    status, body = await error(client, "sendMessage", chat_id=5, **params)
    assert status == 400
    if description is None:  # the bare "&" case: strict by default
        assert body["description"].startswith(BAD_HTML + 'Character entity expected after "&"')
    else:
        assert body["description"].startswith(description)
    assert tg.sent_messages() == []
    assert tg.calls("sendMessage")[0].status == 400


async def test_limits_that_are_just_allowed(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    await ok(client, "sendMessage", chat_id=5, text="x" * MAX_MESSAGE_LENGTH)
    tagged = "<b>" + "&lt;" * MAX_MESSAGE_LENGTH + "</b>"
    assert (
        len((await ok(client, "sendMessage", chat_id=5, text=tagged, parse_mode="HTML"))["text"])
        == 4096
    )
    await ok(client, "sendMessage", chat_id=5, text="x", reply_markup=keyboard("d" * 64))
    with FakeTelegram(strict_html=False) as lenient:
        async with httpx.AsyncClient(base_url=f"{lenient.url}/bot{TOKEN}/") as http:
            message = await ok(http, "sendMessage", chat_id=5, text="A & B", parse_mode="HTML")
    assert message["text"] == "A & B"


# --------------------------------------------------------------------------- HTML validator


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins>", None),
        ("<s>s</s><strike>k</strike><del>d</del><tg-spoiler>x</tg-spoiler>", None),
        ('<span class="tg-spoiler">x</span><a href="http://x.y">l</a>', None),
        ("<code>c</code><pre>p</pre><blockquote>q</blockquote>", None),
        ("<blockquote expandable>q</blockquote>", None),
        ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', None),
        ("&lt;&gt;&amp;&quot;&#65;&#x42;", None),
        ("<B>upper</B><b>closed by empty</>", None),
        ("<b>a <i>nested <u>deeply</u></i></b>", None),
        ("<p>x</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("é<div>", 'Unsupported start tag "div" at byte offset 2'),
        ("a <", "Unclosed start tag at byte offset 2"),
        ("</b>", "Unexpected end tag at byte offset 0"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ("<i>x</b>", 'Unmatched end tag at byte offset 4, expected "</i>", found "</b>"'),
        ("<b><i>x</i>", 'Can\'t find end tag corresponding to start tag "b"'),
        ('<span class="bold">x</span>', 'Tag "span" must have class "tg-spoiler"'),
        ("<a href>x</a>", 'Expected equal sign in declaration of an attribute of the tag "a"'),
        ("<a href=x!y>l</a>", "Unexpected end of name token at byte offset 8"),
        ("<tg-emoji>x</tg-emoji>", "Invalid custom emoji identifier specified"),
        ("AT&T", 'Character entity expected after "&" at byte offset 2'),
        ("&nbsp;", 'Character entity expected after "&" at byte offset 0'),
        ("&#xD800;", "Text contains invalid Unicode characters"),
    ],
)
def test_validate_telegram_html(text: str, problem: str | None) -> None:
    result = validate_telegram_html(text)
    if problem is None:
        assert result is None
    else:
        assert result is not None and result.startswith(problem), result


def test_bare_ampersand_passes_through_when_not_strict() -> None:
    assert validate_telegram_html("AT&T &nbsp;", strict=False) is None
    assert parse_telegram_html("AT&T &nbsp;", strict=False) == ("AT&T &nbsp;", [])


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_escaped_text_is_always_valid_and_round_trips(text: str) -> None:
    escaped = html.escape(text)
    assert validate_telegram_html(escaped) is None
    assert parse_telegram_html(escaped) == (text, [])


_TAGS = ["b", "i", "u", "s", "code", "tg-spoiler", "blockquote", 'a href="https://e.org"']


@st.composite
def formatted(draw: st.DrawFn, depth: int = 0) -> tuple[str, str]:
    """(Bot API HTML, the visible text it stands for) with properly nested tags."""
    parts = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3))
    html_parts: list[str] = []
    visible_parts: list[str] = []
    for part in parts:
        if depth < 3 and draw(st.booleans()):
            inner_html, inner_visible = draw(formatted(depth + 1))
            tag = draw(st.sampled_from(_TAGS))
            html_parts.append(f"<{tag}>{inner_html}</{tag.split()[0]}>")
            visible_parts.append(inner_visible)
        html_parts.append(html.escape(part))
        visible_parts.append(part)
    return "".join(html_parts), "".join(visible_parts)


@settings(max_examples=150, deadline=None)
@given(formatted())
def test_nested_allowed_tags_are_valid(sample: tuple[str, str]) -> None:
    markup, visible = sample
    text, entities = parse_telegram_html(markup)
    assert text == visible
    size = len(text.encode("utf-16-le")) // 2
    assert all(e["offset"] >= 0 and e["offset"] + e["length"] <= size for e in entities)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="<>/&bi ;a", max_size=12))
def test_validator_never_crashes(text: str) -> None:
    problem = validate_telegram_html(text)
    assert problem is None or isinstance(problem, str)


# --------------------------------------------------------------------------- getUpdates


async def test_get_updates_offset_and_limit(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    tg.push_update({"message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}})
    tg.user_message(1, "two")
    tg.user_message(1, "three")
    updates = await ok(client, "getUpdates")
    ids = [u["update_id"] for u in updates]
    assert ids == [1, 2, 3]
    # Returning updates does not confirm them: only a later offset does.
    assert [u["update_id"] for u in await ok(client, "getUpdates")] == ids
    assert tg.pending_update_count == 3
    assert [u["update_id"] for u in await ok(client, "getUpdates", offset=2, limit=1)] == [2]
    assert tg.pending_update_count == 2
    assert [u["update_id"] for u in await ok(client, "getUpdates", offset=-1)] == [3]
    assert tg.pending_update_count == 1
    assert await ok(client, "getUpdates", offset=4) == []
    assert tg.pending_update_count == 0
    assert tg.push_update({"update_id": 10, "message": {}})["update_id"] == 10
    assert tg.user_message(1, "next")["update_id"] == 11


async def test_long_poll_wakes_up_on_push_and_times_out(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(ok(client, "getUpdates", timeout=5))
    await asyncio.sleep(0.1)
    assert not poll.done()
    threading.Timer(0.05, tg.user_message, args=(9, "wake up")).start()
    updates = await poll
    assert time.monotonic() - started < 2
    assert updates[0]["message"]["text"] == "wake up"

    started = time.monotonic()
    assert await ok(client, "getUpdates", offset=updates[0]["update_id"] + 1, timeout=0.3) == []
    assert 0.25 < time.monotonic() - started < 2


async def test_allowed_updates_filter(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    sent = await ok(client, "sendMessage", chat_id=3, text="pick", reply_markup=keyboard("a"))
    tg.user_message(3, "ignored")
    tg.push_update({"chat_member": {}})
    tg.callback_query(3, sent["message_id"], "a")
    default = await ok(client, "getUpdates")
    assert [next(k for k in u if k != "update_id") for u in default] == [
        "message",
        "callback_query",
    ]
    only = await ok(client, "getUpdates", allowed_updates=["callback_query"])
    assert [u["callback_query"]["data"] for u in only] == ["a"]
    assert tg.pending_update_count == 1  # the setting persists and the rest was dropped


async def test_second_poller_terminates_the_first(client: httpx.AsyncClient) -> None:
    first = asyncio.create_task(api(client, "getUpdates", timeout=5))
    await asyncio.sleep(0.1)
    assert await ok(client, "getUpdates", timeout=0) == []
    status, body = await first
    assert status == 409
    assert body["description"].startswith("Conflict: terminated by other getUpdates request")


async def test_webhook_methods(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    status, body = await error(client, "setWebhook", url="http://example.org/hook")
    assert status == 400 and "HTTPS URL" in body["description"]
    assert await ok(client, "setWebhook", url="https://example.org/hook", secret_token="123")
    info = await ok(client, "getWebhookInfo")
    assert info["url"] == "https://example.org/hook" and info["pending_update_count"] == 0
    tg.user_message(1, "queued")
    status, body = await error(client, "getUpdates")
    assert status == 409 and "webhook is active" in body["description"]
    assert await ok(client, "deleteWebhook", drop_pending_updates=True) is True
    assert (await ok(client, "getWebhookInfo"))["url"] == ""
    assert await ok(client, "getUpdates") == []


# --------------------------------------------------------------------------- builders


async def test_update_builders(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    command = tg.user_message(77, "/subscribe@newsbot_test_bot sport")["message"]
    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 27}]
    assert command["from"]["id"] == 77 and command["chat"]["type"] == "private"
    assert "entities" not in tg.user_message(77, "just text")["message"]

    group = tg.user_message(-1005, "/news", user_id=8, username="ann")["message"]
    assert group["chat"]["type"] == "supergroup" and group["chat"]["title"]
    assert group["from"] == {
        "id": 8,
        "is_bot": False,
        "first_name": "User8",
        "username": "ann",
        "language_code": "en",
    }
    small = tg.user_message(-5, "hi", chat_type="group")["message"]
    assert small["chat"]["type"] == "group" and small["from"]["id"] == 1001
    reply = tg.user_message(-1005, "reply", reply_to=group["message_id"])["message"]
    assert reply["reply_to_message"]["text"] == "/news"
    assert reply["message_id"] == group["message_id"] + 1

    sent = await ok(client, "sendMessage", chat_id=77, text="pick", reply_markup=keyboard("x"))
    query = tg.callback_query(77, sent["message_id"], "x")["callback_query"]
    assert query["message"] == sent and query["data"] == "x" and query["from"]["id"] == 77
    assert await ok(client, "answerCallbackQuery", callback_query_id=query["id"], text="ok")
    status, body = await error(client, "answerCallbackQuery", callback_query_id="1")
    assert status == 400 and "query ID is invalid" in body["description"]
    with pytest.raises(LookupError):
        tg.callback_query(77, command["message_id"], "x")  # not a bot message
    with pytest.raises(LookupError):
        tg.callback_query(77, 999, "x")
    updates = await ok(client, "getUpdates")
    assert [u["update_id"] for u in updates] == list(range(1, 7))


async def test_my_chat_member_changes_what_sending_does(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    update = tg.my_chat_member(50, "member", "kicked")
    event = update["my_chat_member"]
    assert event["new_chat_member"] == {
        "status": "kicked",
        "user": tg.bot_user,
        "until_date": 0,
    }
    assert event["old_chat_member"]["status"] == "member"
    status, body = await error(client, "sendMessage", chat_id=50, text="x")
    assert (status, body["description"]) == (403, "Forbidden: bot was blocked by the user")
    tg.my_chat_member(50, "kicked", "member")
    await ok(client, "sendMessage", chat_id=50, text="welcome back")

    tg.my_chat_member(-1009, "administrator", "left")
    status, body = await error(client, "sendMessage", chat_id=-1009, text="x")
    assert body["description"] == "Forbidden: bot is not a member of the supergroup chat"
    # Like Telegram, a bot that left cannot even look at the group any more.
    status, _ = await error(client, "getChatMember", chat_id=-1009, user_id=123)
    assert status == 403
    tg.my_chat_member(-1009, "left", "administrator")
    member = await ok(client, "getChatMember", chat_id=-1009, user_id=123)
    assert member["status"] == "administrator"


# --------------------------------------------------------------------------- faults


async def test_fault_switches(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    tg.fail_chat(1)
    for _ in range(2):
        status, body = await error(client, "sendMessage", chat_id=1, text="x")
        assert (status, body["description"]) == (403, "Forbidden: bot was blocked by the user")

    tg.chat_not_found(2, times=2)
    for _ in range(2):
        status, body = await error(client, "sendMessage", chat_id=2, text="x")
        assert (status, body["description"]) == (400, "Bad Request: chat not found")
    await ok(client, "sendMessage", chat_id=2, text="x")

    tg.rate_limit_chat(3, retry_after=7)
    status, body = await error(client, "sendMessage", chat_id=3, text="x")
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    await ok(client, "sendMessage", chat_id=3, text="x")

    tg.server_error_chat(4)
    status, body = await error(client, "sendMessage", chat_id=4, text="x")
    assert (status, body["description"]) == (502, "Bad Gateway")

    tg.migrate_chat(-5, -1005)
    status, body = await error(client, "sendMessage", chat_id=-5, text="x")
    assert status == 400
    assert body["description"] == "Bad Request: group chat was upgraded to a supergroup chat"
    assert body["parameters"] == {"migrate_to_chat_id": -1005}
    await ok(client, "sendMessage", chat_id=-1005, text="x")

    tg.fail_all(500, "Internal Server Error", times=1, methods=["getMe"])
    await ok(client, "sendMessage", chat_id=6, text="x")
    assert (await error(client, "getMe"))[0] == 500
    await ok(client, "getMe")

    tg.clear_faults()
    await ok(client, "sendMessage", chat_id=1, text="x")
    await ok(client, "sendMessage", chat_id=-5, text="x")


async def test_rate_limit_storm(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    tg.rate_limit_chats([10, 11, 12], retry_after=2, times=2)
    statuses = [
        (await api(client, "sendMessage", chat_id=chat, text="x"))[0]
        for _ in range(3)
        for chat in (10, 11, 12, 13)
    ]
    assert statuses == [429, 429, 429, 200] * 2 + [200] * 4


async def test_delays_per_chat_and_global(
    clock: SimClock, sim_server: FakeTelegram, sim_client: httpx.AsyncClient
) -> None:
    tg, client = sim_server, sim_client
    tg.set_delay(0.5, chat_id=20)
    slow = asyncio.create_task(ok(client, "sendMessage", chat_id=20, text="slow"))
    started = clock.monotonic()
    await ok(client, "sendMessage", chat_id=21, text="fast")
    assert clock.monotonic() - started < 0.4 and not slow.done()
    await slow
    assert clock.monotonic() - started >= 0.48
    # The slow request is executed when it is answered, so it is recorded after "fast".
    assert [m["text"] for m in tg.sent_messages()] == ["fast", "slow"]

    tg.set_delay(0.2)
    started = clock.monotonic()
    await ok(client, "getMe")
    assert clock.monotonic() - started >= 0.18
    tg.clear_faults()
    started = clock.monotonic()
    await ok(client, "sendMessage", chat_id=20, text="x")
    assert clock.monotonic() - started < 0.2


async def test_client_giving_up_during_a_delay_sends_nothing(clock: SimClock, sim_server: FakeTelegram) -> None:
    tg = sim_server
    tg.set_delay(1.0, chat_id=30)
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("sendMessage", data={"chat_id": "30", "text": "x"})
    await clock.run_for(2.0)  # past the delay: the request it held is not executed late
    assert tg.calls() == []


# --------------------------------------------------------------------------- other methods


async def test_edit_and_delete(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    sent = await ok(client, "sendMessage", chat_id=9, text="v1", reply_markup=keyboard("a"))
    mid = sent["message_id"]
    edited = await ok(
        client,
        "editMessageText",
        chat_id=9,
        message_id=mid,
        text="<b>v2</b>",
        parse_mode="HTML",
        reply_markup=keyboard("b"),
    )
    assert edited["text"] == "v2" and edited["reply_markup"] == keyboard("b")
    assert edited["edit_date"] >= sent["date"] and edited["message_id"] == mid
    status, body = await error(
        client,
        "editMessageText",
        chat_id=9,
        message_id=mid,
        text="<b>v2</b>",
        parse_mode="HTML",
        reply_markup=keyboard("b"),
    )
    assert status == 400 and body["description"].startswith("Bad Request: message is not modified")
    # Without reply_markup an edit removes the inline keyboard.
    assert "reply_markup" not in await ok(
        client, "editMessageText", chat_id=9, message_id=mid, text="v3"
    )
    with_markup = await ok(
        client, "editMessageReplyMarkup", chat_id=9, message_id=mid, reply_markup=keyboard("c")
    )
    assert with_markup["reply_markup"] == keyboard("c") and with_markup["text"] == "v3"
    assert tg.message(9, mid) == with_markup
    assert tg.sent_messages(9) == [sent]  # sends are recorded as they were answered

    status, body = await error(client, "editMessageText", chat_id=9, message_id=99, text="x")
    assert body["description"] == "Bad Request: message to edit not found"
    user_message = tg.user_message(9, "mine")["message"]
    status, body = await error(
        client, "editMessageText", chat_id=9, message_id=user_message["message_id"], text="x"
    )
    assert body["description"] == "Bad Request: message can't be edited"

    assert await ok(client, "deleteMessage", chat_id=9, message_id=mid) is True
    status, body = await error(client, "deleteMessage", chat_id=9, message_id=mid)
    assert body["description"] == "Bad Request: message to delete not found"
    assert tg.message(9, mid) is None


async def test_commands_members_and_misc(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    commands = [{"command": "start", "description": "Start"}]
    assert await ok(client, "setMyCommands", commands=commands) is True
    assert await ok(client, "getMyCommands") == commands
    scope = {"type": "all_group_chats"}
    assert await ok(client, "getMyCommands", scope=scope) == []
    status, body = await error(
        client, "setMyCommands", commands=[{"command": "Bad!", "description": "x"}]
    )
    assert body["description"] == "Bad Request: BOT_COMMAND_INVALID"
    assert await ok(client, "deleteMyCommands") is True
    assert await ok(client, "getMyCommands") == []

    assert (await ok(client, "getChatMember", chat_id=-100, user_id=5))["status"] == "administrator"
    assert (await ok(client, "getChatMember", chat_id=5, user_id=5))["status"] == "member"
    tg.set_member_status(-100, 5, "member")
    tg.set_member_status(-100, 6, "creator")
    assert (await ok(client, "getChatMember", chat_id=-100, user_id=5))["status"] == "member"
    admins = await ok(client, "getChatAdministrators", chat_id=-100)
    assert sorted((a["user"]["id"], a["status"]) for a in admins) == [
        (6, "creator"),
        (123, "administrator"),
    ]
    status, body = await error(client, "getChatAdministrators", chat_id=5)
    assert status == 400 and "private chat" in body["description"]
    with FakeTelegram(default_member_status="member") as strict:
        async with httpx.AsyncClient(base_url=f"{strict.url}/bot{TOKEN}/") as http:
            member = await ok(http, "getChatMember", chat_id=-100, user_id=5)
    assert member["status"] == "member"

    assert await ok(client, "sendChatAction", chat_id=5, action="typing") is True
    status, body = await error(client, "sendChatAction", chat_id=5, action="dancing")
    assert body["description"] == "Bad Request: wrong parameter action in request"
    assert await ok(client, "close") is True
    assert await ok(client, "logOut") is True
    assert (await ok(client, "getChat", chat_id=5))["type"] == "private"
    photo = await ok(client, "sendPhoto", chat_id=5, photo="https://e.org/p.jpg", caption="c")
    assert photo["caption"] == "c" and len(photo["photo"]) == 2
    copied = await ok(
        client, "copyMessage", chat_id=6, from_chat_id=5, message_id=photo["message_id"]
    )
    assert copied == {"message_id": 1}
    forwarded = await ok(
        client, "forwardMessage", chat_id=6, from_chat_id=5, message_id=photo["message_id"]
    )
    assert forwarded["forward_origin"]["type"] == "user"


# --------------------------------------------------------------------------- flood limits


async def test_burst_to_one_chat_is_a_violation(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.enforce_limits()
    statuses = [(await api(client, "sendMessage", chat_id=5, text="x"))[0] for _ in range(3)]
    assert statuses == [200, 429, 429]
    _, body = await error(client, "sendMessage", chat_id=5, text="x")
    assert body["parameters"] == {"retry_after": 1}
    assert body["description"] == "Too Many Requests: retry after 1"
    assert [v.kind for v in tg.violations] == ["private_chat"] * 3
    assert tg.violations[0].chat_id == 5 and tg.violations[0].method == "sendMessage"
    assert len(tg.sent_messages(5)) == 1

    tg.enforce_limits(answer_429=False)
    statuses = [(await api(client, "sendMessage", chat_id=5, text="x"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert tg.violation_count == 2


async def test_paced_sends_are_not_violations_and_edits_can_be_exempted(
    clock: SimClock, sim_server: FakeTelegram, sim_client: httpx.AsyncClient
) -> None:
    tg, client = sim_server, sim_client
    # Edits count like sends by default (see test_fake_telegram_api_more); edits_count=False
    # keeps the old rule where an edit right after a send in the same chat is free.
    tg.enforce_limits(per_chat_interval=0.15, edits_count=False)
    for _ in range(3):
        sent = await ok(client, "sendMessage", chat_id=5, text="x")
        await ok(client, "editMessageText", chat_id=5, message_id=sent["message_id"], text="y")
        await ok(client, "sendMessage", chat_id=6, text="other chat")
        await clock.run_for(0.16)
    assert tg.violations == []


async def test_global_and_group_limits(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    tg.enforce_limits(global_per_second=5, answer_429=False)
    for chat in range(1, 7):
        await ok(client, "sendMessage", chat_id=chat, text="x")
    assert [v.kind for v in tg.violations] == ["global"]

    tg.enforce_limits(group_per_minute=3)
    statuses = [(await api(client, "sendMessage", chat_id=-100, text="x"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    [violation] = tg.violations
    assert violation.kind == "group" and violation.chat_id == -100
    assert (await error(client, "sendMessage", chat_id=-100, text="x"))[1]["parameters"][
        "retry_after"
    ] >= 59
    tg.disable_limits()
    await ok(client, "sendMessage", chat_id=-100, text="x")


# --------------------------------------------------------------------------- PTB and others


async def test_python_telegram_bot_against_the_fake(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    async with Bot(TOKEN, base_url=tg.api_url, base_file_url=tg.file_url) as bot:
        assert bot.username == "newsbot_test_bot"
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more")]])
        message = await bot.send_message(42, "<b>Hello</b>", parse_mode="HTML", reply_markup=markup)
        assert message.text == "Hello" and message.message_id == 1
        assert message.reply_markup == markup and message.chat.id == 42

        tg.fail_chat(43)
        with pytest.raises(Forbidden) as forbidden:
            await bot.send_message(43, "x")
        assert forbidden.value.message == "Forbidden: bot was blocked by the user"
        tg.rate_limit_chat(44, retry_after=7)
        with pytest.raises(RetryAfter) as retry:
            await bot.send_message(44, "x")
        assert retry.value.retry_after == dt.timedelta(seconds=7)
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await bot.send_message(44, "<x>", parse_mode="HTML")
        tg.migrate_chat(-45, -10045)
        with pytest.raises(ChatMigrated) as migrated:
            await bot.send_message(-45, "x")
        assert migrated.value.new_chat_id == -10045
        tg.server_error_chat(46)
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(46, "x")

        tg.user_message(42, "/start")
        [update] = await bot.get_updates(timeout=1)
        assert update.message is not None and update.message.text == "/start"
        assert update.message.entities[0].type == "bot_command"


async def test_application_polling_end_to_end(tg: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(
            update.effective_chat.id,
            "Pick one",
            reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Sport", callback_data="s")]]),
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer("Subscribed")
        await update.callback_query.edit_message_text(f"You chose {update.callback_query.data}")

    app = ApplicationBuilder().token(TOKEN).base_url(tg.api_url).base_file_url(tg.file_url).build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=dt.timedelta(seconds=2))
        try:
            tg.user_message(7, "/start@newsbot_test_bot")
            [menu] = await tg.await_messages(7, 1)
            assert menu["text"] == "Pick one"
            tg.callback_query(7, menu["message_id"], "s")
            await tg.await_calls("editMessageText", 1)
            await tg.await_for(
                lambda: (tg.message(7, menu["message_id"]) or {}).get("text") == "You chose s"
            )
            assert tg.calls("answerCallbackQuery")[0].params["text"] == "Subscribed"
        finally:
            await app.updater.stop()
            await app.stop()


def test_blocking_waits_and_subprocess_clients(tg: FakeTelegram) -> None:
    script = (
        "import json, sys, urllib.parse, urllib.request\n"
        "base = sys.argv[1]\n"
        "data = urllib.parse.urlencode({'chat_id': 31, 'text': 'from a subprocess'}).encode()\n"
        "with urllib.request.urlopen(base + '/sendMessage', data, timeout=5) as r:\n"
        "    assert json.load(r)['ok']\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, f"{tg.api_url}{TOKEN}"])
    try:
        [message] = tg.wait_for_messages(31, 1, timeout=10)
    finally:
        assert process.wait(10) == 0
    assert message["text"] == "from a subprocess"
    assert tg.bot_env() == {"NEWSBOT_TOKEN": TOKEN, "NEWSBOT_API_URL": tg.api_url}

    def later() -> None:
        request = urllib.request.Request(
            f"{tg.api_url}{TOKEN}/sendMessage", data=b"chat_id=32&text=late"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    threading.Timer(0.1, later).start()
    assert tg.wait_for_calls("sendMessage", 2, timeout=5)[-1].chat_id == 32
    with pytest.raises(TimeoutError, match="expected 1 message"):
        tg.wait_for_messages(33, 1, timeout=0.1)


async def test_async_wait_timeout_and_stop_with_a_pending_poll() -> None:
    server = FakeTelegram().start()
    try:
        with pytest.raises(TimeoutError, match=r"got \[\]"):
            await server.await_messages(1, 1, timeout=0.05)
        async with httpx.AsyncClient(base_url=f"{server.url}/bot{TOKEN}/") as http:
            poll = asyncio.create_task(http.post("getUpdates", data={"timeout": "30"}))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            assert time.monotonic() - started < 2
            with pytest.raises(httpx.HTTPError):
                await poll
    finally:
        server.stop()
    assert not server.running
