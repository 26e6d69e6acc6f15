"""A fake Telegram Bot API server on 127.0.0.1 for tests and benchmarks.

It is a real HTTP/1.1 server (keep-alive, Content-Length and chunked bodies) on asyncio,
in one of two modes:

* In its own thread (``start()``/``stop()``, ``with FakeTelegram() as tg``, and
  ``async with FakeTelegram() as tg``): its own event loop in a background thread,
  reading the system's clocks. It serves clients from any event loop, from plain threads
  and from subprocesses alike (a bot started as a subprocess, a benchmark).
* On the test's own event loop (``await tg.start_here(clock)``/``await tg.stop_here()``,
  or ``async with FakeTelegram().here(clock) as tg``): no thread. Every wait of the fake
  (delays, hangs, long polls, fault windows) is a timer on that loop and every time it
  reads comes from ``clock`` (see :meth:`FakeTelegram.start_here`), so under the tests'
  simulated time (tests/simtime.py) a ten-minute outage takes simulated minutes and
  milliseconds of real time. A server in another thread cannot be used with simulated
  time: the loop does not see its work and jumps its clock past it. The async waiters
  (``await_for``, ``await_messages``, ``await_calls``) are then event-driven, and their
  timeouts run on the loop's clock.

It speaks the Bot API wire format: requests are
``POST /bot<TOKEN>/<method>`` with ``application/x-www-form-urlencoded`` bodies (values
that are not plain strings are JSON-encoded, as python-telegram-bot sends them) or
``application/json`` bodies; answers are ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``.

Usage with python-telegram-bot::

    with FakeTelegram() as tg:                      # or tg.start() ... tg.stop()
        app = (
            ApplicationBuilder()
            .token(tg.token)
            .base_url(tg.api_url)                   # f"{tg.url}/bot"
            .base_file_url(tg.file_url)             # f"{tg.url}/file/bot"
            .build()
        )
        ...
        tg.user_message(42, "/start")               # queue an Update for getUpdates
        [reply] = await tg.await_messages(42, 1)    # or tg.wait_for_messages(42, 1)
        tg.callback_query(42, reply["message_id"], "more")
        tg.fail_chat(42)                            # 403 bot was blocked by the user
        tg.rate_limit_chat(42, retry_after=3)       # one 429 with retry_after=3
        tg.fail_for(5, 401, "Unauthorized", methods=["getUpdates"])  # heals after 5 s
        tg.enforce_limits()                         # count (and 429) flood violations
        tg.enforce_limits(paid_per_second=1000, edits_count=True)  # the defaults
        tg.paid_sent_count, tg.paid_billed_count    # allow_paid_broadcast sends, billed ones
        tg.refuse_paid(after=100)                   # then 400 BALANCE_TOO_LOW; accept_paid()
        tg.age_message(42, reply["message_id"], 49 * 3600)  # edits: "message can't be edited"
        tg.set_outage("502")                        # or "reset", "hang"; None ends it
        tg.refused_connections, tg.hung_requests    # what "reset" and "hang" swallowed
        tg.fail_method("sendMessage", 502, seconds=600)        # only sendMessage fails
        tg.fail_method("sendMessage", mode="hang", seconds=70)  # or mode="reset"
        tg.clear_faults("sendMessage")              # ends them early; clear_faults(): all

On simulated time (the tests' ``clock`` fixture)::

    async with FakeTelegram().here(clock) as tg:
        ...                                         # the same API; waits are simulated

Inline mode (``FakeTelegram(supports_inline_queries=True)``)::

    query = tg.inline_query(42, "sport")["inline_query"]
    [answer] = tg.inline_answers(query["id"])   # what answerInlineQuery accepted
    tg.chosen_inline_result(42, "result-id", "sport")

Forum topics and channels::

    tg.add_chat(-1001, "supergroup", title="Newsroom", is_forum=True)
    thread = tg.create_topic(-1001, "Sport")    # its message_thread_id
    tg.user_message(-1001, "/news", thread_id=thread)
    tg.topic_messages(-1001, thread)            # None: the General topic
    tg.delete_topic(-1001, thread)              # sends there: "message thread not found"
    tg.add_chat(-1002, "channel", username="news")  # "@news" and -1002 are one chat
    tg.set_channel_admin("@news", False)        # 403 bot is not a member of the channel

A bot started as a subprocess gets ``tg.bot_env()`` (``NEWSBOT_TOKEN``/``NEWSBOT_API_URL``).

Behaviour worth knowing:

* Requests are executed when they are answered: with a delay (``set_delay``) a client
  that gives up and closes the connection before the delay ends has sent nothing. The
  same holds for requests held by a "hang" outage or a "hang" fault (``fail_method``):
  when it ends, the requests whose client still waits are served, the others dropped.
* ``parse_mode=HTML`` is parsed like Telegram's server does (tdlib's ``parse_html``): the
  returned Message carries the visible text and ``entities``. By default the fake is
  *stricter* than Telegram about one thing: a bare ``&`` that does not start a character
  entity is rejected (Telegram passes it through); ``FakeTelegram(strict_html=False)``
  gives Telegram's exact behaviour. Markdown parse modes are not validated.
* It is stricter about one more: edits of messages older than 48 hours are refused,
  which Telegram only does for business messages (``FakeTelegram(edit_time_limit=None)``
  lifts it). With limits enforced, edits count like sends unless ``edits_count=False``.
* A channel is one chat whether a request names it by "@username" or by its numeric id
  (faults, delays, flood windows and accessors agree); recorded calls keep the spelling
  the request used.
* Only inline keyboards are echoed back in the returned Message (as Telegram does); other
  keyboards are visible in the recorded call parameters.
* Multipart uploads are not supported (400); sendPhoto accepts a file_id or URL string.
* Updates are not delivered to a webhook; ``setWebhook`` only changes getUpdates behaviour.
* Every object returned by the accessors is shared with the server: treat it as read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import functools
import itertools
import json
import math
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from tests.fakes.clocks import LoopTime, SystemTime, TimeSource

__all__ = [
    "EDITING_METHODS",
    "EDIT_TIME_LIMIT",
    "FAULT_MODES",
    "GENERAL_TOPIC_ID",
    "MAX_CAPTION_LENGTH",
    "MAX_INLINE_RESULTS",
    "MAX_MESSAGE_LENGTH",
    "OUTAGE_MODES",
    "PAID_BROADCAST_REFUSED",
    "SENDING_METHODS",
    "FakeTelegram",
    "HtmlParseError",
    "RecordedCall",
    "Violation",
    "parse_telegram_html",
    "validate_telegram_html",
]

JSON = dict[str, Any]
ChatKey = int | str
T = TypeVar("T")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

# Methods that deliver a new message to a chat and therefore fall under the flood limits.
SENDING_METHODS = _words(
    "sendMessage sendPhoto sendDocument sendAudio sendVideo sendAnimation sendVoice "
    "sendVideoNote sendMediaGroup sendLocation sendVenue sendContact sendPoll sendDice "
    "sendSticker copyMessage copyMessages forwardMessage forwardMessages"
)

# Edits that fall under the same flood limits as sends (see FakeTelegram.enforce_limits).
EDITING_METHODS = _words("editMessageText editMessageReplyMarkup")

# Parameters Telegram types as String: a form value like "123" or "true" must stay text.
_STRING_PARAMS = _words(
    "text caption parse_mode caption_parse_mode action callback_query_id "
    "inline_message_id language_code url secret_token ip_address certificate "
    "business_connection_id message_effect_id emoji question explanation title "
    "description short_description name first_name last_name phone_number vcard address "
    "custom_title photo document audio video animation voice video_note sticker query "
    "inline_query_id next_offset switch_pm_text switch_pm_parameter"
)

_CHAT_ACTIONS = _words(
    "typing upload_photo record_video upload_video record_voice upload_voice "
    "upload_document choose_sticker find_location record_video_note upload_video_note"
)

_MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})

# Lower-case method names, as fault switches match them.
_LOWER_SENDING_METHODS = frozenset(m.lower() for m in SENDING_METHODS)
# What a bot that is not a member of a public chat may not do there (it may still look).
_WRITE_METHODS = frozenset(
    m.lower() for m in SENDING_METHODS | EDITING_METHODS | {"deleteMessage", "sendChatAction"}
)

# Without allowed_updates (or with an empty list) Telegram leaves these three out.
_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{1,100}$")
_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_URL_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"

# What a paid broadcast is answered when the bot's Star balance cannot pay for it. The
# Bot API passes MTProto's upper-case error codes through as "Bad Request: CODE"
# (Client::fail_query_with_error in tdlib/telegram-bot-api), and BALANCE_TOO_LOW is the
# MTProto error for "the current Telegram Stars balance is too low". No capture of the
# exact answer to sendMessage with allow_paid_broadcast is public; this is the inference.
PAID_BROADCAST_REFUSED = "Bad Request: BALANCE_TOO_LOW"

# A bot's messages older than this cannot be edited (see FakeTelegram's edit_time_limit).
EDIT_TIME_LIMIT = 48 * 3600

# The General topic of a forum. Telegram never reports it as a message_thread_id, and a
# send that names it is refused with "message thread not found" (tdlib/telegram-bot-api).
GENERAL_TOPIC_ID = 1

MAX_INLINE_RESULTS = 50
_INLINE_RESULT_TYPES = _words(
    "article audio contact game document gif location mpeg4_gif photo sticker venue video voice"
)

# What nginx in front of the Bot API answers while the servers behind it are down.
_NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
OUTAGE_MODES = frozenset({"reset", "502", "hang"})
# How a fault answers (see FakeTelegram.fail_method): an error, no answer, a TCP reset.
FAULT_MODES = frozenset({"status", "hang", "reset"})


# --------------------------------------------------------------------------- HTML entities


class HtmlParseError(ValueError):
    """Raised by :func:`parse_telegram_html`; ``str(exc)`` is Telegram's wording."""


