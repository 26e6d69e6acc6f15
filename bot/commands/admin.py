"""Admin commands: broadcasts, newsroom figures and feeds, for `settings.admin_ids` only.

Thin handlers like the readers': check the sender, parse, call one operation, render, reply.
Everyone else gets a polite refusal and nothing changes.
"""

from __future__ import annotations

import html
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot import broadcast
from bot.broadcast import Progress, StartOutcome, StopOutcome
from bot.callbacks import pack, unpack
from bot.pipeline.discover import find_feed
from bot.pipeline.fetch import FetchError
from bot.pipeline.parse import ParseError, parse_feed_async
from bot.render import esc, fit_blocks, format_time, short
from bot.services import Services, find_section
from storage import feeds, stats
from storage.models import Feed, Section, SectionRule

if TYPE_CHECKING:
    from bot.app import NewsApp, NewsContext

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
REFUSAL = "Sorry, that command is for the newsroom's admins."
RECENT_BROADCASTS = 10

# The admins' command menu, added to the readers' (see bot.app.set_command_menus).
MENU = (
    ("broadcast", "Message every reader: text, or @section text"),
    ("broadcasts", "Recent broadcasts"),
    ("stats", "Readers, subscriptions, alerts"),
    ("feeds", "Every feed and how it is doing"),
    ("addfeed", "Add a feed: URL section"),
    ("removefeed", "Remove a feed by its id"),
)

USAGE = {
    "broadcast": (
        "Usage: /broadcast <text> — to every active reader\n"
        "/broadcast @<section> <text> — to one section's readers\n"
        "Or reply /broadcast (or /broadcast @<section>) to a message to send its text.\n"
        "Example: /broadcast @sports Tonight's match is moved to 20:00."
    ),
    "addfeed": (
        "Usage: /addfeed <feed URL or page URL> <section>\n"
        "Example: /addfeed https://example.com/sports/ sports\nSections: {sections}"
    ),
    "removefeed": "Usage: /removefeed <feed id> (the ids are in /feeds)\nExample: /removefeed 3",
}


# --- helpers ----------------------------------------------------------------------------------


async def _reply(update: Update, text: str, keyboard: InlineKeyboardMarkup | None = None) -> Message | None:
    message = update.effective_message
    if message is None:
        return None
    return await message.reply_text(
        text, parse_mode=ParseMode.HTML, reply_markup=keyboard, link_preview_options=NO_PREVIEW,
        do_quote=False,
    )


async def _admin(update: Update, context: NewsContext, what: str) -> bool:
    """True for the configured admins; anyone else is told so, politely, and logged."""
    user = update.effective_user
    if user is not None and user.id in context.services.settings.admin_ids:
        return True
    log.warning("admin command refused user_id=%s command=%s", user.id if user else None, what)
    if update.callback_query is not None:
        await update.callback_query.answer(REFUSAL, show_alert=True)
    else:
        await _reply(update, esc(REFUSAL))
    return False


def _sections_text(sections: tuple[Section, ...]) -> str:
    return ", ".join(s.slug for s in sections)


async def _drop_keyboard(query: CallbackQuery) -> None:
    try:
        await query.edit_message_reply_markup(reply_markup=None)
    except BadRequest as exc:
        if "not modified" not in exc.message.casefold():
            log.warning("keyboard not removed error=%s", exc.message)


