"""Frozen data types shared by every stage: the pipeline speaks these, storage stores them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SubscriptionKind = Literal["section", "keyword"]


@dataclass(frozen=True, slots=True)
class Section:
    """A section of the site: `slug` is what readers type, `name` what they see."""

    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class SectionRule:
    """How a feed's items get their section.

    kind "fixed":    every item is `section`.
    kind "category": the item's category whose domain is `domain` (e.g. `<category domain="section">`)
                     names the section; `mapping` maps category text to a slug.
    kind "path":     the section is the URL path segment at `segment` (0-based) mapped by `mapping`
                     (or used as the slug when it is one).
    `section` is also the fall-back when a rule finds nothing.
    """

    kind: Literal["fixed", "category", "path"] = "fixed"
    section: str | None = None
    domain: str | None = None
    segment: int = 0
    mapping: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Article:
    """One story, normalised: plain text, UTC epoch seconds, a stable id."""

    id: str
    url: str
    title: str
    summary: str
    section: str | None
    tags: tuple[str, ...]
    published_at: float
    fetched_at: float
    image_url: str | None = None
    feed_id: int | None = None


@dataclass(frozen=True, slots=True)
class Feed:
    id: int
    url: str
    rule: SectionRule
    title: str | None
    etag: str | None
    last_modified: str | None
    last_success_at: float | None
    last_error: str | None
    error_count: int
    next_poll_at: float
    primed: bool
    enabled: bool
    source: str


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    type: str
    title: str | None
    active: bool
    paused: bool
    link_previews: bool
    combine: bool
    inactive_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    chat_id: int
    kind: SubscriptionKind
    value: str
    display: str
    id: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    """One chat should hear about one article, for these reasons (e.g. "section:world", "keyword:drones")."""

    chat_id: int
    article_id: str
    reasons: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    chat_id: int
    article_id: str | None
    broadcast_id: int | None
    priority: int
    reasons: tuple[str, ...]
    state: str
    attempts: int
    next_attempt_at: float
