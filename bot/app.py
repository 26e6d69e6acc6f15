"""build_app(settings): the Application with every handler registered in one place, and the
command menus. The bot's life cycle (connect, jobs, dispatcher, stop) is bot.runner."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypedDict
from urllib.parse import urlsplit

from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Update
from telegram.error import TelegramError
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    SimpleUpdateProcessor,
    TypeHandler,
    filters,
)

from bot import i18n
from bot.clock import Clock
from bot.commands import admin, choices, feeds, language, lists, reader, subscribe
from bot.commands.inline import InlineSearch
from bot.config import Settings
from bot.context import CONTEXT_TYPES, NewsApp
from bot.errors import ErrorNotices
from bot.flood import FloodGuard
from bot.i18n import N_
from bot.limiter import SharedLimiter
from bot.pipeline.ratelimit import RateLimits
from storage import chats

log = logging.getLogger(__name__)

UPDATE_CONCURRENCY = 16  # updates handled at once


class CountingUpdateProcessor(SimpleUpdateProcessor):
    """python-telegram-bot's update processor, counting the updates it has finished: the
    getUpdates loop takes no more while too many it took are not (bot.runner), so a flood
    waits at Telegram, not in this process's memory."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self.finished = 0

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            await super().do_process_update(update, coroutine)
        finally:
            self.finished += 1


READER_COMMANDS = (
    ("start", N_("Start, and choose sections")),
    ("sections", N_("Choose sections")),
    ("follow", N_("Alerts for a keyword or phrase")),
    ("unfollow", N_("Stop a keyword")),
    ("exclude", N_("Never stories about a word")),
    ("include", N_("Undo an exclusion")),
    ("mysubs", N_("What you follow and exclude")),
    ("latest", N_("Newest stories [section] [n]")),
    ("search", N_("Find stories")),
    ("related", N_("Related stories")),
    ("pause", N_("Hold alerts")),
    ("resume", N_("Get held alerts and new ones")),
    ("quiet", N_("Quiet hours, e.g. 22:00-07:00")),
    ("briefing", N_("A daily briefing, e.g. 07:30")),
    ("timezone", N_("Your time zone")),
    ("language", N_("Language: English or Svenska")),
    ("settings", N_("Everything, with buttons")),
    ("help", N_("How to use newsbot")),
    ("stop", N_("Forget me")),
)


def build_app(
    settings: Settings, limits: RateLimits, clock: Clock, updates: CountingUpdateProcessor | None = None
) -> NewsApp:
    """The Application, talking to `settings.api_url`, its replies under the shared `limits`.

    Updates come from bot.runner's own getUpdates loop (long polling) or PTB's webhook server;
    the builder makes an Updater only for the webhook.
    """
    token = settings.require_token()
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.api_url)
        .base_file_url(settings.api_url.removesuffix("/bot") + "/file/bot")
        .context_types(CONTEXT_TYPES)
        .concurrent_updates(updates or CountingUpdateProcessor(UPDATE_CONCURRENCY))
        .rate_limiter(SharedLimiter(limits, clock))
        .connect_timeout(10)
        .read_timeout(20)
        .write_timeout(20)
        .pool_timeout(10)
        .get_updates_read_timeout(40)
        # Jobs run on the one clock (bot.jobs); PTB's JobQueue would read the wall clock.
        .job_queue(None)
    )
    if not settings.webhook_url:
        builder = builder.updater(None)
    app: NewsApp = builder.build()
    _register(app)
    return app


