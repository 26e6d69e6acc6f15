"""Broadcasts: an admin's message, previewed, then fanned out to every active reader (or one
section's) through the outbox, with a live progress message and a final report.

The dispatcher does the sending (broadcast rows have a lane of their own, with the largest
share of the rate beside alerts: docs/delivery.md); this
module only writes the rows and watches them. `Progress` reads the outbox counts of one
broadcast on each tick of a repeating job and edits the admin's progress message at most every
PROGRESS_EDIT_SECONDS; it is rebuilt after a restart for every broadcast still 'sending'.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import html
import logging
import math
import re
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from bot import broadcast_texts as texts
from bot import i18n
from bot.callbacks import pack
from bot.clock import Clock
from bot.context import Services
from bot.i18n import _
from bot.render import esc
from bot.tgerrors import message_gone, not_modified
from storage import audit, broadcasts, chats
from storage.broadcasts import Broadcast, Counts

log = logging.getLogger(__name__)

# Telegram's limit is 4096 characters; the preview's heading needs a few of them.
MAX_TEXT = 4000
# Telegram's fee for a message sent with allow_paid_broadcast (Bot API: "0.1 Telegram Stars
# per message").
STARS_PER_MESSAGE = 0.1
PREVIEW_TTL = 600.0  # a preview's Send button works for 10 minutes
PROGRESS_TICK = 1.0  # how often the outbox counts are read
PROGRESS_EDIT_SECONDS = 3.0  # the progress message is edited at most this often
# Longer than the dispatcher's own bound on one send (30 s): a stop waits this long for the
# messages in flight before it reports them as possibly delivered.
DRAIN_SECONDS = 45.0
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


# --- the text readers get -------------------------------------------------------------------

# Telegram's HTML: these tags, these attributes, entities only as below.
_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "tg-spoiler",
     "a", "span", "blockquote", "tg-emoji"}
)  # fmt: skip
_TOKEN = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)\s*>"  # a tag: name and raw attributes
    r"|&(?:[a-z]+|#[0-9]+|#x[0-9a-fA-F]+);"  # a character reference
    r"|[<&]"  # anything else starting with these is invalid
)
_ATTR = re.compile(r'\s*([a-z-]+)(?:="([^"<>]*)")?')
_ENTITIES = frozenset({"&lt;", "&gt;", "&amp;", "&quot;"})


def _attributes_ok(tag: str, raw: str) -> bool:
    attrs: dict[str, str | None] = {}
    pos = 0
    raw = raw.strip()
    while pos < len(raw):
        match = _ATTR.match(raw, pos)
        if match is None or match.end() == pos:
            return False
        attrs[match.group(1)] = match.group(2)
        pos = match.end()
    if tag == "a":
        href = attrs.pop("href", None)
        return not attrs and href is not None and re.match(r"^(https?|tg)://\S+$", href) is not None
    if tag == "span":
        return attrs == {"class": "tg-spoiler"}
    if tag == "code":
        cls = attrs.pop("class", "")
        return not attrs and re.fullmatch(r"[\w+#.-]*", cls or "") is not None
    if tag == "blockquote":
        return attrs in ({}, {"expandable": None})
    if tag == "tg-emoji":
        return set(attrs) == {"emoji-id"} and (attrs["emoji-id"] or "").isdigit()
    return not attrs


def is_telegram_html(text: str) -> bool:
    """True when Telegram's HTML parser accepts `text`: known tags with their only allowed
    attributes, properly nested, and `&` only as a character reference."""
    stack: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token.startswith("&"):
            if token not in _ENTITIES and not token.startswith("&#"):
                return False
            continue
        if match.group(2) is None:
            return False  # a bare '<' or '&'
        closing, tag = match.group(1) == "/", match.group(2).lower()
        if tag not in _TAGS:
            return False
        if closing:
            if match.group(3).strip() or not stack or stack.pop() != tag:
                return False
        elif _attributes_ok(tag, match.group(3)):
            stack.append(tag)
        else:
            return False
    return not stack


def visible_text(text_html: str) -> str:
    """What a reader sees of Telegram HTML: tags gone, character references decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", text_html))


def reader_html(plain: str, formatted: str | None) -> str:
    """What readers get: the admin's formatting (bold, links… as Telegram sent them, turned
    into HTML) when it is valid Telegram HTML with the same text, else the plain text escaped.
    A literal `<b>` typed by the admin is text, never markup."""
    if formatted is not None and is_telegram_html(formatted) and visible_text(formatted) == plain:
        return formatted
    return esc(plain)


