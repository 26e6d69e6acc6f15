"""What reader and admin handlers share: replying, editing, arguments, button data."""

from __future__ import annotations

import contextlib
import logging
import re

from telegram import CallbackQuery, Chat, InlineKeyboardMarkup, LinkPreviewOptions, Message, Update
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.error import BadRequest, TelegramError

from bot.callbacks import unpack
from bot.context import NewsContext
from bot.i18n import N_, _
from bot.tgerrors import not_modified
from storage.models import Section

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
STALE_BUTTON = N_("This button is no longer valid.")
NOT_GROUP_ADMIN = N_("Only this group's admins can change its subscriptions.")
RIGHTS_UNKNOWN = N_("Could not check your rights — try again")
# Ids in callback data are SQLite rowids; anything larger is not ours (and would not bind).
MAX_ROWID = 2**63 - 1


async def reply(update: Update, text: str, keyboard: InlineKeyboardMarkup | None = None) -> Message | None:
    """A reply in the chat (and forum topic) the update came from, without a link preview."""
    message = update.effective_message
    if message is None:
        return None
    return await message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=keyboard, link_preview_options=NO_PREVIEW,
        do_quote=False,
    )


async def edit_text(query: CallbackQuery, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_text(
            text, parse_mode=ParseMode.HTML, reply_markup=keyboard, link_preview_options=NO_PREVIEW
        )
    except BadRequest as exc:
        if not not_modified(exc):
            raise


async def edit_markup(query: CallbackQuery, keyboard: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_reply_markup(reply_markup=keyboard)
    except BadRequest as exc:
        if not not_modified(exc):
            raise


def arg_text(update: Update) -> str:
    """Everything after the command (and its @botname), as typed."""
    message = update.effective_message
    text = (message.text or message.caption or "") if message else ""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def sections_text(sections: tuple[Section, ...]) -> str:
    return ", ".join(s.name for s in sections) or _("none configured")


def callback_ids(data: str | None, prefix: str, count: int) -> list[int] | None:
    """`count` non-negative ids after `prefix`, or None for data that is not ours."""
    parts = unpack(data, prefix, count)
    if parts is None or not all(re.fullmatch(r"[0-9]{1,19}", p) for p in parts):
        return None
    ids = [int(p) for p in parts]
    return ids if all(i <= MAX_ROWID for i in ids) else None


def is_admin(update: Update, context: NewsContext) -> bool:
    user = update.effective_user
    return user is not None and user.id in context.services.settings.admin_ids


async def may_manage(update: Update, context: NewsContext) -> bool:
    """In groups only the group's admins (and its creator) change what the group follows.
    Raises TelegramError when Telegram cannot say who the sender is (getChatMember)."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is None or chat.type == Chat.PRIVATE:
        return True
    if message is not None and message.sender_chat is not None and message.sender_chat.id == chat.id:
        return True  # an anonymous admin posting as the group
    if user is None:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


async def refuse_non_admin(update: Update, context: NewsContext) -> bool:
    """True (and the sender told why) when the sender may not change this chat: a group
    member who is not its admin, or anyone while Telegram cannot tell (then nothing changes
    and the sender is asked to try again, rather than left with a spinning button)."""
    try:
        allowed = await may_manage(update, context)
    except TelegramError as exc:
        chat = update.effective_chat
        user = update.effective_user
        log.warning(
            "rights not checked chat_id=%s user_id=%s error=%s",
            chat.id if chat else None, user.id if user else None, exc,
        )
        # Telegram may be failing for the answer too: the line above already says what happened.
        with contextlib.suppress(TelegramError):
            await _tell(update, _(RIGHTS_UNKNOWN))
        return True
    if allowed:
        return False
    await _tell(update, _(NOT_GROUP_ADMIN))
    return True


async def _tell(update: Update, text: str) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    else:
        await reply(update, text)


def topic_of(update: Update) -> int | None:
    """The forum topic a message or button press came from (None: the general topic)."""
    message = update.effective_message
    if message is None or not message.is_topic_message:
        return None
    return message.message_thread_id


def in_forum(update: Update) -> bool:
    """A forum group, where subscriptions go to the topic they were made in."""
    chat = update.effective_chat
    return bool(chat is not None and chat.is_forum)
