"""Admin commands for feeds: /feeds (with Try now), /addfeed, /removefeed, for admins only.

Thin handlers: check the sender (bot.commands.admin.admin_only), parse, one bot.newsroom call,
render, reply.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import broadcast, channels, newsroom
from bot.callbacks import pack, unpack
from bot.commands import sender
from bot.commands.admin import admin_only, slugs
from bot.commands.common import reply
from bot.context import NewsContext, Services, find_section
from bot.pipeline.discover import Offer
from bot.pipeline.fetch import FetchError
from bot.pipeline.parse import ParseError
from bot.pipeline.sources import KIND_NAMES
from bot.pipeline.urls import redact_url
from bot.render import esc, fit_blocks, format_time, plural, short
from storage.models import SectionRule

SHOWN_URL = 120  # characters of a feed URL shown in replies (a 10 KB URL must not fill one)
TRY_BUTTONS = 30  # "Try now" buttons under /feeds at most

USAGE = {
    "addfeed": (
        "Usage: /addfeed <feed URL or page URL> <section>\n"
        "Example: /addfeed https://example.com/sports/ sports\nSections: {sections}"
    ),
    "removefeed": "Usage: /removefeed <feed id> (the ids are in /feeds)\nExample: /removefeed 3",
}


def shown_url(url: str, safe: frozenset[str]) -> str:
    """A feed URL as replies show it: no credentials or query values but those of the
    `safe` parameters (NEWSBOT_URL_SAFE_PARAMS), and not too long."""
    return short(redact_url(url, safe), SHOWN_URL)


def _rule_text(rule: SectionRule, names: dict[str, str]) -> str:
    fallback = names.get(rule.section or "", rule.section or "none")
    if rule.kind == "fixed":
        return f"section {fallback}"
    if rule.kind == "category":
        domain = f" (domain “{rule.domain}”)" if rule.domain else ""
        return f"section from the category{domain}, else {fallback}"
    return f"section from URL path segment {rule.segment}, else {fallback}"


def _feed_block(state: newsroom.FeedState, services: Services, now: float, zone: tzinfo) -> str:
    feed = state.feed
    names = services.section_names
    safe = services.settings.url_safe_params
    title = f" — {esc(short(feed.title, 80))}" if feed.title else ""
    head = f"<b>#{feed.id}</b> <code>{esc(shown_url(feed.url, safe))}</code>{title}"
    if not feed.enabled:
        return head + " <i>(removed)</i>"
    success = (f"last success {broadcast.duration_text(now - feed.last_success_at)} ago"
               if feed.last_success_at else "no successful poll yet")
    if state.next_in is None:
        poll = "not polled now"
    elif state.next_in <= 0:
        poll = "being fetched" if feed.error_count == 0 else "being tried now"
    else:
        poll = f"{'next poll' if feed.error_count == 0 else 'next try'} in {broadcast.duration_text(state.next_in)}"
    lines = [head, esc(f"{_rule_text(feed.rule, names)} · {success} · {poll}"), esc(_pace_text(state, services, now, zone))]
    if feed.capped:
        lines.append(esc(f"last poll: {plural(feed.capped, 'new story', 'new stories')} stored without alerts "
                         f"(more than {services.settings.alerts_per_poll} at once, too old, or dated ahead)"))
    if feed.error_count:
        since = feed.failing_since
        when = (f"since {format_time(since, zone)} ({broadcast.duration_text(now - since)} ago)"
                if since is not None else "")
        lines.append(esc(f"⚠ failing {when}, {plural(feed.error_count, 'try', 'tries')} in a row; "
                         f"last error: {short(feed.last_error or '', 200)}"))
    elif feed.last_error:
        lines.append(esc(f"last error (since recovered): {short(feed.last_error, 200)}"))
    return "\n".join(lines)


def _pace_text(state: newsroom.FeedState, services: Services, now: float, zone: tzinfo) -> str:
    """Kind, interval, push state and cost: `RSS/Atom feed · every 45 s (adaptive) · push:
    WebSub until 12 Mar 14:00 · 80 requests in the last hour`."""
    feed = state.feed
    settings = services.settings
    kind = KIND_NAMES.get(feed.found_kind or "", "kind not known yet")
    if feed.kind != "auto":
        kind += f" (kind = {feed.kind})"
    if feed.selector:
        kind += f", selector “{short(feed.selector, 60)}”"
    if settings.poll_fixed:
        every = f"every {broadcast.duration_text(settings.poll_seconds)} (NEWSBOT_POLL_SECONDS)"
    elif state.interval is not None:
        every = f"every {broadcast.duration_text(state.interval)} (adaptive)"
    else:
        every = "interval: after its first poll"
    push = f"push: {state.push}"
    sub = state.websub
    if sub is not None:
        if sub.active(now) and sub.expires_at is not None:
            push += f" (WebSub lease until {format_time(sub.expires_at, zone)})"
        elif sub.state == "pending":
            push += " (WebSub: waiting for the hub to verify)"
        else:
            push += f" (WebSub {sub.state}: {short(sub.last_error or '', 120)})"
    return f"{kind} · {every} · {push} · {plural(state.requests, 'request')} in the last hour"


def _channel_warnings(services: Services) -> str:
    """A line for each section's channel the bot cannot post in (bot.channels)."""
    lines = [
        f"⚠ {s.name}'s channel {s.channel}: {services.channel_trouble[s.slug]}; its stories are not posted there "
        "until the bot is an admin with the right to post messages"
        for s in services.sections if s.slug in services.channel_trouble
    ]
    return "".join(f"\n{esc(line)}" for line in lines)


