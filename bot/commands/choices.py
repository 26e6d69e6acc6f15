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
from bot.i18n import _
from bot.render import echo, esc, format_clock, plural, rows_of
from bot.text import plain_line
from storage import chats, subscriptions
from storage.models import Chat

COMBINE_RULE = "more than 3 alerts due at once come as one message"
# Zones offered as buttons in /settings (any other: /timezone Area/City).
COMMON_ZONES = ("Europe/Stockholm", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
QUIET_PRESETS = ((22 * 60, 7 * 60), (23 * 60, 6 * 60))
BRIEFING_PRESETS = (7 * 60, 7 * 60 + 30, 18 * 60)

USAGE = {
    "timezone": "Usage: /timezone <Area/City>\nExample: /timezone Europe/London (or /timezone default)",
    "quiet": "Usage: /quiet <from>-<to> | off | hold | silent\nExample: /quiet 22:00-07:00",
    "briefing": "Usage: /briefing <time> [<time> <time>] | off\nExample: /briefing 07:30 (up to three a day)",
}


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
    await reply(update, esc(_("Done: your subscriptions, settings and queued alerts are deleted, and no "
                              "alerts or broadcasts will come. /start to begin again.")))


# --- /settings and its parts: /timezone, /quiet, /briefing ------------------------------------


def _quiet_line(chat: Chat | None) -> str:
    if chat is None or chat.quiet_start is None or chat.quiet_end is None:
        return "Quiet hours: off"
    span = localtime.span(chat.quiet_start, chat.quiet_end)
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
    zone = sender.zone_of(services, chat)
    paused = bool(chat and chat.paused)
    lines = [
        "<b>" + esc(_("Settings")) + "</b>",
        esc((_("Alerts: paused") if paused else _("Alerts: on")) if chat and chat.active else _("Alerts: not started — /start")),
        esc(_("Time zone: {zone} (now {time})").format(
            zone=zone, time=format_clock(services.clock.time(), services.chat_zone(zone)))),
        _quiet_line(chat),
        _briefing_line(services, chat),
        "A briefing with nothing new: " + ("sent, saying so" if chat and chat.nothing_new else "not sent"),
        f"Combine bursts: {'on' if chat is None or chat.combine else 'off'} — {COMBINE_RULE}",
        f"Link previews: {'on' if chat and chat.link_previews else 'off'}",
        f"Following {plural(counts['section'], 'section')}, {plural(counts['keyword'], 'keyword')}; "
        f"{plural(counts['exclude'], 'excluded word')} (/mysubs).",
    ]
    quiet_buttons = [
        InlineKeyboardButton(f"Quiet {localtime.span(a, b)}", callback_data=pack("quiet", f"{a}-{b}"))
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
        [InlineKeyboardButton("In quiet hours: " + ("hold → silent" if mode == "hold" else "silent → hold"), callback_data=pack("quiet", "mode"))],
        *rows_of(briefing_buttons),
        [InlineKeyboardButton("Nothing new: " + ("stay quiet" if chat and chat.nothing_new else "tell me"), callback_data=pack("set", "nothing_new"))],
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
            await reply(update, "Your sections — tap to add or remove:", await subscribe.section_keyboard(context, chat_id))
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
            notice = f"Resumed: {plural(resumed.released, 'held story', 'held stories')} follow."
        else:
            await readers.pause(services, chat_id)
            notice = "Paused: alerts are kept until you resume."
    else:
        chat = await sender.known(update, context)
        assert chat is not None
        await readers.set_option(services, chat, option, not getattr(chat, option))
        notice = "Saved"
    await _redraw(update, context, notice)


async def timezone_command(update: Update, context: NewsContext) -> None:
    name = await sender.change_argument(update, context, USAGE["timezone"])
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
    chat = await sender.known(update, context)
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
        await query.answer(_(STALE_BUTTON))
        return
    if await refuse_non_admin(update, context):
        return
    chat = await sender.known(update, context)
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
    found = await sender.change_argument(update, context, USAGE["quiet"])
    if found is None:
        return
    text = found.casefold()
    span = _parse_span(text)
    if text not in ("off", "hold", "silent") and span is None:
        await reply(update, esc(f"I could not read “{plain_line(text)[:40]}” as quiet hours.\n{USAGE['quiet']}"))
        return
    chat = await sender.known(update, context)
    assert chat is not None
    reply_text = await _set_quiet(context.services, chat, text, span)
    await reply(update, reply_text)


async def _set_quiet(services: Services, chat: Chat, what: str, span: tuple[int, int] | None) -> str:
    """`what`: "off", "hold", "silent", or "span" (the hours in `span`)."""
    updated = await readers.set_quiet(services, chat, what, span)
    if what == "off":
        return "Quiet hours off: alerts come whenever stories appear."
    if what in ("hold", "silent"):
        return esc(_quiet_line(updated)) + ("" if chat.quiet_start is not None else ". Set the hours with /quiet 22:00-07:00.")
    return (esc(_quiet_line(updated)) + f" ({esc(sender.zone_of(services, chat))}). Broadcasts marked urgent still come. "
            + ("/quiet silent delivers without sound instead." if (updated and updated.quiet_mode == "hold") else "/quiet hold holds them instead."))


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
    notice = await _set_quiet(context.services, chat, what if span is None else "span", span)
    await _redraw(update, context, re.sub(r"<[^>]+>", "", notice))


async def briefing_command(update: Update, context: NewsContext) -> None:
    text = await sender.change_argument(update, context, USAGE["briefing"])
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
    chat = await sender.known(update, context)
    assert chat is not None
    await reply(update, await _set_briefings(context.services, chat, times))


async def _set_briefings(services: Services, chat: Chat, times: list[int]) -> str:
    next_at = await readers.set_briefings(services, chat, times)
    if not times or next_at is None:
        return "Briefings off."
    zone = services.chat_zone(chat.timezone)
    shown = ", ".join(localtime.hhmm(t) for t in sorted(times))
    return (f"Briefings at <b>{shown}</b> ({esc(sender.zone_of(services, chat))}): one message with your stories "
            f"since the previous one. The next at {format_clock(next_at, zone)}. In /mysubs, ⚡/📰 chooses "
            "which subscriptions also alert at once.")


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
            await query.answer("At most three briefings a day: turn one off first.", show_alert=True)
            return
    notice = await _set_briefings(context.services, chat, times)
    await _redraw(update, context, re.sub(r"<[^>]+>", "", notice))