def _register(app: NewsApp) -> None:
    """Every handler, in one place. Commands answer new messages only: editing an old
    /follow or /broadcast does not run it again."""
    new_messages = filters.UpdateType.MESSAGE
    app.add_handler(TypeHandler(Update, language.choose_language), group=-2)
    app.add_handler(TypeHandler(Update, FloodGuard()), group=-1)
    commands = {
        "start": subscribe.start,
        "help": reader.help_command,
        "sections": subscribe.sections_command,
        ("follow", "subscribe"): subscribe.follow,
        ("unfollow", "unsubscribe"): subscribe.unfollow,
        "exclude": subscribe.exclude,
        "include": subscribe.include,
        "mysubs": subscribe.mysubs,
        "latest": lists.latest,
        "search": lists.search,
        "related": lists.related,
        "pause": choices.pause,
        "resume": choices.resume,
        "stop": choices.stop,
        "settings": choices.settings_command,
        "timezone": choices.timezone_command,
        "quiet": choices.quiet_command,
        "briefing": choices.briefing_command,
        "language": language.language_command,
        "broadcast": admin.broadcast_command,
        "broadcasts": admin.broadcasts_command,
        "stats": admin.stats_command,
        "feeds": feeds.feeds_command,
        "addfeed": feeds.addfeed_command,
        "removefeed": feeds.removefeed_command,
    }
    for names, callback in commands.items():
        app.add_handler(CommandHandler(names, callback, filters=new_messages))
    private = filters.ChatType.PRIVATE & new_messages
    app.add_handler(MessageHandler(private & filters.COMMAND, reader.unknown_command))
    app.add_handler(MessageHandler(private & filters.TEXT & ~filters.COMMAND, lists.plain_text))
    buttons = {
        "sec": subscribe.section_button,
        "unsub": subscribe.unsubscribe_button,
        "mode": subscribe.mode_button,
        "mute": subscribe.mute_button,
        "rel": lists.related_button,
        "set": choices.settings_button,
        "tz": choices.timezone_button,
        "quiet": choices.quiet_button,
        "brief": choices.briefing_button,
        "bc": admin.broadcast_button,
        "feed": feeds.feed_button,
        "lang": language.language_button,
    }
    for prefix, button in buttons.items():
        app.add_handler(CallbackQueryHandler(button, pattern=f"^{prefix}:"))
    app.add_handler(CallbackQueryHandler(reader.unknown_button))
    app.add_handler(InlineQueryHandler(InlineSearch()))
    app.add_handler(ChatMemberHandler(reader.my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
    app.add_error_handler(ErrorNotices())


async def set_command_menus(app: NewsApp, settings: Settings) -> None:
    """Readers' menu for everyone, in each shipped language (Telegram shows the one of the
    user's language, else the one without a language: the newsroom's); admins get theirs per
    chat (with the admin commands), in their chat's language (else the newsroom's)."""
    for lang in (None, *i18n.languages()):
        tr = i18n.translator(lang or settings.language)
        try:
            await app.bot.set_my_commands(
                [BotCommand(name, tr.gettext(text)) for name, text in READER_COMMANDS],
                scope=BotCommandScopeDefault(), language_code=lang,
            )
        except TelegramError as exc:
            log.warning("command menu not set language=%s error=%s", lang or "default", exc)
    for admin_id in sorted(settings.admin_ids):
        tr = i18n.translator(await _chat_language(app, admin_id) or settings.language)
        admin_menu = [BotCommand(name, tr.gettext(text)) for name, text in (*READER_COMMANDS, *admin.MENU)]
        try:
            await app.bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin_id))
        except TelegramError as exc:
            # Telegram refuses a chat scope until that admin has opened a chat with the bot.
            log.warning("admin menu not set user_id=%d error=%s", admin_id, exc)


async def _chat_language(app: NewsApp, chat_id: int) -> str | None:
    """An admin's own chat's language, when the chat has one (kept at first contact, or
    chosen with /language)."""
    if not app.bot_data.opened:
        return None
    chat = await chats.get_chat(app.bot_data.services.db, chat_id)
    return chat.language if chat is not None else None


class WebhookOptions(TypedDict):
    listen: str
    port: int
    url_path: str
    webhook_url: str
    secret_token: str
    allowed_updates: list[str]


def webhook_options(settings: Settings) -> WebhookOptions:
    """Arguments for `Updater.start_webhook`, shared by the bot and its tests.

    The local path is the public URL's path, so a proxy that forwards the path as is needs
    no rewriting. Telegram sends the secret in X-Telegram-Bot-Api-Secret-Token; PTB answers
    403 to every request without it.
    """
    if not settings.webhook_url or not settings.webhook_secret:
        raise ValueError("webhook mode needs NEWSBOT_WEBHOOK_URL and NEWSBOT_WEBHOOK_SECRET")
    return WebhookOptions(
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        url_path=urlsplit(settings.webhook_url).path.strip("/"),
        webhook_url=settings.webhook_url,
        secret_token=settings.webhook_secret,
        allowed_updates=list(Update.ALL_TYPES),
    )