def too_long(plain: str) -> bool:
    return len(plain) > MAX_TEXT


# --- preview, send, cancel -------------------------------------------------------------------


class StartOutcome(enum.Enum):
    STARTED = "started"
    EMPTY = "empty"  # nobody in the audience any more
    NOT_YOURS = "not_yours"
    EXPIRED = "expired"
    ALREADY = "already"  # sending or over: a second press
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StartReport:
    outcome: StartOutcome
    total: int = 0
    state: str = ""


async def audience_size(services: Services, audience: str | None) -> int:
    return await broadcasts.audience_size(services.db, audience)


async def create_preview(
    services: Services, *, admin_id: int, chat_id: int, text_html: str, audience: str | None
) -> int:
    return await broadcasts.create(
        services.db, admin_id=admin_id, admin_chat_id=chat_id, html=text_html, audience=audience,
        now=services.clock.time(),
    )


async def set_preview_message(services: Services, broadcast_id: int, message_id: int) -> None:
    await broadcasts.set_preview_message(services.db, broadcast_id, message_id)


async def _own_preview(services: Services, broadcast_id: int, admin_id: int) -> Broadcast | StartReport:
    """The broadcast a button of its preview is for, if it is this admin's; else the answer."""
    record = await broadcasts.get(services.db, broadcast_id)
    if record is None:
        return StartReport(StartOutcome.UNKNOWN)
    if record.admin_id != admin_id:
        return StartReport(StartOutcome.NOT_YOURS, state=record.state)
    return record


async def start(services: Services, broadcast_id: int, admin_id: int, *, paid: bool = False) -> StartReport:
    """Send pressed: queue one message per reader of the audience, once. `paid` (Send fast,
    only when NEWSBOT_PAID_BROADCASTS is on): sent with allow_paid_broadcast."""
    record = await _own_preview(services, broadcast_id, admin_id)
    if isinstance(record, StartReport):
        return record
    now = services.clock.time()
    result = await broadcasts.start(
        services.db, broadcast_id, now=now, expires_before=now - PREVIEW_TTL,
        paid=paid and services.settings.paid_broadcasts, urgent=record.urgent,
    )
    if result.started:
        log.info("broadcast started broadcast_id=%d admin_id=%d total=%d paid=%s urgent=%s",
                 broadcast_id, admin_id, result.total, paid, record.urgent)
        await audit.record(services.db, admin_id, "broadcast", f"#{broadcast_id} to {result.total} chats", now=now)
        services.outbox_wake.set()
        outcome = StartOutcome.STARTED if result.total else StartOutcome.EMPTY
        return StartReport(outcome, result.total, result.state)
    if result.state == "expired":
        return StartReport(StartOutcome.EXPIRED, state="expired")
    return StartReport(StartOutcome.ALREADY, state=result.state)


async def toggle_urgent(services: Services, broadcast_id: int, admin_id: int) -> StartReport:
    """Urgent pressed on a preview: the broadcast ignores readers' quiet hours (or not)."""
    record = await _own_preview(services, broadcast_id, admin_id)
    if isinstance(record, StartReport):
        return record
    if not await broadcasts.set_urgent(services.db, broadcast_id, not record.urgent):
        return StartReport(StartOutcome.ALREADY, state=record.state)
    return StartReport(StartOutcome.STARTED, state="urgent" if not record.urgent else "ordinary")


async def cancel(services: Services, broadcast_id: int, admin_id: int) -> StartReport:
    """Cancel pressed on a preview: nothing is sent."""
    record = await _own_preview(services, broadcast_id, admin_id)
    if isinstance(record, StartReport):
        return record
    found = await broadcasts.cancel_preview(services.db, broadcast_id, now=services.clock.time())
    if found == "preview":
        log.info("broadcast cancelled broadcast_id=%d admin_id=%d", broadcast_id, admin_id)
        return StartReport(StartOutcome.STARTED, state="cancelled")
    return StartReport(StartOutcome.ALREADY, state=found)


async def get(services: Services, broadcast_id: int) -> Broadcast | None:
    return await broadcasts.get(services.db, broadcast_id)


async def audit_stop(services: Services, admin_id: int, broadcast_id: int) -> None:
    await audit.record(services.db, admin_id, "broadcast stop", f"#{broadcast_id}", now=services.clock.time())


async def recent(services: Services, limit: int = 10) -> list[tuple[Broadcast, Counts]]:
    found = await broadcasts.recent(services.db, limit)
    return [(b, await broadcasts.counts(services.db, b.id)) for b in found]


