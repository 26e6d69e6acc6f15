"""Reader commands: thin handlers that parse, call one operation, render and reply.

Reading (/latest, /search, /related, /help, /sections, /mysubs, /settings, plain text,
buttons that only read) never registers a chat; /start and subscribing do (bot.readers).
"""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus, ChatType

from bot import localtime, readers
from bot.callbacks import pack, unpack
from bot.commands.common import (
    STALE_BUTTON,
    arg_text,
    callback_ids,
    edit_markup,
    edit_text,
    is_admin,
    refuse_non_admin,
    reply,
    sections_text,
    topic_of,
)
from bot.config import valid_timezone
from bot.context import NewsContext, Services, find_section
from bot.keywords import MAX_KEYWORD_LEN, MIN_KEYWORD_LEN, parse_keywords
from bot.pipeline.parse import canonical_url
from bot.readers import Outcome
from bot.render import (
    Rendered,
    article_list,
    echo,
    esc,
    fit_lines,
    format_clock,
    join_names,
    plural,
    reason_name,
    rows_of,
    subscription_name,
)
from bot.text import plain_line
from storage import articles, chats, outbox, subscriptions
from storage.models import Article, Chat, Section, Subscription, SubscriptionMode

log = logging.getLogger(__name__)

LATEST_DEFAULT = 5
LATEST_MAX = 20
SEARCH_MAX = 10
RELATED_MAX = 5
COMBINE_RULE = "more than 3 alerts due at once come as one message"
# Zones offered as buttons in /settings (any other: /timezone Area/City).
COMMON_ZONES = ("Europe/Stockholm", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
QUIET_PRESETS = ((22 * 60, 7 * 60), (23 * 60, 6 * 60))
BRIEFING_PRESETS = (7 * 60, 7 * 60 + 30, 18 * 60)

USAGE = {
    "follow": "Usage: /follow <keyword>[, <keyword>…]\nExample: /follow drones, \"north korea\"",
    "unfollow": "Usage: /unfollow <keyword>\nExample: /unfollow drones",
    "exclude": "Usage: /exclude <word>[, <word>…] — no alert, briefing entry or /latest story about it\nExample: /exclude football",
    "include": "Usage: /include <word> — undo /exclude\nExample: /include football",
    "latest": "Usage: /latest [section] [number]\nExample: /latest sports 10 (at most {max})",
    "search": "Usage: /search <words>\nExample: /search ukraine ceasefire",
    "related": "Usage: /related <words, a headline or a story's link>\nExample: /related drones russia",
    "timezone": "Usage: /timezone <Area/City>\nExample: /timezone Europe/London (or /timezone default)",
    "quiet": "Usage: /quiet <from>-<to> | off | hold | silent\nExample: /quiet 22:00-07:00",
    "briefing": "Usage: /briefing <time> [<time> <time>] | off\nExample: /briefing 07:30 (up to three a day)",
}

HELP = """<b>newsbot</b> sends you the news you choose, as soon as it is published.

/sections — choose sections ({sections})
/follow <i>keyword</i> — alerts for a word or "a phrase", e.g. /follow drones (also /subscribe)
/unfollow <i>keyword</i> — stop one (also /unsubscribe)
/exclude <i>word</i> — never a story about it, even from your sections, e.g. /exclude football; /include undoes it
/mysubs — what you follow and exclude, with remove buttons, instant or briefing-only
/latest [section] [n] — the newest stories, e.g. /latest sports 10
/search <i>words</i> — find stories (or just send me the words)
/related <i>words, headline or link</i> — stories related to a topic or story
/pause — hold alerts (the newest 48 hours are kept); /resume sends them as one message
/quiet 22:00-07:00 — hold alerts at night (or deliver them silently: /quiet silent); /quiet off
/briefing 07:30 — one message a day (up to three) with your stories since the last one; /briefing off
/timezone Europe/London — the zone your times are shown in
/settings — everything above with buttons; also link previews and combining bursts ({combine})
/stop — forget me and delete my data
Keywords: {min}–{max} characters, whole words, accents ignored (malmo finds Malmö), plurals found (drone finds drones). Up to {limit} subscriptions per chat."""

ADMIN_HELP = """

<b>For admins</b>
/broadcast <i>text</i> (or @section <i>text</i>, or as a reply) — a message to every reader, with a preview
/broadcasts — recent broadcasts
/stats — readers, subscriptions, alerts, backlog
/feeds — every feed and how it is doing
/addfeed <i>URL section</i> — add a feed
/removefeed <i>id</i> — stop a feed"""


# --- who is asking -------------------------------------------------------------------------


def _title(update: Update) -> str | None:
    chat = update.effective_chat
    return (chat.title or chat.username or chat.first_name) if chat else None


async def _join(update: Update, context: NewsContext) -> Chat | None:
    chat = update.effective_chat
    if chat is None:
        return None
    return await readers.join(context.services, chat.id, chat.type, _title(update))


async def _known(update: Update, context: NewsContext) -> Chat | None:
    """The chat's row for a settings change, made if needed (not a reader by that)."""
    chat = update.effective_chat
    if chat is None:
        return None
    return await readers.known_chat(context.services, chat.id, chat.type, _title(update))


async def _existing(update: Update, context: NewsContext) -> Chat | None:
    chat = update.effective_chat
    return await chats.get_chat(context.services.db, chat.id) if chat else None


def _zone_of(services: Services, chat: Chat | None) -> str:
    return (chat.timezone if chat else None) or services.settings.timezone


# --- /start, /help, /sections --------------------------------------------------------------


def _channel_lines(sections: tuple[Section, ...]) -> str:
    with_channel = [s for s in sections if s.channel and s.channel.startswith("@")]
    if not with_channel:
        return ""
    return "\n" + "\n".join(f"{esc(s.name)} — or join {esc(s.channel or '')}" for s in with_channel)


async def section_keyboard(context: NewsContext, chat_id: int) -> InlineKeyboardMarkup:
    services = context.services
    subscribed = {
        s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == "section"
    }
    buttons = [
        InlineKeyboardButton(("✅ " if s.slug in subscribed else "") + s.name, callback_data=pack("sec", s.slug))
        for s in services.sections
    ]
    return InlineKeyboardMarkup(rows_of(buttons))


async def start(update: Update, context: NewsContext) -> None:
    chat = await _join(update, context)
    if chat is None:
        return
    payload = context.args[0] if context.args else ""
    if payload:
        if await refuse_non_admin(update, context):
            return
        await _deep_link(update, context, chat.id, payload)
        return
    services = context.services
    text = (
        "Welcome to <b>newsbot</b>! Pick the sections you want alerts from — tap again to remove. "
        "Follow words with /follow, e.g. <code>/follow drones</code>. /help lists everything."
        + _channel_lines(services.sections)
    )
    await reply(update, text, await section_keyboard(context, chat.id))


async def _deep_link(update: Update, context: NewsContext, chat_id: int, payload: str) -> None:
    services = context.services
    keyboard = await section_keyboard(context, chat_id)
    if payload.startswith("kw-"):
        keyword = payload[3:].replace("_", " ")
        report = await readers.follow(services, chat_id, f'"{keyword}"')
        body = _follow_text(report, services.settings.max_subscriptions)
        await reply(update, f"Welcome to <b>newsbot</b>! {body}\nPick sections too, if you like:", keyboard)
        return
    section = find_section(services.sections, payload)
    if section is None:
        await reply(update, f"Welcome to <b>newsbot</b>! Unknown section “{echo(payload, 40)}”. "
                            f"Sections: {esc(sections_text(services.sections))}.", keyboard)
        return
    outcome = await readers.add(services, chat_id, "section", section.slug, section.slug)
    text = {
        Outcome.ADDED: f"Welcome to <b>newsbot</b>! You now get alerts from <b>{esc(section.name)}</b>.",
        Outcome.EXISTS: f"Welcome back! You already follow <b>{esc(section.name)}</b>.",
        Outcome.LIMIT: esc(_limit_text(services.settings.max_subscriptions)),
    }.get(outcome, "")
    await reply(update, text, await section_keyboard(context, chat_id))


def help_text(context: NewsContext, *, admin: bool) -> str:
    services = context.services
    text = HELP.format(
        sections=esc(sections_text(services.sections)), min=MIN_KEYWORD_LEN, max=MAX_KEYWORD_LEN,
        limit=services.settings.max_subscriptions, combine=COMBINE_RULE,
    )
    return text + (ADMIN_HELP if admin else "")


async def help_command(update: Update, context: NewsContext) -> None:
    await reply(update, help_text(context, admin=is_admin(update, context)))


async def sections_command(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    services = context.services
    if not services.sections:
        await reply(update, "No sections are configured yet. Follow words with /follow meanwhile.")
        return
    where = (
        "Tap a section to send its alerts to <b>this topic</b> (tap again to stop it):"
        if topic_of(update) is not None
        else "Your sections — tap to add or remove:"
    )
    await reply(update, where + _channel_lines(services.sections), await section_keyboard(context, chat.id))


async def section_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "sec", 1)
    section = find_section(context.services.sections, parts[0]) if parts else None
    if section is None or update.effective_chat is None:
        await query.answer(STALE_BUTTON)
        return
    if await refuse_non_admin(update, context):
        return
    chat = await _join(update, context)
    assert chat is not None
    topic = topic_of(update)
    outcome = await readers.toggle_section(context.services, chat.id, section.slug, thread_id=topic)
    here = " in this topic" if topic is not None else ""
    notice = {
        Outcome.ADDED: f"Added {section.name}{here}",
        Outcome.REMOVED: f"Removed {section.name}",
        Outcome.MOVED: f"{section.name} alerts now come to this topic",
        Outcome.EXISTS: f"You already follow {section.name}",
        Outcome.LIMIT: f"Limit reached: at most {context.services.settings.max_subscriptions} subscriptions",
    }.get(outcome, "")
    # The message changes before the spinner stops: once the reader sees the notice, the
    # keyboard shows the new state.
    if outcome in (Outcome.ADDED, Outcome.REMOVED):
        await edit_markup(query, await section_keyboard(context, chat.id))
    await query.answer(notice[:200])


# --- /follow, /unfollow, /exclude, /include, /mysubs -----------------------------------------


def _limit_text(limit: int) -> str:
    return (f"You have reached the limit of {limit} subscriptions (sections and keywords together). "
            "Remove one with /mysubs first.")


def _follow_text(report: readers.FollowReport, limit: int) -> str:
    lines = []
    if report.added:
        lines.append("Following " + join_names(report.added) + ". You will get an alert for every new story that mentions them.")
    if report.replaced:
        lines.append("Following " + join_names(report.replaced) + " — you had excluded it before; that exclusion is removed.")
    if report.existing:
        lines.append("Already following " + join_names(report.existing) + ".")
    if report.over_limit:
        lines.append("Not added: " + join_names(report.over_limit) + ". " + esc(_limit_text(limit)))
    # Refusals last: there can be many, and the cut ("…and N more") should fall on them.
    lines.extend(esc(r) for r in report.refused)
    return fit_lines(lines) if lines else esc(USAGE["follow"])


def _exclude_text(report: readers.FollowReport, limit: int) -> str:
    lines = []
    if report.added:
        lines.append("Excluded " + join_names(report.added) + ": no alert, briefing entry or /latest story about it, "
                     "even from your sections. /include undoes it.")
    if report.replaced:
        lines.append("Excluded " + join_names(report.replaced) + " — you followed it before; that keyword is removed.")
    if report.existing:
        lines.append("Already excluded: " + join_names(report.existing) + ".")
    if report.over_limit:
        lines.append("Not excluded: " + join_names(report.over_limit) + f". At most {limit} excluded words.")
    lines.extend(esc(r) for r in report.refused)
    return fit_lines(lines) if lines else esc(USAGE["exclude"])


async def _change_argument(update: Update, context: NewsContext, usage: str) -> str | None:
    """The argument of a command that changes this chat's settings, when it has one and the
    sender may change them; otherwise the usage or the refusal is the answer (None)."""
    text = arg_text(update)
    if not text:
        await reply(update, esc(usage))
        return None
    if await refuse_non_admin(update, context):
        return None
    return text


async def _subscribe(update: Update, context: NewsContext, usage: str) -> tuple[int, str] | None:
    text = await _change_argument(update, context, usage)
    if text is None:
        return None
    chat = await _join(update, context)
    return (chat.id, text) if chat else None


async def follow(update: Update, context: NewsContext) -> None:
    found = await _subscribe(update, context, USAGE["follow"])
    if found is not None:
        report = await readers.follow(context.services, found[0], found[1])
        await reply(update, _follow_text(report, context.services.settings.max_subscriptions))


async def exclude(update: Update, context: NewsContext) -> None:
    text = await _change_argument(update, context, USAGE["exclude"])
    if text is None:
        return
    chat = await _known(update, context)
    if chat is not None:
        report = await readers.follow(context.services, chat.id, text, kind="exclude")
        await reply(update, _exclude_text(report, context.services.settings.max_subscriptions))


async def _remove(update: Update, context: NewsContext, kind: str, usage: str) -> None:
    text = await _change_argument(update, context, usage)
    if text is None:
        return
    chat = update.effective_chat
    if chat is None:
        return
    report = await readers.unfollow(context.services, chat.id, text, kind="exclude" if kind == "exclude" else "keyword")
    lines = []
    if report.removed:
        verb = "No longer excluded" if kind == "exclude" else "Stopped"
        lines.append(f"{verb}: " + join_names(report.removed) + ".")
    if report.missing:
        what = "You do not exclude" if kind == "exclude" else "You do not follow"
        lines.append(f"{what}: " + join_names(report.missing) + ". See /mysubs.")
    # Text with no keyword in it at all (only quotes or commas) gets the usage.
    await reply(update, "\n".join(lines) or esc(usage))


async def unfollow(update: Update, context: NewsContext) -> None:
    await _remove(update, context, "keyword", USAGE["unfollow"])


async def include(update: Update, context: NewsContext) -> None:
    await _remove(update, context, "exclude", USAGE["include"])


async def _mysubs_message(context: NewsContext, chat_id: int) -> tuple[str, InlineKeyboardMarkup | None]:
    services = context.services
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    names = services.section_names
    chat = await chats.get_chat(services.db, chat_id)
    if not subs:
        return "You follow nothing yet. Pick sections with /sections or follow a word with /follow.", None
    followed = [s for s in subs if s.kind != "exclude"]
    lines = [f"<b>Your subscriptions</b> ({len(followed)} of {services.settings.max_subscriptions})"]
    for kind, label in (("section", "Sections"), ("keyword", "Keywords"), ("exclude", "Never about")):
        items = [s for s in subs if s.kind == kind]
        if items:
            shown = ", ".join(
                esc(subscription_name(s.kind, s.value, names)) + (" (briefing only)" if s.mode == "briefing" else "")
                for s in items
            )
            lines.append(f"{label}: {shown}")
    if chat is not None and chat.paused:
        lines.append("<i>Alerts are paused — /resume to get them again.</i>")
    lines.append("✖ removes one; ⚡/📰 switches between instant alerts and your briefing only.")
    buttons: list[list[InlineKeyboardButton]] = []
    for s in subs:
        name = subscription_name(s.kind, s.value, names)
        row = [InlineKeyboardButton(f"✖ {'not ' if s.kind == 'exclude' else ''}{name}"[:60], callback_data=pack("unsub", s.id))]
        if s.kind != "exclude":
            label = "📰 Briefing only" if s.mode == "briefing" else "⚡ Instant"
            row.append(InlineKeyboardButton(label, callback_data=pack("mode", s.id)))
        buttons.append(row)
    return fit_lines(lines), InlineKeyboardMarkup(buttons[:90])


async def mysubs(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    text, keyboard = await _mysubs_message(context, chat.id)
    await reply(update, text, keyboard)


async def _own_subscription(update: Update, context: NewsContext, prefix: str) -> Subscription | None:
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, prefix, 1)
    chat = update.effective_chat
    if ids is None or chat is None:
        await query.answer(STALE_BUTTON)
        return None
    if await refuse_non_admin(update, context):
        return None
    sub = await subscriptions.get_subscription(context.services.db, ids[0])
    if sub is None or sub.chat_id != chat.id:
        # The list on screen is out of date: show what is there now.
        text, keyboard = await _mysubs_message(context, chat.id)
        await edit_text(query, text, keyboard)
        await query.answer("Already removed.")
        return None
    return sub


async def unsubscribe_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    sub = await _own_subscription(update, context, "unsub")
    if sub is None:
        return
    services = context.services
    await readers.remove(services, sub.chat_id, sub.kind, sub.value)
    name = subscription_name(sub.kind, sub.value, services.section_names)
    # The list is redrawn before the notice, so what the reader sees next is current.
    text, keyboard = await _mysubs_message(context, sub.chat_id)
    await edit_text(query, text, keyboard)
    await query.answer(f"Removed {'exclusion of ' if sub.kind == 'exclude' else ''}{name}"[:200])


async def mode_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    sub = await _own_subscription(update, context, "mode")
    if sub is None or sub.kind == "exclude":
        return
    services = context.services
    mode: SubscriptionMode = "instant" if sub.mode == "briefing" else "briefing"
    await readers.set_mode(services, sub, mode)
    text, keyboard = await _mysubs_message(context, sub.chat_id)
    await edit_text(query, text, keyboard)
    name = subscription_name(sub.kind, sub.value, services.section_names)
    chat = await chats.get_chat(services.db, sub.chat_id)
    hint = "" if mode == "instant" or (chat and chat.briefings) else " Set a time with /briefing 07:30."
    await query.answer(f"{name}: {'instant alerts' if mode == 'instant' else 'in your briefing only'}.{hint}"[:200])


async def mute_button(update: Update, context: NewsContext) -> None:
    """Mute under an alert: stop the keyword or section that made it."""
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, "mute", 2)
    chat = update.effective_chat
    if ids is None or chat is None:
        await query.answer(STALE_BUTTON)
        return
    if await refuse_non_admin(update, context):
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


