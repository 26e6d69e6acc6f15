"""Reader commands that choose when and how alerts come: /settings (and its buttons),
/timezone, /quiet, /briefing, /pause, /resume and /stop.
"""

from __future__ import annotations

import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import localtime, readers
from bot.callbacks import pack, unpack
from bot.commands import sender, subscribe
from bot.commands.common import STALE_BUTTON, callback_ids, edit_text, refuse_non_admin, reply
from bot.config import valid_timezone
from bot.context import NewsContext, Services
from bot.i18n import N_, _, ngettext
from bot.render import echo, esc, format_clock, rows_of
from bot.text import plain_line
from storage import chats, subscriptions
from storage.models import Chat

COMBINE_RULE = N_("more than 3 alerts due at once come as one message")
# Zones offered as buttons in /settings (any other: /timezone Area/City).
COMMON_ZONES = ("Europe/Stockholm", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
QUIET_PRESETS = ((22 * 60, 7 * 60), (23 * 60, 6 * 60))
BRIEFING_PRESETS = (7 * 60, 7 * 60 + 30, 18 * 60)

# HTML (translated where used): how to write each command.
USAGE = {
    "timezone": N_("Usage: /timezone <i>Area/City</i>\nExample: /timezone Europe/London (or /timezone default)"),
    "quiet": N_("Usage: /quiet <i>from</i>-<i>to</i> | off | hold | silent\nExample: /quiet 22:00-07:00"),
    "briefing": N_("Usage: /briefing <i>time</i> [<i>time</i> <i>time</i>] | off\nExample: /briefing 07:30 (up to "
                   "three a day)"),
}


def usage(command: str) -> str:
    """How to write `command`, in the reader's language (HTML)."""
    return _(USAGE[command])


# --- /pause, /resume, /stop ---------------------------------------------------------------------


async def _reader(update: Update, context: NewsContext) -> Chat | None:
    """The chat, when it is a reader and the sender may change it; else answered here."""
    if await refuse_non_admin(update, context):
        return None
    chat = await sender.existing(update, context)
    if chat is None or not chat.active:
        await reply(update, esc(_(sender.NOT_A_READER)))
        return None
    return chat


async def pause(update: Update, context: NewsContext) -> None:
    chat = await _reader(update, context)
    if chat is None:
        return
    if not await readers.pause(context.services, chat.id):
        await reply(update, esc(_("Alerts are already paused. /resume to get them again.")))
        return
    await reply(update, esc(_("Alerts paused. New stories are kept (the newest 48 hours) and come as one "
                              "message when you /resume. Commands still work.")))


async def resume(update: Update, context: NewsContext) -> None:
    chat = await _reader(update, context)
    if chat is None:
        return
    resumed = await readers.resume(context.services, chat.id)
    if not resumed.was_paused:
        await reply(update, esc(_("Alerts are not paused: they come as stories appear.")))
        return
    if resumed.released:
        text = ngettext("Alerts resumed. While you were away: {n} story — it follows in one message.",
                        "Alerts resumed. While you were away: {n} stories — they follow in one message.",
                        resumed.released).format(n=resumed.released)
    else:
        text = _("Alerts resumed. Nothing came for you while you were away.")
    if resumed.dropped:
        text += " " + ngettext("({n} older alert than 48 hours left out.)", "({n} older alerts than 48 hours left out.)",
                               resumed.dropped).format(n=resumed.dropped)
    await reply(update, esc(text))


async def stop(update: Update, context: NewsContext) -> None:
    chat = update.effective_chat
    if chat is None or await refuse_non_admin(update, context):
        return
    await readers.forget(context.services, chat.id)
    await reply(update, esc(_("Done: your subscriptions, settings and queued alerts are deleted, and no "
                              "alerts or broadcasts will come. /start to begin again.")))


# --- /settings and its parts: /timezone, /quiet, /briefing ------------------------------------


def _quiet_line(chat: Chat | None) -> str:
    """The chat's quiet hours as /settings says them (plain text)."""
    if chat is None or chat.quiet_start is None or chat.quiet_end is None:
        return _("Quiet hours: off")
    span = localtime.span(chat.quiet_start, chat.quiet_end)
    if chat.quiet_mode == "hold":
        return _("Quiet hours: {hours}, alerts held and sent as one message when they end").format(hours=span)
    return _("Quiet hours: {hours}, alerts delivered silently").format(hours=span)


def _briefing_line(services: Services, chat: Chat | None) -> str:
    if chat is None or not chat.briefings:
        return _("Briefings: off")
    times = ", ".join(localtime.hhmm(t) for t in chat.briefings)
    if chat.next_briefing_at:
        return _("Briefings: {times} — next at {time}").format(
            times=times, time=format_clock(chat.next_briefing_at, services.chat_zone(chat.timezone)))
    return _("Briefings: {times}").format(times=times)


def _counts_line(counts: dict[str, int]) -> str:
    """'Following 2 sections, 1 keyword; 0 excluded words (/mysubs).'"""
    return _("Following {sections}, {keywords}; {excluded} (/mysubs).").format(
        sections=ngettext("{n} section", "{n} sections", counts["section"]).format(n=counts["section"]),
        keywords=ngettext("{n} keyword", "{n} keywords", counts["keyword"]).format(n=counts["keyword"]),
        excluded=ngettext("{n} excluded word", "{n} excluded words", counts["exclude"]).format(n=counts["exclude"]),
    )


async def _settings_message(context: NewsContext, chat_id: int) -> tuple[str, InlineKeyboardMarkup]:
    services = context.services
    chat = await chats.get_chat(services.db, chat_id)
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    counts = {k: sum(1 for s in subs if s.kind == k) for k in ("section", "keyword", "exclude")}
    zone = sender.zone_of(services, chat)
    paused = bool(chat and chat.paused)
    lines = [
        "<b>" + esc(_("Settings")) + "</b>",
        esc((_("Alerts: paused") if paused else _("Alerts: on")) if chat and chat.active else _("Alerts: not started — /start")),
        esc(_("Time zone: {zone} (now {time})").format(
            zone=zone, time=format_clock(services.clock.time(), services.chat_zone(zone)))),
        esc(_quiet_line(chat)),
        esc(_briefing_line(services, chat)),
        esc(_("A briefing with nothing new: sent, saying so") if chat and chat.nothing_new
            else _("A briefing with nothing new: not sent")),
        esc((_("Combine bursts: on — {rule}") if chat is None or chat.combine
             else _("Combine bursts: off — {rule}")).format(rule=_(COMBINE_RULE))),
        esc(_("Link previews: on") if chat and chat.link_previews else _("Link previews: off")),
        esc(_counts_line(counts)),
    ]
    quiet_buttons = [
        InlineKeyboardButton(_("Quiet {hours}").format(hours=localtime.span(a, b)), callback_data=pack("quiet", f"{a}-{b}"))
        for a, b in QUIET_PRESETS
    ] + [InlineKeyboardButton(_("Quiet off"), callback_data=pack("quiet", "off"))]
    mode = chat.quiet_mode if chat else "hold"
    briefing_buttons = [
        InlineKeyboardButton(("✅ " if chat and t in chat.briefings else "") + _("Briefing {time}").format(time=localtime.hhmm(t)),
                             callback_data=pack("brief", t))
        for t in BRIEFING_PRESETS
    ] + [InlineKeyboardButton(_("Briefings off"), callback_data=pack("brief", "off"))]
    zone_buttons = [
        InlineKeyboardButton(("✅ " if z == zone else "") + z.split("/")[-1].replace("_", " "), callback_data=pack("tz", i))
        for i, z in enumerate(COMMON_ZONES)
    ]
    keyboard = [
        [
            InlineKeyboardButton(_("Resume alerts") if paused else _("Pause alerts"), callback_data=pack("set", "paused")),
            InlineKeyboardButton(_("Previews: turn off") if chat and chat.link_previews else _("Previews: turn on"),
                                 callback_data=pack("set", "link_previews")),
            InlineKeyboardButton(_("Combine: turn off") if chat is None or chat.combine else _("Combine: turn on"),
                                 callback_data=pack("set", "combine")),
        ],
        *rows_of(zone_buttons),
        *rows_of(quiet_buttons),
        [InlineKeyboardButton(_("In quiet hours: hold → silent") if mode == "hold" else _("In quiet hours: silent → hold"),
                              callback_data=pack("quiet", "mode"))],
        *rows_of(briefing_buttons),
        [InlineKeyboardButton(_("Nothing new: stay quiet") if chat and chat.nothing_new else _("Nothing new: tell me"),
                              callback_data=pack("set", "nothing_new"))],
        [
            InlineKeyboardButton(_("Choose sections"), callback_data=pack("set", "sections")),
            InlineKeyboardButton(_("My subscriptions"), callback_data=pack("set", "mysubs")),
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


SETTINGS_OPTIONS = ("paused", "link_previews", "combine", "nothing_new")


async def settings_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "set", 1)
    option = parts[0] if parts else ""
    if option not in (*SETTINGS_OPTIONS, "sections", "mysubs") or update.effective_chat is None:
        await query.answer(_(STALE_BUTTON))
        return
    chat_id = update.effective_chat.id
    if option in ("sections", "mysubs"):
        await query.answer()
        if option == "sections":
            await reply(update, esc(_("Your sections — tap to add or remove:")), await subscribe.section_keyboard(context, chat_id))
        else:
            text, keyboard = await subscribe.mysubs_message(context, chat_id)
            await reply(update, text, keyboard)
        return
    if await refuse_non_admin(update, context):
        return
    services = context.services
    if option == "paused":
        chat = await sender.existing(update, context)
        if chat is None or not chat.active:
            await query.answer(_(sender.NOT_A_READER), show_alert=True)
            return
        if chat.paused:
            resumed = await readers.resume(services, chat_id)
            notice = ngettext("Resumed: {n} held story follows.", "Resumed: {n} held stories follow.",
                              resumed.released).format(n=resumed.released)
        else:
            await readers.pause(services, chat_id)
            notice = _("Paused: alerts are kept until you resume.")
    else:
        chat = await sender.known(update, context)
        assert chat is not None
        await readers.set_option(services, chat, option, not getattr(chat, option))
        notice = _("Saved")
    await _redraw(update, context, notice)


async def timezone_command(update: Update, context: NewsContext) -> None:
    name = await sender.change_argument(update, context, usage("timezone"))
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
            await reply(update, _("“{zone}” is not a time zone I know. Use an IANA name, e.g. <code>/timezone "
                                  "Europe/London</code> or <code>/timezone America/New_York</code>.").format(zone=echo(name, 60)))
            return
    chat = await sender.known(update, context)
    assert chat is not None
    await readers.set_timezone(services, chat, zone)
    shown = zone or services.settings.timezone
    await reply(update, _("Time zone: <b>{zone}</b>. It is {time} there; every time I show is in it now.").format(
        zone=esc(shown), time=format_clock(services.clock.time(), services.chat_zone(shown))))


async def timezone_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    ids = callback_ids(query.data, "tz", 1)
    if ids is None or ids[0] >= len(COMMON_ZONES):
        await query.answer(_(STALE_BUTTON))
        return
    if await refuse_non_admin(update, context):
        return
    chat = await sender.known(update, context)
    assert chat is not None
    zone = COMMON_ZONES[ids[0]]
    await readers.set_timezone(context.services, chat, None if zone == context.services.settings.timezone else zone)
    await _redraw(update, context, _("Time zone: {zone}").format(zone=zone))


def _parse_span(text: str) -> tuple[int, int] | None:
    parts = re.split(r"\s*(?:-|–|to)\s*", text.strip())
    if len(parts) != 2:
        return None
    start, end = localtime.parse_hhmm(parts[0]), localtime.parse_hhmm(parts[1])
    if start is None or end is None or start == end:
        return None
    return start, end


async def quiet_command(update: Update, context: NewsContext) -> None:
    found = await sender.change_argument(update, context, usage("quiet"))
    if found is None:
        return
    text = found.casefold()
    span = _parse_span(text)
    if text not in ("off", "hold", "silent") and span is None:
        await reply(update, esc(_("I could not read “{text}” as quiet hours.").format(text=plain_line(text)[:40]))
                    + "\n" + usage("quiet"))
        return
    chat = await sender.known(update, context)
    assert chat is not None
    reply_text, _notice = await _set_quiet(context.services, chat, text, span)
    await reply(update, reply_text)


async def _set_quiet(services: Services, chat: Chat, what: str, span: tuple[int, int] | None) -> tuple[str, str]:
    """`what`: "off", "hold", "silent", or "span" (the hours in `span`). Returns the reply
    (HTML) and the short notice for a button's answer (plain text)."""
    updated = await readers.set_quiet(services, chat, what, span)
    if what == "off":
        return esc(_("Quiet hours off: alerts come whenever stories appear.")), _("Quiet hours: off")
    notice = _quiet_line(updated)
    hold = updated is not None and updated.quiet_mode == "hold"
    if updated is None or updated.quiet_start is None or updated.quiet_end is None:
        text = (_("In quiet hours alerts will be held. Set the hours with /quiet 22:00-07:00.") if hold
                else _("In quiet hours alerts will be delivered silently. Set the hours with /quiet 22:00-07:00."))
        return esc(text), text
    hours, zone = localtime.span(updated.quiet_start, updated.quiet_end), sender.zone_of(services, chat)
    if hold:
        text = _("Quiet hours: {hours} ({zone}), alerts held and sent as one message when they end. Broadcasts "
                 "marked urgent still come. /quiet silent delivers without sound instead.")
    else:
        text = _("Quiet hours: {hours} ({zone}), alerts delivered silently. Broadcasts marked urgent still come. "
                 "/quiet hold holds them instead.")
    return esc(text.format(hours=hours, zone=zone)), notice


async def quiet_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "quiet", 1)
    what = parts[0] if parts else ""
    span: tuple[int, int] | None = None
    if "-" in what:
        start, _sep, end = what.partition("-")
        span = (int(start), int(end)) if start.isdigit() and end.isdigit() else None
        if span not in QUIET_PRESETS:
            await query.answer(_(STALE_BUTTON))
            return
    elif what not in ("off", "mode"):
        await query.answer(_(STALE_BUTTON))
        return
    if await refuse_non_admin(update, context):
        return
    chat = await sender.known(update, context)
    assert chat is not None
    if what == "mode":
        what = "silent" if chat.quiet_mode == "hold" else "hold"
    _text, notice = await _set_quiet(context.services, chat, what if span is None else "span", span)
    await _redraw(update, context, notice)


async def briefing_command(update: Update, context: NewsContext) -> None:
    text = await sender.change_argument(update, context, usage("briefing"))
    if text is None:
        return
    times: list[int] = []
    if text.casefold() != "off":
        for part in re.split(r"[\s,]+", text.strip()):
            minutes = localtime.parse_hhmm(part)
            if minutes is None:
                await reply(update, esc(_("I could not read “{text}” as a time.").format(text=plain_line(part)[:20]))
                            + "\n" + usage("briefing"))
                return
            if minutes not in times:
                times.append(minutes)
        if len(times) > 3:
            await reply(update, esc(_("At most three briefings a day.")) + "\n" + usage("briefing"))
            return
    chat = await sender.known(update, context)
    assert chat is not None
    await reply(update, (await _set_briefings(context.services, chat, times))[0])


async def _set_briefings(services: Services, chat: Chat, times: list[int]) -> tuple[str, str]:
    """The reply (HTML) and the short notice for a button's answer (plain text)."""
    next_at = await readers.set_briefings(services, chat, times)
    if not times or next_at is None:
        return esc(_("Briefings off.")), _("Briefings off.")
    shown = ", ".join(localtime.hhmm(t) for t in sorted(times))
    at = format_clock(next_at, services.chat_zone(chat.timezone))
    text = _("Briefings at <b>{times}</b> ({zone}): one message with your stories since the previous one. The next "
             "at {time}. In /mysubs, ⚡/📰 chooses which subscriptions also alert at once.").format(
        times=shown, zone=esc(sender.zone_of(services, chat)), time=at)
    return text, _("Briefings at {times}; the next at {time}.").format(times=shown, time=at)


async def briefing_button(update: Update, context: NewsContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "brief", 1)
    value = parts[0] if parts else ""
    if value != "off" and not (value.isdigit() and int(value) in BRIEFING_PRESETS):
        await query.answer(_(STALE_BUTTON))
        return
    if await refuse_non_admin(update, context):
        return
    chat = await sender.known(update, context)
    assert chat is not None
    if value == "off":
        times: list[int] = []
    else:
        minutes = int(value)
        times = [t for t in chat.briefings if t != minutes] if minutes in chat.briefings else [*chat.briefings, minutes]
        if len(times) > 3:
            await query.answer(_("At most three briefings a day: turn one off first."), show_alert=True)
            return
    _text, notice = await _set_briefings(context.services, chat, times)
    await _redraw(update, context, notice)
