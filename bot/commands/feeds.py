"""Admin commands for feeds: /feeds (with Try now), /addfeed, /removefeed, for admins only.

Thin handlers: check the sender (bot.commands.admin.admin_only), parse, one bot.newsroom call,
render, reply.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import channels, newsroom
from bot.broadcast_texts import duration_text
from bot.callbacks import pack, unpack
from bot.commands import sender
from bot.commands.admin import admin_only, slugs
from bot.commands.common import STALE_BUTTON, reply
from bot.context import NewsContext, Services, find_section
from bot.i18n import N_, _, ngettext
from bot.pipeline.discover import Offer
from bot.pipeline.fetch import FetchError
from bot.pipeline.parse import ParseError
from bot.pipeline.urls import redact_url
from bot.render import esc, fit_blocks, format_time, short
from storage.models import SectionRule

SHOWN_URL = 120  # characters of a feed URL shown in replies (a 10 KB URL must not fill one)
TRY_BUTTONS = 30  # "Try now" buttons under /feeds at most

ADDFEED_USAGE = N_(
    "Usage: /addfeed feed-or-page-URL section\n"
    "Example: /addfeed https://example.com/sports/ sports\nSections: {sections}"
)
REMOVEFEED_USAGE = N_("Usage: /removefeed feed-id (the ids are in /feeds)\nExample: /removefeed 3")
# What a source turned out to be (bot.pipeline.sources.KIND_NAMES, for the command line).
KIND_LABELS = {
    "rss": N_("RSS/Atom feed"),
    "json": N_("JSON Feed"),
    "sitemap": N_("news sitemap"),
    "html": N_("HTML listing page"),
}
# How a page offered a source (bot.pipeline.discover), by the source's kind.
OFFERED = {
    "rss": N_("named as its feed in the page's head"),
    "sitemap": N_("listed in the site's robots.txt"),
}


def kind_label(kind: str) -> str:
    return _(KIND_LABELS[kind]) if kind in KIND_LABELS else kind


def addfeed_usage(services: Services) -> str:
    return _(ADDFEED_USAGE).format(sections=slugs(services.sections))


def shown_url(url: str, safe: frozenset[str]) -> str:
    """A feed URL as replies show it: no credentials or query values but those of the
    `safe` parameters (NEWSBOT_URL_SAFE_PARAMS), and not too long."""
    return short(redact_url(url, safe), SHOWN_URL)


def _rule_text(rule: SectionRule, names: dict[str, str]) -> str:
    fallback = names.get(rule.section or "", rule.section or "") or _("none")
    if rule.kind == "fixed":
        return _("section {section}").format(section=fallback)
    if rule.kind == "category":
        if rule.domain:
            return _("section from the category (domain “{domain}”), else {section}").format(
                domain=rule.domain, section=fallback)
        return _("section from the category, else {section}").format(section=fallback)
    return _("section from URL path segment {n}, else {section}").format(n=rule.segment, section=fallback)


def _poll_text(state: newsroom.FeedState) -> str:
    feed = state.feed
    if state.next_in is None:
        return _("not polled now")
    if state.next_in <= 0:
        return _("being fetched") if feed.error_count == 0 else _("being tried now")
    wait = duration_text(state.next_in)
    return (_("next poll in {duration}") if feed.error_count == 0 else _("next try in {duration}")).format(duration=wait)


def _feed_block(state: newsroom.FeedState, services: Services, now: float, zone: tzinfo) -> str:
    feed = state.feed
    names = services.section_names
    safe = services.settings.url_safe_params
    title = f" — {esc(short(feed.title, 80))}" if feed.title else ""
    head = f"<b>#{feed.id}</b> <code>{esc(shown_url(feed.url, safe))}</code>{title}"
    if not feed.enabled:
        removed = esc(_("(removed)"))
        return f"{head} <i>{removed}</i>"
    success = (_("last success {duration} ago").format(duration=duration_text(now - feed.last_success_at))
               if feed.last_success_at else _("no successful poll yet"))
    lines = [head, esc(f"{_rule_text(feed.rule, names)} · {success} · {_poll_text(state)}"),
             esc(_pace_text(state, services, now, zone))]
    if feed.capped:
        lines.append(esc(ngettext(
            "last poll: {n} new story stored without alerts (more than {max} at once, too old, or dated ahead)",
            "last poll: {n} new stories stored without alerts (more than {max} at once, too old, or dated ahead)",
            feed.capped,
        ).format(n=feed.capped, max=services.settings.alerts_per_poll)))
    if feed.error_count:
        since = feed.failing_since
        error = short(feed.last_error or "", 200)
        if since is not None:
            failing = ngettext(
                "⚠ failing since {time} ({duration} ago), {n} try in a row; last error: {error}",
                "⚠ failing since {time} ({duration} ago), {n} tries in a row; last error: {error}", feed.error_count,
            ).format(time=format_time(since, zone), duration=duration_text(now - since), n=feed.error_count,
                     error=error)
        else:
            failing = ngettext("⚠ failing, {n} try in a row; last error: {error}",
                               "⚠ failing, {n} tries in a row; last error: {error}", feed.error_count,
                               ).format(n=feed.error_count, error=error)
        lines.append(esc(failing))
    elif feed.last_error:
        lines.append(esc(_("last error (since recovered): {error}").format(error=short(feed.last_error, 200))))
    return "\n".join(lines)


def _push_text(state: newsroom.FeedState, now: float, zone: tzinfo) -> str:
    via = " + ".join(state.push_via)
    if not via:
        push = _("push: none")
    elif state.push_missed:
        push = _("push: {via} (missed a story: polled at its own pace)").format(via=via)
    else:
        push = _("push: {via}").format(via=via)
    sub = state.websub
    if sub is not None:
        if sub.active(now) and sub.expires_at is not None:
            push += " " + _("(WebSub lease until {time})").format(time=format_time(sub.expires_at, zone))
        elif sub.state == "pending":
            push += " " + _("(WebSub: waiting for the hub to verify)")
        else:
            push += " " + _("(WebSub {state}: {error})").format(state=sub.state, error=short(sub.last_error or "", 120))
    return push


def _pace_text(state: newsroom.FeedState, services: Services, now: float, zone: tzinfo) -> str:
    """Kind, interval, push state and cost: `RSS/Atom feed · every 45 s (adaptive) · push:
    WebSub until 12 Mar 14:00 · 80 requests in the last hour`."""
    feed = state.feed
    settings = services.settings
    kind = kind_label(feed.found_kind) if feed.found_kind else _("kind not known yet")
    if feed.kind != "auto":
        kind += f" (kind = {feed.kind})"
    if feed.selector:
        kind += ", " + _("selector “{selector}”").format(selector=short(feed.selector, 60))
    if settings.poll_fixed:
        every = _("every {duration} (NEWSBOT_POLL_SECONDS)").format(duration=duration_text(settings.poll_seconds))
    elif state.interval is not None:
        every = _("every {duration} (adaptive)").format(duration=duration_text(state.interval))
    else:
        every = _("interval: after its first poll")
    requests = ngettext("{n} request in the last hour", "{n} requests in the last hour", state.requests)
    return " · ".join((kind, every, _push_text(state, now, zone), requests.format(n=state.requests)))


def _channel_warnings(services: Services) -> str:
    """A line for each section's channel the bot cannot post in (bot.channels)."""
    lines = []
    for s in services.sections:
        if s.slug not in services.channel_trouble:
            continue
        trouble, error = services.channel_trouble[s.slug]
        lines.append(_(
            "⚠ {section}'s channel {channel}: {trouble}; its stories are not posted there until the bot "
            "is an admin with the right to post messages"
        ).format(section=s.name, channel=s.channel, trouble=_(trouble).format(error=error)))
    return "".join(f"\n{esc(line)}" for line in lines)


