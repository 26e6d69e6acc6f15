"""build_app(settings): the Application with every handler and job registered in one place."""

from __future__ import annotations

import logging
from typing import Any, TypedDict
from urllib.parse import urlsplit

from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackContext,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
)

from bot.config import Settings
from bot.services import Services, open_services

log = logging.getLogger(__name__)

POLL_TICK_SECONDS = 5.0


class BotState:
    """Shared state of the running bot: set up in post_init, torn down in post_shutdown."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._services: Services | None = None
        self.dispatcher: Any = None
        self.health: Any = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("services are not open yet")
        return self._services

    @services.setter
    def services(self, value: Services) -> None:
        self._services = value


class NewsContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotState]):
    """The handlers' context: `context.services` is everything they may touch."""

    @property
    def services(self) -> Services:
        return self.bot_data.services

    @property
    def state(self) -> BotState:
        return self.bot_data


NewsApp = Application[ExtBot[None], NewsContext, dict[Any, Any], dict[Any, Any], BotState, Any]
CONTEXT_TYPES = ContextTypes(context=NewsContext, bot_data=BotState)


def build_app(settings: Settings) -> NewsApp:
    token = settings.require_token()
    app: NewsApp = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.api_url)
        .base_file_url(settings.api_url.removesuffix("/bot") + "/file/bot")
        .context_types(CONTEXT_TYPES)
        .concurrent_updates(16)
        .connect_timeout(10)
        .read_timeout(20)
        .write_timeout(20)
        .pool_timeout(10)
        .get_updates_read_timeout(40)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .build()
    )
    app.bot_data.settings = settings
    _register(app)
    return app


READER_COMMANDS = (
    ("start", "Start, and choose sections"),
    ("sections", "Choose sections"),
    ("follow", "Alerts for a keyword or phrase"),
    ("unfollow", "Stop a keyword"),
    ("mysubs", "What you follow"),
    ("latest", "Newest stories [section] [n]"),
    ("search", "Find stories"),
    ("related", "Related stories"),
    ("pause", "Hold alerts"),
    ("resume", "Get alerts again"),
    ("settings", "Pause, previews, combined messages"),
    ("help", "How to use newsbot"),
    ("stop", "Forget me"),
)


def _register(app: NewsApp) -> None:
    """Every handler and job, in one place."""
    from bot.commands import reader

    commands = {
        "start": reader.start,
        "help": reader.help_command,
        "sections": reader.sections_command,
        ("follow", "subscribe"): reader.follow,
        ("unfollow", "unsubscribe"): reader.unfollow,
        "mysubs": reader.mysubs,
        "latest": reader.latest,
        "search": reader.search,
        "related": reader.related,
        "pause": reader.pause,
        "resume": reader.resume,
        "stop": reader.stop,
        "settings": reader.settings_command,
    }
    for names, callback in commands.items():
        app.add_handler(CommandHandler(names, callback))
    buttons = {
        "sec": reader.section_button,
        "unsub": reader.unsubscribe_button,
        "mute": reader.mute_button,
        "rel": reader.related_button,
        "set": reader.settings_button,
    }
    for prefix, callback in buttons.items():
        app.add_handler(CallbackQueryHandler(callback, pattern=f"^{prefix}:"))
    # --- admin commands ---
    from bot.commands import admin

    admin_commands = {
        "broadcast": admin.broadcast_command,
        "broadcasts": admin.broadcasts_command,
        "stats": admin.stats_command,
        "feeds": admin.feeds_command,
        "addfeed": admin.addfeed_command,
        "removefeed": admin.removefeed_command,
    }
    for name, admin_callback in admin_commands.items():
        app.add_handler(CommandHandler(name, admin_callback))
    app.add_handler(CallbackQueryHandler(admin.broadcast_button, pattern="^bc:"))
    app.add_handler(CallbackQueryHandler(reader.unknown_button))
    app.add_handler(ChatMemberHandler(reader.my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
    app.add_error_handler(_on_error)


async def set_command_menus(app: NewsApp) -> None:
    """Readers' menu for everyone; admins get theirs per chat (see the admin commands)."""
    await app.bot.set_my_commands(
        [BotCommand(name, text) for name, text in READER_COMMANDS], scope=BotCommandScopeDefault()
    )
    from bot.commands.admin import MENU

    settings = app.bot_data.settings
    admin_menu = [BotCommand(name, text) for name, text in (*READER_COMMANDS, *MENU)]
    for admin_id in sorted(settings.admin_ids if settings else ()):
        try:
            await app.bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin_id))
        except TelegramError as exc:
            # Telegram refuses a chat scope until that admin has opened a chat with the bot.
            log.warning("admin menu not set user_id=%d error=%s", admin_id, exc)


async def _post_init(app: NewsApp) -> None:
    settings = app.bot_data.settings
    assert settings is not None
    services = await open_services(settings)
    state = app.bot_data
    state.services = services
    from bot.pipeline.deliver import Dispatcher
    from bot.pipeline.poll import enqueue_unmatched

    await set_command_menus(app)
    await enqueue_unmatched(services)
    from bot import broadcast

    unfinished = await broadcast.prepare_restart(services)  # before the dispatcher resends
    state.dispatcher = Dispatcher(services, app.bot)
    await state.dispatcher.start()
    assert app.job_queue is not None
    app.job_queue.run_repeating(
        _poll_job, interval=min(POLL_TICK_SECONDS, settings.poll_seconds), first=0.5, name="poll"
    )
    from bot.commands.admin import resume_broadcasts

    resume_broadcasts(app, unfinished)
    if settings.http_port is not None:
        from bot.health import HealthServer

        state.health = HealthServer(services, lambda: bool(state.dispatcher and state.dispatcher.alive))
        await state.health.start(settings.http_host, settings.http_port)


async def _poll_job(context: NewsContext) -> None:
    from bot.pipeline.poll import poll_due_feeds

    await poll_due_feeds(context.services)


async def _post_stop(app: NewsApp) -> None:
    state = app.bot_data
    if state.health is not None:
        await state.health.stop()
        state.health = None
    if state.dispatcher is not None:
        await state.dispatcher.stop(timeout=10)


async def _post_shutdown(app: NewsApp) -> None:
    state = app.bot_data
    if state._services is not None:
        await state._services.close()


async def _on_error(update: object, context: NewsContext) -> None:
    log.error("handler failed error=%s", context.error, exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            await context.bot.send_message(
                update.effective_chat.id, "Sorry, something went wrong. Please try again."
            )
        except Exception:  # the chat may be unreachable; the log already has the cause
            log.debug("error notice not sent chat_id=%s", update.effective_chat.id)


class WebhookOptions(TypedDict):
    listen: str
    port: int
    url_path: str
    webhook_url: str
    secret_token: str
    allowed_updates: list[str]


def webhook_options(settings: Settings) -> WebhookOptions:
    """Arguments for `run_webhook` / `Updater.start_webhook`, shared by the bot and its tests.

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


def run_bot(settings: Settings) -> int:
    app = build_app(settings)
    if settings.webhook_url:
        app.run_webhook(**webhook_options(settings))
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0