# --- /latest, /search, /related, plain text ----------------------------------------------------


async def latest(update: Update, context: NewsContext) -> None:
    services = context.services
    chat_id = update.effective_chat.id if update.effective_chat else None
    if chat_id is None:
        return
    usage = esc(USAGE["latest"].format(max=LATEST_MAX))
    args = context.args or []
    numbers = [w for w in args if re.fullmatch(r"[+-]?[0-9]+", w)]
    words = [w for w in args if w not in numbers]
    # At most one section and one number, in either order.
    if len(numbers) > 1 or len(words) > 1:
        await reply(update, usage)
        return
    count = LATEST_DEFAULT
    if numbers:
        # Compared as text first: a thousand-digit "number" is not worth converting.
        count = int(numbers[0]) if len(numbers[0]) <= 4 else 0
        if not 1 <= count <= LATEST_MAX:
            await reply(update, esc(f"Give a number from 1 to {LATEST_MAX}.\n") + usage)
            return
    section: Section | None = None
    if words:
        section = find_section(services.sections, words[0])
        if section is None:
            await reply(update, f"Unknown section “{echo(words[0], 40)}”. "
                                f"Sections: {esc(sections_text(services.sections))}.\n{usage}")
            return
    if section is not None:
        wanted: list[str] | None = [section.slug]
        title = f"<b>Latest in {esc(section.name)}</b>"
    else:
        mine = [s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == "section"]
        wanted = mine or None
        title = "<b>Latest in your sections</b>" if mine else "<b>Latest news</b>"
    chat = await chats.get_chat(services.db, chat_id)
    found = await articles.latest(
        services.db, wanted, limit=count, excluded=services.matcher.exclusions_of(chat_id)
    )
    await _list(update, context, chat, title, found, "No stories yet.")


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
        await reply(update, esc(USAGE["search"]))
        return
    await _search(update, context, text, f"<b>Search: {echo(text)}</b>")