def _plain(text_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", text_html))


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
            known = _sections_text(sections)
            return f"Unknown section “{first[:40]}”. Sections: {known}.\n\n{USAGE['broadcast']}"
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
    return USAGE["broadcast"]


def _preview_keyboard(broadcast_id: int, size: int) -> InlineKeyboardMarkup:
    label = f"Send to {size} chat{'' if size == 1 else 's'}"
    return InlineKeyboardMarkup(
        [[
            InlineKeyboardButton(label, callback_data=pack("bc", "send", broadcast_id)),
            InlineKeyboardButton("Cancel", callback_data=pack("bc", "cancel", broadcast_id)),
        ]]
    )  # fmt: skip


async def broadcast_command(update: Update, context: NewsContext) -> None:
    """/broadcast → a preview exactly as readers will see it, with Send and Cancel."""
    if not await _admin(update, context, "broadcast"):
        return
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    if message is None or user is None or chat is None:
        return
    services = context.services
    parsed = _broadcast_input(message, services.sections)
    if isinstance(parsed, str):
        await _reply(update, esc(parsed))
        return
    if broadcast.too_long(parsed.plain):
        await _reply(update, esc(
            f"That is {len(parsed.plain)} characters; a broadcast can have at most "
            f"{broadcast.MAX_TEXT}. Please shorten it."
        ))
        return
    size = await broadcast.audience_size(services, parsed.audience)
    if size == 0:
        who = broadcast.audience_text(parsed.audience, services.section_names)
        await _reply(update, esc(f"Nobody would get it: there are no active {who}." if parsed.audience
                                 else "Nobody would get it: there are no active readers yet."))
        return
    text_html = broadcast.reader_html(parsed.plain, parsed.formatted)
    broadcast_id = await broadcast.create_preview(
        services, admin_id=user.id, chat_id=chat.id, text_html=text_html, audience=parsed.audience
    )
    preview = await _reply(update, text_html, _preview_keyboard(broadcast_id, size))
    if preview is not None:
        await broadcast.set_preview_message(services, broadcast_id, preview.message_id)
    log.info("broadcast preview broadcast_id=%d admin_id=%d audience=%s size=%d",
             broadcast_id, user.id, parsed.audience or "everyone", size)


async def broadcast_button(update: Update, context: NewsContext) -> None:
    """Send / Cancel under a preview (its author only), Stop under a progress message (any admin)."""
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "bc", 2)
    if parts is None or parts[0] not in ("send", "cancel", "stop") or not parts[1].isdigit():
        await query.answer("This button is no longer valid.")
        return
    if not await _admin(update, context, f"broadcast {parts[0]}"):
        return
    action, broadcast_id = parts[0], int(parts[1])
    if action == "stop":
        await _stop(query, context, broadcast_id)
        return
    services = context.services
    if action == "send":
        report = await broadcast.start(services, broadcast_id, query.from_user.id)
    else:
        report = await broadcast.cancel(services, broadcast_id, query.from_user.id)
    outcome = report.outcome
    if outcome is StartOutcome.NOT_YOURS:
        await query.answer("Only the admin who wrote this broadcast can send or cancel it.", show_alert=True)
        return
    if outcome is StartOutcome.EXPIRED:
        await query.answer("This preview has expired. Send /broadcast again.", show_alert=True)
        await _drop_keyboard(query)
        return
    if outcome is StartOutcome.ALREADY:
        await query.answer(f"This broadcast is already {report.state}.")
        return
    if outcome is StartOutcome.UNKNOWN:
        await query.answer("This button is no longer valid.")
        return
    await _drop_keyboard(query)
    if action == "cancel":
        await query.answer("Cancelled. Nothing was sent.")
    elif outcome is StartOutcome.EMPTY:
        await query.answer("Nobody to send to: the audience has no active readers any more.", show_alert=True)
    else:
        await query.answer(f"Sending to {report.total} chats.")
        progress = Progress(broadcast_id)
        await progress.begin(services, context.bot)
        follow_progress(context.job_queue, progress)


async def _stop(query: CallbackQuery, context: NewsContext, broadcast_id: int) -> None:
    job = _progress_job_of(context.job_queue, broadcast_id)
    progress = job.data if job is not None and isinstance(job.data, Progress) else Progress(broadcast_id)
    # The job ends itself on its next tick: the stopped broadcast is `finished`.
    report = await progress.stop(context.services, context.bot)
    if report.outcome is StopOutcome.STOPPED and report.counts is not None:
        # Answered only now: from here on nothing more of this broadcast goes out.
        await query.answer(f"Stopped. {report.counts.sent} sent, {report.counts.cancelled} not sent.")
    elif report.outcome is StopOutcome.OVER:
        await query.answer(f"This broadcast is already {report.state}.")
    else:
        await query.answer("This button is no longer valid.")


# --- progress jobs ----------------------------------------------------------------------------


def _job_name(broadcast_id: int) -> str:
    return f"broadcast:{broadcast_id}"


def _progress_job_of(job_queue: Any, broadcast_id: int) -> Any:
    if job_queue is None:
        return None
    jobs = job_queue.get_jobs_by_name(_job_name(broadcast_id))
    return jobs[0] if jobs else None


def follow_progress(job_queue: Any, progress: Progress) -> None:
    """A repeating job per sending broadcast, decoupled from the dispatcher: it only reads."""
    if job_queue is None:
        raise RuntimeError("the job queue is required (python-telegram-bot[job-queue])")
    if _progress_job_of(job_queue, progress.broadcast_id) is not None:
        return
    job_queue.run_repeating(
        _progress_job, interval=broadcast.PROGRESS_TICK, first=broadcast.PROGRESS_TICK,
        data=progress, name=_job_name(progress.broadcast_id),
    )