def _try_keyboard(failing: list[int]) -> InlineKeyboardMarkup | None:
    """A "Try now" button for each failing feed shown (Telegram takes 100 buttons at most)."""
    buttons = [InlineKeyboardButton(_("Try #{id} now").format(id=feed_id), callback_data=pack("feed", "try", feed_id))
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
        nothing = _("No feeds are configured: nothing is polled. Set NEWSBOT_FEEDS, or add one.")
        await reply(update, esc(f"{nothing} {addfeed_usage(services)}") + _channel_warnings(services))
        return
    now = services.clock.time()
    active = [s.feed for s in found if s.feed.enabled]
    failing = sum(1 for f in active if f.error_count)
    header = _("<b>Feeds</b>: {polled} polled, {failing} failing").format(
        polled=len(active), failing=failing)
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
        await query.answer(_(STALE_BUTTON))
        return
    if not await admin_only(update, context, "feed try"):
        return
    feed_id = int(parts[1])
    outcome = newsroom.try_feed_now(context.services, query.from_user.id, feed_id)
    if outcome is newsroom.TryNow.STARTED:
        await query.answer(_("Fetching feed #{id} now. /feeds shows how it went.").format(id=feed_id))
    elif outcome is newsroom.TryNow.BUSY:
        await query.answer(_("Feed #{id} is being fetched right now.").format(id=feed_id))
    else:
        await query.answer(_("Feed #{id} is not polled (removed?). /feeds lists the feeds.").format(id=feed_id),
                           show_alert=True)


async def addfeed_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "addfeed"):
        return
    services = context.services
    how = addfeed_usage(services)
    args = context.args or []
    if len(args) != 2:
        await reply(update, esc(how))
        return
    url, word = args
    if not re.match(r"^https?://[^\s/]+", url):
        await reply(update, esc(_("“{url}” is not an http(s) URL.").format(url=short(url, 100)) + f"\n\n{how}"))
        return
    section = find_section(services.sections, word)
    if section is None:
        await reply(update, esc(_("Unknown section “{section}”.").format(section=short(word, 40)) + f"\n\n{how}"))
        return
    try:
        added = await newsroom.add_checked_feed(services, update.effective_user.id if update.effective_user else 0,
                                                url, section.slug)
    except (FetchError, ParseError) as exc:
        failed = _("Could not add that feed — {reason}").format(reason=short(str(exc), 300))
        await reply(update, esc(f"{failed}\n\n{how}"))
        return
    feed = added.feed
    safe = services.settings.url_safe_params
    code = f"<code>{esc(shown_url(feed.url, safe))}</code>"
    if added.already:
        await reply(update, _(
            "Feed <b>#{id}</b> {url} is already polled ({rule}). Nothing was changed."
        ).format(id=feed.id, url=code, rule=esc(_rule_text(feed.rule, services.section_names))))
        return
    if added.existed:
        done = ngettext("Added back feed <b>#{id}</b>: <b>{title}</b> — {kind}, {n} item, section {section}.",
                        "Added back feed <b>#{id}</b>: <b>{title}</b> — {kind}, {n} items, section {section}.",
                        added.items)
    else:
        done = ngettext("Added feed <b>#{id}</b>: <b>{title}</b> — {kind}, {n} item, section {section}.",
                        "Added feed <b>#{id}</b>: <b>{title}</b> — {kind}, {n} items, section {section}.",
                        added.items)
    await reply(update, (
        done.format(id=feed.id, title=esc(short(feed.title or shown_url(feed.url, safe), 200)),
                    kind=esc(kind_label(added.kind)), n=added.items, section=esc(section.name))
        + f"\n{code}\n"
        + esc(_("Its current items are stored as seen on its first poll; only stories that appear after that are pushed."))
        + _offers_text(added.offers, feed.url, safe)
    ))