async def _search(update: Update, context: NewsContext, text: str, title: str) -> None:
    found = await articles.search(context.services.db, text[:200], limit=SEARCH_MAX)
    await _list(update, context, await _existing(update, context), title, found,
                "Nothing found. Try fewer or other words.")


async def plain_text(update: Update, context: NewsContext) -> None:
    """Words sent to the bot in a private chat are a search, and the answer says so."""
    message = update.effective_message
    text = plain_line(message.text or "") if message else ""
    if not _has_words(text):
        await reply(update, "Send me a few words to search for, or see /help.")
        return
    await _search(update, context, text, f"<b>Searching for “{echo(text)}”</b>")


async def unknown_command(update: Update, context: NewsContext) -> None:
    message = update.effective_message
    command = (message.text or "").split(maxsplit=1)[0] if message else ""
    await reply(update, f"I don't know {echo(command, 40)}. /help lists what I can do.")


async def related(update: Update, context: NewsContext) -> None:
    text = arg_text(update)
    if not _has_words(text):
        await reply(update, esc(USAGE["related"]))
        return
    services = context.services
    story: Article | None = None
    if re.match(r"^https?://\S+$", text):
        story = await articles.find_by_url(services.db, canonical_url(text)) or await articles.find_by_url(services.db, text)
        if story is None:
            await reply(update, esc("I don't have that story. Try /related with a few words instead."))
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
        title = f"<b>Related to: {echo(story.title, 200)}</b>"
    else:
        # As with /follow, "quoted words" (or a comma-separated part) are one phrase.
        parts = parse_keywords(words[:200])
        phrases = [p for p in parts if len(p.split()) > 1]
        single = " ".join(p for p in parts if len(p.split()) == 1)
        found = await articles.related(services.db, single, limit=RELATED_MAX, phrases=phrases)
        title = f"<b>Related: {echo(words)}</b>"
    await _list(update, context, await _existing(update, context), title, found, "No related stories yet.")