async def _progress_job(context: NewsContext) -> None:
    job = context.job
    assert job is not None and isinstance(job.data, Progress)
    if await job.data.tick(context.services, context.bot):
        job.schedule_removal()


def resume_broadcasts(app: NewsApp, broadcast_ids: list[int]) -> None:
    """After a restart: the outbox rows are still there; their progress is followed again."""
    for broadcast_id in broadcast_ids:
        follow_progress(app.job_queue, Progress(broadcast_id))
    if broadcast_ids:
        log.info("broadcasts resumed ids=%s", ",".join(map(str, broadcast_ids)))


# --- /broadcasts ------------------------------------------------------------------------------


async def broadcasts_command(update: Update, context: NewsContext) -> None:
    if not await _admin(update, context, "broadcasts"):
        return
    services = context.services
    found = await broadcast.recent(services, RECENT_BROADCASTS)
    blocks = []
    for record, counts in found:
        who = broadcast.audience_text(record.audience, services.section_names)
        lines = [
            f"<b>#{record.id}</b> · {format_time(record.created_at)} · by <code>{record.admin_id}</code>"
            f" · to {esc(who)} · <i>{esc(record.state)}</i>",
        ]
        if record.state not in ("preview", "cancelled", "expired"):
            lines.append(esc(broadcast.counts_line(counts)))
        lines.append(f"“{esc(short(_plain(record.html), 100))}”")
        blocks.append("\n".join(lines))
    if not blocks:
        await _reply(update, "No broadcasts yet. " + esc("/broadcast <text> sends one."))
        return
    await _reply(update, fit_blocks("<b>Recent broadcasts</b>", blocks))


# --- /stats -----------------------------------------------------------------------------------


def _stats_text(figures: stats.NewsroomStats, sections: tuple[Section, ...]) -> str:
    readers = figures.readers
    per_section = ", ".join(f"{esc(s.name)} {figures.sections.get(s.slug, 0)}" for s in sections)
    keywords = ", ".join(f"{esc(k)} ({n})" for k, n in figures.top_keywords) or "none yet"
    if figures.latency_p50 is None or figures.latency_p95 is None:
        latency = "no alerts sent in the last 24 h"
    else:
        latency = (f"p50 {broadcast.duration_text(figures.latency_p50)}, "
                   f"p95 {broadcast.duration_text(figures.latency_p95)}")
    return "\n".join([
        "<b>Newsroom stats</b>",
        f"Readers: {readers['active']} active, {readers['paused']} paused, {readers['inactive']} inactive",
        f"Section subscriptions: {per_section}",
        f"Top keywords: {keywords}",
        f"Last 24 h: {figures.articles_24h} articles stored, {figures.alerts_sent_24h} alerts sent, "
        f"{figures.alerts_failed_24h} failed",
        f"Publication → alert (24 h): {latency}",
        f"Outbox backlog: {figures.backlog}",
    ])  # fmt: skip


async def stats_command(update: Update, context: NewsContext) -> None:
    if not await _admin(update, context, "stats"):
        return
    services = context.services
    figures = await stats.collect(services.db, time.time())
    await _reply(update, _stats_text(figures, services.sections))


# --- /feeds, /addfeed, /removefeed ------------------------------------------------------------


def _rule_text(rule: SectionRule, names: dict[str, str]) -> str:
    fallback = names.get(rule.section or "", rule.section or "none")
    if rule.kind == "fixed":
        return f"section {fallback}"
    if rule.kind == "category":
        domain = f" (domain “{rule.domain}”)" if rule.domain else ""
        return f"section from the category{domain}, else {fallback}"
    return f"section from URL path segment {rule.segment}, else {fallback}"


def _feed_block(feed: Feed, names: dict[str, str], now: float) -> str:
    title = f" — {esc(short(feed.title, 80))}" if feed.title else ""
    head = f"<b>#{feed.id}</b> <code>{esc(feed.url)}</code>{title}"
    if not feed.enabled:
        return head + " <i>(removed)</i>"
    success = (f"last success {broadcast.duration_text(now - feed.last_success_at)} ago"
               if feed.last_success_at else "no successful poll yet")
    due = feed.next_poll_at - now
    poll = "next poll due now" if due <= 0 else f"next poll in {broadcast.duration_text(due)}"
    lines = [head, esc(f"{_rule_text(feed.rule, names)} · {success} · {poll}")]
    if feed.error_count:
        last = short(feed.last_error or "", 200)
        lines.append(esc(f"⚠ {feed.error_count} errors in a row; last: {last}"))
    elif feed.last_error:
        lines.append(esc(f"last error (since recovered): {short(feed.last_error, 200)}"))
    return "\n".join(lines)


