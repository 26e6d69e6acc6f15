"""What the admins read about broadcasts: durations, audiences, counts, the progress message,
the final report, the answers about a broadcast's state — in the language of the message
being written (bot.i18n: the admin's chat's language).

Whole sentences per case (everyone, one section; sending, done, stopped), never English
fragments glued together; every count through ngettext.
"""

from __future__ import annotations

from babel.numbers import format_decimal

from bot import i18n
from bot.i18n import N_, _, ngettext
from bot.render import esc, short
from storage.broadcasts import Broadcast, Counts

PREVIEW_HEADING = N_("Preview — not sent yet")
STOP = N_("Stop")
# A broadcast's state, as /broadcasts shows it.
STATE_NAMES = {
    "preview": N_("preview"),
    "sending": N_("sending"),
    "done": N_("done"),
    "stopped": N_("stopped"),
    "cancelled": N_("cancelled"),
    "expired": N_("expired"),
}
# The answer to a button of a broadcast that is past what the button does.
ALREADY = {
    "sending": N_("This broadcast is already sending."),
    "done": N_("This broadcast is already done."),
    "stopped": N_("This broadcast is already stopped."),
    "cancelled": N_("This broadcast is already cancelled."),
    "expired": N_("This preview has expired. Send /broadcast again."),
}
CHANGED_NOTHING = N_("This broadcast can no longer be changed.")


def number(n: float, decimals: int = 0) -> str:
    """1,234 (1 234 in Swedish): a figure in the language being written."""
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(n, format=pattern, locale=i18n.language())


def duration_text(seconds: float) -> str:
    """'45 s', '2 min 5 s', '1 h 20 min' ('1 tim 20 min')."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return _("{n} s").format(n=seconds)
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return _("{m} min {s} s").format(m=minutes, s=seconds) if seconds else _("{n} min").format(n=minutes)
    hours, minutes = divmod(minutes, 60)
    return _("{h} h {m} min").format(h=hours, m=minutes) if minutes else _("{n} h").format(n=hours)


def state_name(state: str) -> str:
    return _(STATE_NAMES[state]) if state in STATE_NAMES else state


def already(state: str) -> str:
    return _(ALREADY[state]) if state in ALREADY else _(CHANGED_NOTHING)


def to_whom(audience: str | None, sections: dict[str, str]) -> str:
    """'to everyone', 'to the readers of Sports': a field of /broadcasts."""
    if audience is None:
        return _("to everyone")
    return _("to the readers of {section}").format(section=sections.get(audience, audience))


def counts_line(counts: Counts) -> str:
    line = _("Sent {sent} / {total} · blocked {blocked} · failed {failed}").format(
        sent=counts.sent, total=counts.total, blocked=counts.blocked, failed=counts.failed
    )
    return line + (" · " + _("cancelled {n}").format(n=counts.cancelled) if counts.cancelled else "")


def _refused(record: Broadcast, *, over: bool) -> str:
    reason = esc((record.paid_refused or "")[:150])
    if over:
        return esc(_("Telegram refused paid sending ({reason}); the rest went at the free rate.")).format(reason=reason)
    return esc(_("Telegram refused paid sending ({reason}); going on at the free rate.")).format(reason=reason)


def _heading(record: Broadcast, sections: dict[str, str], state: str) -> str:
    """'<b>Broadcast #3</b> to everyone: sending' (done, stopped), in one sentence per case."""
    if record.audience is None:
        text = {
            "sending": _("<b>Broadcast #{id}</b> to everyone: sending"),
            "stopped": _("<b>Broadcast #{id}</b> to everyone: stopped"),
        }.get(state) or _("<b>Broadcast #{id}</b> to everyone: done")
        return text.format(id=record.id)
    text = {
        "sending": _("<b>Broadcast #{id}</b> to the readers of {section}: sending"),
        "stopped": _("<b>Broadcast #{id}</b> to the readers of {section}: stopped"),
    }.get(state) or _("<b>Broadcast #{id}</b> to the readers of {section}: done")
    return text.format(id=record.id, section=esc(sections.get(record.audience, record.audience)))


def progress_text(record: Broadcast, counts: Counts, eta: float | None, sections: dict[str, str]) -> str:
    lines = [_heading(record, sections, "sending")]
    if record.urgent:
        lines.append(esc(_("(urgent: ignores quiet hours)")))
    lines.append(esc(counts_line(counts)))
    lines.append(esc(_("estimating time left…") if eta is None
                     else _("about {duration} left").format(duration=duration_text(eta))))
    if record.paid_refused:
        lines.append(_refused(record, over=False))
    elif record.paid:
        lines.append(esc(_("Sending fast (paid).")))
    return "\n".join(lines)


def final_text(
    record: Broadcast, counts: Counts, sections: dict[str, str], *, now: float, in_flight: int = 0, drain: float = 0.0
) -> str:
    started = record.started_at or record.created_at
    took = duration_text((record.finished_at or now) - started)
    stopped = record.state == "stopped"
    lines = [
        _heading(record, sections, "stopped" if stopped else "done"),
        esc(counts_line(counts)),
        esc(_("Took {duration}.").format(duration=took)),
    ]
    if stopped:
        lines.append(esc(ngettext("{n} message not sent.", "{n} messages not sent.", counts.cancelled)
                         .format(n=counts.cancelled)))
    if in_flight:
        lines.append(esc(ngettext(
            "{n} message was still in flight after {duration} and may arrive.",
            "{n} messages were still in flight after {duration} and may arrive.", in_flight,
        ).format(n=in_flight, duration=duration_text(drain))))
    if record.paid_refused:
        lines.append(_refused(record, over=True))
    return "\n".join(lines)


def report_text(record: Broadcast, counts: Counts, visible: str) -> str:
    """The message that follows a finished broadcast (edits do not notify): a summary, not
    the progress message again. `visible`: the broadcast's text as readers see it."""
    reached = 100 * counts.sent / counts.total if counts.total else 100.0
    if record.state == "stopped":
        text = ngettext(
            "Report: broadcast #{id} stopped — {n} reader of {total} reached ({percent} %).",
            "Report: broadcast #{id} stopped — {n} readers of {total} reached ({percent} %).", counts.sent,
        )
    else:
        text = ngettext(
            "Report: broadcast #{id} finished — {n} reader of {total} reached ({percent} %).",
            "Report: broadcast #{id} finished — {n} readers of {total} reached ({percent} %).", counts.sent,
        )
    summary = text.format(id=record.id, n=counts.sent, total=counts.total, percent=f"{reached:.0f}")
    return esc(summary) + "\n" + quoted(visible, 80)


def quoted(visible: str, limit: int) -> str:
    """A broadcast's text, short, in the language's quotation marks (escaped)."""
    return esc(_("“{text}”").format(text=short(visible, limit)))