def _try_keyboard(failing: list[int]) -> InlineKeyboardMarkup | None:
    """A "Try now" button for each failing feed shown (Telegram takes 100 buttons at most)."""
    buttons = [InlineKeyboardButton(f"Try #{feed_id} now", callback_data=pack("feed", "try", feed_id))
               for feed_id in failing[:TRY_BUTTONS]]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    return InlineKeyboardMarkup(rows) if rows else None


async def feeds_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "feeds"):
        return
    services = context.services
    found = await newsroom.list_feeds(services)
    await channels.check(services, context.bot)
    if not found:
        usage = USAGE["addfeed"].format(sections=slugs(services.sections))
        await reply(update, esc(f"No feeds are configured: nothing is polled. Set NEWSBOT_FEEDS, or add one. {usage}")
                    + _channel_warnings(services))
        return
    now = services.clock.time()
    active = [s.feed for s in found if s.feed.enabled]
    failing = sum(1 for f in active if f.error_count)
    header = f"<b>Feeds</b>: {len(active)} polled, {failing} failing"
    zone = await sender.shown_zone(update, context)
    blocks = [_feed_block(s, services, now, zone) for s in found]
    text, shown = fit_blocks(header + _channel_warnings(services), blocks)
    tryable = [s.feed.id for s in found[:shown] if s.feed.enabled and s.feed.error_count]
    await reply(update, text, _try_keyboard(tryable))


async def feed_button(update: Update, context: NewsContext) -> None:
    """Try now under /feeds: the feed is fetched at once (any admin)."""
    query = update.callback_query
    assert query is not None
    parts = unpack(query.data, "feed", 2)
    if parts is None or parts[0] != "try" or not parts[1].isdigit() or len(parts[1]) > 18:
        await query.answer("This button is no longer valid.")
        return
    if not await admin_only(update, context, "feed try"):
        return
    feed_id = int(parts[1])
    outcome = newsroom.try_feed_now(context.services, query.from_user.id, feed_id)
    if outcome is newsroom.TryNow.STARTED:
        await query.answer(f"Fetching feed #{feed_id} now. /feeds shows how it went.")
    elif outcome is newsroom.TryNow.BUSY:
        await query.answer(f"Feed #{feed_id} is being fetched right now.")
    else:
        await query.answer(f"Feed #{feed_id} is not polled (removed?). /feeds lists the feeds.", show_alert=True)


async def addfeed_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "addfeed"):
        return
    services = context.services
    usage = USAGE["addfeed"].format(sections=slugs(services.sections))
    args = context.args or []
    if len(args) != 2:
        await reply(update, esc(usage))
        return
    url, word = args
    if not re.match(r"^https?://[^\s/]+", url):
        await reply(update, esc(f"“{short(url, 100)}” is not an http(s) URL.\n\n{usage}"))
        return
    section = find_section(services.sections, word)
    if section is None:
        await reply(update, esc(f"Unknown section “{short(word, 40)}”.\n\n{usage}"))
        return
    try:
        added = await newsroom.add_checked_feed(services, update.effective_user.id if update.effective_user else 0,
                                                url, section.slug)
    except (FetchError, ParseError) as exc:
        await reply(update, esc(f"Could not add that feed — {short(str(exc), 300)}\n\n{usage}"))
        return
    feed = added.feed
    if added.already:
        await reply(update, (
            f"Feed <b>#{feed.id}</b> <code>{esc(shown_url(feed.url, services.settings.url_safe_params))}</code> "
            f"is already polled ({esc(_rule_text(feed.rule, services.section_names))}). Nothing was changed."
        ))
        return
    verb = "Added back" if added.existed else "Added"
    await reply(update, (
        f"{verb} feed <b>#{feed.id}</b>: <b>{esc(short(feed.title or shown_url(feed.url, services.settings.url_safe_params), 200))}</b> — "
        f"{esc(KIND_NAMES.get(added.kind, added.kind))}, {plural(added.items, 'item')}, section {esc(section.name)}.\n"
        f"<code>{esc(shown_url(feed.url, services.settings.url_safe_params))}</code>\n"
        "Its current items are stored as seen on its first poll; only stories that appear "
        "after that are pushed."
        + _offers_text(added.offers, feed.url, services.settings.url_safe_params)
    ))


def _offers_text(offers: tuple[Offer, ...], taken: str, safe: frozenset[str]) -> str:
    """What else the page offered, to add with /addfeed."""
    others = [o for o in offers if o.url != taken][:8]
    if not others:
        return ""
    lines = [f"• {esc(KIND_NAMES.get(o.kind, o.kind))} ({esc(o.how)}): <code>{esc(shown_url(o.url, safe))}</code>"
             for o in others]
    return "\n\nThe page also offers (add one with /addfeed URL section):\n" + "\n".join(lines)


async def removefeed_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "removefeed"):
        return
    args = context.args or []
    number = args[0].lstrip("#") if len(args) == 1 else ""
    # Feed ids are SQLite rowids: more than 18 digits is not one of ours (and would not bind).
    if not number.isdigit() or len(number) > 18:
        await reply(update, esc(USAGE["removefeed"]))
        return
    feed_id = int(number)
    admin_id = update.effective_user.id if update.effective_user else 0
    feed, removed = await newsroom.remove_feed(context.services, admin_id, feed_id)
    if feed is None:
        await reply(update, esc(f"There is no feed #{feed_id}. /feeds lists them."))
    elif not removed:
        await reply(update, esc(f"Feed #{feed_id} was already removed."))
    else:
        safe = context.services.settings.url_safe_params
        await reply(update, f"Removed feed <b>#{feed_id}</b> <code>{esc(shown_url(feed.url, safe))}</code>. "
                            + esc("It stays removed after a restart; /addfeed brings it back."))
