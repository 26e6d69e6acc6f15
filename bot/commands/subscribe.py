"""Reader commands that choose what a chat follows: /start (and its deep links), /sections,
/follow, /unfollow, /exclude, /include, /mysubs, and their buttons (sections, remove,
instant or briefing-only, Mute under an alert).

Each handler guards, parses, makes one call to bot.readers, renders and replies. Subscribing
makes a chat a reader; in a group only its admins may (bot.commands.common.refuse_non_admin).
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import readers
from bot.callbacks import pack, unpack
from bot.commands import sender
from bot.commands.common import (
    STALE_BUTTON,
    callback_ids,
    edit_markup,
    edit_text,
    in_forum,
    refuse_non_admin,
    reply,
    sections_text,
    topic_of,
)
from bot.context import NewsContext, Services, find_section
from bot.i18n import N_, _
from bot.readers import Outcome
from bot.render import echo, esc, fit_lines, join_names, reason_name, rows_of, subscription_name
from storage import chats, outbox, subscriptions
from storage.models import Subscription, SubscriptionMode

# HTML (translated where used): how to write each command.
USAGE = {
    "follow": N_("Usage: /follow <i>keyword</i>[, <i>keyword</i>…]\nExample: /follow drones, \"north korea\""),
    "unfollow": N_("Usage: /unfollow <i>keyword</i>\nExample: /unfollow drones"),
    "exclude": N_("Usage: /exclude <i>word</i>[, <i>word</i>…] — no alert, briefing entry or /latest story about "
                  "it\nExample: /exclude football"),
    "include": N_("Usage: /include <i>word</i> — undo /exclude\nExample: /include football"),
}


def usage(command: str) -> str:
    """How to write `command`, in the reader's language (HTML)."""
    return _(USAGE[command])
# A change that waited for this chat's /stop to finish (bot.readers.Outcome.GONE).
STOPPED_MEANWHILE = N_("Not saved: this chat stopped newsbot meanwhile. /start to begin again.")


# --- /start, /sections --------------------------------------------------------------


def _channel_lines(services: Services) -> str:
    """"Sports — or join @herald_sports" for each public channel the bot can post in."""
    with_channel = [
        s for s in services.sections if s.channel and s.channel.startswith("@") and s.slug in services.channels
    ]
    if not with_channel:
        return ""
    return "\n" + "\n".join(
        esc(_("{section} — or join {channel}").format(section=s.name, channel=s.channel or "")) for s in with_channel
    )


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
    """/start makes the chat a reader: in a group, only when one of its admins sends it."""
    if await refuse_non_admin(update, context):
        return
    chat = await sender.join(update, context)
    if chat is None:
        return
    payload = context.args[0] if context.args else ""
    if payload:
        await _deep_link(update, context, chat.id, payload)
        return
    services = context.services
    name = esc(services.settings.name)
    text = _(
        "Welcome to <b>{name}</b>! Pick the sections you want alerts from — tap again to remove. "
        "Follow words with /follow, e.g. <code>/follow drones</code>. /help lists everything."
    ).format(name=name) + _channel_lines(services)
    await reply(update, text, await section_keyboard(context, chat.id))


async def _deep_link(update: Update, context: NewsContext, chat_id: int, payload: str) -> None:
    services = context.services
    name = esc(services.settings.name)
    keyboard = await section_keyboard(context, chat_id)
    topic, forum = topic_of(update), in_forum(update)
    if payload.startswith("kw-"):
        keyword = payload[3:].replace("_", " ")
        report = await readers.follow(services, chat_id, f'"{keyword}"', thread_id=topic, forum=forum)
        body = follow_text(report, services.settings.max_subscriptions, topic)
        await reply(update, _("Welcome to <b>{name}</b>! {body}\nPick sections too, if you like:").format(
            name=name, body=body), keyboard)
        return
    section = find_section(services.sections, payload)
    if section is None:
        await reply(update, _("Welcome to <b>{name}</b>! Unknown section “{section}”. Sections: {sections}.").format(
            name=name, section=echo(payload, 40), sections=esc(sections_text(services.sections))), keyboard)
        return
    outcome = await readers.add(
        services, chat_id, "section", section.slug, section.slug, thread_id=topic, forum=forum
    )
    moved = (_("Welcome back! <b>{section}</b> alerts now come to this topic.") if topic is not None
             else _("Welcome back! <b>{section}</b> alerts now come to the General topic."))
    text = {
        Outcome.ADDED: _("Welcome to <b>{name}</b>! You now get alerts from <b>{section}</b>."),
        Outcome.EXISTS: _("Welcome back! You already follow <b>{section}</b>."),
        Outcome.MOVED: moved,
        Outcome.LIMIT: esc(limit_text(services.settings.max_subscriptions)),
    }.get(outcome, esc(_(STOPPED_MEANWHILE))).format(name=name, section=esc(section.name))
    await reply(update, text, await section_keyboard(context, chat_id))


