"""Reader commands: thin handlers that parse, call one operation, render and reply."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from telegram import (
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.error import BadRequest

from bot import readers
from bot.callbacks import pack, unpack
from bot.keywords import MAX_KEYWORD_LEN, MIN_KEYWORD_LEN, parse_keywords
from bot.pipeline.parse import canonical_url
from bot.readers import Outcome
from bot.render import (
    article_list,
    echo,
    esc,
    fit_lines,
    join_names,
    reason_name,
    subscription_name,
)
from bot.services import find_section
from storage import articles, chats, outbox, subscriptions
from storage.models import Article, Section

if TYPE_CHECKING:
    from bot.app import NewsContext

log = logging.getLogger(__name__)

LATEST_DEFAULT = 5
LATEST_MAX = 20
SEARCH_MAX = 10
RELATED_MAX = 5
# Ids in callback data are SQLite rowids; anything larger is not ours (and would not bind).
MAX_ROWID = 2**63 - 1
STALE_BUTTON = "This button is no longer valid."
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

USAGE = {
    "follow": "Usage: /follow <keyword>[, <keyword>…]\nExample: /follow drones, \"north korea\"",
    "unfollow": "Usage: /unfollow <keyword>\nExample: /unfollow drones",
    "latest": "Usage: /latest [section] [number]\nExample: /latest sports 10 (at most {max})",
    "search": "Usage: /search <words>\nExample: /search ukraine ceasefire",
    "related": "Usage: /related <words or a story's link>\nExample: /related drones russia",
}

HELP = """<b>newsbot</b> sends you the news you choose, as soon as it is published.

/sections — choose sections ({sections})
/follow <i>keyword</i> — alerts for a word or "a phrase" (also /subscribe)
/unfollow <i>keyword</i> — stop one (also /unsubscribe)
/mysubs — what you follow, with remove buttons
/latest [section] [n] — the newest stories
/search <i>words</i> — find stories
/related <i>words, headline or link</i> — stories related to a topic or story
/pause and /resume — hold alerts (commands still work)
/settings — pause, link previews, combined messages
/stop — forget me and delete my data
Keywords: {min}–{max} characters, whole words, accents ignored (malmo finds Malmö), plurals found (drone finds drones). Up to {limit} subscriptions per chat."""


# --- small helpers -------------------------------------------------------------------------


async def _reply(update: Update, text: str, keyboard: InlineKeyboardMarkup | None = None) -> None:
    message = update.effective_message
    if message is not None:
        await message.reply_text(
            text, parse_mode=ParseMode.HTML, reply_markup=keyboard,
            link_preview_options=NO_PREVIEW, do_quote=False,
        )


def _arg_text(update: Update) -> str:
    """Everything after the command (and its @botname), as typed."""
    message = update.effective_message
    text = (message.text or message.caption or "") if message else ""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def _register(update: Update, context: NewsContext) -> int | None:
    chat = update.effective_chat
    if chat is None:
        return None
    title = chat.title or chat.username or chat.first_name
    await readers.register_chat(context.services, chat.id, chat.type, title)
    return chat.id


async def _may_manage(update: Update, context: NewsContext) -> bool:
    """In groups only the group's admins change what the group follows."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is None or chat.type == Chat.PRIVATE:
        return True
    if message is not None and message.sender_chat is not None and message.sender_chat.id == chat.id:
        return True  # an anonymous admin posting as the group
    if user is None:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


async def _refuse_non_admin(update: Update, context: NewsContext) -> bool:
    if await _may_manage(update, context):
        return False
    text = "Only this group's admins can change its subscriptions."
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    else:
        await _reply(update, esc(text))
    return True


def _has_words(text: str) -> bool:
    return re.search(r"[^\W_]", text) is not None


def _callback_ids(data: str | None, prefix: str, count: int) -> list[int] | None:
    """`count` non-negative ids after `prefix`, or None for data that is not ours."""
    parts = unpack(data, prefix, count)
    if parts is None or not all(re.fullmatch(r"[0-9]{1,19}", p) for p in parts):
        return None
    ids = [int(p) for p in parts]
    return ids if all(i <= MAX_ROWID for i in ids) else None


