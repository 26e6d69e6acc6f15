"""Admin commands: broadcasts and newsroom figures, for `settings.admin_ids` only (the feeds'
commands are in bot.commands.feeds).

Thin handlers like the readers': check the sender, parse, call one operation, render, reply.
Everyone else gets a polite refusal and nothing changes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot import broadcast, i18n, newsroom
from bot import broadcast_texts as texts
from bot.broadcast import Progress, StartOutcome, StopOutcome
from bot.broadcast_texts import duration_text, number
from bot.callbacks import pack, unpack
from bot.charts import ChartLabels
from bot.commands import sender
from bot.commands.common import STALE_BUTTON, edit_text, reply
from bot.context import NewsContext, Services, find_section
from bot.i18n import N_, _, ngettext
from bot.render import esc, fit_blocks, format_time
from bot.tgerrors import not_modified
from storage.counters import Figures as Counts
from storage.models import Section
from storage.outbox import LANE_NAMES

log = logging.getLogger(__name__)

REFUSAL = N_("Sorry, that command is for the newsroom's admins.")
BUTTON_REFUSAL = N_("Sorry, that button is for the newsroom's admins.")
RECENT_BROADCASTS = 10

# The admins' command menu, added to the readers' (see bot.app.set_command_menus).
MENU = (
    ("broadcast", N_("Message every reader: text, or @section text")),
    ("broadcasts", N_("Recent broadcasts")),
    ("stats", N_("Readers, subscriptions, alerts")),
    ("feeds", N_("Every feed and how it is doing")),
    ("addfeed", N_("Add a feed: URL section")),
    ("removefeed", N_("Remove a feed by its id")),
)

BROADCAST_USAGE = N_(
    "Usage: /broadcast text — to every active reader\n"
    "/broadcast @section text — to the readers of one section\n"
    "Or reply /broadcast (or /broadcast @section) to a message to send its text.\n"
    "Example: /broadcast @sports Tonight's match is moved to 20:00."
)
# The delivery lanes, as /stats and its chart name them (storage.outbox.LANE_NAMES).
LANE_LABELS = {
    "personal": N_("personal"),
    "sections": N_("sections"),
    "broadcasts": N_("broadcasts"),
    "corrections": N_("corrections"),
}


# --- helpers ----------------------------------------------------------------------------------


async def admin_only(update: Update, context: NewsContext, what: str) -> bool:
    """True for the configured admins; anyone else is told so, politely, and logged."""
    user = update.effective_user
    if user is not None and user.id in context.services.settings.admin_ids:
        return True
    log.warning("admin command refused user_id=%s command=%s", user.id if user else None, what)
    if update.callback_query is not None:
        await update.callback_query.answer(_(BUTTON_REFUSAL), show_alert=True)
    else:
        await reply(update, esc(_(REFUSAL)))
    return False


def slugs(sections: tuple[Section, ...]) -> str:
    return ", ".join(s.slug for s in sections) or _("none configured")


async def _drop_keyboard(query: CallbackQuery) -> None:
    try:
        await query.edit_message_reply_markup(reply_markup=None)
    except BadRequest as exc:
        if not not_modified(exc):
            log.warning("keyboard not removed error=%s", exc.message)


# --- /broadcast -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BroadcastInput:
    audience: str | None
    plain: str
    formatted: str | None  # the admin's formatting as HTML, when it could be kept


def _broadcast_input(message: Message, sections: tuple[Section, ...]) -> BroadcastInput | str:
    """What to send and to whom, or what is wrong (a sentence for the admin)."""
    text = message.text or ""
    command = re.match(r"^/\S+", text)
    rest = text[command.end():].lstrip() if command else ""
    audience: str | None = None
    first = rest.split(maxsplit=1)[0] if rest else ""
    if first.startswith("@"):
        section = find_section(sections, first)
        if section is None:
            unknown = _("Unknown section “{section}”. Sections: {sections}.").format(
                section=first[:40], sections=slugs(sections))
            return unknown + "\n\n" + _(BROADCAST_USAGE)
        audience = section.slug
        rest = rest[len(first):].lstrip()
    if rest.strip():
        # text_html renders the admin's bold, links… from Telegram's entities; the command and
        # section words need no escaping, so the HTML starts with them exactly when no
        # formatting spans them, and the rest is the broadcast.
        prefix = text[: len(text) - len(rest)]
        full = message.text_html
        formatted = full[len(prefix):] if full.startswith(prefix) else None
        return BroadcastInput(audience, rest, formatted)
    source = message.reply_to_message
    if source is not None and source.text:
        return BroadcastInput(audience, source.text, source.text_html)
    if source is not None and source.caption:
        return BroadcastInput(audience, source.caption, source.caption_html)
    return _(BROADCAST_USAGE)


def _preview_text(text_html: str) -> str:
    heading = esc(_(texts.PREVIEW_HEADING))
    return f"<b>{heading}</b>\n\n{text_html}"


def _preview_keyboard(context: NewsContext, broadcast_id: int, size: int, *, urgent: bool) -> InlineKeyboardMarkup:
    services = context.services
    free = duration_text(broadcast.estimate(services, size, paid=False))
    label = ngettext("Send to {n} chat (≈ {duration})", "Send to {n} chats (≈ {duration})", size)
    send = [InlineKeyboardButton(label.format(n=size, duration=free),
                                 callback_data=pack("bc", "send", broadcast_id))]
    if services.settings.paid_broadcasts:
        fast = duration_text(broadcast.estimate(services, size, paid=True))
        stars = broadcast.stars(services, size)
        if stars:
            label = ngettext("Send fast (≈ {duration}, ≈ {n} Star)", "Send fast (≈ {duration}, ≈ {n} Stars)", stars)
        else:
            label = _("Send fast (≈ {duration}, no Stars)")
        send.append(InlineKeyboardButton(
            label.format(duration=fast, n=stars), callback_data=pack("bc", "fast", broadcast_id)
        ))
    return InlineKeyboardMarkup([
        send,
        [
            InlineKeyboardButton(_("Urgent: on ✅") if urgent else _("Urgent: off"),
                                 callback_data=pack("bc", "urgent", broadcast_id)),
            InlineKeyboardButton(_("Cancel"), callback_data=pack("bc", "cancel", broadcast_id)),
        ],
    ])


async def broadcast_command(update: Update, context: NewsContext) -> None:
    """/broadcast → a preview exactly as readers will see it (under a heading they do not
    get), with Send (and Send fast), Urgent and Cancel."""
    if not await admin_only(update, context, "broadcast"):
        return
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    if message is None or user is None or chat is None:
        return
    services = context.services
    parsed = _broadcast_input(message, services.sections)
    if isinstance(parsed, str):
        await reply(update, esc(parsed))
        return
    if broadcast.too_long(parsed.plain):
        await reply(update, esc(ngettext(
            "That is {n} character; a broadcast can have at most {max}. Please shorten it.",
            "That is {n} characters; a broadcast can have at most {max}. Please shorten it.", len(parsed.plain),
        ).format(n=len(parsed.plain), max=broadcast.MAX_TEXT)))
        return
    size = await broadcast.audience_size(services, parsed.audience)
    if size == 0:
        if parsed.audience:
            nobody = _("Nobody would get it: {section} has no active readers.").format(
                section=services.section_names.get(parsed.audience, parsed.audience))
        else:
            nobody = _("Nobody would get it: there are no active readers yet.")
        await reply(update, esc(nobody))
        return
    text_html = broadcast.reader_html(parsed.plain, parsed.formatted)
    broadcast_id = await broadcast.create_preview(
        services, admin_id=user.id, chat_id=chat.id, text_html=text_html, audience=parsed.audience
    )
    preview = await reply(update, _preview_text(text_html), _preview_keyboard(context, broadcast_id, size, urgent=False))
    if preview is not None:
        await broadcast.set_preview_message(services, broadcast_id, preview.message_id)
    log.info("broadcast preview broadcast_id=%d admin_id=%d audience=%s size=%d",
             broadcast_id, user.id, parsed.audience or "everyone", size)


async def broadcast_button(update: Update, context: NewsContext) -> None:
    """Send / Send fast / Urgent / Cancel under a preview (its author only), Stop under a
    progress message (any admin)."""
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "bc", 2)
    if parts is None or parts[0] not in ("send", "fast", "urgent", "cancel", "stop") or not parts[1].isdigit() or len(parts[1]) > 18:
        await query.answer(_(STALE_BUTTON))
        return
    if not await admin_only(update, context, f"broadcast {parts[0]}"):
        return
    action, broadcast_id = parts[0], int(parts[1])
    if action == "stop":
        await _stop(query, context, broadcast_id)
        return
    services = context.services
    admin_id = query.from_user.id
    if action in ("send", "fast"):
        report = await broadcast.start(services, broadcast_id, admin_id, paid=action == "fast")
    elif action == "urgent":
        report = await broadcast.toggle_urgent(services, broadcast_id, admin_id)
    else:
        report = await broadcast.cancel(services, broadcast_id, admin_id)
    outcome = report.outcome
    if outcome is StartOutcome.NOT_YOURS:
        await query.answer(_("Only the admin who wrote this broadcast can send or cancel it."), show_alert=True)
        return
    if outcome is StartOutcome.EXPIRED:
        await query.answer(texts.already("expired"), show_alert=True)
        await _drop_keyboard(query)
        return
    if outcome is StartOutcome.ALREADY:
        await query.answer(texts.already(report.state))
        return
    if outcome is StartOutcome.UNKNOWN:
        await query.answer(_(STALE_BUTTON))
        return
    record = await broadcast.get(services, broadcast_id)
    assert record is not None
    if action == "urgent":
        size = await broadcast.audience_size(services, record.audience)
        await edit_text(query, _preview_text(record.html), _preview_keyboard(context, broadcast_id, size, urgent=record.urgent))
        await query.answer(_("Urgent: it will reach readers in their quiet hours too.") if record.urgent
                           else _("Not urgent: readers in quiet hours get it when those end."))
        return
    if action == "cancel":
        await edit_text(query, esc(_("Cancelled — nothing was sent.")), None)
        await query.answer(_("Cancelled. Nothing was sent."))
        return
    sent = ngettext("<b>Sent</b> — to {n} chat; progress below.", "<b>Sent</b> — to {n} chats; progress below.",
                    report.total).format(n=report.total)
    await edit_text(query, f"{sent}\n\n{record.html}", None)
    if outcome is StartOutcome.EMPTY:
        await query.answer(_("Nobody to send to: the audience has no active readers any more."), show_alert=True)
        return
    await query.answer(ngettext("Sending to {n} chat.", "Sending to {n} chats.", report.total).format(n=report.total))
    progress = Progress(broadcast_id, services.clock, i18n.language())
    await progress.begin(services, context.bot)
    follow_progress(services, context.bot, progress)


async def _stop(query: CallbackQuery, context: NewsContext, broadcast_id: int) -> None:
    services = context.services
    found = services.jobs.data(_job_name(broadcast_id))
    progress = found if isinstance(found, Progress) else Progress(broadcast_id, services.clock)
    # The job ends itself on its next tick: the stopped broadcast is `finished`.
    report = await progress.stop(context.services, context.bot)
    if report.outcome is StopOutcome.STOPPED and report.counts is not None:
        # Answered only now: from here on nothing more of this broadcast goes out.
        await query.answer(_("Stopped. {sent} sent, {cancelled} not sent.").format(
            sent=report.counts.sent, cancelled=report.counts.cancelled))
        await broadcast.audit_stop(context.services, query.from_user.id, broadcast_id)
    elif report.outcome is StopOutcome.OVER:
        await query.answer(texts.already(report.state))
    else:
        await query.answer(_(STALE_BUTTON))


# --- progress jobs ----------------------------------------------------------------------------


def _job_name(broadcast_id: int) -> str:
    return f"broadcast:{broadcast_id}"


def follow_progress(services: Services, bot: Bot, progress: Progress) -> None:
    """A repeating job per sending broadcast, decoupled from the dispatcher: it only reads."""
    services.jobs.every(
        _job_name(progress.broadcast_id), broadcast.PROGRESS_TICK,
        lambda: progress.tick(services, bot), first=broadcast.PROGRESS_TICK, data=progress,
    )


def resume_broadcasts(services: Services, bot: Bot, broadcast_ids: list[int]) -> None:
    """After a restart: the outbox rows are still there; their progress is followed again."""
    for broadcast_id in broadcast_ids:
        follow_progress(services, bot, Progress(broadcast_id, services.clock))
    if broadcast_ids:
        log.info("broadcasts resumed ids=%s", ",".join(map(str, broadcast_ids)))


# --- /broadcasts ------------------------------------------------------------------------------


async def broadcasts_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "broadcasts"):
        return
    services = context.services
    found = await broadcast.recent(services, RECENT_BROADCASTS)
    zone = await sender.shown_zone(update, context)
    blocks = []
    for record, counts in found:
        fields = [
            f"<b>#{record.id}</b>", esc(format_time(record.created_at, zone)),
            esc(_("by {admin}")).format(admin=f"<code>{record.admin_id}</code>"),
            esc(texts.to_whom(record.audience, services.section_names)),
        ]
        if record.paid or record.paid_refused:
            fields.append(esc(_("paid")))
        if record.urgent:
            fields.append(esc(_("urgent")))
        fields.append(f"<i>{esc(texts.state_name(record.state))}</i>")
        lines = [" · ".join(fields)]
        if record.state not in ("preview", "cancelled", "expired"):
            lines.append(esc(texts.counts_line(counts)))
        lines.append(texts.quoted(broadcast.visible_text(record.html), 100))
        blocks.append("\n".join(lines))
    if not blocks:
        await reply(update, esc(_("No broadcasts yet. Send one with /broadcast and its text.")))
        return
    heading = esc(_("Recent broadcasts"))
    await reply(update, fit_blocks(f"<b>{heading}</b>", blocks)[0])


# --- /stats -----------------------------------------------------------------------------------


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return ngettext("{n} byte", "{n} bytes", nbytes).format(n=number(nbytes))
    for unit in ("KB", "MB", "GB"):
        nbytes /= 1024  # type: ignore[assignment]
        if nbytes < 1024 or unit == "GB":
            break
    return f"{number(nbytes, 1)} {unit}"


CAPTION_MAX = 1024  # Telegram's limit for a photo's caption (characters, entities left out)
CHART_CAPTION = N_("<b>Newsroom stats</b> — the last 24 hours by hour; the figures follow.")


def lane_label(name: str) -> str:
    return _(LANE_LABELS[name]) if name in LANE_LABELS else name


def _day_text(day: Counts) -> str:
    """The last 24 hours' deliveries, one clause per kind of message."""
    parts = [
        ngettext("{n} article stored", "{n} articles stored", day.get("articles")),
        ngettext("{n} alert sent ({failed} failed, {blocked} to readers gone)",
                 "{n} alerts sent ({failed} failed, {blocked} to readers gone)", day.get("alert_sent")),
        ngettext("{n} broadcast message sent", "{n} broadcast messages sent", day.get("broadcast_sent")),
        ngettext("{n} briefing sent", "{n} briefings sent", day.get("briefing_sent")),
        ngettext("{n} correction sent", "{n} corrections sent", day.get("edit_sent")),
    ]
    counts = (day.get("articles"), day.get("alert_sent"), day.get("broadcast_sent"), day.get("briefing_sent"),
              day.get("edit_sent"))
    filled = [p.format(n=number(n), failed=number(day.get("alert_failed")), blocked=number(day.get("alert_blocked")))
              for p, n in zip(parts, counts, strict=True)]
    return _("Last 24 h: {figures}").format(figures=", ".join(filled))