_HTML_TAGS = _words(
    "a b strong i em s strike del u ins tg-spoiler tg-emoji span pre code blockquote"
)
_SIMPLE_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# tdlib's is_space() is also true for the NUL that terminates its C strings; the parser
# below uses "\0" as the end-of-text sentinel in the same way.
_SPACES = frozenset(" \t\r\n\v\f\0")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HEX = frozenset("0123456789abcdefABCDEF")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode the character reference at text[pos] == "&" the way tdlib does.

    The closing ";" is optional and only lt, gt, amp, quot and numeric references exist.
    """
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in _HEX:
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and "0" <= text[end] <= "9":
                value = value * 10 + ord(text[end]) - 48
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


def _check_url(url: str) -> str | None:
    url = url.strip()
    if not url:
        return None
    match = _URL_SCHEME_RE.match(url)
    if match:
        scheme = match.group(1).lower()
        if scheme in {"http", "https", "tg", "ton", "tonsite"}:
            return url
        return None
    return f"http://{url}" if "." in url and " " not in url else None


@dataclass(slots=True)
class _OpenTag:
    tag: str
    argument: str
    utf16_offset: int
    result_index: int


def parse_telegram_html(text: str, *, strict: bool = True) -> tuple[str, list[JSON]]:
    """Parse Bot API HTML into (visible text, Bot API MessageEntity dicts).

    Follows tdlib's ``parse_html`` (the parser behind the Bot API), including its error
    messages. ``strict`` additionally rejects a bare ``&`` that does not start a character
    entity, which Telegram itself passes through literally.
    """
    out: list[str] = []
    utf16 = 0
    entities: list[JSON] = []
    stack: list[_OpenTag] = []
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    def fail(message: str) -> HtmlParseError:
        return HtmlParseError(message)

    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_entity(text, i)
            if decoded is not None:
                char, i = decoded
                out.append(char)
                utf16 += 2 if ord(char) > 0xFFFF else 1
                continue
            if strict:
                raise fail(
                    f'Character entity expected after "&" at byte offset {_byte_offset(text, i)}'
                    " (write a literal ampersand as &amp;)"
                )
        if c != "<":
            out.append(c)
            utf16 += 2 if ord(c) > 0xFFFF else 1
            i += 1
            continue

        begin = i
        begin_bytes = _byte_offset(text, begin)
        i += 1
        if at(i) != "/":
            while at(i) not in _SPACES and at(i) != ">":
                i += 1
            if i >= n:
                raise fail(f"Unclosed start tag at byte offset {begin_bytes}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise fail(f'Unsupported start tag "{tag}" at byte offset {begin_bytes}')
            argument = ""
            while at(i) != ">":
                while i < n and text[i] in _SPACES:
                    i += 1
                if at(i) == ">":
                    break
                attribute_begin = i
                while at(i) not in _SPACES and at(i) not in "=>":
                    i += 1
                attribute = text[attribute_begin:i]
                if not attribute:
                    raise fail(
                        f'Empty attribute name in the tag "{tag}" at byte offset {begin_bytes}'
                    )
                while i < n and text[i] in _SPACES:
                    i += 1
                if at(i) != "=":
                    if tag == "blockquote" and attribute == "expandable":
                        argument = "expandable"
                        if i >= n:
                            raise fail(f"Unclosed start tag at byte offset {begin_bytes}")
                        continue
                    raise fail(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {begin_bytes}'
                    )
                i += 1
                while i < n and text[i] in _SPACES:
                    i += 1
                if i >= n:
                    raise fail(f'Unclosed start tag "{tag}" at byte offset {begin_bytes}')
                if text[i] not in "'\"":
                    # An unquoted value is an HTML name token, which is case-insensitive.
                    token_begin = i
                    while at(i).isascii() and (at(i).isalnum() or at(i) in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if at(i) not in _SPACES and at(i) != ">":
                        raise fail(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_begin)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            decoded = _decode_entity(text, i)
                            if decoded is not None:
                                chars.append(decoded[0])
                                i = decoded[1]
                                continue
                        chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise fail(f"Unclosed start tag at byte offset {begin_bytes}")
                if tag == "a" and attribute == "href":
                    argument = value
                elif tag == "code" and attribute == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attribute == "emoji-id":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset {begin_bytes}')
            if tag == "tg-emoji" and not argument.isdigit():
                raise fail("Invalid custom emoji identifier specified")
            stack.append(_OpenTag(tag, argument, utf16, len(out)))
            i += 1
        else:
            if not stack:
                raise fail(f"Unexpected end tag at byte offset {begin_bytes}")
            while at(i) not in _SPACES and at(i) != ">":
                i += 1
            end_tag = text[begin + 2 : i].lower()
            while i < n and text[i] in _SPACES:
                i += 1
            if at(i) != ">":
                raise fail(f"Unclosed end tag at byte offset {begin_bytes}")
            i += 1
            top = stack.pop()
            if end_tag and end_tag != top.tag:
                raise fail(
                    f'Unmatched end tag at byte offset {begin_bytes}, expected "</{top.tag}>", '
                    f'found "</{end_tag}>"'
                )
            length = utf16 - top.utf16_offset
            if length > 0:
                _close_entity(entities, top, length, "".join(out[top.result_index :]))
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    result = "".join(out)
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in result):
        raise fail(
            "Text contains invalid Unicode characters after decoding HTML entities, check for "
            "unmatched surrogate code units"
        )
    for entity in entities:
        # A language only survives on <pre><code class="language-...">; tdlib drops it
        # from a lone <code>.
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return result, entities


def _close_entity(entities: list[JSON], top: _OpenTag, length: int, inner: str) -> None:
    offset = top.utf16_offset
    simple = _SIMPLE_ENTITY.get(top.tag)
    if simple is not None:
        entities.append({"type": simple, "offset": offset, "length": length})
    elif top.tag == "a":
        # An <a> without href links to its own text; an invalid URL silently drops the link.
        url = _check_url(top.argument or inner)
        if url is not None:
            entities.append({"type": "text_link", "offset": offset, "length": length, "url": url})
    elif top.tag == "blockquote":
        kind = "expandable_blockquote" if top.argument == "expandable" else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})
    elif top.tag == "tg-emoji":
        entities.append(
            {
                "type": "custom_emoji",
                "offset": offset,
                "length": length,
                "custom_emoji_id": top.argument,
            }
        )
    elif top.tag == "code":
        last = entities[-1] if entities else None
        # <pre><code class="language-x">...</code></pre> is one pre entity with a language.
        if (
            last is not None
            and last["type"] == "pre"
            and last["offset"] == offset
            and last["length"] == length
            and top.argument
        ):
            last["language"] = top.argument
        else:
            code: JSON = {"type": "code", "offset": offset, "length": length}
            if top.argument:
                code["language"] = top.argument
            entities.append(code)
    elif top.tag == "pre":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "code"
            and last["offset"] == offset
            and last["length"] == length
            and "language" in last
        ):
            last["type"] = "pre"
        else:
            entities.append({"type": "pre", "offset": offset, "length": length})


def validate_telegram_html(text: str, *, strict: bool = True) -> str | None:
    """Return Telegram's "can't parse entities" reason for ``text``, or None if it is valid."""
    try:
        parse_telegram_html(text, strict=strict)
    except HtmlParseError as exc:
        return str(exc)
    return None


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Telegram strips surrounding whitespace from message text and clips entities to it."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    if not stripped:
        return "", []
    lead = _utf16_len(text[: len(text) - len(text.lstrip())])
    total = _utf16_len(stripped)
    clipped: list[JSON] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            clipped.append({**entity, "offset": start, "length": end - start})
    return stripped, clipped


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One Bot API request as the server answered it."""

    method: str
    params: dict[str, Any]
    chat_id: ChatKey | None
    time: float  # wall time, from the server's clock (see FakeTelegram.start_here)
    monotonic: float  # the server's monotonic clock
    status: int
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def description(self) -> str | None:
        description = self.response.get("description")
        return description if isinstance(description, str) else None


@dataclass(frozen=True, slots=True)
class Violation:
    """A send or edit that broke a flood limit (see :meth:`FakeTelegram.enforce_limits`).

    ``chat_id`` is the chat's numeric id even when the request named a channel by
    "@username", so that one chat is one key. ``paid`` tells whether the request carried
    ``allow_paid_broadcast`` (a "global" violation of a paid send broke the paid limit).
    """

    kind: str  # "global" | "private_chat" | "group"
    method: str
    chat_id: ChatKey | None
    time: float  # the server's monotonic clock (see FakeTelegram.start_here)
    detail: str
    paid: bool = False


@dataclass(slots=True)
class _Fault:
    status: int
    description: str
    parameters: JSON | None
    remaining: int | None
    methods: frozenset[str] | None
    tag: str = ""
    until: float | None = None  # the server's monotonic time after which the fault is gone
    mode: str = "status"  # see FAULT_MODES
    ended: bool = False  # cleared: requests it holds are let go


@dataclass(slots=True)
class _Limits:
    global_per_second: int
    per_chat_interval: float
    group_per_minute: int
    tolerance: float
    answer_429: bool
    paid_per_second: int = 1000
    edits_count: bool = True


@dataclass(slots=True)
class _PaidRefusal:
    description: str
    after: int
    accepted: int = 0


@dataclass(slots=True)
class _Topic:
    name: str
    icon_color: int
    deleted: bool = False


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def to_json(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(description: str, parameters: JSON | None = None) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}", parameters)


def _chat_key(value: Any) -> ChatKey | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        stripped = value.strip()
        with contextlib.suppress(ValueError):
            return int(stripped)
        return stripped or None
    return None


def _int_param(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise _bad_request(f"invalid {name} specified") from None


def _bool_param(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        # The Bot API's to_bool(): "true", "yes" and "1", in any case.
        return value.strip().lower() in {"true", "yes", "1"}
    return bool(value)


def _decode_form_value(name: str, raw: str) -> Any:
    if name in _STRING_PARAMS or not raw or raw[0] not in '{["-0123456789tfn':
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart/form-data request (as python-telegram-bot uploads them)."""

    filename: str
    content_type: str
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> JSON:
    """Form fields (decoded as urlencoded values are) and files (`Upload`) of a multipart
    body; a field "attach://<name>" names the file part <name>."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise _bad_request("can't parse multipart/form-data request body")
    fields: JSON = {}
    files: dict[str, Upload] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise _bad_request("multipart/form-data part without a name")
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = Upload(filename, part.get_content_type(), data)
            continue
        try:
            fields[name] = _decode_form_value(name, data.decode("utf-8"))
        except UnicodeDecodeError:
            raise _bad_request("strings must be encoded in UTF-8") from None
    for name, value in list(fields.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            if value[9:] not in files:
                raise _bad_request(f"file for {name} not found in the request")
            fields[name] = files.pop(value[9:])
    return {**files, **fields}


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG (its IHDR) or a JPEG (its first SOF), else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + length
    return None


def _chat_type_for(chat_id: ChatKey) -> str:
    if isinstance(chat_id, str):
        return "channel"
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _update_type(update: Mapping[str, Any]) -> str:
    for key in update:
        if key != "update_id":
            return key
    return ""


def _chat_member(
    user: JSON, status: str, *, chat_type: str = "", can_post_messages: bool = True
) -> JSON:
    if status == "creator":
        return {"status": "creator", "user": user, "is_anonymous": False}
    if status == "administrator" and chat_type == "channel":
        # Channel administrators have the posting rights instead of pinning and topics.
        return {
            "status": "administrator",
            "user": user,
            "can_be_edited": False,
            "is_anonymous": False,
            "can_manage_chat": True,
            "can_delete_messages": True,
            "can_manage_video_chats": True,
            "can_restrict_members": True,
            "can_promote_members": False,
            "can_change_info": True,
            "can_invite_users": True,
            "can_post_stories": False,
            "can_edit_stories": False,
            "can_delete_stories": False,
            "can_post_messages": can_post_messages,
            "can_edit_messages": can_post_messages,
        }
    if status == "administrator":
        return {
            "status": "administrator",
            "user": user,
            "can_be_edited": False,
            "is_anonymous": False,
            "can_manage_chat": True,
            "can_delete_messages": True,
            "can_manage_video_chats": True,
            "can_restrict_members": True,
            "can_promote_members": False,
            "can_change_info": True,
            "can_invite_users": True,
            "can_post_stories": False,
            "can_edit_stories": False,
            "can_delete_stories": False,
            "can_pin_messages": True,
            "can_manage_topics": False,
        }
    if status == "restricted":
        flags = (
            "can_send_messages",
            "can_send_audios",
            "can_send_documents",
            "can_send_photos",
            "can_send_videos",
            "can_send_video_notes",
            "can_send_voice_notes",
            "can_send_polls",
            "can_send_other_messages",
            "can_add_web_page_previews",
            "can_change_info",
            "can_invite_users",
            "can_pin_messages",
            "can_manage_topics",
            "can_edit_tag",
        )
        member: JSON = {"status": "restricted", "user": user, "is_member": True, "until_date": 0}
        member.update(dict.fromkeys(flags, False))
        return member
    if status == "kicked":
        return {"status": "kicked", "user": user, "until_date": 0}
    if status in {"member", "left"}:
        return {"status": status, "user": user}
    raise ValueError(f"unknown chat member status {status!r}")


def _check_reply_markup(markup: Any) -> JSON | None:
    if markup is None:
        return None
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            raise _bad_request("can't parse reply keyboard markup JSON object") from None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request("can't parse inline keyboard button: Can't find field \"text\"")
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
                    raise _bad_request("BUTTON_DATA_INVALID")
            elif "url" in button:
                if not isinstance(button["url"], str) or not button["url"].strip():
                    raise _bad_request("BUTTON_URL_INVALID")
            elif not any(key != "text" for key in button):
                raise _bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )
    return markup


# --------------------------------------------------------------------------- HTTP layer


_MAX_HEAD = 64 * 1024
_MAX_BODY = 20 * 1024 * 1024
_Outcome = tuple[int, bytes]
# An outcome status that drops the connection with a TCP reset instead of answering.
_RESET = -1


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _encode(payload: JSON) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _http_bytes(status: int, body: bytes, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    # Every Bot API answer is a JSON object; only nginx's own error pages are HTML.
    content_type = "text/html" if body[:1] == b"<" else "application/json"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Server: nginx/1.18.0\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _ProtocolError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _parse_chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at buf[start]; None while it is incomplete."""
    body = bytearray()
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _ProtocolError(400) from None
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", line_end)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 4
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        if len(body) > _MAX_BODY:
            raise _ProtocolError(413)
        pos += size + 2


class _Connection(asyncio.Protocol):
    """One keep-alive client connection; requests on it are answered strictly in order."""

    def __init__(self, server: FakeTelegram) -> None:
        self._server = server
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[_Outcome] | None = None
        self._request: _Request | None = None  # the one whose answer is being prepared
        self._closed = False
        self._sent_continue = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._connections.add(self)
        if self._server._outage == "reset":
            self.reset()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._connections.discard(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._transport = None

    def eof_received(self) -> bool | None:
        # A client that closes its side has given up: a request still waiting for its
        # answer (a delay, a hang) must not run afterwards. connection_lost comes a loop
        # iteration later, which is enough for a released request to slip through.
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        return None

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buf += data
        if self._task is None:
            self._pump()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def reset(self, *, count: bool = True) -> None:
        """Drop the connection with a TCP RST, as a host whose server is gone does."""
        transport = self._transport
        if transport is None or self._closed:
            return
        self._closed = True
        if count:
            self._server._count_refused()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def bad_gateway_now(self) -> None:
        """Answer the request in progress (a long poll, a delayed send) with nginx's 502."""
        task, request = self._task, self._request
        if task is None or request is None:
            return
        self._task = None
        task.cancel()
        status, body = self._server._bad_gateway(request)
        self._write(status, body, False)

    def _pump(self) -> None:
        while not self._closed and self._task is None:
            try:
                request = self._next_request()
            except _ProtocolError as exc:
                self._write(exc.status, _encode({"ok": False, "error_code": exc.status}), False)
                return
            if request is None:
                return
            try:
                outcome = self._server._serve(request)
            except Exception as exc:
                self._server.internal_errors.append(exc)
                outcome = 500, _encode({"ok": False, "error_code": 500, "description": repr(exc)})
            if isinstance(outcome, tuple):
                self._write(outcome[0], outcome[1], request.keep_alive)
                continue
            loop = asyncio.get_running_loop()
            task = loop.create_task(outcome)
            self._task = task
            self._request = request
            self._server._track(task)
            task.add_done_callback(functools.partial(self._finished, keep_alive=request.keep_alive))

    def _finished(self, task: asyncio.Task[_Outcome], keep_alive: bool) -> None:
        if self._task is not task:
            return
        self._task = None
        self._request = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._server.internal_errors.append(exc)
            self._write(
                500, _encode({"ok": False, "error_code": 500, "description": repr(exc)}), False
            )
            return
        status, body = task.result()
        self._write(status, body, keep_alive)
        self._pump()

    def _write(self, status: int, body: bytes, keep_alive: bool) -> None:
        if status == _RESET:
            self.reset()
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(_http_bytes(status, body, keep_alive))
        if not keep_alive:
            self._closed = True
            transport.close()

    def _next_request(self) -> _Request | None:
        buf = self._buf
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buf) > _MAX_HEAD:
                raise _ProtocolError(431)
            return None
        lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _ProtocolError(400)
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _ProtocolError(400)
            headers[name.strip().lower()] = value.strip()
        body_start = head_end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunked = _parse_chunked(buf, body_start)
            if chunked is None:
                return None
            body, end = chunked
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise _ProtocolError(400) from None
            if length < 0:
                raise _ProtocolError(400)
            if length > _MAX_BODY:
                raise _ProtocolError(413)
            end = body_start + length
            if len(buf) < end:
                if (
                    not self._sent_continue
                    and headers.get("expect", "").lower() == "100-continue"
                    and self._transport is not None
                ):
                    self._sent_continue = True
                    self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return None
            body = bytes(buf[body_start:end])
        del buf[:end]
        self._sent_continue = False
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        return _Request(method.upper(), target, headers, body, keep_alive)


