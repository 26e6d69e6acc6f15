"""Sections' channels: whether the bot can post in each, as Telegram says (getChatMember of
the bot there: the channel's creator, or an administrator with "Post messages").

Checked at start and again whenever an admin asks /feeds, so a right given or taken away
meanwhile shows there. Only the channels the bot can post in get posts (`Services.channels`)
and are offered to readers ("or join @channel"); the others are kept with the reason
(`Services.channel_trouble`) for /feeds.
"""

from __future__ import annotations

import logging

from telegram import Bot, ChatMember, ChatMemberAdministrator
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.context import Services
from bot.i18n import N_
from storage import chats

log = logging.getLogger(__name__)


# Why the bot cannot post in a section's channel, as /feeds says it ({error}: Telegram's words).
REFUSED = N_("Telegram answered: {error}")
NOT_CHECKED = N_("not checked yet ({error})")
NOT_ADMIN = N_("the bot is not an admin there")
NO_POST_RIGHT = N_("the bot is an admin there without the right to post messages")


def can_post(member: ChatMember) -> bool:
    if member.status == ChatMember.OWNER:
        return True
    return isinstance(member, ChatMemberAdministrator) and bool(member.can_post_messages)


async def check(services: Services, bot: Bot) -> None:
    """Each section's channel: its chat id when the bot can post there, else why not."""
    for section in services.sections:
        if not section.channel:
            continue
        trouble, error = "", ""
        try:
            chat = await bot.get_chat(section.channel)
            member = await bot.get_chat_member(chat.id, bot.id)
        except (BadRequest, Forbidden) as exc:
            trouble, error = REFUSED, str(exc)
        except TelegramError as exc:
            # No answer about the channel (a time-out, an outage): what was known stands, so a
            # /feeds during an outage does not stop a working channel's posts.
            log.warning("channel not checked section=%s channel=%s error=%s", section.slug, section.channel, exc)
            if section.slug not in services.channels:
                services.channel_trouble.setdefault(section.slug, (NOT_CHECKED, str(exc)))
            continue
        else:
            if member.status not in (ChatMember.OWNER, ChatMember.ADMINISTRATOR):
                trouble = NOT_ADMIN
            elif not can_post(member):
                trouble = NO_POST_RIGHT
        if trouble:
            if services.channel_trouble.get(section.slug) != (trouble, error):
                log.warning("channel not usable section=%s channel=%s error=%s", section.slug, section.channel,
                            trouble.format(error=error))
            services.channel_trouble[section.slug] = (trouble, error)
            services.channels.pop(section.slug, None)
            continue
        services.channel_trouble.pop(section.slug, None)
        if services.channels.get(section.slug) != chat.id:
            await chats.ensure_channel(services.db, chat.id, chat.title or section.channel, now=services.clock.time())
            services.channels[section.slug] = chat.id
            log.info("channel ready section=%s channel=%s chat_id=%d", section.slug, section.channel, chat.id)
