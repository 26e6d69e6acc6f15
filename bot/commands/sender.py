"""The chat a reader command comes from, as each command needs it: made a reader (/start,
subscribing), only remembered (a setting changed before /start), or just looked up (reading
registers nobody). And the argument of a command that changes something, once the sender
may change it."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from telegram import Update

from bot import i18n, readers
from bot.commands.common import arg_text, refuse_non_admin, reply
from bot.context import NewsContext, Services
from bot.i18n import N_
from storage import chats
from storage.models import Chat

NOT_A_READER = N_("You are not getting alerts yet — /start to begin.")


def title_of(update: Update) -> str | None:
    chat = update.effective_chat
    return (chat.title or chat.username or chat.first_name) if chat else None


async def join(update: Update, context: NewsContext) -> Chat | None:
    """/start or a subscription: the chat is (again) a reader."""
    chat = update.effective_chat
    if chat is None:
        return None
    row = await readers.join(context.services, chat.id, chat.type, title_of(update))
    await keep_first_language(update, context, row)
    return row


async def known(update: Update, context: NewsContext) -> Chat | None:
    """The chat's row for a settings change, made if needed (not a reader by that)."""
    chat = update.effective_chat
    if chat is None:
        return None
    row = await readers.known_chat(context.services, chat.id, chat.type, title_of(update))
    await keep_first_language(update, context, row)
    return row


async def keep_first_language(update: Update, context: NewsContext, row: Chat) -> None:
    """A private chat's first row keeps its reader's Telegram language (when shipped)."""
    user = update.effective_user
    spoken = i18n.supported(user.language_code) if user is not None else None
    if row.language is None and row.type == "private" and spoken is not None:
        await chats.first_language(context.services.db, row.id, spoken)


async def existing(update: Update, context: NewsContext) -> Chat | None:
    chat = update.effective_chat
    return await chats.get_chat(context.services.db, chat.id) if chat else None


def zone_of(services: Services, chat: Chat | None) -> str:
    return (chat.timezone if chat else None) or services.settings.timezone


async def shown_zone(update: Update, context: NewsContext) -> ZoneInfo:
    """The zone times are shown in to this chat, an admin's included: its own (/timezone),
    else the newsroom's."""
    chat = await existing(update, context)
    return context.services.chat_zone(chat.timezone if chat else None)


async def change_argument(update: Update, context: NewsContext, usage: str) -> str | None:
    """The argument of a command that changes this chat's settings, when it has one and the
    sender may change them; otherwise the usage (HTML) or the refusal is the answer (None)."""
    text = arg_text(update)
    if not text:
        await reply(update, usage)
        return None
    if await refuse_non_admin(update, context):
        return None
    return text