@dataclass(slots=True)
class _Poll:
    event: asyncio.Event
    terminated: bool = False


# --------------------------------------------------------------------------- the server


class FakeTelegram:
    """A Bot API server on 127.0.0.1 with recording, update injection and fault switches.

    ``default_member_status`` is what getChatMember reports for users in groups that were
    not configured with :meth:`set_member_status` (private chats report "member").
    ``strict_html`` rejects a bare "&" in HTML text (Telegram passes it through).
    ``strict_chats`` answers "chat not found" for chats never seen in an update or
    registered with :meth:`add_chat`.
    ``supports_inline_queries`` is what getMe reports (the @BotFather switch); inline
    queries can only be built for a bot that has it.
    ``edit_time_limit`` (seconds, None for no limit) refuses edits of older messages with
    "message can't be edited". It defaults to 48 hours, which makes the fake *stricter*
    than Telegram: tdlib exempts a bot's own outgoing messages
    (``has_edit_time_limit = !(is_bot && m->is_outgoing)`` in MessagesManager), and the
    48-hour limit is only real for business messages and for deletions. A bot that passes
    with the default never relies on the exemption; ``edit_time_limit=None`` gives
    Telegram's behaviour.
    """

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        bot_username: str = "newsbot_test_bot",
        bot_first_name: str = "NewsBot Test",
        host: str = "127.0.0.1",
        port: int = 0,
        default_member_status: str = "administrator",
        strict_html: bool = True,
        strict_chats: bool = False,
        first_update_id: int = 1,
        supports_inline_queries: bool = False,
        edit_time_limit: float | None = EDIT_TIME_LIMIT,
    ) -> None:
        if not _TOKEN_RE.match(token):
            raise ValueError("token must look like a Bot API token: '<digits>:<secret>'")
        if default_member_status not in _MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {default_member_status!r}")
        self.token = token
        self.host = host
        self.port = port
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.default_member_status = default_member_status
        self.strict_html = strict_html
        self.strict_chats = strict_chats
        self.supports_inline_queries = supports_inline_queries
        self.edit_time_limit = edit_time_limit

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._calls: list[RecordedCall] = []
        self._sent: list[JSON] = []
        # Photos uploaded with sendPhoto, by (chat, message id): their bytes as received.
        self.uploads: dict[tuple[ChatKey, int], Upload] = {}
        self._messages: dict[tuple[ChatKey, int], JSON] = {}
        self._next_message_id: dict[ChatKey, int] = {}
        self._chats: dict[ChatKey, JSON] = {}
        self._users: dict[int, JSON] = {}
        self._members: dict[tuple[ChatKey, int], str] = {}
        # Channel usernames (without "@", case-folded) -> numeric id, and id -> username.
        self._channel_ids: dict[str, int] = {}
        self._channel_names: dict[int, str] = {}
        self._channel_post: dict[ChatKey, bool] = {}  # can_post_messages of the bot
        self._topics: dict[ChatKey, dict[int, _Topic]] = {}
        # Message ids per (forum, topic), General as GENERAL_TOPIC_ID; forums only.
        self._thread_messages: dict[tuple[ChatKey, int], list[int]] = {}
        self._inline_queries: dict[str, JSON] = {}
        self._inline_answered: set[str] = set()
        self._inline_answers: list[JSON] = []
        self._inline_ids = itertools.count(5_000_000_000_000_000_001)
        self._inline_message_ids = itertools.count(1)
        self._updates: deque[JSON] = deque()
        self._first_update_id = first_update_id
        self._next_update_id = first_update_id
        self._allowed_updates: frozenset[str] | None = None
        self._callbacks: dict[str, JSON] = {}
        self._callback_ids = itertools.count(4_000_000_000_000_000_001)
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._webhook: JSON | None = None
        self._chat_faults: dict[ChatKey, list[_Fault]] = {}
        self._global_faults: list[_Fault] = []
        self._chat_delays: dict[ChatKey, float] = {}
        self._global_delay = 0.0
        self._limits: _Limits | None = None
        self._violations: list[Violation] = []
        self._global_sends: deque[float] = deque()  # every accepted send, paid or free
        self._free_sends: deque[float] = deque()  # accepted sends without allow_paid_broadcast
        self._private_last: dict[ChatKey, float] = {}
        self._group_sends: dict[ChatKey, deque[float]] = {}
        self._paid_refusal: _PaidRefusal | None = None
        self._paid_sent = 0
        self._paid_billed = 0
        self._outage: str | None = None
        self._outage_event: asyncio.Event | None = None
        # Connections dropped by a "reset" outage, and requests held by a "hang" outage.
        self.refused_connections = 0
        self.hung_requests = 0

        # What the fake reads the time from: the system's clocks in its own thread, the
        # clock given to start_here (or the loop's timer) when it serves on a test's loop.
        self._clock: TimeSource = SystemTime()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # The test's loop while serving on it (start_here), else None.
        self._here: asyncio.AbstractEventLoop | None = None
        self._in_loop = False  # last started with start_here (and not start)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # requests being answered
        self._poll_waiters: set[asyncio.Event] = set()
        self._hang_waiters: set[asyncio.Event] = set()  # requests held by a "hang" fault
        # The async waiters (await_for) of a fake that does not run in its own thread,
        # each with the loop it waits on; set whenever something they look at changes.
        self._watchers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._active_poll: _Poll | None = None
        self._startup_error: BaseException | None = None
        # Exceptions raised inside the fake itself (answered with 500); tests may assert empty.
        self.internal_errors: list[BaseException] = []

        self._handlers: dict[str, tuple[str, Callable[[JSON, ChatKey | None], Any]]] = {}
        for name in (
            "getMe",
            "sendMessage",
            "sendPhoto",
            "copyMessage",
            "forwardMessage",
            "editMessageText",
            "editMessageReplyMarkup",
            "deleteMessage",
            "answerCallbackQuery",
            "answerInlineQuery",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "setWebhook",
            "deleteWebhook",
            "getWebhookInfo",
            "getChat",
            "getChatMember",
            "getChatAdministrators",
            "sendChatAction",
            "close",
            "logOut",
        ):
            self._handlers[name.lower()] = (name, getattr(self, f"_api_{name}"))

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Value for ``ApplicationBuilder.base_url`` / ``Bot(base_url=...)``."""
        return f"{self.url}/bot"

    @property
    def file_url(self) -> str:
        """Value for ``ApplicationBuilder.base_file_url`` (files are not served)."""
        return f"{self.url}/file/bot"

    @property
    def running(self) -> bool:
        if self._here is not None:
            return True
        return self._thread is not None and self._thread.is_alive()

    @property
    def clock(self) -> TimeSource:
        """What the fake reads the time from (see :meth:`start_here`)."""
        return self._clock

    def bot_env(self) -> dict[str, str]:
        """Environment variables that point a newsbot subprocess at this server."""
        return {"NEWSBOT_TOKEN": self.token, "NEWSBOT_API_URL": self.api_url}

    def start(self) -> FakeTelegram:
        """Start serving in a background thread; returns self once the port is bound.

        The fake then reads the system's clocks, and serves any client: other event loops,
        plain threads, subprocesses.
        """
        if self._thread is not None or self._here is not None:
            raise RuntimeError("FakeTelegram is already running")
        self._clock = SystemTime()
        self._in_loop = False
        ready = threading.Event()
        self._startup_error = None
        thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-telegram", daemon=True
        )
        self._thread = thread
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeTelegram did not start within 10 s")
        if self._startup_error is not None:
            thread.join(5)
            self._thread = None
            raise RuntimeError("FakeTelegram failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection, cancel pending long polls and join the thread."""
        if self._here is not None:
            raise RuntimeError("FakeTelegram serves on an event loop: await stop_here()")
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeTelegram:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    async def start_here(self, clock: TimeSource | None = None) -> FakeTelegram:
        """Serve on the running event loop (no thread); returns self once the port is bound.

        For tests on simulated time (tests/simtime.py): a server in another thread does
        work the loop cannot see, so the loop would jump its clock past it. Here every
        wait of the fake (delays, hangs, long polls, outages) is a timer on this loop, and
        every time it reads (fault and flood windows, violation and call times, message
        dates and edit_date, the edit time limit) comes from ``clock``: pass the test's
        SimClock. Without one, monotonic time is the loop's own timer and wall time the
        system's. Only clients on this loop (or in other threads) can be served: a
        blocking call from this loop (``wait_for``, a synchronous HTTP client) would stall
        the server it waits for.
        """
        if self._thread is not None or self._here is not None:
            raise RuntimeError("FakeTelegram is already running")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024
        )
        self._clock = clock if clock is not None else LoopTime(loop)
        self._in_loop = True
        self._server = server
        self._loop = self._here = loop
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop_here(self) -> None:
        """Stop what start_here started: close every connection, end requests in progress.

        Idempotent. Must be awaited on the loop the fake serves on.
        """
        loop = self._here
        if loop is None:
            return
        if asyncio.get_running_loop() is not loop:
            raise RuntimeError("stop_here() must run on the loop the fake serves on")
        try:
            await self._shutdown(every_task=False)
        finally:
            self._here = None
            self._loop = None

    @contextlib.asynccontextmanager
    async def here(self, clock: TimeSource | None = None) -> AsyncIterator[FakeTelegram]:
        """``async with FakeTelegram().here(clock) as tg``: start_here, then stop_here."""
        await self.start_here(clock)
        try:
            yield self
        finally:
            await self.stop_here()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            server = loop.run_until_complete(
                loop.create_server(lambda: _Connection(self), self.host, self.port, backlog=1024)
            )
        except BaseException as exc:
            self._startup_error = exc
            self._loop = None
            loop.close()
            ready.set()
            return
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self, *, every_task: bool = True) -> None:
        """Close the server. On its own loop every task goes; on a test's loop only its own."""
        server = self._server
        self._server = None
        if server is not None:
            server.close()
        for connection in list(self._connections):
            connection.abort()
        current = asyncio.current_task()
        pool = asyncio.all_tasks() if every_task else set(self._tasks)
        tasks = [task for task in pool if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Let the transports run connection_lost() so their sockets are really closed.
        for _ in range(3):
            await asyncio.sleep(0)
        if server is not None:
            await server.wait_closed()
        self._active_poll = None
        self._poll_waiters.clear()
        self._hang_waiters.clear()
        self._tasks.clear()
        # The event belongs to this loop; a restarted server makes its own.
        self._outage_event = None

    # ------------------------------------------------------------------ recording

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Every request answered so far (optionally one method, any spelling case)."""
        with self._lock:
            if method is None:
                return list(self._calls)
            wanted = method.lower()
            return [call for call in self._calls if call.method.lower() == wanted]

    def sent_messages(self, chat_id: ChatKey | None = None) -> list[JSON]:
        """Message objects returned by successful sendMessage and sendPhoto calls, in order.

        A channel can be named by "@username" or by its numeric id.
        """
        key = _chat_key(chat_id)
        with self._lock:
            if key is None:
                return list(self._sent)
            key = self._canonical(key)
            return [m for m in self._sent if self._message_chat_key(m) == key]

    def messages_by_chat(self) -> dict[ChatKey, list[JSON]]:
        """Successful sendMessage results grouped by chat id."""
        grouped: dict[ChatKey, list[JSON]] = {}
        with self._lock:
            for message in self._sent:
                grouped.setdefault(self._message_chat_key(message), []).append(message)
        return grouped

    def message(self, chat_id: ChatKey, message_id: int) -> JSON | None:
        """The current state of a message (after edits), None if unknown or deleted."""
        key = self._resolve_key(chat_id)
        with self._lock:
            return self._messages.get((key, message_id))

    def topic_messages(self, chat_id: ChatKey, thread_id: int | None = None) -> list[JSON]:
        """The messages of one forum topic as they are now (edited, deleted ones left out).

        ``thread_id`` None (or GENERAL_TOPIC_ID) is the General topic. Users' messages
        and the bot's are both listed, in order; a topic begins with its
        "forum_topic_created" service message.
        """
        key = self._resolve_key(chat_id)
        thread = GENERAL_TOPIC_ID if thread_id is None else thread_id
        with self._lock:
            ids = self._thread_messages.get((key, thread), [])
            found = (self._messages.get((key, message_id)) for message_id in ids)
            return [message for message in found if message is not None]

    @property
    def paid_sent_count(self) -> int:
        """Accepted messages that carried allow_paid_broadcast (since start or clear())."""
        with self._lock:
            return self._paid_sent

    @property
    def paid_billed_count(self) -> int:
        """Paid messages Telegram would charge for, while limits are enforced.

        Telegram bills 0.1 Star for each paid message beyond the free 30 per second
        (TransactionPartnerTelegramApi.request_count counts "requests that exceeded regular
        limits"): a paid send is billed when ``global_per_second`` sends were already
        accepted within the last second.
        """
        with self._lock:
            return self._paid_billed

    def inline_answers(self, query_id: str | None = None) -> list[JSON]:
        """Accepted answerInlineQuery calls, in order (optionally for one query).

        Each is ``{"inline_query_id", "query" (the InlineQuery), "results", "cache_time",
        "is_personal", "next_offset"}`` plus ``"button"`` when one was given.
        """
        with self._lock:
            if query_id is None:
                return list(self._inline_answers)
            return [a for a in self._inline_answers if a["inline_query_id"] == str(query_id)]

    def clear(self) -> None:
        """Forget recorded calls, sent messages, flood violations and counters (state stays)."""
        with self._lock:
            self._calls.clear()
            self._sent.clear()
            self.uploads.clear()
            self._violations.clear()
            self._global_sends.clear()
            self._free_sends.clear()
            self._private_last.clear()
            self._group_sends.clear()
            self._inline_answers.clear()
            self._paid_sent = 0
            self._paid_billed = 0
            self.refused_connections = 0
            self.hung_requests = 0
        self._notify()

    def reset(self) -> None:
        """clear() plus faults, outages, delays, limits, queued updates, messages, topics,
        inline queries and settings."""
        with self._lock:
            self.clear()
            self.clear_faults()
            self._limits = None
            self._updates.clear()
            self._messages.clear()
            self._next_message_id.clear()
            self._callbacks.clear()
            self._commands.clear()
            self._members.clear()
            self._channel_post.clear()
            self._topics.clear()
            self._thread_messages.clear()
            self._inline_queries.clear()
            self._inline_answered.clear()
            self._webhook = None
            self._allowed_updates = None

    @staticmethod
    def _message_chat_key(message: JSON) -> ChatKey:
        chat_id = message["chat"]["id"]
        assert isinstance(chat_id, int)
        return chat_id

    # ------------------------------------------------------------------ waiting

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Block until predicate() is truthy (re-checked on every server event).

        Not from the loop the fake serves on (start_here): that would stall the server.
        """
        if self._here is not None and _running_loop() is self._here:
            raise RuntimeError(
                "wait_for would block the loop this FakeTelegram serves on: use await_for"
            )
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                self._cond.wait(min(remaining, 0.05))

    # The async waiters take `timeout` like their blocking twins instead of asking callers
    # to wrap them in asyncio.timeout().
    async def await_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109
        interval: float | None = None,
    ) -> T:
        """Async wait_for: wait, letting the caller's loop run, until predicate() is truthy.

        With the fake in its own thread (start) it polls every ``interval`` seconds
        (default 5 ms) of real time. Started with start_here (and after stop_here) it is
        event-driven: predicate() is checked again whenever the fake records a call,
        stores a message, takes an update or counts a refused or hung request, and
        ``timeout`` is measured on the running loop's clock, so that a wait that fails on
        simulated time fails at once in real time. A predicate that looks at anything
        else (another server's log) needs ``interval``: it is then also checked every
        ``interval`` seconds of loop time.
        """
        if self._in_loop:
            return await self._await_event(predicate, timeout, interval)
        step = 0.005 if interval is None else interval
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(step)

    async def _await_event(
        self, predicate: Callable[[], T], seconds: float, interval: float | None
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        changed = asyncio.Event()
        watcher = (loop, changed)
        self._watchers.add(watcher)
        try:
            while True:
                changed.clear()
                with self._lock:
                    value = predicate()
                if value:
                    return value
                remaining = deadline - loop.time()
                if remaining <= 0:
                    hint = "" if interval is not None else self._EVENTS_HINT
                    raise TimeoutError(f"condition not met within {seconds} s{hint}")
                wait = remaining if interval is None else min(remaining, interval)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await changed.wait()
        finally:
            self._watchers.discard(watcher)

    _EVENTS_HINT = (
        " (checked when the fake recorded a call, stored a message or took an update;"
        " pass interval= to also check a predicate on anything else)"
    )

    def _notify(self) -> None:
        """Wake the async waiters: something they may be waiting for has changed."""
        for loop, changed in list(self._watchers):
            if _running_loop() is loop:
                changed.set()
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(changed.set)

    def _on_loop(self, callback: Callable[[], None]) -> None:
        """Run callback on the serving loop: at once when called on it, else soon."""
        loop = self._loop
        if loop is None:
            return
        if self._here is not None and _running_loop() is loop:
            callback()
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback)

    def wait_for_messages(
        self, chat_id: ChatKey | None = None, n: int = 1, timeout: float = 5.0
    ) -> list[JSON]:
        """Block until at least n messages were sent (to chat_id); returns all of them."""
        try:
            return self.wait_for(lambda: self._enough_messages(chat_id, n), timeout)
        except TimeoutError:
            raise self._messages_timeout(chat_id, n, timeout) from None

    async def await_messages(
        self,
        chat_id: ChatKey | None = None,
        n: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[JSON]:
        """Async wait_for_messages."""
        try:
            return await self.await_for(lambda: self._enough_messages(chat_id, n), timeout)
        except TimeoutError:
            raise self._messages_timeout(chat_id, n, timeout) from None

    def wait_for_calls(self, method: str, n: int = 1, timeout: float = 5.0) -> list[RecordedCall]:
        """Block until at least n calls of method were answered; returns all of them."""
        return self.wait_for(lambda: self._enough_calls(method, n), timeout)

    async def await_calls(
        self,
        method: str,
        n: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedCall]:
        """Async wait_for_calls."""
        return await self.await_for(lambda: self._enough_calls(method, n), timeout)

    def _enough_messages(self, chat_id: ChatKey | None, n: int) -> list[JSON]:
        messages = self.sent_messages(chat_id)
        return messages if len(messages) >= n else []

    def _enough_calls(self, method: str, n: int) -> list[RecordedCall]:
        calls = self.calls(method)
        return calls if len(calls) >= n else []

    def _messages_timeout(self, chat_id: ChatKey | None, n: int, timeout: float) -> TimeoutError:
        texts = [m.get("text") for m in self.sent_messages(chat_id)]
        where = "in total" if chat_id is None else f"to chat {chat_id}"
        return TimeoutError(f"expected {n} message(s) {where} within {timeout} s, got {texts!r}")

    # ------------------------------------------------------------------ updates

    def push_update(self, update: Mapping[str, Any]) -> JSON:
        """Queue an Update for getUpdates; assigns update_id when missing."""
        with self._lock:
            item = dict(update)
            if "update_id" in item:
                self._next_update_id = max(self._next_update_id, int(item["update_id"]) + 1)
            else:
                item["update_id"] = self._next_update_id
                self._next_update_id += 1
            self._updates.append(item)
            self._cond.notify_all()
        self._on_loop(self._wake_pollers)
        self._notify()
        return item

    @property
    def pending_update_count(self) -> int:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        with self._lock:
            return len(self._updates)

    def add_chat(
        self,
        chat_id: ChatKey,
        chat_type: str | None = None,
        title: str | None = None,
        *,
        is_forum: bool | None = None,
        username: str | None = None,
    ) -> JSON:
        """Register a chat (needed for sends when strict_chats=True); returns its Chat.

        ``is_forum`` makes a supergroup a forum (see :meth:`create_topic`). ``username``
        gives a channel its public "@username", so that the numeric id and the username
        address one chat; a channel first named by "@username" gets a numeric id of its own.
        """
        if is_forum and chat_type not in {None, "supergroup"}:
            raise ValueError("only a supergroup can be a forum")
        with self._lock:
            return self._chat(
                chat_id, chat_type, title=title, create=True, is_forum=is_forum, username=username
            )

    def user(
        self,
        user_id: int,
        *,
        username: str | None = None,
        first_name: str | None = None,
        language_code: str | None = "en",
    ) -> JSON:
        """The User object for user_id (created and remembered on first use)."""
        with self._lock:
            known = self._users.get(user_id)
            if known is not None and username is None and first_name is None:
                return known
            user: JSON = {
                "id": user_id,
                "is_bot": False,
                "first_name": first_name or (known or {}).get("first_name") or f"User{user_id}",
            }
            name = username or (known or {}).get("username")
            if name:
                user["username"] = name
            if language_code:
                user["language_code"] = language_code
            self._users[user_id] = user
            return user

    def user_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        push: bool = True,
    ) -> JSON:
        """Build (and by default queue) an Update with a text message from a user.

        A leading "/command" or "/command@botname" gets its bot_command entity. In a
        private chat the user id defaults to the chat id, elsewhere to 1001. In a forum,
        ``thread_id`` puts the message in that topic (with ``message_thread_id`` and
        ``is_topic_message`` as Telegram sends them); without it the message is in the
        General topic, or in the topic of the message it replies to.
        """
        with self._lock:
            chat = self._chat(chat_id, chat_type, create=True)
            if thread_id is not None and not self._open_topic(chat["id"], thread_id):
                raise LookupError(f"chat {chat_id} has no open forum topic {thread_id}")
            uid = (
                user_id if user_id is not None else (chat_id if chat["type"] == "private" else 1001)
            )
            sender = self.user(uid, username=username, first_name=first_name)
            if chat["type"] == "private" and "first_name" not in chat:
                chat = self._chat_set(chat_id, {**chat, "first_name": sender["first_name"]})
            message: JSON = {
                "message_id": self._new_message_id(chat_id),
                "from": sender,
                "chat": chat,
                "date": int(self._clock.time()),
                "text": text,
            }
            command = _COMMAND_RE.match(text)
            if command:
                message["entities"] = [
                    {"type": "bot_command", "offset": 0, "length": _utf16_len(command.group())}
                ]
            target = None
            if reply_to is not None:
                target = self._reply_target(chat_id, reply_to)
                message["reply_to_message"] = target
            if chat.get("is_forum"):
                thread = thread_id or (target or {}).get("message_thread_id")
                message.update(self._topic_fields(chat_id, thread, target))
                self._index_thread(chat_id, message)
            self._messages[(chat_id, message["message_id"])] = message
            if chat["type"] != "private":
                self._members.setdefault((chat_id, uid), self.default_member_status)
        update: JSON = {"message": message}
        return self.push_update(update) if push else update

    def inline_query(
        self,
        user_id: int,
        query: str,
        *,
        offset: str = "",
        chat_type: str | None = "sender",
        username: str | None = None,
        push: bool = True,
    ) -> JSON:
        """Build (and by default queue) an inline_query Update: "@bot query" typed by a user.

        ``chat_type`` is where it was typed: "sender" (the private chat with the bot),
        "private", "group", "supergroup", "channel", or None when Telegram cannot tell
        (a secret chat). Only a bot with inline mode on gets inline queries.
        """
        if not self.supports_inline_queries:
            raise RuntimeError(
                "inline mode is off for this bot: FakeTelegram(supports_inline_queries=True)"
            )
        if chat_type not in {None, "sender", "private", "group", "supergroup", "channel"}:
            raise ValueError(f"unknown inline query chat type {chat_type!r}")
        if len(query) > 256:
            raise ValueError("an inline query has at most 256 characters")
        with self._lock:
            inline: JSON = {
                "id": str(next(self._inline_ids)),
                "from": self.user(user_id, username=username),
                "query": query,
                "offset": offset,
            }
            if chat_type is not None:
                inline["chat_type"] = chat_type
            self._inline_queries[inline["id"]] = inline
        update: JSON = {"inline_query": inline}
        return self.push_update(update) if push else update

    def chosen_inline_result(
        self,
        user_id: int,
        result_id: str,
        query: str,
        *,
        inline_message_id: str | None = None,
        push: bool = True,
    ) -> JSON:
        """Build (and queue) a chosen_inline_result Update: the user sent one of the results.

        Like Telegram, ``inline_message_id`` is there only when the result carried an
        inline keyboard (it is what editMessageText takes to edit that message later);
        it is made up when not given and the bot's last answer to this user had one.
        """
        with self._lock:
            chosen: JSON = {"result_id": result_id, "from": self.user(user_id), "query": query}
            if inline_message_id is None and self._answered_with_keyboard(user_id, result_id):
                inline_message_id = f"AgAAA{next(self._inline_message_ids):011d}"
            if inline_message_id is not None:
                chosen["inline_message_id"] = inline_message_id
        update: JSON = {"chosen_inline_result": chosen}
        return self.push_update(update) if push else update

    def _answered_with_keyboard(self, user_id: int, result_id: str) -> bool:
        for answer in reversed(self._inline_answers):
            if answer["query"]["from"]["id"] != user_id:
                continue
            for result in answer["results"]:
                if str(result.get("id")) == result_id:
                    return "reply_markup" in result
        return False

    def create_topic(
        self,
        chat_id: ChatKey,
        name: str,
        *,
        icon_color: int = 0x6FB9F0,
        user_id: int = 1001,
        push: bool = False,
    ) -> int:
        """Open a topic in a forum (see add_chat's is_forum); returns its message_thread_id.

        Like Telegram, the id is that of the "forum_topic_created" service message, which
        every later message in the topic implicitly replies to. ``push`` also queues that
        service message as an Update.
        """
        if not 1 <= len(name) <= 128:
            raise ValueError("a topic name has 1-128 characters")
        with self._lock:
            key = self._resolve_key(chat_id)
            chat = self._chats.get(key)
            if chat is None or not chat.get("is_forum"):
                raise ValueError(f"chat {chat_id} is not a forum: add_chat(..., is_forum=True)")
            thread_id = self._new_message_id(key)
            service: JSON = {
                "message_id": thread_id,
                "from": self.user(user_id),
                "chat": chat,
                "date": int(self._clock.time()),
                "message_thread_id": thread_id,
                "forum_topic_created": {"name": name, "icon_color": icon_color},
                "is_topic_message": True,
            }
            self._messages[(key, thread_id)] = service
            self._topics.setdefault(key, {})[thread_id] = _Topic(name, icon_color)
            self._thread_messages[(key, thread_id)] = [thread_id]
        if push:
            self.push_update({"message": service})
        else:
            self._notify()
        return thread_id

    def delete_topic(self, chat_id: ChatKey, thread_id: int) -> None:
        """Delete a forum topic and, as Telegram does, every message in it."""
        key = self._resolve_key(chat_id)
        with self._lock:
            topic = self._topics.get(key, {}).get(thread_id)
            if topic is None or topic.deleted:
                raise LookupError(f"chat {chat_id} has no open forum topic {thread_id}")
            topic.deleted = True
            for message_id in self._thread_messages.pop((key, thread_id), []):
                self._messages.pop((key, message_id), None)

    def age_message(self, chat_id: ChatKey, message_id: int, seconds: float) -> JSON:
        """Back-date a message by ``seconds`` (its date and edit_date); returns it.

        For testing what happens to old messages, e.g. edits past ``edit_time_limit``.
        Messages already returned by the accessors keep their dates.
        """
        key = self._resolve_key(chat_id)
        shift = int(seconds)
        with self._lock:
            message = self._messages.get((key, message_id))
            if message is None:
                raise LookupError(f"no message {message_id} in chat {chat_id}")
            aged = {**message, "date": message["date"] - shift}
            if "edit_date" in aged:
                aged["edit_date"] -= shift
            self._messages[(key, message_id)] = aged
            return aged

    def callback_query(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        push: bool = True,
    ) -> JSON:
        """Build (and by default queue) a callback_query Update for a message the bot sent."""
        with self._lock:
            message = self._messages.get((chat_id, message_id))
            if message is None or message.get("from", {}).get("id") != self.bot_id:
                raise LookupError(f"the bot has no message {message_id} in chat {chat_id}")
            chat = message["chat"]
            uid = (
                user_id if user_id is not None else (chat_id if chat["type"] == "private" else 1001)
            )
            query: JSON = {
                "id": str(next(self._callback_ids)),
                "from": self.user(uid, username=username),
                "message": message,
                "chat_instance": str((chat_id * 1_000_003) % (2**62)),
                "data": data,
            }
            self._callbacks[query["id"]] = query
        update: JSON = {"callback_query": query}
        return self.push_update(update) if push else update

    def my_chat_member(
        self,
        chat_id: int,
        old_status: str,
        new_status: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        push: bool = True,
        apply: bool = True,
    ) -> JSON:
        """Build (and queue) a my_chat_member Update about the bot's own membership.

        With ``apply`` the change takes effect: after "kicked"/"left" sends to the chat
        fail with Telegram's 403 (e.g. a private "kicked" is "bot was blocked by the
        user") until a later update makes the bot a member again.
        """
        for status in (old_status, new_status):
            if status not in _MEMBER_STATUSES:
                raise ValueError(f"unknown chat member status {status!r}")
        with self._lock:
            chat = self._chat(chat_id, chat_type, create=True)
            uid = (
                user_id if user_id is not None else (chat_id if chat["type"] == "private" else 1001)
            )
            event: JSON = {
                "chat": chat,
                "from": self.user(uid),
                "date": int(self._clock.time()),
                "old_chat_member": _chat_member(self.bot_user, old_status),
                "new_chat_member": _chat_member(self.bot_user, new_status),
            }
            if apply:
                self._members[(chat_id, self.bot_id)] = new_status
                self._apply_membership(chat_id, chat["type"], new_status)
        update: JSON = {"my_chat_member": event}
        return self.push_update(update) if push else update

    def _apply_membership(self, chat_id: ChatKey, chat_type: str, status: str) -> None:
        faults = [f for f in self._chat_faults.get(chat_id, []) if f.tag != "membership"]
        description = None
        if status == "kicked":
            description = {
                "private": "Forbidden: bot was blocked by the user",
                "group": "Forbidden: bot was kicked from the group chat",
                "supergroup": "Forbidden: bot was kicked from the supergroup chat",
            }.get(chat_type, "Forbidden: bot was kicked from the channel chat")
        elif status == "left" and chat_type != "private":
            description = f"Forbidden: bot is not a member of the {chat_type} chat"
        if description is not None:
            faults.append(_Fault(403, description, None, None, None, tag="membership"))
        if faults:
            self._chat_faults[chat_id] = faults
        else:
            self._chat_faults.pop(chat_id, None)

    def set_member_status(self, chat_id: ChatKey, user_id: int, status: str) -> None:
        """What getChatMember(chat_id, user_id) reports from now on."""
        if status not in _MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {status!r}")
        key = self._resolve_key(chat_id)
        with self._lock:
            self._members[(key, user_id)] = status

    def set_channel_admin(
        self, chat_id: ChatKey, is_admin: bool, *, can_post_messages: bool = True
    ) -> JSON:
        """Make the bot an administrator of a channel, or not a member of it; returns the Chat.

        A bot cannot be a plain subscriber, so a bot that is not an administrator is not a
        member: getChatMember reports "left" and sends and edits get Telegram's 403 "bot is
        not a member of the channel chat". A public channel (one with a username) can still
        be looked at with getChat/getChatMember; a private one answers those with the 403
        too. An administrator without ``can_post_messages`` gets 400 "need administrator
        rights in the channel chat" for sends. A later my_chat_member update overrides this.
        """
        with self._lock:
            chat = self._chat(chat_id, "channel", create=True)
            key: int = chat["id"]
            self._members[(key, self.bot_id)] = "administrator" if is_admin else "left"
            self._channel_post[key] = can_post_messages
            faults = [f for f in self._chat_faults.get(key, []) if f.tag != "membership"]
            if not is_admin:
                faults.append(
                    _Fault(
                        403,
                        "Forbidden: bot is not a member of the channel chat",
                        None,
                        None,
                        _WRITE_METHODS if "username" in chat else None,
                        tag="membership",
                    )
                )
            elif not can_post_messages:
                faults.append(
                    _Fault(
                        400,
                        "Bad Request: need administrator rights in the channel chat",
                        None,
                        None,
                        _LOWER_SENDING_METHODS,
                        tag="membership",
                    )
                )
            if faults:
                self._chat_faults[key] = faults
            else:
                self._chat_faults.pop(key, None)
            return chat

    # ------------------------------------------------------------------ faults

    def fail_chat(
        self,
        chat_id: ChatKey,
        status: int = 403,
        description: str = "Forbidden: bot was blocked by the user",
        times: int | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Answer requests for chat_id with this error (times=None: until cleared)."""
        key = self._resolve_key(chat_id)
        fault = self._fault(status, description, times, parameters, methods)
        with self._lock:
            self._chat_faults.setdefault(key, []).append(fault)

    def fail_all(
        self,
        status: int = 502,
        description: str = "Bad Gateway",
        times: int | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Answer every request (or only ``methods``) with this error."""
        fault = self._fault(status, description, times, parameters, methods)
        with self._lock:
            self._global_faults.append(fault)

    def block_chat(self, chat_id: ChatKey, times: int | None = None) -> None:
        """403 "Forbidden: bot was blocked by the user"."""
        self.fail_chat(chat_id, times=times)

    def chat_not_found(self, chat_id: ChatKey, times: int | None = None) -> None:
        """400 "Bad Request: chat not found"."""
        self.fail_chat(chat_id, 400, "Bad Request: chat not found", times)

    def rate_limit_chat(
        self, chat_id: ChatKey, retry_after: int = 5, times: int | None = 1
    ) -> None:
        """429 "Too Many Requests: retry after N" with parameters.retry_after."""
        self.fail_chat(
            chat_id,
            429,
            f"Too Many Requests: retry after {retry_after}",
            times,
            parameters={"retry_after": retry_after},
        )

    def rate_limit_chats(
        self, chat_ids: Iterable[ChatKey], retry_after: int = 5, times: int | None = 1
    ) -> None:
        """A 429 storm: rate_limit_chat for every chat."""
        for chat_id in chat_ids:
            self.rate_limit_chat(chat_id, retry_after, times)

    def server_error_chat(
        self,
        chat_id: ChatKey,
        status: int = 502,
        description: str = "Bad Gateway",
        times: int | None = 1,
    ) -> None:
        """A 5xx for requests to chat_id."""
        self.fail_chat(chat_id, status, description, times)

    def migrate_chat(self, chat_id: int, new_chat_id: int, times: int | None = None) -> None:
        """400 "group chat was upgraded to a supergroup chat" with migrate_to_chat_id."""
        self.fail_chat(
            chat_id,
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            times,
            parameters={"migrate_to_chat_id": new_chat_id},
        )

    def fail_for(
        self,
        seconds: float,
        status: int = 502,
        description: str = "Bad Gateway",
        methods: Iterable[str] | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """Like fail_all, for a window of time: from now on for ``seconds``, then never.

        For a Telegram hiccup that heals by itself, e.g.
        ``fail_for(5, 401, "Unauthorized", methods=["getUpdates"])``. The window is
        measured on the fake's monotonic clock (simulated time under start_here(clock)).
        See :meth:`fail_method` for hangs and resets of one method.
        """
        if seconds <= 0:
            raise ValueError("seconds must be > 0")
        fault = self._fault(status, description, None, parameters, methods)
        fault.until = self._clock.monotonic() + seconds
        with self._lock:
            self._global_faults.append(fault)

    def fail_method(
        self,
        method: str | Iterable[str],
        status: int = 502,
        description: str | None = None,
        *,
        mode: str = "status",
        seconds: float | None = None,
        times: int | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """Make one method (or a few) fail while every other method answers normally.

        ``mode`` is how a request of that method fails:

        * ``"status"``: answered with ``status`` and a Bot API error body,
          ``{"ok": false, "error_code": status, "description": ...}`` (description
          defaults to the status phrase, e.g. "Bad Gateway"); recorded like any answer.
          Like the other fault switches it is applied when the request is executed, after
          any delay.
        * ``"hang"``: read and not answered until the fault ends (its window is over,
          or :meth:`clear_faults`); then it is *answered*, served as if it had just
          arrived, provided its client still waits. A client that gave up meanwhile has
          sent nothing (as with delays). Counted in ``hung_requests``.
        * ``"reset"``: the connection is dropped with a TCP reset, no answer and nothing
          executed; counted in ``refused_connections``. Other requests pipelined on the
          same keep-alive connection are lost with it, as with a real reset.

        A hang or reset comes before everything else the fake does with the request
        (delays, other faults). ``seconds`` limits the fault to a window from now on,
        measured on the fake's monotonic clock (simulated time under start_here(clock));
        ``times`` to that many requests; with neither it lasts until cleared. Faults
        apply to requests that arrive while they last, e.g.::

            tg.fail_method("sendMessage", 502, seconds=600)   # getMe, getUpdates answer
            tg.fail_method("sendMessage", mode="hang", seconds=70)
            tg.fail_method("sendMessage", mode="reset", seconds=35)
            tg.clear_faults("sendMessage")                    # ends them early
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {sorted(FAULT_MODES)}")
        if seconds is not None and seconds <= 0:
            raise ValueError("seconds must be None (until cleared) or > 0")
        methods = [method] if isinstance(method, str) else list(method)
        if not methods:
            raise ValueError("name at least one method")
        if description is None:
            try:
                description = HTTPStatus(status).phrase
            except ValueError:
                description = "Error"
        fault = self._fault(status, description, times, parameters, methods)
        fault.mode = mode
        if seconds is not None:
            fault.until = self._clock.monotonic() + seconds
        with self._lock:
            self._global_faults.append(fault)

    def refuse_paid(self, description: str = PAID_BROADCAST_REFUSED, *, after: int = 0) -> None:
        """Refuse paid broadcasts as a bot with too few Stars: 400 ``description``.

        The next ``after`` messages carrying allow_paid_broadcast are still accepted (the
        Stars that are left); every later one is refused until :meth:`accept_paid`.
        Messages without allow_paid_broadcast are not affected.
        """
        if after < 0:
            raise ValueError("after must be >= 0")
        with self._lock:
            self._paid_refusal = _PaidRefusal(description, after)

    def accept_paid(self) -> None:
        """End refuse_paid: paid broadcasts are accepted again."""
        with self._lock:
            self._paid_refusal = None

    def set_outage(self, mode: str | None) -> None:
        """Make Telegram unreachable the way a real outage looks, until ``set_outage(None)``.

        * ``"reset"``: every connection is dropped with a TCP reset, without an answer
          (open ones at once, new ones as they arrive); counted in ``refused_connections``.
        * ``"502"``: nginx's "502 Bad Gateway" HTML page for every request, whatever the
          method or token, including long polls and delayed requests already in progress.
          These calls are recorded with status 502.
        * ``"hang"``: requests are read and never answered while the outage lasts; counted
          in ``hung_requests``. When it ends, those whose client still waits are served.
        """
        if mode is not None and mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {sorted(OUTAGE_MODES)} or None")
        with self._lock:
            self._outage = mode
        self._on_loop(functools.partial(self._apply_outage, mode))

    @property
    def outage(self) -> str | None:
        """The current outage mode (see :meth:`set_outage`), None when Telegram is up."""
        return self._outage

    def _apply_outage(self, mode: str | None) -> None:
        if mode != "hang" and self._outage_event is not None:
            self._outage_event.set()
            self._outage_event = None
        for connection in list(self._connections):
            if mode == "reset":
                connection.reset(count=False)
            elif mode == "502":
                connection.bad_gateway_now()

    def _count_refused(self) -> None:
        with self._lock:
            self.refused_connections += 1
        self._notify()

    def set_delay(self, seconds: float, chat_id: ChatKey | None = None) -> None:
        """Answer after ``seconds``: requests for chat_id, or every request but getUpdates."""
        with self._lock:
            if chat_id is None:
                self._global_delay = max(0.0, seconds)
            elif seconds > 0:
                self._chat_delays[self._resolve_key(chat_id)] = seconds
            else:
                self._chat_delays.pop(self._resolve_key(chat_id), None)

    def clear_faults(self, method: str | None = None) -> None:
        """Remove every fault switch and delay (including membership-induced 403s), end
        refuse_paid and any outage; requests held by a "hang" fault are served.

        With ``method``, only end the faults set for that method by name (fail_method, or
        fail_all/fail_for with ``methods``): the method is taken out of them, and a fault
        left without a method ends. Faults of every method, chat faults, delays and
        outages stay.
        """
        with self._lock:
            if method is None:
                for fault in self._global_faults:
                    fault.ended = True
                self._chat_faults.clear()
                self._global_faults.clear()
                self._chat_delays.clear()
                self._global_delay = 0.0
                self._paid_refusal = None
            else:
                lowered = method.lower()
                kept: list[_Fault] = []
                for fault in self._global_faults:
                    if fault.methods is not None and lowered in fault.methods:
                        fault.methods = fault.methods - {lowered}
                        if not fault.methods:
                            fault.ended = True
                            continue
                    kept.append(fault)
                self._global_faults[:] = kept
        self._on_loop(self._wake_hung)
        if method is None and self._outage is not None:
            self.set_outage(None)

    def _wake_hung(self) -> None:
        for event in self._hang_waiters:
            event.set()

    @staticmethod
    def _fault(
        status: int,
        description: str,
        times: int | None,
        parameters: Mapping[str, Any] | None,
        methods: Iterable[str] | None,
    ) -> _Fault:
        if times is not None and times < 1:
            raise ValueError("times must be None (forever) or >= 1")
        wanted = None if methods is None else frozenset(m.lower() for m in methods)
        return _Fault(status, description, dict(parameters) if parameters else None, times, wanted)

    def _take_fault(
        self, method: str, key: ChatKey | None, *, transport: bool = False
    ) -> _Fault | None:
        """The fault that answers this request, if any (and count it as used).

        ``transport`` looks for a hang or reset (see fail_method) instead of an error.
        """
        lowered = method.lower()
        sources: list[list[_Fault]] = []
        if key is not None and key in self._chat_faults:
            sources.append(self._chat_faults[key])
        sources.append(self._global_faults)
        now: float | None = None
        for faults in sources:
            i = 0
            while i < len(faults):
                fault = faults[i]
                if fault.until is not None:
                    now = self._clock.monotonic() if now is None else now
                    if now >= fault.until:
                        del faults[i]
                        continue
                if (fault.methods is not None and lowered not in fault.methods) or (
                    fault.mode != "status"
                ) != transport:
                    i += 1
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del faults[i]
                return fault
        return None

    # ------------------------------------------------------------------ flood limits

    def enforce_limits(
        self,
        global_per_second: int = 30,
        per_chat_interval: float = 1.0,
        group_per_minute: int = 20,
        *,
        tolerance: float = 0.02,
        answer_429: bool = True,
        paid_per_second: int = 1000,
        edits_count: bool = True,
    ) -> None:
        """Count sends and edits that break Telegram's documented flood limits.

        A send (see SENDING_METHODS) or, with ``edits_count``, an edit of a chat message
        (see EDITING_METHODS) violates when, at the server: the same private chat
        (positive id) got a message or an edit less than ``per_chat_interval`` ago; a
        group/channel (negative id, or "@username" of the same channel) already got
        ``group_per_minute`` within 60 s; or the global window is full. A message without
        ``allow_paid_broadcast`` (and every edit) meets the free limit: ``global_per_second``
        free ones already accepted within the last second. A message with it meets the paid
        limit instead: ``paid_per_second`` sends of any kind within the last second.
        ``edits_count=False`` gives the fake's old behaviour where edits are free.

        ``tolerance`` shortens every window to absorb clock jitter. With ``answer_429``
        (like Telegram) the violating request is refused with 429 and ``retry_after`` and
        is not counted as sent; otherwise it succeeds. Either way it is listed in
        :attr:`violations`.
        """
        with self._lock:
            self._limits = _Limits(
                global_per_second,
                per_chat_interval,
                group_per_minute,
                tolerance,
                answer_429,
                paid_per_second,
                edits_count,
            )
            self._violations.clear()
            self._global_sends.clear()
            self._free_sends.clear()
            self._private_last.clear()
            self._group_sends.clear()

    def disable_limits(self) -> None:
        with self._lock:
            self._limits = None

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations)

    @property
    def violation_count(self) -> int:
        with self._lock:
            return len(self._violations)

    def _admit(self, method: str, params: JSON, key: ChatKey) -> None:
        """The last gate before a message is delivered: paid-broadcast refusal and limits."""
        paid = _bool_param(params, "allow_paid_broadcast")
        refusal = self._paid_refusal
        if paid and refusal is not None and refusal.accepted >= refusal.after:
            raise _ApiError(400, refusal.description)
        billed = self._check_limits(method, key, paid=paid)
        if paid:
            self._paid_sent += 1
            self._paid_billed += billed
            if refusal is not None:
                refusal.accepted += 1

    def _check_limits(self, method: str, key: ChatKey | None, *, paid: bool = False) -> bool:
        """Apply the flood limits; returns whether an accepted paid send is billed."""
        limits = self._limits
        if limits is None or key is None:
            return False
        if method not in SENDING_METHODS and not (limits.edits_count and method in EDITING_METHODS):
            return False
        now = self._clock.monotonic()
        tol = limits.tolerance
        found: list[tuple[str, str, float]] = []

        window_start = now - 1.0 + tol
        sends = self._global_sends
        while sends and sends[0] <= window_start:
            sends.popleft()
        free = self._free_sends
        while free and free[0] <= window_start:
            free.popleft()
        if paid:
            if len(sends) >= limits.paid_per_second:
                found.append(
                    (
                        "global",
                        f"{len(sends) + 1} sends within 1 s (paid limit {limits.paid_per_second})",
                        sends[0] + 1.0 - now,
                    )
                )
        elif len(free) >= limits.global_per_second:
            found.append(
                (
                    "global",
                    f"{len(free) + 1} sends within 1 s (limit {limits.global_per_second})",
                    free[0] + 1.0 - now,
                )
            )

        is_private = isinstance(key, int) and key > 0
        group_sends: deque[float] | None = None
        if is_private:
            last = self._private_last.get(key)
            if last is not None and now - last < limits.per_chat_interval - tol:
                found.append(
                    (
                        "private_chat",
                        f"{now - last:.3f} s after the previous message "
                        f"(minimum {limits.per_chat_interval} s)",
                        last + limits.per_chat_interval - now,
                    )
                )
        else:
            group_sends = self._group_sends.setdefault(key, deque())
            while group_sends and group_sends[0] <= now - 60.0 + tol:
                group_sends.popleft()
            if len(group_sends) >= limits.group_per_minute:
                found.append(
                    (
                        "group",
                        f"{len(group_sends) + 1} messages within 60 s "
                        f"(limit {limits.group_per_minute})",
                        group_sends[0] + 60.0 - now,
                    )
                )

        for kind, detail, _wait in found:
            self._violations.append(Violation(kind, method, key, now, detail, paid))
        if found and limits.answer_429:
            retry_after = max(1, math.ceil(max(wait for _, _, wait in found)))
            raise _ApiError(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        billed = paid and len(sends) >= limits.global_per_second
        sends.append(now)
        if not paid:
            free.append(now)
        if is_private:
            self._private_last[key] = now
        elif group_sends is not None:
            group_sends.append(now)
        return billed

    # ------------------------------------------------------------------ dispatch

    def _serve(self, request: _Request) -> _Outcome | Coroutine[Any, Any, _Outcome]:
        """An outage (see set_outage) comes before everything, as nginx sits before the API."""
        mode = self._outage
        if mode is None:
            return self._dispatch(request)
        if mode == "reset":
            return _RESET, b""
        if mode == "502":
            return self._bad_gateway(request)
        return self._hold(request)

    def _bad_gateway(self, request: _Request) -> _Outcome:
        path, _, query = request.target.partition("?")
        method = path.rpartition("/")[2] if path.startswith("/bot") else ""
        if method:
            known = self._handlers.get(method.lower())
            name = known[0] if known else "getUpdates" if method.lower() == "getupdates" else method
            try:
                params = self._decode_params(request, query)
            except _ApiError:
                params = {}
            self._record(
                name,
                params,
                _chat_key(params.get("chat_id")),
                502,
                {"ok": False, "error_code": 502, "description": "Bad Gateway"},
            )
        return 502, _NGINX_502

    async def _hold(self, request: _Request) -> _Outcome:
        with self._lock:
            self.hung_requests += 1
        self._notify()
        while self._outage == "hang":
            if self._outage_event is None:
                self._outage_event = asyncio.Event()
            await self._outage_event.wait()
        outcome = self._serve(request)
        return outcome if isinstance(outcome, tuple) else await outcome

    def _dispatch(self, request: _Request) -> _Outcome | Coroutine[Any, Any, _Outcome]:
        path, _, query = request.target.partition("?")
        if not path.startswith("/bot"):
            return 404, _encode({"ok": False, "error_code": 404, "description": "Not Found"})
        token, sep, method = path[4:].partition("/")
        if not sep or not method or "/" in method:
            return 404, _encode({"ok": False, "error_code": 404, "description": "Not Found"})
        if token != self.token:
            # Telegram answers 401 to a well-formed but unknown token, 404 to anything else.
            if _TOKEN_RE.match(token):
                return 401, _encode({"ok": False, "error_code": 401, "description": "Unauthorized"})
            return 404, _encode({"ok": False, "error_code": 404, "description": "Not Found"})
        with self._lock:
            fault = self._take_fault(method, None, transport=True)
        if fault is not None:
            if fault.mode == "reset":
                return _RESET, b""
            return self._hang(request, method, fault)
        try:
            params = self._decode_params(request, query)
        except _ApiError as exc:
            return self._finish(method, {}, None, exc.status, exc.to_json())
        if method.lower() == "getupdates":
            return self._get_updates(params)
        handler = self._handlers.get(method.lower())
        raw = _chat_key(params.get("chat_id"))
        if handler is None:
            return self._finish(
                method,
                params,
                raw,
                404,
                {"ok": False, "error_code": 404, "description": "Not Found"},
            )
        name = handler[0]
        with self._lock:
            # Faults, delays, limits and handlers see one key per chat: a channel's numeric
            # id also when the request named it by "@username" (the recording keeps that).
            key = self._canonical(raw)
            delay = self._chat_delays.get(key, 0.0) if key is not None else 0.0
            delay = max(delay, self._global_delay)
        if delay > 0:
            return self._delayed(name, params, raw, key, delay)
        return self._execute(name, params, raw, key)

    async def _hang(self, request: _Request, method: str, fault: _Fault) -> _Outcome:
        """Hold a request until its "hang" fault ends, then serve it (see fail_method)."""
        with self._lock:
            self.hung_requests += 1
        self._notify()
        lowered = method.lower()
        woken = asyncio.Event()
        self._hang_waiters.add(woken)
        try:
            while True:
                with self._lock:
                    lasts = not fault.ended and (
                        fault.methods is None or lowered in fault.methods
                    )
                    remaining = (
                        None if fault.until is None else fault.until - self._clock.monotonic()
                    )
                if not lasts or (remaining is not None and remaining <= 0):
                    break
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await woken.wait()
        finally:
            self._hang_waiters.discard(woken)
        # As if it had just arrived: an outage or another fault may still stop it.
        outcome = self._serve(request)
        return outcome if isinstance(outcome, tuple) else await outcome

    async def _delayed(
        self, name: str, params: JSON, raw: ChatKey | None, key: ChatKey | None, delay: float
    ) -> _Outcome:
        await asyncio.sleep(delay)
        return self._execute(name, params, raw, key)

    def _execute(
        self, name: str, params: JSON, raw: ChatKey | None, key: ChatKey | None
    ) -> _Outcome:
        handler = self._handlers[name.lower()][1]
        with self._lock:
            try:
                fault = self._take_fault(name, key)
                if fault is not None:
                    raise _ApiError(fault.status, fault.description, fault.parameters)
                status, response = 200, {"ok": True, "result": handler(params, key)}
            except _ApiError as exc:
                status, response = exc.status, exc.to_json()
            self._record(name, params, raw, status, response)
        return status, _encode(response)

    def _finish(
        self, method: str, params: JSON, key: ChatKey | None, status: int, response: JSON
    ) -> _Outcome:
        self._record(method, params, key, status, response)
        return status, _encode(response)

    def _record(
        self, method: str, params: JSON, key: ChatKey | None, status: int, response: JSON
    ) -> None:
        with self._lock:
            clock = self._clock
            self._calls.append(
                RecordedCall(method, params, key, clock.time(), clock.monotonic(), status, response)
            )
            self._cond.notify_all()
        self._notify()

    def _decode_params(self, request: _Request, query: str) -> JSON:
        params: JSON = {}
        if query:
            for name, value in parse_qsl(query, keep_blank_values=True):
                params[name] = _decode_form_value(name, value)
        if not request.body:
            return params
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "application/json":
            try:
                body = json.loads(request.body)
            except ValueError:
                raise _bad_request("can't parse JSON encoded request body") from None
            if not isinstance(body, dict):
                raise _bad_request("JSON object expected as request body")
            params.update(body)
        elif content_type == "multipart/form-data":
            params.update(_parse_multipart(request.headers.get("content-type", ""), request.body))
        else:
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad_request("strings must be encoded in UTF-8") from None
            for name, value in parse_qsl(text, keep_blank_values=True):
                params[name] = _decode_form_value(name, value)
        return params

    # ------------------------------------------------------------------ long polling

    def _wake_pollers(self) -> None:
        for event in self._poll_waiters:
            event.set()

    async def _get_updates(self, params: JSON) -> _Outcome:
        try:
            result = await self._poll_updates(params)
        except _ApiError as exc:
            return self._finish("getUpdates", params, None, exc.status, exc.to_json())
        return self._finish("getUpdates", params, None, 200, {"ok": True, "result": result})

    async def _poll_updates(self, params: JSON) -> list[JSON]:
        offset = _int_param(params, "offset") or 0
        limit = min(max(_int_param(params, "limit") or 100, 1), 100)
        timeout = params.get("timeout") or 0
        try:
            timeout = max(float(timeout), 0.0)
        except (TypeError, ValueError):
            raise _bad_request("invalid timeout specified") from None
        allowed = params.get("allowed_updates")
        with self._lock:
            fault = self._take_fault("getUpdates", None)
            if fault is not None:
                raise _ApiError(fault.status, fault.description, fault.parameters)
            if self._webhook is not None:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use "
                    "deleteWebhook to delete the webhook first",
                )
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(str(a) for a in allowed) or None
            self._confirm_updates(offset)
        previous = self._active_poll
        if previous is not None:
            previous.terminated = True
            previous.event.set()
        poll = _Poll(asyncio.Event())
        self._active_poll = poll
        self._poll_waiters.add(poll.event)
        deadline = self._clock.monotonic() + timeout
        try:
            while True:
                poll.event.clear()
                if poll.terminated:
                    raise _ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
                with self._lock:
                    updates = self._collect_updates(limit)
                remaining = deadline - self._clock.monotonic()
                if updates or remaining <= 0:
                    return updates
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await poll.event.wait()
        finally:
            self._poll_waiters.discard(poll.event)
            if self._active_poll is poll:
                self._active_poll = None

    def _confirm_updates(self, offset: int) -> None:
        before = len(self._updates)
        if offset > 0:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
        elif offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
        if len(self._updates) != before:
            self._notify()

    def _collect_updates(self, limit: int) -> list[JSON]:
        allowed = self._allowed_updates
        collected: list[JSON] = []
        kept: deque[JSON] = deque()
        for update in self._updates:
            kind = _update_type(update)
            wanted = (
                kind in allowed if allowed is not None else kind not in _DEFAULT_EXCLUDED_UPDATES
            )
            if not wanted:
                continue
            kept.append(update)
            if len(collected) < limit:
                collected.append(update)
        if len(kept) != len(self._updates):
            self._updates = kept
            self._notify()
        return collected

    # ------------------------------------------------------------------ chats & messages

    def _resolve_key(self, chat_id: ChatKey) -> ChatKey:
        key = _chat_key(chat_id)
        if key is None:
            raise ValueError(f"invalid chat id {chat_id!r}")
        with self._lock:
            canonical = self._canonical(key)
        assert canonical is not None
        return canonical

    def _canonical(self, key: ChatKey | None) -> ChatKey | None:
        """The numeric id a chat is known by: "@username" is its channel's id."""
        if isinstance(key, str):
            return self._channel_id(key)
        return key

    def _channel_id(self, username: str) -> int:
        name = username.lstrip("@")
        folded = name.lower()  # usernames are case-insensitive
        numeric = self._channel_ids.get(folded)
        if numeric is None:
            numeric = -1_009_000_000_000 - len(self._channel_ids)
            self._channel_ids[folded] = numeric
            self._channel_names.setdefault(numeric, name)
        return numeric

    def _chat(
        self,
        chat_id: ChatKey,
        chat_type: str | None = None,
        *,
        title: str | None = None,
        create: bool = False,
        is_forum: bool | None = None,
        username: str | None = None,
    ) -> JSON:
        key = self._canonical(chat_id)
        assert key is not None and not isinstance(key, str)
        if username is not None:
            linked = username.lstrip("@")
            self._channel_ids[linked.lower()] = key
            self._channel_names[key] = linked
        known = self._chats.get(key)
        if (
            known is not None
            and (chat_type is None or known["type"] == chat_type)
            and not title
            and (is_forum is None or bool(known.get("is_forum")) == is_forum)
            and username is None
        ):
            return known
        if known is None and not create and self.strict_chats:
            raise _bad_request("chat not found")
        name = self._channel_names.get(key)
        kind = chat_type or (known["type"] if known else "channel" if name else _chat_type_for(key))
        forum = bool(known.get("is_forum")) if is_forum is None and known else bool(is_forum)
        if kind == "private":
            user = self._users.get(key)
            chat: JSON = {"id": key, "type": "private"}
            if user is not None:
                chat["first_name"] = user["first_name"]
                if "username" in user:
                    chat["username"] = user["username"]
        else:
            kept = known.get("title") if known is not None and known["type"] == kind else None
            chat = {"id": key, "type": kind, "title": title or kept or name or f"Test {kind} {key}"}
            if name:
                chat["username"] = name
            if forum and kind == "supergroup":
                chat["is_forum"] = True
                # Message 1 of a supergroup is its creation, which a bot never sees; in a
                # forum that id stands for the General topic, so no topic may get it.
                self._next_message_id.setdefault(key, 2)
        return self._chat_set(key, chat)

    def _chat_set(self, chat_id: ChatKey, chat: JSON) -> JSON:
        self._chats[chat_id] = chat
        return chat

    def _target_chat(self, key: ChatKey | None) -> tuple[JSON, ChatKey]:
        if key is None:
            raise _bad_request("chat_id is empty")
        chat = self._chat(key)
        numeric = chat["id"]
        return chat, numeric

    # ------------------------------------------------------------------ forum topics

    def _open_topic(self, chat_key: ChatKey, thread_id: int) -> bool:
        topic = self._topics.get(chat_key, {}).get(thread_id)
        return topic is not None and not topic.deleted

    def _thread_for(
        self, chat: JSON, chat_key: ChatKey, params: JSON, reply_to: JSON | None
    ) -> int | None:
        """The topic a new message goes to (None: General, or a chat without topics).

        Like the Bot API, message_thread_id is ignored outside forums; in a forum it must
        name an open topic other than General, and a reply without it stays in the topic
        of the message it replies to.
        """
        if not chat.get("is_forum"):
            return None
        thread_id = _int_param(params, "message_thread_id")
        if not thread_id:
            thread = (reply_to or {}).get("message_thread_id")
            return thread if isinstance(thread, int) else None
        if thread_id == GENERAL_TOPIC_ID or not self._open_topic(chat_key, thread_id):
            raise _bad_request("message thread not found")
        return thread_id

    def _topic_fields(
        self, chat_key: ChatKey, thread_id: int | None, reply_to: JSON | None
    ) -> JSON:
        if thread_id is None:
            return {}
        fields: JSON = {"message_thread_id": thread_id, "is_topic_message": True}
        if reply_to is None:
            # A message in a topic implicitly replies to the topic's service message.
            root = self._messages.get((chat_key, thread_id))
            if root is not None:
                fields["reply_to_message"] = {
                    k: v for k, v in root.items() if k != "reply_to_message"
                }
        return fields

    def _index_thread(self, chat_key: ChatKey, message: JSON) -> None:
        thread = message.get("message_thread_id") or GENERAL_TOPIC_ID
        self._thread_messages.setdefault((chat_key, thread), []).append(message["message_id"])

    def _new_message_id(self, chat_id: ChatKey) -> int:
        next_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = next_id + 1
        return next_id

    def _reply_target(self, chat_id: ChatKey, message_id: int) -> JSON:
        target = self._messages.get((chat_id, message_id))
        if target is None:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    def _format_text(
        self, text: Any, parse_mode: Any, entities: Any, *, limit: int, caption: bool = False
    ) -> tuple[str, list[JSON]]:
        if text is None or text == "":
            if caption:
                return "", []
            raise _bad_request("message text is empty")
        text = str(text)
        mode = str(parse_mode or "").lower()
        if mode == "html":
            try:
                visible, parsed = parse_telegram_html(text, strict=self.strict_html)
            except HtmlParseError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from None
        elif mode in {"", "markdown", "markdownv2"}:
            visible = text
            parsed = list(entities) if isinstance(entities, list) else []
        else:
            raise _bad_request("unsupported parse_mode")
        visible, parsed = _trim(visible, parsed)
        if not visible and not caption:
            raise _bad_request("message text is empty")
        if len(visible) > limit:
            raise _bad_request("message caption is too long" if caption else "message is too long")
        return visible, parsed

    def _reply_to(self, params: JSON, chat_key: ChatKey) -> JSON | None:
        reply = params.get("reply_parameters")
        message_id: int | None = None
        allow_missing = _bool_param(params, "allow_sending_without_reply")
        if isinstance(reply, dict):
            message_id = _int_param(reply, "message_id")
            allow_missing = allow_missing or _bool_param(reply, "allow_sending_without_reply")
        else:
            message_id = _int_param(params, "reply_to_message_id")
        if message_id is None:
            return None
        target = self._messages.get((chat_key, message_id))
        if target is None:
            if allow_missing:
                return None
            raise _bad_request("message to be replied not found")
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    def _store_new(self, chat: JSON, chat_key: ChatKey, fields: JSON) -> JSON:
        message: JSON = {
            "message_id": self._new_message_id(chat_key),
            "from": self.bot_user,
            "chat": chat,
            "date": int(self._clock.time()),
            **fields,
        }
        self._messages[(chat_key, message["message_id"])] = message
        if chat.get("is_forum"):
            self._index_thread(chat_key, message)
        self._notify()
        return message

    def _edit_target(self, params: JSON, key: ChatKey | None, action: str) -> tuple[ChatKey, JSON]:
        if key is None:
            raise _bad_request("chat_id is empty")
        message_id = _int_param(params, "message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        chat = self._chat(key)
        chat_key: ChatKey = chat["id"]
        message = self._messages.get((chat_key, message_id))
        if message is None:
            raise _bad_request(f"message to {action} not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad_request("message can't be edited")
        limit = self.edit_time_limit
        if limit is not None and self._clock.time() - message["date"] >= limit:
            raise _bad_request("message can't be edited")
        return chat_key, message

    # ------------------------------------------------------------------ Bot API methods

    def _api_getMe(self, params: JSON, key: ChatKey | None) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": self.supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _api_sendMessage(self, params: JSON, key: ChatKey | None) -> JSON:
        chat, chat_key = self._target_chat(key)
        text, entities = self._format_text(
            params.get("text"),
            params.get("parse_mode"),
            params.get("entities"),
            limit=MAX_MESSAGE_LENGTH,
        )
        markup = _check_reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(params, chat_key)
        thread_id = self._thread_for(chat, chat_key, params, reply_to)
        self._admit("sendMessage", params, chat_key)
        fields: JSON = {"text": text}
        if entities:
            fields["entities"] = entities
        if reply_to is not None:
            fields["reply_to_message"] = reply_to
        fields.update(self._topic_fields(chat_key, thread_id, reply_to))
        if markup is not None and "inline_keyboard" in markup:
            fields["reply_markup"] = markup
        message = self._store_new(chat, chat_key, fields)
        self._sent.append(message)
        return message

    def _api_sendPhoto(self, params: JSON, key: ChatKey | None) -> JSON:
        chat, chat_key = self._target_chat(key)
        photo = params.get("photo")
        size = (800, 533)
        if isinstance(photo, Upload):
            # Telegram reads an uploaded photo: it must be an image, at most 10 MB.
            found = _image_size(photo.data)
            if found is None or len(photo.data) > 10 * 1024 * 1024:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            size = found
        elif not isinstance(photo, str) or not photo:
            raise _bad_request("there is no photo in the request")
        caption, entities = self._format_text(
            params.get("caption"),
            params.get("parse_mode"),
            params.get("caption_entities"),
            limit=MAX_CAPTION_LENGTH,
            caption=True,
        )
        markup = _check_reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(params, chat_key)
        thread_id = self._thread_for(chat, chat_key, params, reply_to)
        self._admit("sendPhoto", params, chat_key)
        key = photo.data if isinstance(photo, Upload) else photo
        unique = f"AQAD{abs(hash(key)) % 10**12}"
        fields: JSON = {
            "photo": [
                {
                    "file_id": f"AgACAgIAAxk{unique}s",
                    "file_unique_id": f"{unique}s",
                    "width": 90,
                    "height": 60,
                    "file_size": 1200,
                },
                {
                    "file_id": f"AgACAgIAAxk{unique}m",
                    "file_unique_id": f"{unique}m",
                    "width": size[0],
                    "height": size[1],
                    "file_size": len(photo.data) if isinstance(photo, Upload) else 48000,
                },
            ]
        }
        if caption:
            fields["caption"] = caption
        if entities:
            fields["caption_entities"] = entities
        if reply_to is not None:
            fields["reply_to_message"] = reply_to
        fields.update(self._topic_fields(chat_key, thread_id, reply_to))
        if markup is not None and "inline_keyboard" in markup:
            fields["reply_markup"] = markup
        message = self._store_new(chat, chat_key, fields)
        if isinstance(photo, Upload):
            self.uploads[(chat_key, message["message_id"])] = photo
        self._sent.append(message)
        return message

    def _source_message(self, params: JSON) -> JSON:
        source_key = _chat_key(params.get("from_chat_id"))
        message_id = _int_param(params, "message_id")
        if source_key is None:
            raise _bad_request("from_chat_id is empty")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        source_chat = self._chat(source_key)
        message = self._messages.get((source_chat["id"], message_id))
        if message is None:
            raise _bad_request("message to copy not found")
        return message

    def _api_copyMessage(self, params: JSON, key: ChatKey | None) -> JSON:
        chat, chat_key = self._target_chat(key)
        source = self._source_message(params)
        thread_id = self._thread_for(chat, chat_key, params, None)
        self._admit("copyMessage", params, chat_key)
        copied = {
            k: v
            for k, v in source.items()
            if k in {"text", "entities", "photo", "caption", "caption_entities"}
        }
        copied.update(self._topic_fields(chat_key, thread_id, None))
        message = self._store_new(chat, chat_key, copied)
        return {"message_id": message["message_id"]}

    def _api_forwardMessage(self, params: JSON, key: ChatKey | None) -> JSON:
        chat, chat_key = self._target_chat(key)
        source = self._source_message(params)
        thread_id = self._thread_for(chat, chat_key, params, None)
        self._admit("forwardMessage", params, chat_key)
        if source["chat"]["type"] == "channel":
            origin: JSON = {
                "type": "channel",
                "chat": source["chat"],
                "message_id": source["message_id"],
                "date": source["date"],
            }
        else:
            origin = {"type": "user", "sender_user": source.get("from", {}), "date": source["date"]}
        fields = {
            k: v
            for k, v in source.items()
            if k in {"text", "entities", "photo", "caption", "caption_entities"}
        }
        fields["forward_origin"] = origin
        fields.update(self._topic_fields(chat_key, thread_id, None))
        return self._store_new(chat, chat_key, fields)

    def _api_editMessageText(self, params: JSON, key: ChatKey | None) -> JSON | bool:
        if params.get("inline_message_id"):
            self._format_text(
                params.get("text"),
                params.get("parse_mode"),
                params.get("entities"),
                limit=MAX_MESSAGE_LENGTH,
            )
            _check_reply_markup(params.get("reply_markup"))
            return True
        chat_key, message = self._edit_target(params, key, "edit")
        text, entities = self._format_text(
            params.get("text"),
            params.get("parse_mode"),
            params.get("entities"),
            limit=MAX_MESSAGE_LENGTH,
        )
        markup = _check_reply_markup(params.get("reply_markup"))
        # Editing the text without reply_markup drops the inline keyboard.
        inline = markup if markup is not None and "inline_keyboard" in markup else None
        if (
            message.get("text") == text
            and message.get("entities", []) == entities
            and message.get("reply_markup") == inline
        ):
            raise _ApiError(400, _NOT_MODIFIED)
        self._check_limits("editMessageText", chat_key)
        edited = {
            k: v for k, v in message.items() if k not in {"entities", "reply_markup", "edit_date"}
        }
        edited["text"] = text
        edited["edit_date"] = int(self._clock.time())
        if entities:
            edited["entities"] = entities
        if inline is not None:
            edited["reply_markup"] = inline
        self._messages[(chat_key, message["message_id"])] = edited
        return edited

    def _api_editMessageReplyMarkup(self, params: JSON, key: ChatKey | None) -> JSON | bool:
        markup = _check_reply_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        chat_key, message = self._edit_target(params, key, "edit")
        inline = markup if markup is not None and "inline_keyboard" in markup else None
        if message.get("reply_markup") == inline:
            raise _ApiError(400, _NOT_MODIFIED)
        self._check_limits("editMessageReplyMarkup", chat_key)
        edited = {k: v for k, v in message.items() if k not in {"reply_markup", "edit_date"}}
        edited["edit_date"] = int(self._clock.time())
        if inline is not None:
            edited["reply_markup"] = inline
        self._messages[(chat_key, message["message_id"])] = edited
        return edited

    def _api_deleteMessage(self, params: JSON, key: ChatKey | None) -> bool:
        if key is None:
            raise _bad_request("chat_id is empty")
        message_id = _int_param(params, "message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        chat_key = self._chat(key)["id"]
        if self._messages.pop((chat_key, message_id), None) is None:
            raise _bad_request("message to delete not found")
        return True

    def _api_answerCallbackQuery(self, params: JSON, key: ChatKey | None) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id or str(query_id) not in self._callbacks:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        return True

    def _api_answerInlineQuery(self, params: JSON, key: ChatKey | None) -> bool:
        # The Bot API parses the results before Telegram looks at the query or at them.
        results = self._parse_inline_results(params.get("results"))
        query_id = str(params.get("inline_query_id") or "")
        query = self._inline_queries.get(query_id)
        if query is None or query_id in self._inline_answered:
            raise _bad_request(_QUERY_INVALID)
        seen: set[str] = set()
        for result, visible in results:
            result_id = str(result["id"])
            if not 1 <= len(result_id.encode("utf-8")) <= 64:
                raise _bad_request("RESULT_ID_INVALID")
            if result_id in seen:
                raise _bad_request("RESULT_ID_DUPLICATE")
            seen.add(result_id)
            if str(result["type"]).lower() == "article" and not str(result["title"]).strip():
                raise _bad_request("ARTICLE_TITLE_EMPTY")
            if visible is not None and not visible:
                raise _bad_request("MESSAGE_EMPTY")
            if visible is not None and len(visible) > MAX_MESSAGE_LENGTH:
                raise _bad_request("MESSAGE_TOO_LONG")
        cache_time = _int_param(params, "cache_time")
        answer: JSON = {
            "inline_query_id": query_id,
            "query": query,
            "results": [result for result, _ in results],
            "cache_time": 300 if cache_time is None else min(max(cache_time, 0), 86400),
            "is_personal": _bool_param(params, "is_personal"),
            "next_offset": str(params.get("next_offset") or ""),
        }
        if params.get("button") is not None:
            answer["button"] = params["button"]
        self._inline_answered.add(query_id)
        self._inline_answers.append(answer)
        return True

    def _parse_inline_results(self, value: Any) -> list[tuple[JSON, str | None]]:
        """Check InlineQueryResults as the Bot API parses them; (result, visible text)."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise _bad_request(
                    f"can't parse JSON encoded inline query results: {exc}"
                ) from None
        if value is None:
            return []
        if not isinstance(value, list):
            raise _bad_request("expected an Array of inline query results")
        if len(value) > MAX_INLINE_RESULTS:
            raise _bad_request("too many inline query results specified")
        parsed: list[tuple[JSON, str | None]] = []
        for item in value:
            try:
                parsed.append(self._parse_inline_result(item))
            except HtmlParseError as exc:
                raise _bad_request(
                    f"can't parse inline query result: Can't parse entities: {exc}"
                ) from None
            except _ApiError as exc:
                reason = exc.description.removeprefix("Bad Request: ")
                if reason.isupper():  # Telegram's own codes, e.g. BUTTON_DATA_INVALID
                    raise
                raise _bad_request(f"can't parse inline query result: {reason}") from None
        return parsed

    def _parse_inline_result(self, item: Any) -> tuple[JSON, str | None]:
        def fail(reason: str) -> _ApiError:
            return _ApiError(400, f"Bad Request: {reason}")

        def string(obj: JSON, field: str, *, required: bool) -> str | None:
            if field not in obj or obj[field] is None:
                if required:
                    raise fail(f'Can\'t find field "{field}"')
                return None
            found = obj[field]
            if isinstance(found, bool) or not isinstance(found, str | int | float):
                raise fail(f'Field "{field}" must be of type String')
            return str(found)

        if not isinstance(item, dict):
            raise fail("Inline query result must be an object")
        kind = (string(item, "type", required=True) or "").lower()
        string(item, "id", required=True)
        visible: str | None = None
        content = item.get("input_message_content")
        if content is not None and not isinstance(content, dict):
            raise fail('Field "input_message_content" must be of type Object')
        if kind == "article":
            # The legacy form puts message_text in the result itself.
            source = content if content is not None else item
            text = string(source, "message_text", required=content is None)
            if not text:
                raise fail("Input message content is not specified")
            mode = (string(source, "parse_mode", required=False) or "").lower()
            if mode == "html":
                visible, _ = _trim(*parse_telegram_html(text, strict=self.strict_html))
            elif mode in {"", "markdown", "markdownv2"}:
                visible = text.strip()
            else:
                raise fail("Unsupported parse_mode")
            string(item, "title", required=True)
        elif kind not in _INLINE_RESULT_TYPES:
            raise fail(f'type "{kind}" is unsupported for the inline query result')
        markup = item.get("reply_markup")
        if markup is not None:
            if not isinstance(markup, dict):
                raise fail('Field "reply_markup" must be of type Object')
            if "inline_keyboard" not in markup:
                raise fail("REPLY_MARKUP_INVALID")  # refused by Telegram, not the Bot API
            try:
                _check_reply_markup(markup)
            except _ApiError as exc:
                # The Bot API's own keyboard errors begin with a capital inside a result.
                reason = exc.description.removeprefix("Bad Request: ")
                raise fail(reason[:1].upper() + reason[1:]) from None
        return item, visible

    @staticmethod
    def _commands_key(params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        language = params.get("language_code") or ""
        return json.dumps(scope, sort_keys=True), str(language)

    def _api_setMyCommands(self, params: JSON, key: ChatKey | None) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("BOT_COMMANDS_TOO_MUCH")
        cleaned: list[JSON] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand JSON object")
            name = command.get("command")
            description = command.get("description")
            if not isinstance(name, str) or not _BOT_COMMAND_RE.match(name.lstrip("/")):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name.lstrip("/"), "description": description})
        if cleaned:
            self._commands[self._commands_key(params)] = cleaned
        else:
            self._commands.pop(self._commands_key(params), None)
        return True

    def _api_getMyCommands(self, params: JSON, key: ChatKey | None) -> list[JSON]:
        return list(self._commands.get(self._commands_key(params), []))

    def _api_deleteMyCommands(self, params: JSON, key: ChatKey | None) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _api_setWebhook(self, params: JSON, key: ChatKey | None) -> bool:
        url = params.get("url") or ""
        if not url:
            self._webhook = None
            return True
        if not str(url).lower().startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if _bool_param(params, "drop_pending_updates"):
            self._updates.clear()
        self._webhook = {
            "url": str(url),
            "max_connections": _int_param(params, "max_connections") or 40,
            "allowed_updates": params.get("allowed_updates"),
            "secret_token": params.get("secret_token"),
        }
        return True

    def _api_deleteWebhook(self, params: JSON, key: ChatKey | None) -> bool:
        self._webhook = None
        if _bool_param(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    def _api_getWebhookInfo(self, params: JSON, key: ChatKey | None) -> JSON:
        info: JSON = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook is not None:
            info["url"] = self._webhook["url"]
            info["max_connections"] = self._webhook["max_connections"]
            info["ip_address"] = "127.0.0.1"
            if isinstance(self._webhook["allowed_updates"], list):
                info["allowed_updates"] = self._webhook["allowed_updates"]
        return info

    def _api_getChat(self, params: JSON, key: ChatKey | None) -> JSON:
        chat, _ = self._target_chat(key)
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _member_status(self, chat: JSON, user_id: int) -> str:
        configured = self._members.get((chat["id"], user_id))
        if configured is not None:
            return configured
        if chat["type"] == "private":
            return "member"
        return self.default_member_status

    def _user_object(self, user_id: int) -> JSON:
        if user_id == self.bot_id:
            return self.bot_user
        return self._users.get(user_id) or {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User{user_id}",
        }

    def _api_getChatMember(self, params: JSON, key: ChatKey | None) -> JSON:
        chat, _ = self._target_chat(key)
        user_id = _int_param(params, "user_id")
        if user_id is None:
            raise _bad_request("user_id is empty")
        return self._member_object(chat, user_id, self._member_status(chat, user_id))

    def _member_object(self, chat: JSON, user_id: int, status: str) -> JSON:
        return _chat_member(
            self._user_object(user_id),
            status,
            chat_type=chat["type"],
            can_post_messages=self._channel_post.get(chat["id"], True),
        )

    def _api_getChatAdministrators(self, params: JSON, key: ChatKey | None) -> list[JSON]:
        chat, chat_key = self._target_chat(key)
        if chat["type"] == "private":
            raise _bad_request("there are no administrators in the private chat")
        user_ids = {self.bot_id}
        user_ids.update(uid for (cid, uid) in self._members if cid == chat_key)
        admins = []
        for user_id in sorted(user_ids):
            status = self._member_status(chat, user_id)
            if status in {"creator", "administrator"}:
                admins.append(self._member_object(chat, user_id, status))
        return admins

    def _api_sendChatAction(self, params: JSON, key: ChatKey | None) -> bool:
        self._target_chat(key)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _api_close(self, params: JSON, key: ChatKey | None) -> bool:
        return True

    def _api_logOut(self, params: JSON, key: ChatKey | None) -> bool:
        return True