async def related_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, "rel", 1)
    story = await articles.get_article_by_rowid(context.services.db, ids[0]) if ids else None
    if story is None:
        await query.answer("This story is no longer available.")
        return
    await query.answer()
    await _related(update, context, story, "")


# --- /pause, /resume, /stop ---------------------------------------------------------------------


NOT_A_READER = "You are not getting alerts yet — /start to begin."


async def pause(update: Update, context: NewsContext) -> None:
    if await refuse_non_admin(update, context):
        return
    chat = await _existing(update, context)
    if chat is None or not chat.active:
        await reply(update, NOT_A_READER)
        return
    if not await readers.pause(context.services, chat.id):
        await reply(update, "Alerts are already paused. /resume to get them again.")
        return
    await reply(update, "Alerts paused. New stories are kept (the newest 48 hours) and come as one "
                        "message when you /resume. Commands still work.")


async def resume(update: Update, context: NewsContext) -> None:
    if await refuse_non_admin(update, context):
        return
    chat = await _existing(update, context)
    if chat is None or not chat.active:
        await reply(update, NOT_A_READER)
        return
    resumed = await readers.resume(context.services, chat.id)
    if not resumed.was_paused:
        await reply(update, "Alerts are not paused: they come as stories appear.")
        return
    if resumed.released:
        text = (f"Alerts resumed. While you were away: {plural(resumed.released, 'story', 'stories')} — "
                "they follow in one message.")
    else:
        text = "Alerts resumed. Nothing came for you while you were away."
    if resumed.dropped:
        text += f" ({plural(resumed.dropped, 'older alert')} than 48 hours left out.)"
    await reply(update, text)