def _stats_text(figures: newsroom.Figures, sections: tuple[Section, ...]) -> str:
    collected = figures.stats
    readers = collected.readers
    per_section = ", ".join(f"{s.name} {number(figures.sections.get(s.slug, 0))}" for s in sections) or _("no sections")
    keywords = ", ".join(f"{k} ({number(n)})" for k, n in figures.top_keywords) or _("none yet")
    if collected.latency_p50 is None or collected.latency_p95 is None:
        latency = _("no alerts sent in the last 24 h")
    else:
        latency = _("half within {half}, 95 % within {most}").format(
            half=duration_text(collected.latency_p50), most=duration_text(collected.latency_p95))
    backlog = collected.backlog
    lanes = []
    for lane, name in LANE_NAMES.items():
        waiting = backlog.pending.get(lane, 0)
        if waiting:
            drain = figures.drain.get(lane)
            if drain is not None:
                lanes.append(_("{lane} {n} (≈ {duration})").format(
                    lane=lane_label(name), n=number(waiting), duration=duration_text(drain)))
            else:
                lanes.append(_("{lane} {n} (not sending now)").format(lane=lane_label(name), n=number(waiting)))
    queue = "; ".join(lanes) or _("empty")
    outbox = "; ".join((
        _("Outbox: {queue}").format(queue=queue),
        ngettext("{n} alert held for paused readers", "{n} alerts held for paused readers", backlog.held)
        .format(n=number(backlog.held)),
        ngettext("{n} message sent in the last minute", "{n} messages sent in the last minute",
                 round(figures.send_rate * 60)).format(n=number(round(figures.send_rate * 60))),
    ))
    heading = esc(_("Newsroom stats"))
    return "\n".join([
        f"<b>{heading}</b>",
        esc(_("Readers: {active} active, {paused} paused, {inactive} inactive").format(
            active=number(readers["active"]), paused=number(readers["paused"]), inactive=number(readers["inactive"]))),
        esc(_("Section subscriptions: {sections}").format(sections=per_section)),
        esc(_("Top keywords: {keywords}").format(keywords=keywords)),
        esc(_day_text(collected.day)),
        esc(_("Publication → alert (24 h): {latency}").format(latency=latency)),
        esc(outbox),
        esc(_("Database: {size}").format(size=_size(collected.database_bytes))),
    ])


