"""Reader commands that belong to no list or choice: /help, unknown commands and buttons,
and the bot's own membership (blocked, removed from a group, back again).

The reader's commands live by what they do: bot.commands.subscribe (what a chat follows),
bot.commands.lists (stories), bot.commands.choices (when and how alerts come). Reading
never registers a chat; /start and subscribing do (bot.readers).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatMemberStatus, ChatType

from bot import readers
from bot.commands.choices import COMBINE_RULE
from bot.commands.common import STALE_BUTTON, is_admin, reply, sections_text
from bot.context import NewsContext
from bot.i18n import N_, _
from bot.keywords import MAX_KEYWORD_LEN, MIN_KEYWORD_LEN
from bot.render import echo, esc

log = logging.getLogger(__name__)

HELP = N_("""<b>{name}</b> sends you the news you choose, as soon as it is published.

/sections — choose sections ({sections})
/follow <i>keyword</i> — alerts for a word or "a phrase", e.g. /follow drones (also /subscribe)
/unfollow <i>keyword</i> — stop one (also /unsubscribe)
/exclude <i>word</i> — never a story about it, even from your sections, e.g. /exclude football; /include undoes it
/mysubs — what you follow and exclude, with remove buttons, instant or briefing-only
/latest [section] [n] — the newest stories, e.g. /latest sports 10
/search <i>words</i> — find stories (or just send me the words)
/related <i>words, headline or link</i> — stories related to a topic or story
/pause — hold alerts (the newest 48 hours are kept); /resume sends them as one message
/quiet 22:00-07:00 — hold alerts during those hours (or deliver them silently: /quiet silent); /quiet off
/briefing 07:30 — one message a day (up to three) with your stories since the last one; /briefing off
/timezone Europe/London — the zone your times are shown in
/settings — everything above with buttons; also link previews and combining bursts ({combine})
/stop — forget me and delete my data
Keywords: {min}–{max} characters, whole words, accents ignored (malmo finds Malmö), plurals found (drone finds drones). Up to {limit} subscriptions per chat.""")

# Shown to the newsroom's admins after HELP.
ADMIN_HELP = N_("""<b>For admins</b>
/broadcast <i>text</i> (or @section <i>text</i>, or as a reply) — a message to every reader, with a preview
/broadcasts — recent broadcasts
/stats — readers, subscriptions, alerts, backlog
/feeds — every feed and how it is doing
/addfeed <i>URL section</i> — add a feed
/removefeed <i>id</i> — stop a feed""")


def help_text(context: NewsContext, *, admin: bool) -> str:
    services = context.services
    text = _(HELP).format(
        name=esc(services.settings.name), sections=esc(sections_text(services.sections)), min=MIN_KEYWORD_LEN, max=MAX_KEYWORD_LEN,
        limit=services.settings.max_subscriptions, combine=esc(_(COMBINE_RULE)),
    )
    return text + ("\n\n" + _(ADMIN_HELP) if admin else "")


async def help_command(update: Update, context: NewsContext) -> None:
    await reply(update, help_text(context, admin=is_admin(update, context)))


async def unknown_command(update: Update, context: NewsContext) -> None:
    message = update.effective_message
    command = (message.text or "").split(maxsplit=1)[0] if message else ""
    await reply(update, _("I don't know {command}. /help lists what I can do.").format(command=echo(command, 40)))


async def unknown_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    if query is not None:
        await query.answer(_(STALE_BUTTON))


# --- membership ---------------------------------------------------------------------------


async def my_chat_member(update: Update, context: NewsContext) -> None:
    """Blocked or removed: out of the audience at once. Unblocked or added back: a reader who
    had been one is one again (nobody becomes a reader by being added to a group)."""
    change = update.my_chat_member
    if change is None:
        return
    chat = change.chat
    status = change.new_chat_member.status
    if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
        reason = "blocked the bot" if chat.type == ChatType.PRIVATE else f"bot {status}"
        await readers.deactivate(context.services, chat.id, reason)
        log.info("chat inactive chat_id=%d reason=%s", chat.id, reason)
    elif status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER) and (
        await readers.come_back(context.services, chat.id)
    ):
        log.info("chat active again chat_id=%d", chat.id)