async def stop(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None or await refuse_non_admin(update, context):
        return
    await readers.forget(context.services, chat.id)
    await reply(update, "Done: your subscriptions, settings and queued alerts are deleted, and no "
                        "alerts or broadcasts will come. /start to begin again.")


# --- /settings and its parts: /timezone, /quiet, /briefing ------------------------------------


def _quiet_line(chat: Chat | None) -> str:
    if chat is None or chat.quiet_start is None or chat.quiet_end is None:
        return "Quiet hours: off"
    span = f"{localtime.hhmm(chat.quiet_start)}–{localtime.hhmm(chat.quiet_end)}"
    how = ("alerts held and sent as one message when they end" if chat.quiet_mode == "hold"
           else "alerts delivered silently")
    return f"Quiet hours: {span}, {how}"


def _briefing_line(services: Services, chat: Chat | None) -> str:
    if chat is None or not chat.briefings:
        return "Briefings: off"
    times = ", ".join(localtime.hhmm(t) for t in chat.briefings)
    nxt = ""
    if chat.next_briefing_at:
        nxt = f" — next at {format_clock(chat.next_briefing_at, services.chat_zone(chat.timezone))}"
    return f"Briefings: {times}{nxt}"


async def _settings_message(context: NewsContext, chat_id: int) -> tuple[str, InlineKeyboardMarkup]:
    services = context.services
    chat = await chats.get_chat(services.db, chat_id)
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    counts = {k: sum(1 for s in subs if s.kind == k) for k in ("section", "keyword", "exclude")}
    zone = _zone_of(services, chat)
    paused = bool(chat and chat.paused)
    lines = [
        "<b>Settings</b>",
        ("Alerts: paused" if paused else "Alerts: on") if chat and chat.active else "Alerts: not started — /start",
        f"Time zone: {esc(zone)} (now {format_clock(services.clock.time(), services.chat_zone(zone))})",
        _quiet_line(chat),
        _briefing_line(services, chat),
        f"Combine bursts: {'on' if chat is None or chat.combine else 'off'} — {COMBINE_RULE}",
        f"Link previews: {'on' if chat and chat.link_previews else 'off'}",
        f"Following {plural(counts['section'], 'section')}, {plural(counts['keyword'], 'keyword')}; "
        f"{plural(counts['exclude'], 'excluded word')} (/mysubs).",
    ]
    quiet_buttons = [
        InlineKeyboardButton(f"Quiet {localtime.hhmm(a)}–{localtime.hhmm(b)}", callback_data=pack("quiet", f"{a}-{b}"))
        for a, b in QUIET_PRESETS
    ] + [InlineKeyboardButton("Quiet off", callback_data=pack("quiet", "off"))]
    mode = chat.quiet_mode if chat else "hold"
    briefing_buttons = [
        InlineKeyboardButton(("✅ " if chat and t in chat.briefings else "") + f"Briefing {localtime.hhmm(t)}",
                             callback_data=pack("brief", t))
        for t in BRIEFING_PRESETS
    ] + [InlineKeyboardButton("Briefings off", callback_data=pack("brief", "off"))]
    zone_buttons = [
        InlineKeyboardButton(("✅ " if z == zone else "") + z.split("/")[-1].replace("_", " "), callback_data=pack("tz", i))
        for i, z in enumerate(COMMON_ZONES)
    ]
    keyboard = [
        [
            InlineKeyboardButton("Resume alerts" if paused else "Pause alerts", callback_data=pack("set", "paused")),
            InlineKeyboardButton(f"Previews: turn {'off' if chat and chat.link_previews else 'on'}", callback_data=pack("set", "link_previews")),
            InlineKeyboardButton(f"Combine: turn {'off' if chat is None or chat.combine else 'on'}", callback_data=pack("set", "combine")),
        ],
        *rows_of(zone_buttons),
        *rows_of(quiet_buttons),
        [InlineKeyboardButton("At night: " + ("hold → silent" if mode == "hold" else "silent → hold"), callback_data=pack("quiet", "mode"))],
        *rows_of(briefing_buttons),
        [
            InlineKeyboardButton("Choose sections", callback_data=pack("set", "sections")),
            InlineKeyboardButton("My subscriptions", callback_data=pack("set", "mysubs")),
        ],
    ]
    return "\n".join(lines), InlineKeyboardMarkup(keyboard)


async def settings_command(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    text, keyboard = await _settings_message(context, chat.id)
    await reply(update, text, keyboard)


async def _redraw(update: Update, context: NewsContext, notice: str) -> None:
    query = update.callback_query
    assert query is not None and update.effective_chat is not None
    text, keyboard = await _settings_message(context, update.effective_chat.id)
    await edit_text(query, text, keyboard)
    await query.answer(notice[:200])


SETTINGS_OPTIONS = ("paused", "link_previews", "combine")


async def settings_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "set", 1)
    option = parts[0] if parts else ""
    if option not in (*SETTINGS_OPTIONS, "sections", "mysubs") or update.effective_chat is None:
        await query.answer(STALE_BUTTON)
        return
    chat_id = update.effective_chat.id
    if option in ("sections", "mysubs"):
        await query.answer()
        if option == "sections":
            await reply(update, "Your sections — tap to add or remove:", await section_keyboard(context, chat_id))
        else:
            text, keyboard = await _mysubs_message(context, chat_id)
            await reply(update, text, keyboard)
        return
    if await refuse_non_admin(update, context):
        return
    services = context.services
    if option == "paused":
        chat = await _existing(update, context)
        if chat is None or not chat.active:
            await query.answer(NOT_A_READER, show_alert=True)
            return
        if chat.paused:
            resumed = await readers.resume(services, chat_id)
            notice = f"Resumed: {plural(resumed.released, 'held story', 'held stories')} follow."
        else:
            await readers.pause(services, chat_id)
            notice = "Paused: alerts are kept until you resume."
    else:
        chat = await _known(update, context)
        assert chat is not None
        await chats.set_option(services.db, chat_id, option, not getattr(chat, option), now=services.clock.time())
        notice = "Saved"
    await _redraw(update, context, notice)


async def timezone_command(update: Update, context: NewsContext) -> None:
    name = await _change_argument(update, context, USAGE["timezone"])
    if name is None:
        return
    services = context.services
    zone: str | None
    if name.casefold() in ("default", "reset", "newsroom"):
        zone = None
    else:
        known = {z.casefold(): z for z in COMMON_ZONES}
        zone = known.get(name.casefold(), name)
        if not valid_timezone(zone):
            await reply(update, f"“{echo(name, 60)}” is not a time zone I know. Use an IANA name, "
                                "e.g. <code>/timezone Europe/London</code> or <code>/timezone America/New_York</code>.")
            return
    chat = await _known(update, context)
    assert chat is not None
    await readers.set_timezone(services, chat, zone)
    shown = zone or services.settings.timezone
    await reply(update, f"Time zone: <b>{esc(shown)}</b>. It is {format_clock(services.clock.time(), services.chat_zone(shown))} there; "
                        "every time I show is in it now.")


async def timezone_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, "tz", 1)
    if ids is None or ids[0] >= len(COMMON_ZONES):
        await query.answer(STALE_BUTTON)
        return
    if await refuse_non_admin(update, context):
        return
    chat = await _known(update, context)
    assert chat is not None
    zone = COMMON_ZONES[ids[0]]
    await readers.set_timezone(context.services, chat, None if zone == context.services.settings.timezone else zone)
    await _redraw(update, context, f"Time zone: {zone}")


