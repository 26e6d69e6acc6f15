"""Inline mode: `@bot words` in any chat lists matching stories; the chosen one posts the
linked headline with a "More from newsbot" button that starts the bot on its section.

Works for anyone, reader or not (nothing is registered), once inline mode is switched on
with @BotFather (/setinline); without it Telegram never sends inline queries and nothing
here runs. The stories found are cached briefly here per query text, so a word typed
letter by letter costs a few searches, not one per keystroke per user; the results are
written for the reader asking (their language and zone), so Telegram caches them per user
(`is_personal`).
"""

from __future__ import annotations

from collections import OrderedDict

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ParseMode

from bot.context import NewsContext
from bot.i18n import _
from bot.render import esc, format_time, linked_title, section_label, short
from storage import articles, chats
from storage.models import Article

RESULTS = 20
CACHE_SECONDS = 30
CACHE_ENTRIES = 256


class InlineSearch:
    """The inline query handler, with its small cache of recent answers."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, tuple[float, list[Article]]] = OrderedDict()

    async def _stories(self, context: NewsContext, text: str) -> list[Article]:
        key = " ".join(text.casefold().split())
        now = context.services.clock.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        db = context.services.db
        found = await articles.search(db, key, limit=RESULTS) if key else await articles.latest(db, None, limit=RESULTS)
        self._cache[key] = (now + CACHE_SECONDS, found)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return found

    async def __call__(self, update: Update, context: NewsContext) -> None:
        query = update.inline_query
        if query is None:
            return
        services = context.services
        stories = await self._stories(context, query.query[:200])
        sections = services.section_names
        reader = await chats.get_chat(services.db, query.from_user.id)  # their private chat, if any
        zone = services.chat_zone(reader.timezone if reader is not None else None)
        username = context.bot.username
        results = []
        for article in stories:
            label = section_label(article, sections)
            more = f"https://t.me/{username}?start={article.section}" if article.section else f"https://t.me/{username}"
            results.append(
                InlineQueryResultArticle(
                    id=str(article.rowid),
                    title=short(article.title, 120),
                    description=short(f"{label} · {format_time(article.published_at, zone)} — {article.summary}", 200),
                    input_message_content=InputTextMessageContent(
                        f"<i>{esc(label)}</i> · <b>{linked_title(article)}</b>",
                        parse_mode=ParseMode.HTML,
                        link_preview_options=LinkPreviewOptions(is_disabled=False),
                    ),
                    reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(_("More from {name}").format(name=services.settings.name), url=more)]]),
                )
            )
        await query.answer(results, cache_time=CACHE_SECONDS, is_personal=True)
