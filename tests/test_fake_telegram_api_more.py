"""The fake Bot API server's paid broadcasts, edit limits, inline mode, forum topics,
channels and outages, exercised over real HTTP (httpx and python-telegram-bot)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    ChatMemberAdministrator,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Update,
)
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TimedOut
from telegram.ext import (
    ApplicationBuilder,
    ChosenInlineResultHandler,
    CommandHandler,
    ContextTypes,
    InlineQueryHandler,
)

from tests.fakes.telegram_api import (
    EDIT_TIME_LIMIT,
    MAX_MESSAGE_LENGTH,
    PAID_BROADCAST_REFUSED,
    FakeTelegram,
)
from tests.simtime import SimClock

TOKEN = "123:ABC"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
BAD_RESULT = "Bad Request: can't parse inline query result: "


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
    with FakeTelegram(TOKEN, supports_inline_queries=True) as server:
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


# The same three on the test's loop, on simulated time: for the outages and fault windows,
# which then cost no real time.


@pytest.fixture
async def sim_server(clock: SimClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, supports_inline_queries=True).here(clock) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def sim_client(sim_server: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{sim_server.url}/bot{TOKEN}/", timeout=10) as http:
        yield http


@pytest.fixture
async def sim_bot(sim_server: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=sim_server.api_url, base_file_url=sim_server.file_url) as ptb:
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
    assert [m.get("text") for m in tg.sent_messages() if "photo" not in m] == ["x", "free messages are not affected"]

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


# --------------------------------------------------------------------------- inline mode


def article(result_id: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "type": "article",
        "id": result_id,
        "title": f"Story {result_id}",
        "input_message_content": {
            "message_text": f"<b>Story</b> {result_id}",
            "parse_mode": "HTML",
        },
    }
    result.update(extra)
    return result


async def test_inline_query_update_and_answer(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    assert (await ok(client, "getMe"))["supports_inline_queries"] is True
    update = tg.inline_query(42, "sport", offset="10", chat_type="group", username="ann")
    query = update["inline_query"]
    assert query == {
        "id": query["id"],
        "from": {
            "id": 42,
            "is_bot": False,
            "first_name": "User42",
            "username": "ann",
            "language_code": "en",
        },
        "query": "sport",
        "offset": "10",
        "chat_type": "group",
    }
    assert isinstance(query["id"], str) and update["update_id"] == 1
    assert "chat_type" not in tg.inline_query(42, "x", chat_type=None, push=False)["inline_query"]
    [pushed] = await ok(client, "getUpdates")
    assert pushed["inline_query"] == query

    results = [
        article(
            "a1",
            description="Sport today",
            url="https://example.org/a1",
            reply_markup=keyboard(Read="https://example.org/a1", More="more:a1"),
        ),
        article("a2"),
        {"type": "photo", "id": 3, "photo_url": "https://e.org/p.jpg", "thumbnail_url": "x"},
    ]
    assert await ok(
        client,
        "answerInlineQuery",
        inline_query_id=query["id"],
        results=results,
        cache_time=60,
        is_personal=True,
        next_offset="20",
    )
    [answer] = tg.inline_answers(query["id"])
    assert answer["results"] == results and answer["query"] == query
    assert (answer["cache_time"], answer["is_personal"], answer["next_offset"]) == (60, True, "20")
    assert tg.inline_answers() == [answer]

    status, description = await error(
        client, "answerInlineQuery", inline_query_id=query["id"], results=[]
    )
    assert (status, description) == (400, QUERY_INVALID)
    assert (await error(client, "answerInlineQuery", inline_query_id="77", results=[]))[1] == (
        QUERY_INVALID
    )

    # Defaults, an empty answer, and results sent as a JSON body.
    second = tg.inline_query(42, "")["inline_query"]
    response = await client.post(
        "answerInlineQuery", json={"inline_query_id": second["id"], "results": []}
    )
    assert response.json() == {"ok": True, "result": True}
    last = tg.inline_answers(second["id"])[0]
    assert (last["cache_time"], last["is_personal"], last["results"]) == (300, False, [])


@pytest.mark.parametrize(
    ("results", "description"),
    [
        ([article("x"), article("x")], "Bad Request: RESULT_ID_DUPLICATE"),
        ([article("é" * 33)], "Bad Request: RESULT_ID_INVALID"),
        ([article("")], "Bad Request: RESULT_ID_INVALID"),
        (
            [article(str(i)) for i in range(51)],
            "Bad Request: too many inline query results specified",
        ),
        ({"type": "article"}, "Bad Request: expected an Array of inline query results"),
        ([{"id": "1"}], BAD_RESULT + 'Can\'t find field "type"'),
        ([{"type": "article", "title": "t"}], BAD_RESULT + 'Can\'t find field "id"'),
        ([article("1", title=None)], BAD_RESULT + 'Can\'t find field "title"'),
        ([article("1", title="  ")], "Bad Request: ARTICLE_TITLE_EMPTY"),
        ([article("1", type="spaceship")], BAD_RESULT + 'type "spaceship" is unsupported'),
        ([article("1", type=7)], BAD_RESULT + 'type "7" is unsupported'),
        ([article("1", type=["article"])], BAD_RESULT + 'Field "type" must be of type String'),
        (
            [article("1", input_message_content={"message_text": ""})],
            BAD_RESULT + "Input message content is not specified",
        ),
        (
            [article("1", input_message_content={"message_text": "<x>", "parse_mode": "HTML"})],
            BAD_RESULT + 'Can\'t parse entities: Unsupported start tag "x" at byte offset 0',
        ),
        (
            [
                article(
                    "1", input_message_content={"message_text": "<b> </b>", "parse_mode": "HTML"}
                )
            ],
            "Bad Request: MESSAGE_EMPTY",
        ),
        (
            [article("1", input_message_content={"message_text": "x" * (MAX_MESSAGE_LENGTH + 1)})],
            "Bad Request: MESSAGE_TOO_LONG",
        ),
        ([article("1", reply_markup=keyboard(A="d" * 65))], "Bad Request: BUTTON_DATA_INVALID"),
        (
            [article("1", reply_markup={"inline_keyboard": [[{"text": "plain"}]]})],
            BAD_RESULT + "Can't parse inline keyboard button: Text buttons are unallowed",
        ),
        ([article("1", reply_markup={"keyboard": [["a"]]})], "Bad Request: REPLY_MARKUP_INVALID"),
    ],
)
async def test_answer_inline_query_validation(
    tg: FakeTelegram, client: httpx.AsyncClient, results: Any, description: str
) -> None:
    query_id = tg.inline_query(7, "news", push=False)["inline_query"]["id"]
    status, got = await error(
        client, "answerInlineQuery", inline_query_id=query_id, results=results
    )
    assert status == 400 and got.startswith(description), got
    assert tg.inline_answers() == []
    # A refused answer leaves the query open.
    assert await ok(client, "answerInlineQuery", inline_query_id=query_id, results=[article("1")])


async def test_legacy_article_and_a_missing_query(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    legacy = {"type": "article", "id": "1", "title": "t", "message_text": "plain"}
    status, description = await error(
        client, "answerInlineQuery", inline_query_id="404", results=[legacy]
    )
    assert (status, description) == (400, QUERY_INVALID)
    query_id = tg.inline_query(7, "q")["inline_query"]["id"]
    assert await ok(client, "answerInlineQuery", inline_query_id=query_id, results=[legacy])
    status, description = await error(
        client, "answerInlineQuery", inline_query_id="x", results="[not json"
    )
    assert description.startswith("Bad Request: can't parse JSON encoded inline query results")


def test_inline_mode_is_off_by_default() -> None:
    with FakeTelegram(TOKEN) as server:
        with pytest.raises(RuntimeError, match="supports_inline_queries=True"):
            server.inline_query(1, "x")
        with httpx.Client(base_url=f"{server.url}/bot{TOKEN}/") as http:
            assert http.post("getMe").json()["result"]["supports_inline_queries"] is False
    with FakeTelegram(TOKEN, supports_inline_queries=True) as server:
        with pytest.raises(ValueError, match="256"):
            server.inline_query(1, "x" * 257)
        with pytest.raises(ValueError, match="chat type"):
            server.inline_query(1, "x", chat_type="forum")


async def test_inline_mode_with_python_telegram_bot(tg: FakeTelegram) -> None:
    chosen: list[tuple[str, str | None]] = []

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.inline_query is not None
        text = update.inline_query.query
        await update.inline_query.answer(
            [
                InlineQueryResultArticle(
                    "plain", f"Search {text}", InputTextMessageContent(f"<i>{text}</i>", "HTML")
                ),
                InlineQueryResultArticle(
                    "linked",
                    "Open",
                    InputTextMessageContent("open"),
                    reply_markup=InlineKeyboardMarkup(
                        [[InlineKeyboardButton("Site", url="https://example.org")]]
                    ),
                ),
            ],
            cache_time=0,
            is_personal=True,
        )

    async def picked(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.chosen_inline_result is not None
        result = update.chosen_inline_result
        chosen.append((result.result_id, result.inline_message_id))

    app = ApplicationBuilder().token(TOKEN).base_url(tg.api_url).base_file_url(tg.file_url).build()
    app.add_handler(InlineQueryHandler(answer))
    app.add_handler(ChosenInlineResultHandler(picked))
    async with app:
        assert app.bot.supports_inline_queries is True
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=2)
        try:
            query = tg.inline_query(42, "sport")["inline_query"]
            await tg.await_calls("answerInlineQuery", 1)
            [answer_call] = tg.inline_answers(query["id"])
            assert [r["id"] for r in answer_call["results"]] == ["plain", "linked"]
            assert answer_call["cache_time"] == 0 and answer_call["is_personal"] is True
            tg.chosen_inline_result(42, "plain", "sport")
            tg.chosen_inline_result(42, "linked", "sport")
            await tg.await_for(lambda: len(chosen) == 2)
        finally:
            await app.updater.stop()
            await app.stop()
    assert chosen[0] == ("plain", None)
    assert chosen[1][0] == "linked" and chosen[1][1]  # a keyboard gives an inline_message_id


# --------------------------------------------------------------------------- forum topics


async def test_forum_topics_over_http(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    chat = tg.add_chat(-1005, "supergroup", title="Newsroom", is_forum=True)
    assert chat == {"id": -1005, "type": "supergroup", "title": "Newsroom", "is_forum": True}
    assert (await ok(client, "getChat", chat_id=-1005))["is_forum"] is True
    sport = tg.create_topic(-1005, "Sport")
    culture = tg.create_topic(-1005, "Culture", push=True)
    # The ids of the service messages that created them; 1 stands for the General topic.
    assert (sport, culture) == (2, 3)

    sent = await ok(client, "sendMessage", chat_id=-1005, text="Goal!", message_thread_id=sport)
    assert sent["message_id"] == 4
    assert sent["message_thread_id"] == sport and sent["is_topic_message"] is True
    assert sent["chat"]["is_forum"] is True
    # A message in a topic implicitly replies to the message that created the topic.
    assert sent["reply_to_message"]["forum_topic_created"] == {
        "name": "Sport",
        "icon_color": 0x6FB9F0,
    }
    general = await ok(client, "sendMessage", chat_id=-1005, text="Hello all")
    assert not {"message_thread_id", "is_topic_message", "reply_to_message"} & set(general)
    for thread in (1, 99, "7"):
        status, description = await error(
            client, "sendMessage", chat_id=-1005, text="x", message_thread_id=thread
        )
        assert (status, description) == (400, THREAD_NOT_FOUND), thread
    photo = await ok(
        client,
        "sendPhoto",
        chat_id=-1005,
        photo="https://e.org/p.jpg",
        message_thread_id=culture,
    )
    assert photo["message_thread_id"] == culture

    asked = tg.user_message(-1005, "Who scored?", thread_id=sport, user_id=8)["message"]
    assert asked["message_thread_id"] == sport and asked["is_topic_message"] is True
    # A reply without message_thread_id stays in the topic of the message it answers.
    reply = await ok(
        client,
        "sendMessage",
        chat_id=-1005,
        text="Number 9",
        reply_parameters={"message_id": asked["message_id"]},
    )
    assert reply["message_thread_id"] == sport
    assert reply["reply_to_message"]["message_id"] == asked["message_id"]
    in_general = tg.user_message(-1005, "hi", user_id=8)["message"]
    assert "message_thread_id" not in in_general

    def texts(thread: int | None) -> list[str | None]:
        return [m.get("text") for m in tg.topic_messages(-1005, thread)]

    assert texts(sport) == [None, "Goal!", "Who scored?", "Number 9"]
    assert texts(None) == texts(1) == ["Hello all", "hi"]
    assert tg.topic_messages(-1005, culture)[0]["forum_topic_created"]["name"] == "Culture"
    updates = await ok(client, "getUpdates")
    assert [u["message"].get("forum_topic_created", {}).get("name") for u in updates][:1] == [
        "Culture"
    ]

    tg.delete_topic(-1005, sport)
    status, description = await error(
        client, "sendMessage", chat_id=-1005, text="x", message_thread_id=sport
    )
    assert description == THREAD_NOT_FOUND
    assert tg.topic_messages(-1005, sport) == [] and tg.message(-1005, 4) is None
    with pytest.raises(LookupError):
        tg.delete_topic(-1005, sport)
    with pytest.raises(LookupError):
        tg.user_message(-1005, "late", thread_id=sport)


async def test_message_thread_id_is_ignored_outside_forums(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    for chat_id in (-1006, 6, "@news"):
        sent = await ok(client, "sendMessage", chat_id=chat_id, text="x", message_thread_id=77)
        assert "message_thread_id" not in sent and "is_topic_message" not in sent
        assert "is_forum" not in sent["chat"]
    with pytest.raises(ValueError, match="not a forum"):
        tg.create_topic(-1006, "Sport")
    with pytest.raises(ValueError, match="supergroup"):
        tg.add_chat(-5, "group", is_forum=True)
    # A forum can be switched off again; its chat object changes with it.
    tg.add_chat(-1007, "supergroup", is_forum=True)
    assert "is_forum" not in tg.add_chat(-1007, is_forum=False)


async def test_forum_topics_with_python_telegram_bot(tg: FakeTelegram, bot: Bot) -> None:
    tg.add_chat(-1008, "supergroup", is_forum=True)
    topic = tg.create_topic(-1008, "Alerts")
    message = await bot.send_message(
        -1008, "<b>Alert</b>", parse_mode="HTML", message_thread_id=topic
    )
    assert message.message_thread_id == topic and message.is_topic_message is True
    assert message.chat.is_forum is True
    tg.delete_topic(-1008, topic)
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(-1008, "x", message_thread_id=topic)


# --------------------------------------------------------------------------- channels


async def test_channel_username_and_numeric_id_are_one_chat(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    chat = await ok(client, "getChat", chat_id="@news")
    numeric = chat["id"]
    assert chat["type"] == "channel" and chat["username"] == "news" and numeric < 0
    assert str(numeric).startswith("-100")
    first = await ok(client, "sendMessage", chat_id="@news", text="one")
    second = await ok(client, "sendMessage", chat_id=numeric, text="two")
    third = await ok(client, "sendMessage", chat_id="@News", text="three")  # case-insensitive
    assert [m["message_id"] for m in (first, second, third)] == [1, 2, 3]
    assert first["chat"] == second["chat"] == third["chat"]
    assert tg.sent_messages("@news") == tg.sent_messages(numeric) == [first, second, third]
    assert tg.message("@news", 2) == second
    assert list(tg.messages_by_chat()) == [numeric]
    assert [c.chat_id for c in tg.calls("sendMessage")] == ["@news", numeric, "@News"]
    edited = await ok(client, "editMessageText", chat_id="@news", message_id=2, text="2")
    assert tg.message(numeric, 2) == edited

    tg.fail_chat("@news", 403, "Forbidden: bot is not a member of the channel chat", times=1)
    status, _ = await error(client, "sendMessage", chat_id=numeric, text="x")
    assert status == 403

    # One group window per channel, however it is named.
    tg.enforce_limits(group_per_minute=2)
    await ok(client, "sendMessage", chat_id="@news", text="a")
    await ok(client, "sendMessage", chat_id=numeric, text="b")
    status, _ = await error(client, "sendMessage", chat_id="@NEWS", text="c")
    assert status == 429
    [violation] = tg.violations
    assert (violation.kind, violation.chat_id) == ("group", numeric)

    # A channel registered by id gets its username linked.
    tg.add_chat(-1001234, "channel", title="Daily", username="@daily")
    daily = await ok(client, "sendMessage", chat_id="@daily", text="x")
    assert daily["chat"] == {
        "id": -1001234,
        "type": "channel",
        "title": "Daily",
        "username": "daily",
    }


async def test_bot_status_in_a_channel(
    tg: FakeTelegram, client: httpx.AsyncClient, bot: Bot
) -> None:
    channel = await bot.get_chat("@news")
    member = await bot.get_chat_member("@news", bot.id)
    assert isinstance(member, ChatMemberAdministrator)
    assert member.can_post_messages is True and member.can_edit_messages is True
    assert (await bot.get_chat_member(channel.id, bot.id)).status == "administrator"

    tg.set_channel_admin("@news", False)
    # A public channel can still be looked at; nothing can be posted.
    assert (await bot.get_chat_member("@news", bot.id)).status == "left"
    assert (await bot.get_chat(channel.id)).username == "news"
    with pytest.raises(Forbidden, match="bot is not a member of the channel chat"):
        await bot.send_message("@news", "x")
    status, description = await error(client, "sendMessage", chat_id=channel.id, text="x")
    assert (status, description) == (403, "Forbidden: bot is not a member of the channel chat")

    tg.set_channel_admin(channel.id, True, can_post_messages=False)
    member = await bot.get_chat_member("@news", bot.id)
    assert isinstance(member, ChatMemberAdministrator) and member.can_post_messages is False
    with pytest.raises(BadRequest, match=r"(?i)need administrator rights in the channel chat"):
        await bot.send_message("@news", "x")
    tg.set_channel_admin("@news", True)
    assert (await bot.send_message("@news", "x")).chat.id == channel.id

    # A private channel (no username) cannot even be looked at by a non-member.
    tg.add_chat(-1007, "channel", title="Private")
    tg.set_channel_admin(-1007, False)
    status, description = await error(client, "getChat", chat_id=-1007)
    assert (status, description) == (403, "Forbidden: bot is not a member of the channel chat")
    tg.my_chat_member(-1007, "left", "kicked", chat_type="channel")
    status, description = await error(client, "sendMessage", chat_id=-1007, text="x")
    assert (status, description) == (403, "Forbidden: bot was kicked from the channel chat")


# --------------------------------------------------------------------------- outages


async def test_outages_as_python_telegram_bot_sees_them(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(1, "before")

    tg.set_outage("reset")
    assert tg.outage == "reset"
    started = time.monotonic()
    with pytest.raises(NetworkError) as reset:
        await bot.send_message(1, "during reset")
    assert not isinstance(reset.value, TimedOut) and time.monotonic() - started < 3
    with pytest.raises(NetworkError):
        await bot.get_updates(timeout=0)
    assert tg.refused_connections >= 1

    tg.set_outage("502")
    with pytest.raises(NetworkError, match="Bad Gateway") as bad_gateway:
        await bot.send_message(1, "during 502")
    assert not isinstance(bad_gateway.value, TimedOut)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_updates(timeout=0)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_me()

    tg.set_outage("hang")
    with pytest.raises(TimedOut):
        await bot.send_message(1, "during hang", read_timeout=0.3)
    assert tg.hung_requests == 1

    tg.set_outage(None)
    assert tg.outage is None
    await bot.send_message(1, "after")
    assert [m["text"] for m in tg.sent_messages(1)] == ["before", "after"]
    answered = [(c.method, c.status) for c in tg.calls()]
    assert answered[-4:] == [
        ("sendMessage", 502),
        ("getUpdates", 502),
        ("getMe", 502),
        ("sendMessage", 200),
    ]


async def test_502_is_nginx_for_every_request_and_cuts_long_polls(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    poll = asyncio.create_task(client.post("getUpdates", data={"timeout": "10"}))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    tg.set_outage("502")
    response = await poll
    assert time.monotonic() - started < 2
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert b"<center><h1>502 Bad Gateway</h1></center>" in response.content
    wrong_token = await client.post(f"{tg.url}/bot999:WRONG/getMe")
    assert wrong_token.status_code == 502
    sent = await client.post("sendMessage", data={"chat_id": "5", "text": "x"})
    assert sent.status_code == 502
    [call] = tg.calls("sendMessage")
    assert (call.status, call.chat_id, call.params["text"], call.description) == (
        502,
        5,
        "x",
        "Bad Gateway",
    )
    assert tg.sent_messages() == []
    tg.set_outage(None)
    await ok(client, "sendMessage", chat_id=5, text="x")


async def test_hang_serves_clients_that_still_wait_when_it_ends(
    clock: SimClock, sim_server: FakeTelegram, sim_client: httpx.AsyncClient
) -> None:
    tg, client = sim_server, sim_client
    tg.set_outage("hang")
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=0.2) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post("sendMessage", data={"chat_id": "1", "text": "gave up"})
    patient = asyncio.create_task(ok(client, "sendMessage", chat_id=2, text="waited"))
    await clock.run_for(0.3)
    assert not patient.done() and tg.calls() == []
    tg.set_outage(None)
    assert (await patient)["text"] == "waited"
    assert [m["text"] for m in tg.sent_messages()] == ["waited"]
    assert tg.hung_requests == 2


async def test_reset_drops_open_connections_and_new_ones(tg: FakeTelegram) -> None:
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=5) as http:
        await ok(http, "getMe")  # a keep-alive connection is now open
        tg.set_outage("reset")
        await asyncio.sleep(0.05)
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                await http.post("getMe")
        with pytest.raises(ConnectionError):
            reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
            writer.write(f"GET /bot{TOKEN}/getMe HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
            if not answer:
                raise ConnectionResetError  # closed without a byte of answer
        tg.set_outage(None)
        assert (await ok(http, "getMe"))["id"] == 123
    assert tg.calls("getMe")[-1].ok and len(tg.calls()) == 2
    assert tg.refused_connections >= 3
    tg.clear()
    assert tg.refused_connections == 0
    with pytest.raises(ValueError, match="outage mode"):
        tg.set_outage("flood")


async def test_polling_bot_recovers_after_an_outage(clock: SimClock, sim_server: FakeTelegram) -> None:
    tg = sim_server
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, "Welcome")

    app = ApplicationBuilder().token(TOKEN).base_url(tg.api_url).base_file_url(tg.file_url).build()
    app.add_handler(CommandHandler("start", start))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        try:
            await tg.await_calls("getUpdates", 1)
            tg.set_outage("502")
            tg.user_message(7, "/start")
            await tg.await_for(lambda: any(c.status == 502 for c in tg.calls("getUpdates")))
            assert tg.sent_messages() == []
            tg.set_outage(None)
            [welcome] = await tg.await_messages(7, 1, timeout=15)
            assert welcome["text"] == "Welcome"
        finally:
            await app.updater.stop()
            await app.stop()


async def test_fail_for_recovers_by_itself(
    clock: SimClock, sim_server: FakeTelegram, sim_client: httpx.AsyncClient, sim_bot: Bot
) -> None:
    tg, client, bot = sim_server, sim_client, sim_bot
    tg.fail_for(0.4, 401, "Unauthorized", methods=["getUpdates"])
    with pytest.raises(InvalidToken):
        await bot.get_updates(timeout=0)
    await bot.send_message(1, "other methods work")
    status, description = await error(client, "getUpdates")
    assert (status, description) == (401, "Unauthorized")
    await clock.run_for(0.45)
    assert await bot.get_updates(timeout=0) == ()

    tg.fail_for(0.3)
    assert (await error(client, "getMe"))[0] == 502
    assert (await error(client, "sendMessage", chat_id=1, text="x"))[1] == "Bad Gateway"
    await clock.run_for(0.35)
    await ok(client, "getMe")
    with pytest.raises(ValueError):
        tg.fail_for(0)

    # The token checks stay what Telegram does: 401 for an unknown token, 404 for nonsense.
    wrong = await client.post(f"{tg.url}/bot999:WRONG/getUpdates")
    assert (wrong.status_code, wrong.json()["description"]) == (401, "Unauthorized")
    nonsense = await client.post(f"{tg.url}/botnonsense/getUpdates")
    assert (nonsense.status_code, nonsense.json()["description"]) == (404, "Not Found")


async def test_a_hang_outlives_a_restart(tg: FakeTelegram) -> None:
    tg.set_outage("hang")
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("getMe")
    await asyncio.to_thread(tg.stop)
    tg.start()
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}/", timeout=5) as http:
        waiting = asyncio.create_task(http.post("getMe"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        tg.set_outage(None)
        assert (await waiting).status_code == 200
    assert tg.hung_requests == 2


async def test_fail_method_from_another_thread(
    tg: FakeTelegram, client: httpx.AsyncClient, bot: Bot
) -> None:
    # The fake runs in its own thread here: clearing a hang must wake it across threads.
    tg.fail_method("sendMessage", mode="hang")
    held = asyncio.create_task(ok(client, "sendMessage", chat_id=1, text="held"))
    await tg.await_for(lambda: tg.hung_requests == 1)
    assert (await bot.get_me()).id == 123
    assert not held.done()
    tg.clear_faults("sendMessage")
    assert (await held)["text"] == "held"

    tg.fail_method("sendMessage", mode="reset", times=1)
    with pytest.raises(NetworkError) as reset:
        await bot.send_message(1, "reset")
    assert not isinstance(reset.value, TimedOut) and tg.refused_connections == 1
    await bot.send_message(1, "after the reset")

    tg.fail_method("getMe", 502, seconds=0.2)
    assert await error(client, "getMe") == (502, "Bad Gateway")
    await ok(client, "sendMessage", chat_id=1, text="unaffected")
    await asyncio.sleep(0.25)
    await ok(client, "getMe")
    assert [m["text"] for m in tg.sent_messages()] == ["held", "after the reset", "unaffected"]