def _parse_span(text: str) -> tuple[int, int] | None:
    parts = re.split(r"\s*(?:-|–|to)\s*", text.strip())
    if len(parts) != 2:
        return None
    start, end = localtime.parse_hhmm(parts[0]), localtime.parse_hhmm(parts[1])
    if start is None or end is None or start == end:
        return None
    return start, end


async def quiet_command(update: Update, context: NewsContext) -> None:
    found = await _change_argument(update, context, USAGE["quiet"])
    if found is None:
        return
    text = found.casefold()
    span = _parse_span(text)
    if text not in ("off", "hold", "silent") and span is None:
        await reply(update, esc(f"I could not read “{plain_line(text)[:40]}” as quiet hours.\n{USAGE['quiet']}"))
        return
    chat = await _known(update, context)
    assert chat is not None
    reply_text = await _set_quiet(context.services, chat, text, span)
    await reply(update, reply_text)


async def _set_quiet(services: Services, chat: Chat, what: str, span: tuple[int, int] | None) -> str:
    db = services.db
    now = services.clock.time()
    if what == "off":
        await chats.set_quiet(db, chat.id, None, None, now=now)
        return "Quiet hours off: alerts come whenever stories appear."
    if what in ("hold", "silent"):
        await chats.set_quiet(db, chat.id, chat.quiet_start, chat.quiet_end, what, now=now)
        updated = await chats.get_chat(db, chat.id)
        return esc(_quiet_line(updated)) + ("" if chat.quiet_start is not None else ". Set the hours with /quiet 22:00-07:00.")
    assert span is not None
    await chats.set_quiet(db, chat.id, span[0], span[1], now=now)
    updated = await chats.get_chat(db, chat.id)
    return (esc(_quiet_line(updated)) + f" ({esc(_zone_of(services, chat))}). Broadcasts marked urgent still come. "
            + ("/quiet silent delivers without sound instead." if (updated and updated.quiet_mode == "hold") else "/quiet hold holds them instead."))