async def feeds_command(update: Update, context: NewsContext) -> None:
    if not await _admin(update, context, "feeds"):
        return
    services = context.services
    found = await feeds.list_feeds(services.db, enabled_only=False)
    if not found:
        usage = USAGE["addfeed"].format(sections=_sections_text(services.sections))
        await _reply(update, esc(f"No feeds yet. {usage}"))
        return
    now = time.time()
    active = [f for f in found if f.enabled]
    failing = sum(1 for f in active if f.error_count)
    header = f"<b>Feeds</b>: {len(active)} polled, {failing} failing"
    await _reply(update, fit_blocks(header, [_feed_block(f, services.section_names, now) for f in found]))


@dataclass(frozen=True, slots=True)
class AddedFeed:
    feed: Feed
    items: int
    existed: bool


async def add_checked_feed(services: Services, url: str, section: str) -> AddedFeed:
    """Fetch and parse before storing: a page URL leads to the feed it advertises. Raises
    FetchError or ParseError, and then nothing is stored. The feed's first poll marks its
    present items as seen (feeds.primed), so adding one never floods readers."""
    settings = services.settings
    rule = SectionRule(kind="fixed", section=section)
    try:
        fetched = await find_feed(services.http, url, max_bytes=settings.fetch_max_bytes)
    except TimeoutError:
        raise FetchError("timeout", f"timed out fetching {url}", url=url) from None
    parsed = await parse_feed_async(
        fetched.body, url=fetched.url, rule=rule, fetched_at=time.time(), headers=fetched.headers,
        sections=services.section_names,
    )
    known = await feeds.get_feed_by_url(services.db, fetched.url)
    feed = await feeds.add_feed(services.db, fetched.url, rule, title=parsed.title)
    log.info("feed added by command feed_id=%d url=%s items=%d", feed.id, feed.url, len(parsed.articles))
    return AddedFeed(feed, len(parsed.articles), known is not None and known.enabled)


async def addfeed_command(update: Update, context: NewsContext) -> None:
    if not await _admin(update, context, "addfeed"):
        return
    services = context.services
    usage = USAGE["addfeed"].format(sections=_sections_text(services.sections))
    args = context.args or []
    if len(args) != 2:
        await _reply(update, esc(usage))
        return
    url, word = args
    if not re.match(r"^https?://[^\s/]+", url):
        await _reply(update, esc(f"“{url[:100]}” is not an http(s) URL.\n\n{usage}"))
        return
    section = find_section(services.sections, word)
    if section is None:
        await _reply(update, esc(f"Unknown section “{word[:40]}”.\n\n{usage}"))
        return
    try:
        added = await add_checked_feed(services, url, section.slug)
    except (FetchError, ParseError) as exc:
        await _reply(update, esc(f"Could not add that feed — {exc}\n\n{usage}"))
        return
    feed = added.feed
    verb = "Updated" if added.existed else "Added"
    await _reply(update, (
        f"{verb} feed <b>#{feed.id}</b>: <b>{esc(short(feed.title or feed.url, 200))}</b> — "
        f"{added.items} items, section {esc(section.name)}.\n<code>{esc(feed.url)}</code>\n"
        "Its current items are stored as seen on its first poll; only stories that appear "
        "after that are pushed."
    ))


async def remove_feed(services: Services, feed_id: int) -> tuple[Feed | None, bool]:
    """Disable a feed; it stays disabled across restarts even if the feeds file lists it."""
    feed = await feeds.get_feed(services.db, feed_id)
    if feed is None:
        return None, False
    removed = await feeds.disable_feed(services.db, feed_id)
    if removed:
        log.info("feed removed by command feed_id=%d url=%s", feed_id, feed.url)
    return feed, removed


async def removefeed_command(update: Update, context: NewsContext) -> None:
    if not await _admin(update, context, "removefeed"):
        return
    args = context.args or []
    if len(args) != 1 or not args[0].lstrip("#").isdigit():
        await _reply(update, esc(USAGE["removefeed"]))
        return
    feed_id = int(args[0].lstrip("#"))
    feed, removed = await remove_feed(context.services, feed_id)
    if feed is None:
        await _reply(update, esc(f"There is no feed #{feed_id}. /feeds lists them."))
    elif not removed:
        await _reply(update, esc(f"Feed #{feed_id} was already removed."))
    else:
        await _reply(update, f"Removed feed <b>#{feed_id}</b> <code>{esc(feed.url)}</code>. "
                             + esc("It stays removed after a restart; /addfeed brings it back."))
