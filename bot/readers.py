"""What readers change: subscriptions and chat state, kept in step in storage and the matcher.

Handlers call these; each returns what happened so the handler can say it.

Who is a reader: a chat joins the audience by /start (a deep link counts) or by subscribing,
and leaves it by /stop (its data is deleted), by blocking the bot or by removing it from a
group. Reading (/latest, /search, /related, inline queries) never makes anyone a reader.
Settings changed by a chat that has not started the bot are kept, without making it one.

Every change that reaches both the database and the matcher holds the chat's lock
(`services.chat_locks`), so two commands of one chat never interleave between the two: a
/follow racing a /stop leaves either a reader with that keyword or no trace of either.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from bot import localtime
from bot.broadcast import DRAIN_SECONDS
from bot.context import Services
from bot.keywords import KeywordError, normalise_keyword, parse_keywords
from storage import chats, outbox, subscriptions
from storage.models import Chat, Subscription, SubscriptionKind, SubscriptionMode
from storage.subscriptions import AddResult

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    ADDED = "added"
    EXISTS = "exists"
    LIMIT = "limit"
    INVALID = "invalid"
    REMOVED = "removed"
    MISSING = "missing"
    REPLACED = "replaced"
    MOVED = "moved"
    GONE = "gone"  # the chat was deleted (/stop) while the change waited


@dataclass
class FollowReport:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # complete sentences for the reader
    over_limit: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # the opposite choice was dropped
    moved: list[str] = field(default_factory=list)  # followed already, now in this topic
    gone: bool = False  # the chat stopped the bot meanwhile: nothing was added


@dataclass
class UnfollowReport:
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


async def join(services: Services, chat_id: int, chat_type: str, title: str | None) -> Chat:
    """/start or a subscription: the chat is (again) a reader."""
    async with services.chat_locks.hold(chat_id):
        chat = await chats.join(services.db, chat_id, chat_type, title, now=services.clock.time())
        services.matcher.set_silenced(chat_id, False)
    return chat


async def known_chat(services: Services, chat_id: int, chat_type: str, title: str | None) -> Chat:
    """A chat whose settings are about to change: its row, made if needed (not a reader)."""
    chat = await chats.get_chat(services.db, chat_id)
    return chat or await chats.remember(services.db, chat_id, chat_type, title, now=services.clock.time())


async def come_back(services: Services, chat_id: int) -> bool:
    """Unblocked, or added to a group again: a reader who had blocked us is one again."""
    chat = await chats.get_chat(services.db, chat_id)
    if chat is None or chat.active or chat.inactive_reason == chats.NOT_STARTED:
        return False
    await join(services, chat_id, chat.type, chat.title)
    return True


async def add(
    services: Services, chat_id: int, kind: SubscriptionKind, value: str, display: str, *,
    mode: SubscriptionMode = "instant", thread_id: int | None = None, forum: bool = False,
) -> Outcome:
    """Add one subscription (or exclusion); a keyword replaces an exclusion of the same word
    and the other way round. In a forum group (`forum`) a subscription's alerts go to the
    topic it was made in (`thread_id`; None: the General topic), and one made again in
    another topic moves there."""
    async with services.chat_locks.hold(chat_id):
        return await _add(services, chat_id, kind, value, display, mode=mode, thread_id=thread_id, forum=forum)


async def _add(
    services: Services, chat_id: int, kind: SubscriptionKind, value: str, display: str, *,
    mode: SubscriptionMode, thread_id: int | None, forum: bool,
) -> Outcome:
    limit = services.settings.max_subscriptions
    added = await subscriptions.add_subscription(
        services.db, chat_id, kind, value, display, limit=limit, now=services.clock.time(), mode=mode,
        thread_id=thread_id if kind != "exclude" else None,
    )
    if added.result is AddResult.NO_CHAT:
        return Outcome.GONE
    moves = added.result is AddResult.EXISTS and forum and kind != "exclude"
    if moves and await subscriptions.set_thread(services.db, chat_id, kind, value, thread_id):
        services.matcher.set_thread(chat_id, value, thread_id, kind)
        return Outcome.MOVED
    if added.subscription is None:
        return Outcome.EXISTS if added.result is AddResult.EXISTS else Outcome.LIMIT
    if added.result is AddResult.REPLACED:
        services.matcher.remove(chat_id, "exclude" if kind == "keyword" else "keyword", value)
    services.matcher.add(added.subscription)
    return Outcome.REPLACED if added.result is AddResult.REPLACED else Outcome.ADDED


async def remove(services: Services, chat_id: int, kind: SubscriptionKind, value: str) -> Outcome:
    async with services.chat_locks.hold(chat_id):
        return await _remove(services, chat_id, kind, value)


async def _remove(services: Services, chat_id: int, kind: SubscriptionKind, value: str) -> Outcome:
    if await subscriptions.remove_subscription(services.db, chat_id, kind, value):
        services.matcher.remove(chat_id, kind, value)
        return Outcome.REMOVED
    return Outcome.MISSING


async def follow(
    services: Services, chat_id: int, text: str, *, kind: SubscriptionKind = "keyword",
    thread_id: int | None = None, forum: bool = False,
) -> FollowReport:
    """/follow (or, with kind "exclude", /exclude) each keyword of `text`; in a forum, into
    the topic it was sent from (see `add`)."""
    report = FollowReport()
    # Once the limit is reached the rest are only sorted into "already followed" and "over
    # the limit": a pasted essay must not become thousands of writes.
    followed: set[str] | None = None
    for keyword in parse_keywords(text):
        try:
            value = normalise_keyword(keyword)
        except KeywordError as exc:
            report.refused.append(exc.message)
            continue
        if followed is not None:
            (report.existing if value in followed else report.over_limit).append(value)
            continue
        outcome = await add(services, chat_id, kind, value, keyword, thread_id=thread_id, forum=forum)
        if outcome is Outcome.GONE:
            report.gone = True
            return report
        if outcome is Outcome.LIMIT:
            followed = await _followed(services, chat_id, kind)
        {
            Outcome.ADDED: report.added,
            Outcome.REPLACED: report.replaced,
            Outcome.EXISTS: report.existing,
            Outcome.LIMIT: report.over_limit,
            Outcome.MOVED: report.moved,
        }[outcome].append(value)
    return report


async def unfollow(services: Services, chat_id: int, text: str, *, kind: SubscriptionKind = "keyword") -> UnfollowReport:
    """Remove keywords (or sections named like one); with kind "exclude", exclusions."""
    report = UnfollowReport()
    sections = {s.slug: s for s in services.sections}
    by_name = {s.name.casefold(): s.slug for s in services.sections}
    # Only what the chat follows is deleted: words it never followed cost no write.
    followed = await _followed(services, chat_id, kind)
    followed_sections = await _followed(services, chat_id, "section") if kind == "keyword" else set()
    for keyword in parse_keywords(text):
        slug = by_name.get(keyword.casefold(), keyword.casefold())
        if slug in followed_sections and await remove(services, chat_id, "section", slug) is Outcome.REMOVED:
            followed_sections.discard(slug)
            report.removed.append(sections[slug].name if slug in sections else slug)
            continue
        try:
            value = normalise_keyword(keyword)
        except KeywordError:
            report.missing.append(keyword)
            continue
        if value in followed and await remove(services, chat_id, kind, value) is Outcome.REMOVED:
            followed.discard(value)
            report.removed.append(value)
        else:
            report.missing.append(keyword)
    return report


async def _followed(services: Services, chat_id: int, kind: SubscriptionKind) -> set[str]:
    return {s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == kind}


async def toggle_section(services: Services, chat_id: int, slug: str, *, thread_id: int | None = None) -> Outcome:
    """Subscribe if not subscribed, else unsubscribe. In a forum topic (`thread_id`): a
    section already followed elsewhere in the group moves to this topic instead."""
    async with services.chat_locks.hold(chat_id):
        current = next(
            (s for s in await subscriptions.subscriptions_for_chat(services.db, chat_id)
             if s.kind == "section" and s.value == slug),
            None,
        )  # fmt: skip
        if current is not None and thread_id is not None and current.thread_id != thread_id:
            await subscriptions.set_thread(services.db, chat_id, "section", slug, thread_id)
            services.matcher.set_thread(chat_id, slug, thread_id)
            return Outcome.MOVED
        if current is not None:
            return await _remove(services, chat_id, "section", slug)
        return await _add(services, chat_id, "section", slug, slug, mode="instant", thread_id=thread_id, forum=False)


async def set_mode(services: Services, sub: Subscription, mode: SubscriptionMode) -> None:
    async with services.chat_locks.hold(sub.chat_id):
        if await subscriptions.set_mode(services.db, sub.id, sub.chat_id, mode):
            services.matcher.set_mode(sub.chat_id, sub.kind, sub.value, mode)


async def pause(services: Services, chat_id: int) -> bool:
    """Alerts are held from now on (those queued too). False when already paused."""
    chat = await chats.get_chat(services.db, chat_id)
    if chat is None or chat.paused:
        return False
    await chats.set_option(services.db, chat_id, "paused", True, now=services.clock.time())
    await outbox.hold_pending(services.db, chat_id)
    return True


@dataclass(frozen=True, slots=True)
class Resumed:
    was_paused: bool
    released: int = 0
    dropped: int = 0


async def resume(services: Services, chat_id: int) -> Resumed:
    """Alerts again; those held while paused (the last 48 hours) come as one message."""
    chat = await chats.get_chat(services.db, chat_id)
    if chat is None or not chat.paused:
        return Resumed(False)
    now = services.clock.time()
    await chats.set_option(services.db, chat_id, "paused", False, now=now)
    released, dropped = await outbox.release_held(services.db, chat_id, now=now)
    if released:
        services.outbox_wake.set()
    return Resumed(True, released, dropped)


async def forget(services: Services, chat_id: int) -> bool:
    """/stop: delete the chat, its subscriptions, settings and queue. Returns once nothing
    more can reach the chat: its messages already on their way to Telegram are waited for
    (up to DRAIN_SECONDS, longer than the dispatcher's bound on one send), and none of the
    rest can be sent."""
    clock = services.clock
    async with services.chat_locks.hold(chat_id):
        services.matcher.remove_chat(chat_id)
        deadline = clock.monotonic() + DRAIN_SECONDS
        while (in_flight := await chats.stop_sending(services.db, chat_id, now=clock.time())) and (
            clock.monotonic() < deadline
        ):
            await clock.sleep(0.05)
        if in_flight:
            log.warning("stop: messages still in flight may arrive chat_id=%d count=%d", chat_id, in_flight)
        return await chats.delete_chat(services.db, chat_id)


async def deactivate(services: Services, chat_id: int, reason: str) -> None:
    async with services.chat_locks.hold(chat_id):
        services.matcher.set_silenced(chat_id, True)
        await outbox.block_chat(services.db, chat_id, reason, now=services.clock.time())


async def mute_reason(services: Services, chat_id: int, reason: str) -> Outcome:
    kind, _, value = reason.partition(":")
    if not value or kind not in ("section", "keyword"):
        return Outcome.INVALID
    return await remove(services, chat_id, "section" if kind == "section" else "keyword", value)


async def set_option(services: Services, chat: Chat, option: str, value: bool) -> None:
    """Link previews, combining bursts or nothing-new briefings (storage.chats.OPTIONS) on or off."""
    await chats.set_option(services.db, chat.id, option, value, now=services.clock.time())


async def set_quiet(services: Services, chat: Chat, what: str, span: tuple[int, int] | None) -> Chat | None:
    """Quiet hours "off", their mode ("hold", "silent"), or new hours (`span`, minutes after
    local midnight) in the current mode. Returns the chat as it is now."""
    db, now = services.db, services.clock.time()
    if what == "off":
        await chats.set_quiet(db, chat.id, None, None, now=now)
    elif what in ("hold", "silent"):
        await chats.set_quiet(db, chat.id, chat.quiet_start, chat.quiet_end, what, now=now)
    elif span is not None:
        await chats.set_quiet(db, chat.id, span[0], span[1], now=now)
    return await chats.get_chat(db, chat.id)


async def set_briefings(services: Services, chat: Chat, times: list[int]) -> float | None:
    """The chat's briefing times (local, up to three); returns when the next one is due."""
    zone = services.chat_zone(chat.timezone)
    now = services.clock.time()
    next_at = localtime.next_slot(times, zone, now)
    await chats.set_briefings(services.db, chat.id, times, next_at, last_at=now, now=now)
    return next_at


async def set_timezone(services: Services, chat: Chat, zone: str | None) -> None:
    """A new zone moves the next briefing to the same local time in it."""
    now = services.clock.time()
    await chats.set_timezone(services.db, chat.id, zone, now=now)
    if chat.briefings:
        next_at = localtime.next_slot(chat.briefings, services.chat_zone(zone), now)
        await chats.set_briefings(services.db, chat.id, list(chat.briefings), next_at, last_at=None, now=now)
