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
from storage import chats

log = logging.getLogger(__name__)


def can_post(member: ChatMember) -> bool:
    if member.status == ChatMember.OWNER:
        return True
    return isinstance(member, ChatMemberAdministrator) and bool(member.can_post_messages)


async def check(services: Services, bot: Bot) -> None:
    """Each section's channel: its chat id when the bot can post there, else why not."""
    for section in services.sections:
        if not section.channel:
            continue
        trouble = ""
        try:
            chat = await bot.get_chat(section.channel)
            member = await bot.get_chat_member(chat.id, bot.id)
        except (BadRequest, Forbidden) as exc:
            trouble = f"Telegram answered: {exc}"
        except TelegramError as exc:
            # No answer about the channel (a time-out, an outage): what was known stands, so a
            # /feeds during an outage does not stop a working channel's posts.
            log.warning("channel not checked section=%s channel=%s error=%s", section.slug, section.channel, exc)
            if section.slug not in services.channels:
                services.channel_trouble.setdefault(section.slug, f"not checked yet ({exc})")
            continue
        else:
            if member.status not in (ChatMember.OWNER, ChatMember.ADMINISTRATOR):
                trouble = "the bot is not an admin there"
            elif not can_post(member):
                trouble = "the bot is an admin there without the right to post messages"
        if trouble:
            if services.channel_trouble.get(section.slug) != trouble:
                log.warning("channel not usable section=%s channel=%s error=%s", section.slug, section.channel, trouble)
            services.channel_trouble[section.slug] = trouble
            services.channels.pop(section.slug, None)
            continue
        services.channel_trouble.pop(section.slug, None)
        if services.channels.get(section.slug) != chat.id:
            await chats.ensure_channel(services.db, chat.id, chat.title or section.channel, now=services.clock.time())
            services.channels[section.slug] = chat.id
            log.info("channel ready section=%s channel=%s chat_id=%d", section.slug, section.channel, chat.id)