async def prepare_restart(services: Services) -> list[int]:
    """Before the dispatcher starts: a stop that a crash interrupted is completed (its rows
    in flight are not resent). Returns the broadcasts still sending, to follow again."""
    sending, stopped = await broadcasts.unfinished(services.db)
    if stopped:
        cancelled = await broadcasts.settle_stopped(services.db, stopped, now=services.clock.time())
        log.warning("stopped broadcast rows caught in flight cancelled count=%d", cancelled)
    return sending


# --- texts ---------------------------------------------------------------------------------


def estimate(services: Services, size: int, *, paid: bool) -> float:
    """Seconds to send `size` messages at the free (or paid) rate, other traffic aside, in
    whole seconds rounded up (a handful of chats is "≈ 1 s", not "≈ 0 s")."""
    settings = services.settings
    return math.ceil(size / (settings.paid_rate if paid else settings.global_rate))


def stars(services: Services, size: int) -> int:
    """Stars a paid send of `size` messages costs: Telegram bills only the messages beyond its
    free rate, so the first second's worth (NEWSBOT_RATE_GLOBAL) is free, and an audience
    that fits in it costs nothing."""
    billed = max(0, size - math.floor(services.settings.global_rate))
    return math.ceil(billed * STARS_PER_MESSAGE)


def stop_keyboard(broadcast_id: int) -> InlineKeyboardMarkup:
    stop = InlineKeyboardButton(_(texts.STOP), callback_data=pack("bc", "stop", broadcast_id))
    return InlineKeyboardMarkup([[stop]])


async def admin_language(services: Services, record: Broadcast) -> str:
    """The language of the admin's chat the broadcast was written in: its own (/language, or
    its Telegram language kept at first contact), else the newsroom's."""
    chat = await chats.get_chat(services.db, record.admin_chat_id)
    return (chat.language if chat is not None else None) or services.settings.language


# --- progress ---------------------------------------------------------------------------------


class StopOutcome(enum.Enum):
    STOPPED = "stopped"
    OVER = "over"  # already done, stopped or never started
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StopReport:
    outcome: StopOutcome
    counts: Counts | None = None
    in_flight: int = 0
    state: str = ""


