"""What readers change: subscriptions and chat state, kept in step in storage and the matcher.

Handlers call these; each returns what happened so the handler can say it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bot.keywords import KeywordError, normalise_keyword, parse_keywords
from bot.services import Services
from storage import chats, subscriptions
from storage.models import Chat, Subscription, SubscriptionKind
from storage.subscriptions import AddResult


class Outcome(enum.Enum):
    ADDED = "added"
    EXISTS = "exists"
    LIMIT = "limit"
    INVALID = "invalid"
    REMOVED = "removed"
    MISSING = "missing"


@dataclass
class FollowReport:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # complete sentences for the reader
    over_limit: list[str] = field(default_factory=list)


@dataclass
class UnfollowReport:
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


async def register_chat(services: Services, chat_id: int, chat_type: str, title: str | None) -> Chat:
    """A chat talks to us (or lets us back in): it exists and is reachable again."""
    chat = await chats.ensure_chat(services.db, chat_id, chat_type, title)
    services.matcher.set_silenced(chat_id, chat.paused)
    return chat


async def add(
    services: Services, chat_id: int, kind: SubscriptionKind, value: str, display: str
) -> Outcome:
    result = await subscriptions.add_subscription(
        services.db, chat_id, kind, value, display, limit=services.settings.max_subscriptions
    )
    if result is AddResult.ADDED:
        services.matcher.add(Subscription(chat_id=chat_id, kind=kind, value=value, display=display))
        return Outcome.ADDED
    return Outcome.EXISTS if result is AddResult.EXISTS else Outcome.LIMIT


async def remove(services: Services, chat_id: int, kind: SubscriptionKind, value: str) -> Outcome:
    if await subscriptions.remove_subscription(services.db, chat_id, kind, value):
        services.matcher.remove(chat_id, kind, value)
        return Outcome.REMOVED
    return Outcome.MISSING


async def follow(services: Services, chat_id: int, text: str) -> FollowReport:
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
        outcome = await add(services, chat_id, "keyword", value, keyword)
        if outcome is Outcome.LIMIT:
            followed = await _followed(services, chat_id, "keyword")
        {
            Outcome.ADDED: report.added,
            Outcome.EXISTS: report.existing,
            Outcome.LIMIT: report.over_limit,
        }[outcome].append(value)
    return report


async def unfollow(services: Services, chat_id: int, text: str) -> UnfollowReport:
    """Remove keywords (or sections named like one)."""
    report = UnfollowReport()
    sections = {s.slug: s for s in services.sections}
    by_name = {s.name.casefold(): s.slug for s in services.sections}
    # Only what the chat follows is deleted: words it never followed cost no write.
    followed = await _followed(services, chat_id, "keyword")
    followed_sections = await _followed(services, chat_id, "section")
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
        if value in followed and await remove(services, chat_id, "keyword", value) is Outcome.REMOVED:
            followed.discard(value)
            report.removed.append(value)
        else:
            report.missing.append(keyword)
    return report


async def _followed(services: Services, chat_id: int, kind: SubscriptionKind) -> set[str]:
    return {s.value for s in await subscriptions.subscriptions_for_chat(services.db, chat_id) if s.kind == kind}


async def toggle_section(services: Services, chat_id: int, slug: str) -> Outcome:
    """Subscribe if not subscribed, else unsubscribe."""
    if await remove(services, chat_id, "section", slug) is Outcome.REMOVED:
        return Outcome.REMOVED
    return await add(services, chat_id, "section", slug, slug)


async def set_paused(services: Services, chat_id: int, paused: bool) -> None:
    await chats.set_option(services.db, chat_id, "paused", paused)
    services.matcher.set_silenced(chat_id, paused)


async def forget(services: Services, chat_id: int) -> bool:
    """/stop: delete the chat, its subscriptions and its queue."""
    services.matcher.remove_chat(chat_id)
    return await chats.delete_chat(services.db, chat_id)


async def deactivate(services: Services, chat_id: int, reason: str) -> None:
    services.matcher.set_silenced(chat_id, True)
    await chats.deactivate_chat(services.db, chat_id, reason)


async def mute_reason(services: Services, chat_id: int, reason: str) -> Outcome:
    kind, _, value = reason.partition(":")
    if not value:
        return Outcome.INVALID
    if kind == "section":
        return await remove(services, chat_id, "section", value)
    if kind == "keyword":
        return await remove(services, chat_id, "keyword", value)
    return Outcome.INVALID