async def quiet_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "quiet", 1)
    what = parts[0] if parts else ""
    span: tuple[int, int] | None = None
    if "-" in what:
        start, _, end = what.partition("-")
        span = (int(start), int(end)) if start.isdigit() and end.isdigit() else None
        if span not in QUIET_PRESETS:
            await query.answer(STALE_BUTTON)
            return
    elif what not in ("off", "mode"):
        await query.answer(STALE_BUTTON)
        return
    if await refuse_non_admin(update, context):
        return
    chat = await _known(update, context)
    assert chat is not None
    if what == "mode":
        what = "silent" if chat.quiet_mode == "hold" else "hold"
    notice = await _set_quiet(context.services, chat, what if span is None else "span", span)
    await _redraw(update, context, re.sub(r"<[^>]+>", "", notice))


async def briefing_command(update: Update, context: NewsContext) -> None:
    text = await _change_argument(update, context, USAGE["briefing"])
    if text is None:
        return
    times: list[int] = []
    if text.casefold() != "off":
        for part in re.split(r"[\s,]+", text.strip()):
            minutes = localtime.parse_hhmm(part)
            if minutes is None:
                await reply(update, esc(f"I could not read “{plain_line(part)[:20]}” as a time.\n{USAGE['briefing']}"))
                return
            if minutes not in times:
                times.append(minutes)
        if len(times) > 3:
            await reply(update, esc(f"At most three briefings a day.\n{USAGE['briefing']}"))
            return
    chat = await _known(update, context)
    assert chat is not None
    await reply(update, await _set_briefings(context.services, chat, times))