def _sections_text(sections: tuple[Section, ...]) -> str:
    return ", ".join(s.name for s in sections)


async def section_keyboard(context: NewsContext, chat_id: int) -> InlineKeyboardMarkup:
    services = context.services
    subscribed = {
        s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == "section"
    }
    buttons = [
        InlineKeyboardButton(("✅ " if s.slug in subscribed else "") + s.name, callback_data=pack("sec", s.slug))
        for s in services.sections
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    return InlineKeyboardMarkup(rows)


# --- /start, /help, /sections --------------------------------------------------------------


async def start(update: Update, context: NewsContext) -> None:
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    payload = context.args[0] if context.args else ""
    if payload:
        if await _refuse_non_admin(update, context):
            return
        await _deep_link(update, context, chat_id, payload)
        return
    text = (
        "Welcome to <b>newsbot</b>! Pick the sections you want alerts from — tap again to remove. "
        "Follow words with /follow, e.g. <code>/follow drones</code>. /help lists everything."
    )
    await _reply(update, text, await section_keyboard(context, chat_id))


async def _deep_link(update: Update, context: NewsContext, chat_id: int, payload: str) -> None:
    services = context.services
    if payload.startswith("kw-"):
        keyword = payload[3:].replace("_", " ")
        report = await readers.follow(services, chat_id, f'"{keyword}"')
        await _reply(update, _follow_text(report, services.settings.max_subscriptions))
        return
    section = find_section(services.sections, payload)
    if section is None:
        await _reply(update, f"Welcome! Unknown section “{echo(payload, 40)}”. "
                             f"Sections: {esc(_sections_text(services.sections))}.",
                     await section_keyboard(context, chat_id))
        return
    outcome = await readers.add(services, chat_id, "section", section.slug, section.slug)
    text = {
        Outcome.ADDED: f"Welcome! You now get alerts from <b>{esc(section.name)}</b>.",
        Outcome.EXISTS: f"Welcome back! You already follow <b>{esc(section.name)}</b>.",
        Outcome.LIMIT: _limit_text(services.settings.max_subscriptions),
    }[outcome]
    await _reply(update, text, await section_keyboard(context, chat_id))


async def help_command(update: Update, context: NewsContext) -> None:
    settings = context.services.settings
    await _reply(
        update,
        HELP.format(
            sections=esc(_sections_text(context.services.sections)), min=MIN_KEYWORD_LEN,
            max=MAX_KEYWORD_LEN, limit=settings.max_subscriptions,
        ),
    )


async def sections_command(update: Update, context: NewsContext) -> None:
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    await _reply(update, "Your sections — tap to add or remove:", await section_keyboard(context, chat_id))


async def section_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "sec", 1)
    section = find_section(context.services.sections, parts[0]) if parts else None
    if section is None or update.effective_chat is None:
        await query.answer(STALE_BUTTON)
        return
    if await _refuse_non_admin(update, context):
        return
    chat_id = await _register(update, context)
    assert chat_id is not None
    outcome = await readers.toggle_section(context.services, chat_id, section.slug)
    notice = {
        Outcome.ADDED: f"Added {section.name}",
        Outcome.REMOVED: f"Removed {section.name}",
        Outcome.EXISTS: f"You already follow {section.name}",
        Outcome.LIMIT: f"Limit reached: at most {context.services.settings.max_subscriptions} subscriptions",
    }.get(outcome, "")
    # The message changes before the spinner stops: once the reader sees the notice, the
    # keyboard shows the new state.
    if outcome in (Outcome.ADDED, Outcome.REMOVED):
        await _edit_markup(query, await section_keyboard(context, chat_id))
    await query.answer(notice)


