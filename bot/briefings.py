"""Briefings: at each time a reader chose, one message with the stories for their sections
and keywords since the previous one.

Scheduling: every minute `schedule` queues a 'briefing' outbox row for each chat whose next
briefing time has come (through an index on chats.next_briefing_at), keyed by its slot so a
restart never queues one twice, and moves the chat's next time on. The rows of one slot are
spread at the rate they can be sent: the i-th briefing queued in a round is due i /
NEWSBOT_RATE_GLOBAL seconds after its slot, so 20,000 readers who chose 07:00 are due over
the 11 minutes the rate needs anyway, instead of 20,000 rows due in the same second in
front of every alert. What each says is composed when it is sent (`compose`), so a late
briefing is not stale; which stories it carries is decided by story, not by clock (see
`compose`), so no two briefings carry the same story.
"""

from __future__ import annotations

import logging
from datetime import tzinfo

from bot import localtime, render
from bot.context import Services
from storage import articles, chats, outbox, subscriptions
from storage.due import DueMessage
from storage.models import Article

log = logging.getLogger(__name__)

MAX_TIMES = 3
SCHEDULE_BATCH = 5000


async def schedule(services: Services, now: float) -> int:
    """Queue the briefings whose time has come; returns how many."""
    rate = max(services.settings.global_rate, 1.0)
    queued = 0
    while True:
        due = await chats.briefings_due(services.db, now, SCHEDULE_BATCH)
        if not due:
            return queued
        items: list[tuple[int, str, float]] = []
        plans: list[tuple[int, float | None]] = []
        for index, chat in enumerate(due):
            zone = services.chat_zone(chat.timezone)
            slot_at = chat.next_briefing_at or now
            items.append((chat.id, localtime.slot_name(slot_at, zone), max(slot_at, now) + (queued + index) / rate))
            plans.append((chat.id, localtime.next_slot(chat.briefings, zone, max(slot_at, now))))
        added = await outbox.enqueue_briefings(services.db, items, now=now)
        await chats.schedule_briefing(services.db, plans)
        queued += added
        if added:
            services.outbox_wake.set()
        if len(due) < SCHEDULE_BATCH:
            log.info("briefings queued count=%d", queued)
            return queued


async def compose(services: Services, row: DueMessage) -> render.Rendered | None:
    """The stories stored since the reader's previous briefing, for their sections and
    keywords (briefing-only ones included), without those an exclusion removes.

    "Since" is by story, not by clock: the previous briefing's cut-off is the newest story it
    looked at, recorded when it was sent (storage.chats.set_last_briefing). This briefing
    notes its own cut-off now and it counts once the message is out, so a briefing sent late
    or composed again after a restart neither repeats a story nor skips one. The first
    briefing takes the stories fetched since briefings were turned on.
    The header shows the slot the reader chose, not when the message happens to go out.
    None when no story is new and the reader did not ask to be told so (/settings)."""
    chat = row.chat
    zone = services.chat_zone(chat.timezone)
    cutoff = await chats.briefing_cutoff(services.db, chat.id)
    since = chat.last_briefing_at or row.created_at - 24 * 3600
    items, newest = await stories_since(services, chat.id, since, after_rowid=cutoff)
    await chats.note_briefing_looked_at(services.db, chat.id, newest)
    if not items and not chat.nothing_new:
        return None
    return render.briefing(items, services.section_names, zone, when=slot_time(row, zone))


def slot_time(row: DueMessage, zone: tzinfo) -> str:
    """'07:30': the reader's time the briefing row was queued for (its key names the slot)."""
    slot = row.key.removeprefix("br:")
    if slot != row.key and "T" in slot:
        return slot.rpartition("T")[2]
    return localtime.slot_name(row.next_attempt_at, zone).split("T")[1]


async def stories_since(
    services: Services, chat_id: int, since: float, *, after_rowid: int | None = None
) -> tuple[list[tuple[Article, str]], int]:
    """(story, reason) pairs for the chat's briefing, and the newest story looked at."""
    subs = await subscriptions.subscriptions_for_chat(services.db, chat_id)
    found, newest = await articles.matching_since(
        services.db.reports, since,
        sections=[s.value for s in subs if s.kind == "section"],
        keywords=[s.value for s in subs if s.kind == "keyword"],
        after_rowid=after_rowid,
    )
    if any(s.kind == "exclude" for s in subs):
        found = [(a, r) for a, r in found if not services.matcher.excludes(chat_id, a)]
    return found, newest
