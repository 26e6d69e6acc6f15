"""The language a chat is written to in: chosen before every update is handled (its own,
else the reader's Telegram language at first contact, else the newsroom's), and /language
with a button per shipped language."""

from __future__ import annotations

from telegram import Chat as TgChat
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import i18n
from bot.callbacks import pack, unpack
from bot.commands.common import edit_text, refuse_non_admin, reply
from bot.commands.sender import keep_first_language, known
from bot.context import NewsContext
from bot.i18n import _
from bot.render import esc
from storage import chats


def telegram_language(update: Update) -> str | None:
    """A shipped language for the sender's Telegram language_code (private chats and inline
    queries only: a group reads the newsroom's language unless it chose one)."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or (chat is not None and chat.type != TgChat.PRIVATE):
        return None
    return i18n.supported(user.language_code)


async def choose_language(update: Update, context: NewsContext) -> None:
    """Runs before every handler: what follows is written in the chat's language. A private
    chat with no language kept gets its reader's Telegram language, kept from now on."""
    services = context.services
    chat, user = update.effective_chat, update.effective_user
    # An inline query comes from no chat: its reader's own (private) chat is theirs.
    chat_id = chat.id if chat is not None else user.id if update.inline_query is not None and user is not None else None
    row = await chats.get_chat(services.db, chat_id) if chat_id is not None else None
    if row is not None and row.language:
        i18n.set_language(row.language)
        return
    if row is not None:
        await keep_first_language(update, context, row)
    i18n.set_language(telegram_language(update) or services.settings.language)


def _keyboard() -> InlineKeyboardMarkup:
    current = i18n.language()
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(("✅ " if lang == current else "") + i18n.native_name(lang), callback_data=pack("lang", lang))
        for lang in i18n.languages()
    ]])


async def language_command(update: Update, context: NewsContext) -> None:
    await reply(update, esc(_("Choose the language I write to this chat in:")), _keyboard())


async def language_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "lang", 1)
    lang = i18n.supported(parts[0]) if parts else None
    if lang is None or update.effective_chat is None:
        await query.answer(_("This button is no longer valid."))
        return
    if await refuse_non_admin(update, context):
        return
    chat = await known(update, context)
    assert chat is not None
    await chats.set_language(context.services.db, chat.id, lang, now=context.services.clock.time())
    i18n.set_language(lang)
    await edit_text(query, esc(_("I write to this chat in English now.")), _keyboard())
    await query.answer(_("Language: English"))