async def sections_command(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    services = context.services
    if not services.sections:
        await reply(update, esc(_("No sections are configured yet. Follow words with /follow meanwhile.")))
        return
    where = (
        _("Tap a section to send its alerts to <b>this topic</b> (tap again to stop it):")
        if topic_of(update) is not None
        else esc(_("Your sections — tap to add or remove:"))
    )
    await reply(update, where + _channel_lines(services), await section_keyboard(context, chat.id))


async def section_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "sec", 1)
    section = find_section(context.services.sections, parts[0]) if parts else None
    if section is None or update.effective_chat is None:
        await query.answer(_(STALE_BUTTON))
        return
    if await refuse_non_admin(update, context):
        return
    chat = await sender.join(update, context)
    assert chat is not None
    topic = topic_of(update)
    outcome = await readers.toggle_section(context.services, chat.id, section.slug, thread_id=topic)
    notice = {
        Outcome.ADDED: _("Added {section} in this topic") if topic is not None else _("Added {section}"),
        Outcome.REMOVED: _("Removed {section}"),
        Outcome.MOVED: _("{section} alerts now come to this topic"),
        Outcome.EXISTS: _("You already follow {section}"),
        Outcome.LIMIT: _("Limit reached: at most {limit} subscriptions"),
    }.get(outcome, _(STOPPED_MEANWHILE)).format(
        section=section.name, limit=context.services.settings.max_subscriptions
    )
    # The message changes before the spinner stops: once the reader sees the notice, the
    # keyboard shows the new state.
    if outcome in (Outcome.ADDED, Outcome.REMOVED):
        await edit_markup(query, await section_keyboard(context, chat.id))
    await query.answer(notice[:200])


# --- /follow, /unfollow, /exclude, /include, /mysubs -----------------------------------------


def limit_text(limit: int) -> str:
    """Plain text."""
    return _("You have reached the limit of {limit} subscriptions (sections and keywords together). "
             "Remove one with /mysubs first.").format(limit=limit)


def _any_of(words: Sequence[str]) -> str:
    """'<b>drones</b>', '<b>drones</b> or <b>malmo</b>', '<b>a</b>, <b>b</b> or <b>c</b>'
    (at most three words)."""
    bold = [f"<b>{echo(w, 64)}</b>" for w in words]
    if len(bold) == 1:
        return bold[0]
    if len(bold) == 2:
        return _("{first} or {second}").format(first=bold[0], second=bold[1])
    return _("{first}, {second} or {third}").format(first=bold[0], second=bold[1], third=bold[2])


def _following(words: Sequence[str], here: bool) -> str:
    """'Following drones. You will get an alert (here) for every new story that mentions drones.'"""
    if len(words) > 3:
        text = (_("Following {names}. You will get an alert here for every new story that mentions any of these "
                  "keywords.") if here else
                _("Following {names}. You will get an alert for every new story that mentions any of these keywords."))
        return text.format(names=join_names(words))
    text = (_("Following {names}. You will get an alert here for every new story that mentions {words}.") if here
            else _("Following {names}. You will get an alert for every new story that mentions {words}."))
    return text.format(names=join_names(words), words=_any_of(words))