class Progress:
    """Follows one sending broadcast: edits its progress message, reports when it is over.

    One instance per broadcast, held by its repeating job; `lock` keeps a tick and a Stop
    from editing the message at the same time.
    """

    def __init__(self, broadcast_id: int, clock: Clock, lang: str | None = None) -> None:
        self.broadcast_id = broadcast_id
        self.clock = clock
        # The language its author reads (None: looked up at the first message, after a restart).
        self.lang = lang
        self.lock = asyncio.Lock()
        self.finished = False
        self._last_text: str | None = None
        # As if just edited: after a restart the message may have been edited a moment ago.
        # (`begin` sends a new broadcast's first message at once.)
        self._last_edit = clock.monotonic()
        self._first: tuple[float, int] | None = None  # (monotonic, handled) at first look

    async def _language(self, services: Services, record: Broadcast) -> str:
        if self.lang is None:
            self.lang = await admin_language(services, record)
        return self.lang

    def _eta(self, counts: Counts) -> float | None:
        now = self.clock.monotonic()
        if self._first is None:
            self._first = (now, counts.handled)
            return None
        elapsed, done = now - self._first[0], counts.handled - self._first[1]
        if elapsed < 1.0 or done <= 0:
            return None
        return counts.remaining / (done / elapsed)

    async def begin(self, services: Services, bot: Bot) -> None:
        """The first progress message (sent as a new message, so the preview stays as it was)."""
        async with self.lock:
            record = await broadcasts.get(services.db, self.broadcast_id)
            if record is None:
                return
            counts = await broadcasts.counts(services.db, self.broadcast_id)
            with i18n.speaking(await self._language(services, record)):
                text = texts.progress_text(record, counts, self._eta(counts), services.section_names)
                await self._show(services, bot, record, text, final=False)

    async def tick(self, services: Services, bot: Bot) -> bool:
        """One look at the counts; True once the broadcast is over (the job can end)."""
        if self.lock.locked():
            return self.finished  # a Stop is being handled; it writes the last word
        async with self.lock:
            if self.finished:
                return True
            db = services.db
            record = await broadcasts.get(db, self.broadcast_id)
            if record is None or record.state != "sending":
                self.finished = True
                return True
            counts = await broadcasts.counts(db, self.broadcast_id)
            if self.clock.monotonic() - self._last_edit < PROGRESS_EDIT_SECONDS:
                self._eta(counts)
                return False
            if counts.remaining == 0:
                final = await broadcasts.finish_if_complete(db, self.broadcast_id, now=self.clock.time())
                if final is not None:
                    await self._report(services, bot, final)
                    return True
            with i18n.speaking(await self._language(services, record)):
                text = texts.progress_text(record, counts, self._eta(counts), services.section_names)
                await self._show(services, bot, record, text, final=False)
            return False

    async def stop(self, services: Services, bot: Bot) -> StopReport:
        """Stop pressed: cancel what is not sent yet and wait until nothing is in flight.

        Returns only when no message of the broadcast can be sent any more (or, after
        DRAIN_SECONDS, with the number still in flight, which may still arrive).
        """
        db = services.db
        async with self.lock:
            clock = self.clock
            deadline = clock.monotonic() + DRAIN_SECONDS
            first = await broadcasts.stop_pass(db, self.broadcast_id, now=clock.time())
            if first.state == "unknown":
                return StopReport(StopOutcome.UNKNOWN)
            if not first.stopped_now:
                return StopReport(StopOutcome.OVER, state=first.state)
            log.info("broadcast stopping broadcast_id=%d cancelled=%d in_flight=%d",
                     self.broadcast_id, first.cancelled, first.sending)
            last = first
            while last.sending and clock.monotonic() < deadline:
                await clock.sleep(0.1)
                last = await broadcasts.stop_pass(db, self.broadcast_id, now=clock.time())
            in_flight = 0
            if last.sending:
                in_flight = last.sending
                await broadcasts.stop_pass(db, self.broadcast_id, now=clock.time(), force=True)
                log.warning("broadcast stop gave up waiting broadcast_id=%d in_flight=%d",
                            self.broadcast_id, in_flight)
            counts = await broadcasts.counts(db, self.broadcast_id)
            await self._report(services, bot, counts, in_flight=in_flight)
            return StopReport(StopOutcome.STOPPED, counts, in_flight, "stopped")

    async def _report(self, services: Services, bot: Bot, counts: Counts, *, in_flight: int = 0) -> None:
        """The last edit of the progress message, and a report message (edits do not notify)."""
        self.finished = True
        record = await broadcasts.get(services.db, self.broadcast_id)
        if record is None:
            return
        with i18n.speaking(await self._language(services, record)):
            text = texts.final_text(record, counts, services.section_names, now=self.clock.time(),
                                    in_flight=in_flight, drain=DRAIN_SECONDS)
            report = texts.report_text(record, counts, visible_text(record.html))
        # Keep even the last edit within the edit rate.
        wait = PROGRESS_EDIT_SECONDS - (self.clock.monotonic() - self._last_edit)
        if wait > 0:
            await self.clock.sleep(wait)
        await self._show(services, bot, record, text, final=True)
        log.info("broadcast %s broadcast_id=%d sent=%d blocked=%d failed=%d cancelled=%d",
                 record.state, record.id, counts.sent, counts.blocked, counts.failed, counts.cancelled)
        with contextlib.suppress(TelegramError):
            await bot.send_message(
                record.admin_chat_id, report, parse_mode=ParseMode.HTML,
                link_preview_options=NO_PREVIEW,
            )

    async def _show(self, services: Services, bot: Bot, record: Broadcast, text: str, *, final: bool) -> None:
        if text == self._last_text:
            return
        keyboard = None if final else stop_keyboard(record.id)
        self._last_edit = self.clock.monotonic()
        try:
            if record.progress_message_id is not None:
                try:
                    await bot.edit_message_text(
                        text, chat_id=record.admin_chat_id, message_id=record.progress_message_id,
                        parse_mode=ParseMode.HTML, reply_markup=keyboard, link_preview_options=NO_PREVIEW,
                    )
                    self._last_text = text
                    return
                except BadRequest as exc:
                    if not_modified(exc):
                        self._last_text = text
                        return
                    if not message_gone(exc):
                        raise
                    # The admin deleted it: a new one takes its place.
            message = await bot.send_message(
                record.admin_chat_id, text, parse_mode=ParseMode.HTML, reply_markup=keyboard,
                link_preview_options=NO_PREVIEW,
            )
            await broadcasts.set_progress_message(services.db, record.id, message.message_id)
            self._last_text = text
        except TelegramError as exc:
            # Progress is a courtesy: the broadcast goes on, the next tick tries again.
            log.warning("broadcast progress not shown broadcast_id=%d error=%s", record.id, exc)
