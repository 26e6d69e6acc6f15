"""Frozen data types shared by every stage: the pipeline speaks these, storage stores them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SubscriptionKind = Literal["section", "keyword", "exclude"]
SubscriptionMode = Literal["instant", "briefing"]


@dataclass(frozen=True, slots=True)
class Section:
    """A section of the site: `slug` is what readers type, `name` what they see, `channel`
    the Telegram channel (e.g. "@herald_sports") that also gets every new story of it."""

    slug: str
    name: str
    channel: str | None = None


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
    # Every section the story was published in, `section` first (one story, one row).
    sections: tuple[str, ...] = ()
    rowid: int | None = None  # set once stored
    revision: int = 0  # corrections of its title or link so far
    revised_at: float | None = None

    @property
    def all_sections(self) -> tuple[str, ...]:
        if self.sections:
            return self.sections
        return (self.section,) if self.section else ()


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
    capped: int = 0  # new stories the last poll stored without alerting (the per-poll cap)
    failing_since: float | None = None  # when its current run of errors began (wall time)
    kind: str = "auto"  # what the URL serves: auto (found out), rss, sitemap or html
    selector: str | None = None  # a listing page's CSS selector for its stories
    found_kind: str | None = None  # what the last answer turned out to be


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
    timezone: str | None = None  # IANA name; None: the newsroom's
    quiet_start: int | None = None  # minutes after local midnight; None: no quiet hours
    quiet_end: int | None = None
    quiet_mode: Literal["hold", "silent"] = "hold"
    briefings: tuple[int, ...] = ()  # local times, minutes after midnight
    next_briefing_at: float | None = None
    last_briefing_at: float | None = None
    nothing_new: bool = False  # a briefing with no story is sent ("Nothing new …") rather than skipped
    language: str | None = None  # "en", "sv"…; None: the newsroom's (NEWSBOT_LANGUAGE)


@dataclass(frozen=True, slots=True)
class Subscription:
    chat_id: int
    kind: SubscriptionKind
    value: str
    display: str
    id: int = 0
    mode: SubscriptionMode = "instant"
    thread_id: int | None = None  # the forum topic a group bound this section to