def chart_labels(name: str) -> ChartLabels:
    """The chart's words, written here in the admin's language: the chart is drawn in a
    worker thread, which gets them as they are and translates nothing."""
    return ChartLabels(
        title=_("{name} — last 24 hours").format(name=name),
        sent=_("messages sent"),
        half=_("half within"),
        most=_("95 % within"),
        nothing=_("no alerts sent"),
        latency=_("publication → alert"),
        lanes={name: lane_label(name) for name in LANE_LABELS},
        units=(_("{n} s"), _("{n} min"), _("{n} h"), _("{n} d")),
    )


async def stats_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "stats"):
        return
    services = context.services
    found = await newsroom.figures(services)
    text = _stats_text(found, services.sections)
    message = update.effective_message
    chart = None if message is None else await newsroom.stats_chart(
        services, found.stats, await sender.shown_zone(update, context), chart_labels(services.settings.name)
    )
    if chart is None or message is None:
        await reply(update, text)
        return
    # The figures are the chart's caption when they fit in one; else a short caption, and
    # the figures as a message after it.
    fits = len(broadcast.visible_text(text).encode("utf-16-le")) // 2 <= CAPTION_MAX
    await message.reply_photo(
        InputFile(chart, filename="stats.png"), caption=text if fits else _(CHART_CAPTION),
        parse_mode=ParseMode.HTML, do_quote=False,
    )
    if not fits:
        await reply(update, text)