async def _edit_markup(query: CallbackQuery, keyboard: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_reply_markup(reply_markup=keyboard)
    except BadRequest as exc:
        if "not modified" not in exc.message.casefold():
            raise


# --- /follow, /unfollow, /mysubs -----------------------------------------------------------


def _limit_text(limit: int) -> str:
    return f"You have reached the limit of {limit} subscriptions (sections and keywords together). Remove one with /mysubs first."


def _follow_text(report: readers.FollowReport, limit: int) -> str:
    lines = []
    if report.added:
        lines.append("Following " + join_names(report.added) + ". You will get an alert for every new story that mentions them.")
    if report.existing:
        lines.append("Already following " + join_names(report.existing) + ".")
    if report.over_limit:
        lines.append("Not added: " + join_names(report.over_limit) + ". " + esc(_limit_text(limit)))
    # Refusals last: there can be many, and the cut ("…and N more") should fall on them.
    lines.extend(esc(r) for r in report.refused)
    return fit_lines(lines) if lines else esc(USAGE["follow"])


async def follow(update: Update, context: NewsContext) -> None:
    text = _arg_text(update)
    if not text:
        await _reply(update, esc(USAGE["follow"]))
        return
    if await _refuse_non_admin(update, context):
        return
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    report = await readers.follow(context.services, chat_id, text)
    await _reply(update, _follow_text(report, context.services.settings.max_subscriptions))


async def unfollow(update: Update, context: NewsContext) -> None:
    text = _arg_text(update)
    if not text:
        await _reply(update, esc(USAGE["unfollow"]))
        return
    if await _refuse_non_admin(update, context):
        return
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    report = await readers.unfollow(context.services, chat_id, text)
    lines = []
    if report.removed:
        lines.append("Stopped: " + join_names(report.removed) + ".")
    if report.missing:
        lines.append("You do not follow: " + join_names(report.missing) + ". See /mysubs.")
    # Text with no keyword in it at all (only quotes or commas) gets the usage.
    await _reply(update, "\n".join(lines) or esc(USAGE["unfollow"]))


async def _mysubs_message(context: NewsContext, chat_id: int) -> tuple[str, InlineKeyboardMarkup | None]:
    services = context.services
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    names = services.section_names
    sections = [s for s in subs if s.kind == "section"]
    keywords = [s for s in subs if s.kind == "keyword"]
    chat = await chats.get_chat(services.db, chat_id)
    if not subs:
        return "You follow nothing yet. Pick sections with /sections or follow a word with /follow.", None
    lines = [f"<b>Your subscriptions</b> ({len(subs)} of {services.settings.max_subscriptions})"]
    if sections:
        lines.append("Sections: " + ", ".join(esc(names.get(s.value, s.value)) for s in sections))
    if keywords:
        lines.append("Keywords: " + ", ".join(esc(s.value) for s in keywords))
    if chat is not None and chat.paused:
        lines.append("<i>Alerts are paused — /resume to get them again.</i>")
    lines.append("Tap a button to remove it.")
    buttons = [
        [InlineKeyboardButton(f"✖ {subscription_name(s.kind, s.value, names)}"[:60], callback_data=pack("unsub", s.id))]
        for s in subs
    ]
    return "\n".join(lines), InlineKeyboardMarkup(buttons)


async def mysubs(update: Update, context: NewsContext) -> None:
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    text, keyboard = await _mysubs_message(context, chat_id)
    await _reply(update, text, keyboard)


async def unsubscribe_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    ids = _callback_ids(query.data, "unsub", 1)
    chat = update.effective_chat
    if ids is None or chat is None:
        await query.answer(STALE_BUTTON)
        return
    if await _refuse_non_admin(update, context):
        return
    services = context.services
    sub = await subscriptions.get_subscription(services.db, ids[0])
    if sub is None or sub.chat_id != chat.id:
        notice = "Already removed."
    else:
        await readers.remove(services, chat.id, sub.kind, sub.value)
        name = subscription_name(sub.kind, sub.value, services.section_names)
        notice = f"Removed {name}"[:200]
    # The list is redrawn before the notice, so what the reader sees next is current.
    text, keyboard = await _mysubs_message(context, chat.id)
    await _edit_text(query, text, keyboard)
    await query.answer(notice)


async def _edit_text(query: CallbackQuery, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=keyboard,
                                      link_preview_options=NO_PREVIEW)
    except BadRequest as exc:
        if "not modified" not in exc.message.casefold():
            raise


async def mute_button(update: Update, context: NewsContext) -> None:
    """Mute under an alert: stop the keyword or section that made it."""
    query = update.callback_query
    assert query is not None
    ids = _callback_ids(query.data, "mute", 2)
    chat = update.effective_chat
    if ids is None or chat is None:
        await query.answer(STALE_BUTTON)
        return
    if await _refuse_non_admin(update, context):
        return
    services = context.services
    outbox_id, index = ids
    reasons = await outbox.get_reasons(services.db, outbox_id, chat.id)
    if reasons is None or index >= len(reasons):
        await query.answer(STALE_BUTTON)
        return
    reason = reasons[index]
    name = reason_name(reason, services.section_names)
    outcome = await readers.mute_reason(services, chat.id, reason)
    if outcome is Outcome.REMOVED:
        await query.answer(f"Muted {name}. /mysubs shows what is left."[:200])
    else:
        await query.answer(f"{name} was already muted."[:200])


# --- /latest, /search, /related -----------------------------------------------------------


async def latest(update: Update, context: NewsContext) -> None:
    services = context.services
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    usage = esc(USAGE["latest"].format(max=LATEST_MAX))
    args = context.args or []
    numbers = [w for w in args if re.fullmatch(r"[0-9]+", w)]
    words = [w for w in args if w not in numbers]
    # At most one section and one number, in either order.
    if len(numbers) > 1 or len(words) > 1:
        await _reply(update, usage)
        return
    count = LATEST_DEFAULT
    if numbers:
        # Compared as text first: a thousand-digit "number" is not worth converting.
        count = int(numbers[0]) if len(numbers[0]) <= 3 else 0
        if not 1 <= count <= LATEST_MAX:
            await _reply(update, esc(f"Give a number from 1 to {LATEST_MAX}.\n") + usage)
            return
    section: Section | None = None
    if words:
        section = find_section(services.sections, words[0])
        if section is None:
            await _reply(update, f"Unknown section “{echo(words[0], 40)}”. "
                                 f"Sections: {esc(_sections_text(services.sections))}.\n{usage}")
            return
    if section is not None:
        wanted: list[str] | None = [section.slug]
        title = f"<b>Latest in {esc(section.name)}</b>"
    else:
        mine = [s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == "section"]
        wanted = mine or None
        title = "<b>Latest in your sections</b>" if mine else "<b>Latest news</b>"
    found = await articles.latest(services.db, wanted, limit=count)
    await _reply(update, article_list(title, found, services.section_names, empty="No stories yet."))


async def search(update: Update, context: NewsContext) -> None:
    text = _arg_text(update)
    if not _has_words(text):
        await _reply(update, esc(USAGE["search"]))
        return
    services = context.services
    found = await articles.search(services.db, text[:200], limit=SEARCH_MAX)
    title = f"<b>Search: {echo(text)}</b>"
    await _reply(update, article_list(title, found, services.section_names, empty="Nothing found. Try fewer or other words."))


async def related(update: Update, context: NewsContext) -> None:
    text = _arg_text(update)
    if not _has_words(text):
        await _reply(update, esc(USAGE["related"]))
        return
    services = context.services
    story: Article | None = None
    if re.match(r"^https?://\S+$", text):
        story = await articles.find_by_url(services.db, canonical_url(text)) or await articles.find_by_url(services.db, text)
        if story is None:
            await _reply(update, esc("I don't have that story. Try /related with a few words instead."))
            return
    else:
        # A pasted headline means that story: the same answer as its Related button.
        story = await articles.find_by_title(services.db, text[:500])
    await _reply(update, await _related_text(context, story, text))


async def _related_text(context: NewsContext, story: Article | None, words: str) -> str:
    services = context.services
    if story is not None:
        found = await articles.related(
            services.db, story.title, limit=RELATED_MAX, exclude_id=story.id, phrases=story.tags
        )
        title = f"<b>Related to: {echo(story.title, 200)}</b>"
    else:
        # As with /follow, "quoted words" (or a comma-separated part) are one phrase.
        parts = parse_keywords(words[:200])
        phrases = [p for p in parts if len(p.split()) > 1]
        single = " ".join(p for p in parts if len(p.split()) == 1)
        found = await articles.related(services.db, single, limit=RELATED_MAX, phrases=phrases)
        title = f"<b>Related: {echo(words)}</b>"
    return article_list(title, found, services.section_names, empty="No related stories yet.")


async def related_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    ids = _callback_ids(query.data, "rel", 1)
    story = await articles.get_article_by_rowid(context.services.db, ids[0]) if ids else None
    if story is None:
        await query.answer("This story is no longer available.")
        return
    await query.answer()
    await _reply(update, await _related_text(context, story, ""))


# --- /pause, /resume, /stop, /settings ------------------------------------------------------


async def pause(update: Update, context: NewsContext) -> None:
    if await _refuse_non_admin(update, context):
        return
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    await readers.set_paused(context.services, chat_id, True)
    await _reply(update, "Alerts paused. Commands still work; /resume to get alerts again.")


async def resume(update: Update, context: NewsContext) -> None:
    if await _refuse_non_admin(update, context):
        return
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    await readers.set_paused(context.services, chat_id, False)
    await _reply(update, "Alerts resumed.")


async def stop(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None or await _refuse_non_admin(update, context):
        return
    await readers.forget(context.services, chat.id)
    await _reply(update, "Done: your subscriptions and data are deleted and no more alerts will come. /start to begin again.")


SETTINGS_OPTIONS = {"paused": "Alerts", "link_previews": "Link previews", "combine": "Combine bursts"}


async def _settings_message(context: NewsContext, chat_id: int) -> tuple[str, InlineKeyboardMarkup]:
    services = context.services
    chat = await chats.get_chat(services.db, chat_id)
    assert chat is not None
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    n_sections = sum(1 for s in subs if s.kind == "section")
    lines = [
        "<b>Settings</b>",
        f"Alerts: {'paused' if chat.paused else 'on'}",
        f"Link previews: {'on' if chat.link_previews else 'off'}",
        f"Combine bursts into one message: {'on' if chat.combine else 'off'}",
        f"Following {n_sections} sections and {len(subs) - n_sections} keywords (/mysubs).",
    ]
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Resume alerts" if chat.paused else "Pause alerts", callback_data=pack("set", "paused"))],
            [InlineKeyboardButton(f"Link previews: turn {'off' if chat.link_previews else 'on'}", callback_data=pack("set", "link_previews"))],
            [InlineKeyboardButton(f"Combined messages: turn {'off' if chat.combine else 'on'}", callback_data=pack("set", "combine"))],
            [InlineKeyboardButton("Choose sections", callback_data=pack("set", "sections"))],
        ]
    )
    return "\n".join(lines), keyboard


