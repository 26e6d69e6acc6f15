"""Reader commands that list stories: /latest, /search, /related, words sent in a private
chat (a search), and the Related button. Reading registers nobody.
"""

from __future__ import annotations

import re

from telegram import Update

from bot.commands import sender
from bot.commands.common import arg_text, callback_ids, reply, sections_text
from bot.context import NewsContext, find_section
from bot.i18n import N_, _
from bot.keywords import parse_keywords
from bot.pipeline.parse import canonical_url
from bot.render import Rendered, article_list, echo, esc
from bot.text import plain_line
from storage import articles, subscriptions
from storage.models import Article, Chat, Section

LATEST_DEFAULT = 5
LATEST_MAX = 20
SEARCH_MAX = 10
RELATED_MAX = 5

# HTML (translated where used): how to write each command.
USAGE = {
    "latest": N_("Usage: /latest [<i>section</i>] [<i>number</i>]\nExample: /latest sports 10 (at most {max})"),
    "search": N_("Usage: /search <i>words</i>\nExample: /search ukraine ceasefire"),
    "related": N_("Usage: /related <i>words, a headline or a story's link</i>\nExample: /related drones russia"),
}


def usage(command: str) -> str:
    """How to write `command`, in the reader's language (HTML)."""
    return _(USAGE[command])


# --- /latest, /search, /related, plain text ----------------------------------------------------


async def latest(update: Update, context: NewsContext) -> None:
    services = context.services
    chat_id = update.effective_chat.id if update.effective_chat else None
    if chat_id is None:
        return
    how = usage("latest").format(max=LATEST_MAX)
    args = context.args or []
    numbers = [w for w in args if re.fullmatch(r"[+-]?[0-9]+", w)]
    words = [w for w in args if w not in numbers]
    # At most one section and one number, in either order.
    if len(numbers) > 1 or len(words) > 1:
        await reply(update, how)
        return
    count = LATEST_DEFAULT
    if numbers:
        # Compared as text first: a thousand-digit "number" is not worth converting.
        count = int(numbers[0]) if len(numbers[0]) <= 4 else 0
        if not 1 <= count <= LATEST_MAX:
            await reply(update, esc(_("Give a number from 1 to {max}.").format(max=LATEST_MAX)) + "\n" + how)
            return
    section: Section | None = None
    if words:
        section = find_section(services.sections, words[0])
        if section is None:
            await reply(update, _("Unknown section “{name}”. Sections: {sections}.").format(
                name=echo(words[0], 40), sections=esc(sections_text(services.sections))) + f"\n{how}")
            return
    if section is not None:
        wanted: list[str] | None = [section.slug]
        title = "<b>" + esc(_("Latest in {section}").format(section=section.name)) + "</b>"
    else:
        mine = [s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == "section"]
        wanted = mine or None
        title = "<b>" + esc(_("Latest in your sections") if mine else _("Latest news")) + "</b>"
    chat = await sender.existing(update, context)
    found = await articles.latest(
        services.db, wanted, limit=count, excluded=services.matcher.exclusions_of(chat_id)
    )
    await _list(update, context, chat, title, found, _("No stories yet."))


async def _list(
    update: Update, context: NewsContext, chat: Chat | None, title: str, found: list[Article], empty: str
) -> None:
    services = context.services
    zone = services.chat_zone(chat.timezone if chat else None)
    rendered: Rendered = article_list(title, found, services.section_names, zone, empty=empty)
    await reply(update, rendered.html, rendered.keyboard)


def _has_words(text: str) -> bool:
    return re.search(r"[^\W_]", text) is not None


async def search(update: Update, context: NewsContext) -> None:
    text = arg_text(update)
    if not _has_words(text):
        await reply(update, usage("search"))
        return
    await _search(update, context, text, "<b>" + _("Search: {words}").format(words=echo(text)) + "</b>")


async def _search(update: Update, context: NewsContext, text: str, title: str) -> None:
    if articles.only_stopwords(text[:200]):
        await reply(update, _("“{words}” is too common to search for — try a more specific word.").format(words=echo(text, 40)))
        return
    found = await articles.search(context.services.db, text[:200], limit=SEARCH_MAX)
    await _list(update, context, await sender.existing(update, context), title, found,
                _("Nothing found. Try fewer or other words."))


async def plain_text(update: Update, context: NewsContext) -> None:
    """Words sent to the bot in a private chat are a search, and the answer says so."""
    message = update.effective_message
    text = plain_line(message.text or "") if message else ""
    if not _has_words(text):
        await reply(update, esc(_("Send me a few words to search for, or see /help.")))
        return
    await _search(update, context, text, "<b>" + _("Searching for “{words}”").format(words=echo(text)) + "</b>")


async def related(update: Update, context: NewsContext) -> None:
    text = arg_text(update)
    if not _has_words(text):
        await reply(update, usage("related"))
        return
    services = context.services
    story: Article | None = None
    if re.match(r"^https?://\S+$", text):
        story = await articles.find_by_url(services.db, canonical_url(text)) or await articles.find_by_url(services.db, text)
        if story is None:
            await reply(update, esc(_("I don't have that story. Try /related with a few words instead.")))
            return
    else:
        # A pasted headline means that story: the same answer as its Related button.
        story = await articles.find_by_title(services.db, text[:500])
    await _related(update, context, story, text)


async def _related(update: Update, context: NewsContext, story: Article | None, words: str) -> None:
    services = context.services
    if story is not None:
        found = await articles.related(
            services.db, story.title, limit=RELATED_MAX, exclude_id=story.id, phrases=story.tags
        )
        title = "<b>" + _("Related to: {title}").format(title=echo(story.title, 200)) + "</b>"
    else:
        # As with /follow, "quoted words" (or a comma-separated part) are one phrase.
        parts = parse_keywords(words[:200])
        phrases = [p for p in parts if len(p.split()) > 1]
        single = " ".join(p for p in parts if len(p.split()) == 1)
        found = await articles.related(services.db, single, limit=RELATED_MAX, phrases=phrases)
        title = "<b>" + _("Related: {words}").format(words=echo(words)) + "</b>"
    await _list(update, context, await sender.existing(update, context), title, found, _("No related stories yet."))


async def related_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, "rel", 1)
    story = await articles.get_article_by_rowid(context.services.db, ids[0]) if ids else None
    if story is None:
        await query.answer(_("This story is no longer available."))
        return
    await query.answer()
    await _related(update, context, story, "")