def follow_text(report: readers.FollowReport, limit: int, topic: int | None = None) -> str:
    """What /follow did; `topic`: the forum topic it was sent from."""
    if report.gone:
        return esc(_(STOPPED_MEANWHILE))
    lines = []
    if report.added:
        lines.append(_following(report.added, topic is not None))
    if report.replaced:
        lines.append(_("Following {names} — you had excluded it before; that exclusion is removed.").format(
            names=join_names(report.replaced)))
    if report.moved:
        moved = (_("{names}: alerts now come to this topic.") if topic is not None
                 else _("{names}: alerts now come to the General topic."))
        lines.append(moved.format(names=join_names(report.moved)))
    if report.existing:
        lines.append(_("Already following {names}.").format(names=join_names(report.existing)))
    if report.over_limit:
        lines.append(_("Not added: {names}.").format(names=join_names(report.over_limit)) + " " + esc(limit_text(limit)))
    # Refusals last: there can be many, and the cut ("…and N more") should fall on them.
    lines.extend(esc(r) for r in report.refused)
    return fit_lines(lines) if lines else usage("follow")


def exclude_text(report: readers.FollowReport, limit: int) -> str:
    if report.gone:
        return esc(_(STOPPED_MEANWHILE))
    lines = []
    if report.added:
        lines.append(_("Excluded {names}: no alert, briefing entry or /latest story about it, even from your "
                       "sections. /include undoes it.").format(names=join_names(report.added)))
    if report.replaced:
        lines.append(_("Excluded {names} — you followed it before; that keyword is removed.").format(
            names=join_names(report.replaced)))
    if report.existing:
        lines.append(_("Already excluded: {names}.").format(names=join_names(report.existing)))
    if report.over_limit:
        lines.append(_("Not excluded: {names}. At most {limit} excluded words.").format(
            names=join_names(report.over_limit), limit=limit))
    lines.extend(esc(r) for r in report.refused)
    return fit_lines(lines) if lines else usage("exclude")


async def _subscribe(update: Update, context: NewsContext, usage: str) -> tuple[int, str] | None:
    text = await sender.change_argument(update, context, usage)
    if text is None:
        return None
    chat = await sender.join(update, context)
    return (chat.id, text) if chat else None


async def follow(update: Update, context: NewsContext) -> None:
    found = await _subscribe(update, context, usage("follow"))
    if found is not None:
        topic = topic_of(update)
        report = await readers.follow(
            context.services, found[0], found[1], thread_id=topic, forum=in_forum(update)
        )
        await reply(update, follow_text(report, context.services.settings.max_subscriptions, topic))


async def exclude(update: Update, context: NewsContext) -> None:
    text = await sender.change_argument(update, context, usage("exclude"))
    if text is None:
        return
    chat = await sender.known(update, context)
    if chat is not None:
        report = await readers.follow(context.services, chat.id, text, kind="exclude")
        await reply(update, exclude_text(report, context.services.settings.max_subscriptions))


async def _remove(update: Update, context: NewsContext, kind: str, usage: str) -> None:
    text = await sender.change_argument(update, context, usage)
    if text is None:
        return
    chat = update.effective_chat
    if chat is None:
        return
    report = await readers.unfollow(context.services, chat.id, text, kind="exclude" if kind == "exclude" else "keyword")
    lines = []
    if report.removed:
        removed = _("No longer excluded: {names}.") if kind == "exclude" else _("Stopped: {names}.")
        lines.append(removed.format(names=join_names(report.removed)))
    if report.missing:
        missing = (_("You do not exclude: {names}. See /mysubs.") if kind == "exclude"
                   else _("You do not follow: {names}. See /mysubs."))
        lines.append(missing.format(names=join_names(report.missing)))
    # Text with no keyword in it at all (only quotes or commas) gets the usage.
    await reply(update, "\n".join(lines) or usage)


async def unfollow(update: Update, context: NewsContext) -> None:
    await _remove(update, context, "keyword", usage("unfollow"))


async def include(update: Update, context: NewsContext) -> None:
    await _remove(update, context, "exclude", usage("include"))