async def settings_command(update: Update, context: NewsContext) -> None:
    chat_id = await _register(update, context)
    if chat_id is None:
        return
    text, keyboard = await _settings_message(context, chat_id)
    await _reply(update, text, keyboard)


async def settings_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "set", 1)
    option = parts[0] if parts else ""
    if option not in (*SETTINGS_OPTIONS, "sections") or update.effective_chat is None:
        await query.answer(STALE_BUTTON)
        return
    chat_id = await _register(update, context)
    assert chat_id is not None
    if option == "sections":
        await query.answer()
        await _reply(update, "Your sections — tap to add or remove:", await section_keyboard(context, chat_id))
        return
    if await _refuse_non_admin(update, context):
        return
    services = context.services
    chat = await chats.get_chat(services.db, chat_id)
    assert chat is not None
    if option == "paused":
        await readers.set_paused(services, chat_id, not chat.paused)
    else:
        await chats.set_option(services.db, chat_id, option, not getattr(chat, option))
    text, keyboard = await _settings_message(context, chat_id)
    await _edit_text(query, text, keyboard)
    await query.answer("Saved")


async def unknown_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    if query is not None:
        await query.answer(STALE_BUTTON)


# --- membership -----------------------------------------------------------------------------


async def my_chat_member(update: Update, context: NewsContext) -> None:
    """Blocked or removed: inactive at once. Unblocked or added back: active again."""
    change = update.my_chat_member
    if change is None:
        return
    chat = change.chat
    status = change.new_chat_member.status
    if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
        reason = "blocked the bot" if chat.type == Chat.PRIVATE else f"bot {status}"
        await readers.deactivate(context.services, chat.id, reason)
        log.info("chat inactive chat_id=%d reason=%s", chat.id, reason)
    elif status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER):
        await readers.register_chat(context.services, chat.id, chat.type, chat.title or chat.first_name)
        log.info("chat active chat_id=%d", chat.id)
