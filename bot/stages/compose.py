"""What each kind of message says: the Bot API request that sends it.

One function per kind of bot.pipeline.kinds (its table names them). An edit is rendered from
the rows its message carried, with their stories as they are now, and is not sent when it
would leave the message as it is (`Request.unchanged`): what a message shows is remembered
as a hash of its text and buttons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot import briefings, i18n, localtime, render
from bot.context import Services
from storage import due
from storage.due import DueMessage


@dataclass(frozen=True, slots=True)
class Request:
    """One Bot API request, and the hash of what the message will show."""

    method: str
    params: dict[str, Any]
    text_hash: int | None = None
    unchanged: bool = False  # an edit that would change nothing: not sent
    empty: bool = False  # a briefing with nothing new for a reader who wants none: not sent


def shown_hash(text: str, keyboard: dict[str, Any] | None) -> int:
    """A stable 63-bit hash of what a message shows (its text and buttons)."""
    blob = json.dumps([text, keyboard], sort_keys=True, ensure_ascii=False).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


def _message(services: Services, batch: Sequence[DueMessage], rendered: render.Rendered, *,
             previews: bool = False) -> Request:
    first = batch[0]
    keyboard = rendered.keyboard.to_dict() if rendered.keyboard is not None else None
    params: dict[str, Any] = {
        "chat_id": first.chat_id, "parse_mode": "HTML", "text": rendered.html,
        "link_preview_options": {"is_disabled": not (previews and first.chat.link_previews)},
    }
    if keyboard is not None:
        params["reply_markup"] = keyboard
    if first.thread_id is not None:
        params["message_thread_id"] = first.thread_id
    return Request("sendMessage", params, text_hash=shown_hash(rendered.html, keyboard))


def _quiet(message: DueMessage) -> str:
    """The chat's quiet hours ("22:00–07:00"; "" when it has none now)."""
    chat = message.chat
    return localtime.span(chat.quiet_start, chat.quiet_end) if chat.quiet_start is not None and chat.quiet_end is not None else ""


def _zone(services: Services, message: DueMessage) -> Any:
    return services.chat_zone(message.chat.timezone)


async def alert(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    first = batch[0]
    assert first.article is not None
    rendered = render.alert(first.article, first.reasons, services.section_names, _zone(services, first), row_id=first.id)
    return _message(services, batch, rendered, previews=True)


async def combined(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    first = batch[0]
    rendered = render.combined(items(batch), services.section_names, _zone(services, first), digest=first.digest,
                               quiet=_quiet(first))
    return _message(services, batch, rendered)


async def broadcast(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    return _message(services, batch, render.Rendered(batch[0].broadcast_html or ""))


async def paid(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    request = _message(services, batch, render.Rendered(batch[0].broadcast_html or ""))
    request.params["allow_paid_broadcast"] = True
    return request


async def briefing(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    rendered = await briefings.compose(services, batch[0])
    if rendered is None:
        return Request("sendMessage", {}, empty=True)
    return _message(services, batch, rendered)


async def post(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    first = batch[0]
    assert first.article is not None
    rendered = render.alert(first.article, (), services.section_names, _zone(services, first), row_id=first.id,
                            buttons=False)
    return _message(services, batch, rendered)


async def edit(services: Services, batch: Sequence[DueMessage]) -> Request | None:
    """A correction: the message as it was sent, with its stories' titles and links as they
    are now and an "(updated)" mark, keeping its buttons. None when the message it edits is
    no longer known (its rows pruned or its chat gone)."""
    row = batch[0]
    assert row.target_id is not None
    rows = await due.message_rows(services.db, row.chat_id, row.target_id)
    if not rows or rows[0].article is None:
        return None
    first = rows[0]
    zone = _zone(services, first)
    if first.kind == "post" or (len(rows) == 1 and not first.digest):
        assert first.article is not None
        rendered = render.alert(
            first.article, first.reasons, services.section_names, zone, row_id=first.id,
            updated=first.shows_old_version, buttons=first.kind != "post",
        )
    else:
        rendered = render.combined(items(rows), services.section_names, zone, digest=first.digest, quiet=_quiet(first))
    keyboard = rendered.keyboard.to_dict() if rendered.keyboard is not None else None
    params: dict[str, Any] = {
        "chat_id": row.chat_id, "message_id": row.target_id, "parse_mode": "HTML", "text": rendered.html,
        "link_preview_options": {"is_disabled": not first.chat.link_previews or len(rows) > 1},
    }
    if keyboard is not None:
        params["reply_markup"] = keyboard
    text_hash = shown_hash(rendered.html, keyboard)
    return Request("editMessageText", params, text_hash=text_hash, unchanged=text_hash == first.shown_hash)


def items(rows: Sequence[DueMessage]) -> list[render.Item]:
    return [
        render.Item(row_id=m.id, article=m.article, reasons=m.reasons, updated=m.shows_old_version)
        for m in rows
        if m.article is not None
    ]


Renderer = Callable[[Services, Sequence[DueMessage]], Awaitable[Request | None]]


def in_chat_language(render_for: Renderer) -> Renderer:
    """The renderer, writing in the language of the chat the message goes to (its own, else
    the newsroom's, NEWSBOT_LANGUAGE)."""

    async def rendered(services: Services, batch: Sequence[DueMessage]) -> Request | None:
        with i18n.speaking(batch[0].chat.language or services.settings.language):
            return await render_for(services, batch)

    return rendered


# Each kind of bot.pipeline.kinds by name → what its message says.
RENDERERS: dict[str, Renderer] = {
    kind: in_chat_language(renderer) for kind, renderer in {
        "alert": alert, "combined": combined, "broadcast": broadcast, "paid": paid,
        "briefing": briefing, "post": post, "edit": edit,
    }.items()
}