async def mysubs_message(context: NewsContext, chat_id: int) -> tuple[str, InlineKeyboardMarkup | None]:
    services = context.services
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    names = services.section_names
    chat = await chats.get_chat(services.db, chat_id)
    if not subs:
        return esc(_("You follow nothing yet. Pick sections with /sections or follow a word with /follow.")), None
    followed = [s for s in subs if s.kind != "exclude"]
    lines = [_("<b>Your subscriptions</b> ({n} of {limit})").format(n=len(followed), limit=services.settings.max_subscriptions)]
    labels = {"section": _("Sections: {items}"), "keyword": _("Keywords: {items}"), "exclude": _("Never about: {items}")}
    for kind, label in labels.items():
        items = [s for s in subs if s.kind == kind]
        if items:
            shown = ", ".join(
                esc(_("{name} (briefing only)").format(name=subscription_name(s.kind, s.value, names)) if s.mode == "briefing"
                    else subscription_name(s.kind, s.value, names))
                for s in items
            )
            lines.append(label.format(items=shown))
    if chat is not None and chat.paused:
        lines.append("<i>" + esc(_("Alerts are paused — /resume to get them again.")) + "</i>")
    lines.append(esc(_("✖ removes one; ⚡/📰 switches between instant alerts and your briefing only.")))
    buttons: list[list[InlineKeyboardButton]] = []
    for s in subs:
        name = subscription_name(s.kind, s.value, names)
        label = _("✖ not {name}").format(name=name) if s.kind == "exclude" else f"✖ {name}"
        row = [InlineKeyboardButton(label[:60], callback_data=pack("unsub", s.id))]
        if s.kind != "exclude":
            label = _("📰 Briefing only") if s.mode == "briefing" else _("⚡ Instant")
            row.append(InlineKeyboardButton(label, callback_data=pack("mode", s.id)))
        buttons.append(row)
    return fit_lines(lines), InlineKeyboardMarkup(buttons[:90])


async def mysubs(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    text, keyboard = await mysubs_message(context, chat.id)
    await reply(update, text, keyboard)


async def _own_subscription(update: Update, context: NewsContext, prefix: str) -> Subscription | None:
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, prefix, 1)
    chat = update.effective_chat
    if ids is None or chat is None:
        await query.answer(_(STALE_BUTTON))
        return None
    if await refuse_non_admin(update, context):
        return None
    sub = await subscriptions.get_subscription(context.services.db, ids[0])
    if sub is None or sub.chat_id != chat.id:
        # The list on screen is out of date: show what is there now.
        text, keyboard = await mysubs_message(context, chat.id)
        await edit_text(query, text, keyboard)
        await query.answer(_("Already removed."))
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
    text, keyboard = await mysubs_message(context, sub.chat_id)
    await edit_text(query, text, keyboard)
    removed = _("Removed exclusion of {name}") if sub.kind == "exclude" else _("Removed {name}")
    await query.answer(removed.format(name=name)[:200])


async def mode_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    sub = await _own_subscription(update, context, "mode")
    if sub is None or sub.kind == "exclude":
        return
    services = context.services
    mode: SubscriptionMode = "instant" if sub.mode == "briefing" else "briefing"
    await readers.set_mode(services, sub, mode)
    text, keyboard = await mysubs_message(context, sub.chat_id)
    await edit_text(query, text, keyboard)
    name = subscription_name(sub.kind, sub.value, services.section_names)
    chat = await chats.get_chat(services.db, sub.chat_id)
    if mode == "instant":
        notice = _("{name}: instant alerts.")
    elif chat and chat.briefings:
        notice = _("{name}: in your briefing only.")
    else:
        notice = _("{name}: in your briefing only. Set a time with /briefing 07:30.")
    await query.answer(notice.format(name=name)[:200])


async def mute_button(update: Update, context: NewsContext) -> None:
    """Mute under an alert: stop the keyword or section that made it."""
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, "mute", 2)
    chat = update.effective_chat
    if ids is None or chat is None:
        await query.answer(_(STALE_BUTTON))
        return
    if await refuse_non_admin(update, context):
        return
    services = context.services
    outbox_id, index = ids
    reasons = await outbox.get_reasons(services.db, outbox_id, chat.id)
    if reasons is None or index >= len(reasons):
        await query.answer(_(STALE_BUTTON))
        return
    reason = reasons[index]
    name = reason_name(reason, services.section_names)
    outcome = await readers.mute_reason(services, chat.id, reason)
    if outcome is Outcome.REMOVED:
        await query.answer(_("Muted {name}. /mysubs shows what is left.").format(name=name)[:200])
    else:
        await query.answer(_("{name} was already muted.").format(name=name)[:200])