async def _set_briefings(services: Services, chat: Chat, times: list[int]) -> str:
    next_at = await readers.set_briefings(services, chat, times)
    if not times or next_at is None:
        return "Briefings off."
    zone = services.chat_zone(chat.timezone)
    shown = ", ".join(localtime.hhmm(t) for t in sorted(times))
    return (f"Briefings at <b>{shown}</b> ({esc(_zone_of(services, chat))}): one message with your stories "
            f"since the previous one. The next at {format_clock(next_at, zone)}. In /mysubs, ⚡/📰 chooses "
            "which subscriptions also alert at once.")


async def briefing_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "brief", 1)
    value = parts[0] if parts else ""
    if value != "off" and not (value.isdigit() and int(value) in BRIEFING_PRESETS):
        await query.answer(STALE_BUTTON)
        return
    if await refuse_non_admin(update, context):
        return
    chat = await _known(update, context)
    assert chat is not None
    if value == "off":
        times: list[int] = []
    else:
        minutes = int(value)
        times = [t for t in chat.briefings if t != minutes] if minutes in chat.briefings else [*chat.briefings, minutes]
        if len(times) > 3:
            await query.answer("At most three briefings a day: turn one off first.", show_alert=True)
            return
    notice = await _set_briefings(context.services, chat, times)
    await _redraw(update, context, re.sub(r"<[^>]+>", "", notice))


async def unknown_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    if query is not None:
        await query.answer(STALE_BUTTON)


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