def _listing_offer(offer: Offer) -> str:
    """'this page as a listing page: 3 stories found by its article elements'."""
    if offer.found_by == "articles":
        how = ngettext("this page as a listing page: {n} story found by its article elements",
                       "this page as a listing page: {n} stories found by its article elements", offer.stories)
    elif offer.found_by == "links":
        how = ngettext("this page as a listing page: {n} story found by its links to stories",
                       "this page as a listing page: {n} stories found by its links to stories", offer.stories)
    else:
        how = ngettext("this page as a listing page: {n} story found", "this page as a listing page: {n} stories found",
                       offer.stories)
    return how.format(n=offer.stories)


def _offers_text(offers: tuple[Offer, ...], taken: str, safe: frozenset[str]) -> str:
    """What else the page offered, to add with /addfeed."""
    others = [o for o in offers if o.url != taken][:8]
    if not others:
        return ""
    lines = []
    for o in others:
        how = _(OFFERED[o.kind]) if o.kind in OFFERED else _listing_offer(o) if o.kind == "html" else o.how
        lines.append(f"• {esc(kind_label(o.kind))} ({esc(how)}): <code>{esc(shown_url(o.url, safe))}</code>")
    return "\n\n" + esc(_("The page also offers (add one with /addfeed URL section):")) + "\n" + "\n".join(lines)


async def removefeed_command(update: Update, context: NewsContext) -> None:
    if not await admin_only(update, context, "removefeed"):
        return
    args = context.args or []
    number_text = args[0].lstrip("#") if len(args) == 1 else ""
    # Feed ids are SQLite rowids: more than 18 digits is not one of ours (and would not bind).
    if not number_text.isdigit() or len(number_text) > 18:
        await reply(update, esc(_(REMOVEFEED_USAGE)))
        return
    feed_id = int(number_text)
    admin_id = update.effective_user.id if update.effective_user else 0
    feed, removed = await newsroom.remove_feed(context.services, admin_id, feed_id)
    if feed is None:
        await reply(update, esc(_("There is no feed #{id}. /feeds lists them.").format(id=feed_id)))
    elif not removed:
        await reply(update, esc(_("Feed #{id} was already removed.").format(id=feed_id)))
    else:
        safe = context.services.settings.url_safe_params
        removed_text = _("Removed feed <b>#{id}</b> {url}.").format(
            id=feed_id, url=f"<code>{esc(shown_url(feed.url, safe))}</code>")
        await reply(update, f"{removed_text} " + esc(_("It stays removed after a restart; /addfeed brings it back.")))
