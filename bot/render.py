"""Stories and messages → Telegram HTML and keyboards: the one place text from feeds and
readers is escaped.

Every function returns text that Telegram's HTML parser accepts (only b, i, a are used),
within a message's 4096 characters and 100 formatting entities, and keyboards of at most
three buttons a row whose callback data fits 64 bytes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import pack
from bot.i18n import _, current, ngettext
from bot.text import plain_line, truncate_words
from storage.models import Article

MAX_MESSAGE = 4096
MAX_ENTITIES = 100  # Telegram drops formatting beyond this many entities in one message
SUMMARY_IN_LIST = 200
SUMMARY_IN_ALERT = 500
# Longer links are not real article links; one could fill a whole message with its href.
MAX_LINK_URL = 2048
REASONS_BUDGET = 600
BUTTONS_PER_ROW = 3
_ENTITY_RE = re.compile(r"<[a-z]")


def esc(text: str) -> str:
    """Escape text for Telegram HTML (`<`, `>`, `&` and quotes for attributes)."""
    return html.escape(text, quote=True)


def visible_length(html_text: str) -> int:
    """Telegram's 4096 limit counts the text after entity parsing; counting the markup too is
    stricter, so staying under the limit by this measure is always safe."""
    return len(html_text)


def entity_count(html_text: str) -> int:
    """Formatting entities the HTML makes: one per opening tag."""
    return len(_ENTITY_RE.findall(html_text))


def fits(html_text: str) -> bool:
    return visible_length(html_text) <= MAX_MESSAGE and entity_count(html_text) <= MAX_ENTITIES


def short(text: str, limit: int) -> str:
    """One line of at most `limit` characters, cut at a word ("…"); control and bidi
    characters dropped (a title must not turn the text around it backwards)."""
    return truncate_words(plain_line(text), limit)


def echo(text: str, limit: int = 100) -> str:
    """A reader's (or feed's) own words shown back: control and bidi characters dropped,
    whitespace collapsed, shortened to `limit` characters and escaped."""
    return esc(truncate_words(plain_line(text), limit))


def plural(count: int, one: str, many: str | None = None) -> str:
    """'1 feed', '2 feeds': English, for the command line's own lines (not for chats)."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def updated_mark() -> str:
    """"(updated)", on a corrected story."""
    return "<i>" + esc(_("(updated)")) + "</i>"


def format_time(ts: float, zone: tzinfo) -> str:
    """'13 Mar 2025 21:45 CET': in the reader's (or the newsroom's) zone, with its name, in
    the reader's language."""
    return current().date_time(ts, zone)


def format_clock(ts: float, zone: tzinfo) -> str:
    """'21:45 CET'."""
    return current().time_of_day(ts, zone)


def and_more(n: int) -> str:
    return _("…and {n} more").format(n=n)


def section_label(article: Article, sections: Mapping[str, str]) -> str:
    """"Sports · World": every section the story was published in."""
    slugs = article.all_sections
    if not slugs:
        return _("News")
    return " · ".join(sections.get(slug, slug.title()) for slug in slugs)


def linked_title(article: Article) -> str:
    title = esc(short(article.title, 300)) or esc(_("(untitled)"))
    href = esc(article.url)
    if article.url.startswith(("https://", "http://")) and len(href) <= MAX_LINK_URL:
        return f'<a href="{href}">{title}</a>'
    return title


def article_block(
    article: Article, sections: Mapping[str, str], zone: tzinfo, *, summary: int = SUMMARY_IN_LIST,
    number: int | None = None, updated: bool = False,
) -> str:
    """Section, bold linked title (numbered in lists), short summary, time."""
    mark = f" {updated_mark()}" if updated else ""
    prefix = f"{number}. " if number is not None else ""
    lines = [f"{prefix}<i>{esc(section_label(article, sections))}</i> · <b>{linked_title(article)}</b>{mark}"]
    if article.summary and summary:
        lines.append(esc(short(article.summary, summary)))
    lines.append(f"<i>{format_time(article.published_at, zone)}</i>")
    return "\n".join(lines)


def fit_blocks(
    header: str,
    blocks: Sequence[str],
    *,
    more: Callable[[int], str] = and_more,
    separator: str = "\n\n",
    footer: str = "",
) -> tuple[str, int]:
    """Join as many whole blocks as fit (length and entities); the rest become one
    "…and N more" line. Returns the text and how many blocks it holds."""
    out = header
    tail_footer = f"{separator}{footer}" if footer else ""
    for index, block in enumerate(blocks):
        rest = len(blocks) - index - 1
        tail = (separator + more(rest) if rest else "") + tail_footer
        candidate = (out + separator if out else "") + block
        if fits(candidate + tail):
            out = candidate
            continue
        return (out + separator if out else "") + more(len(blocks) - index) + tail_footer, index
    return out + tail_footer, len(blocks)


def join_names(names: Sequence[str], *, budget: int = 1000, longest: int = 64) -> str:
    """'<b>a</b>, <b>b</b> and 3 more': names in bold, each cut to `longest` characters,
    as many as fit in `budget`."""
    shown: list[str] = []
    used = 0
    for name in names:
        item = f"<b>{echo(name, longest)}</b>"
        if shown and used + len(item) + 2 > budget:
            break
        shown.append(item)
        used += len(item) + 2
    rest = len(names) - len(shown)
    if rest:
        return _("{names} and {n} more").format(names=", ".join(shown), n=rest)
    return ", ".join(shown)


def fit_lines(lines: Sequence[str]) -> str:
    """Lines of HTML (each complete) joined by newlines, with "…and N more" if cut."""
    return fit_blocks("", lines, separator="\n")[0]


def rows_of(buttons: Sequence[InlineKeyboardButton], per_row: int = BUTTONS_PER_ROW) -> list[list[InlineKeyboardButton]]:
    return [list(buttons[i : i + per_row]) for i in range(0, len(buttons), per_row)]


def subscription_name(kind: str, value: str, sections: Mapping[str, str]) -> str:
    """What readers call a subscription: a section's display name, or the word itself."""
    return sections.get(value, value) if kind == "section" else value


def reason_name(reason: str, sections: Mapping[str, str]) -> str:
    """The name of an alert's reason ("section:world" → "World", "keyword:drones" → "drones")."""
    kind, _, value = reason.partition(":")
    return subscription_name(kind, value, sections)


def reason_text(reasons: Sequence[str], sections: Mapping[str, str], *, sentence: bool = False) -> str:
    """("section:world", "keyword:drones") → 'because you follow <b>World</b> and <b>drones</b>'
    (with `sentence`: 'Because you follow <b>World</b> and <b>drones</b>.')."""
    names = [reason_name(reason, sections) for reason in reasons]
    if not names:
        return ""
    quoted = [f"<b>{esc(n)}</b>" for n in names]
    if len(quoted) == 1:
        joined = quoted[0]
    elif sum(len(q) + 2 for q in quoted) <= REASONS_BUDGET:
        joined = current().join(quoted)
    else:  # a chat following dozens of words that all match one story
        joined = join_names(names, budget=REASONS_BUDGET)
    if sentence:
        return _("Because you follow {names}.").format(names=joined)
    return _("because you follow {names}").format(names=joined)


# --- lists: /latest, /search, /related, inline mode --------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    keyboard: InlineKeyboardMarkup | None = None


def related_buttons(articles: Sequence[Article]) -> list[InlineKeyboardButton]:
    """'Related 1', 'Related 2'…: one per numbered story of a list."""
    return [
        InlineKeyboardButton(_("Related {n}").format(n=n), callback_data=pack("rel", a.rowid))
        for n, a in enumerate(articles, start=1)
        if a.rowid is not None
    ]


def article_list(
    title: str, articles: Sequence[Article], sections: Mapping[str, str], zone: tzinfo, *, empty: str
) -> Rendered:
    """A reply to /latest, /search or /related: numbered stories, and a numbered Related
    button for each one shown. `title` is already HTML, the rest is escaped."""
    if not articles:
        return Rendered(f"{title}\n\n{esc(empty)}" if title else esc(empty))
    blocks = [article_block(a, sections, zone, number=n) for n, a in enumerate(articles, start=1)]
    text, shown = fit_blocks(title, blocks)
    buttons = related_buttons(articles[:shown])
    return Rendered(text, InlineKeyboardMarkup(rows_of(buttons)) if buttons else None)


# --- alerts ------------------------------------------------------------------------------------


def mute_label(reason: str, sections: Mapping[str, str]) -> str:
    return truncate_words(_("Mute {name}").format(name=reason_name(reason, sections)), 40)


def alert(
    article: Article, reasons: Sequence[str], sections: Mapping[str, str], zone: tzinfo, *,
    row_id: int, updated: bool = False, buttons: bool = True,
) -> Rendered:
    """One alert: the story, why the reader got it, Related and a Mute per reason."""
    why = reason_text(reasons, sections)
    # Only pathological feed text gets past the first try; cutting HTML could break a tag,
    # so less is shown instead: a shorter summary, then none.
    for summary in (SUMMARY_IN_ALERT, SUMMARY_IN_LIST, 0):
        body = article_block(article, sections, zone, summary=summary, updated=updated)
        text = f"{body}\n\n<i>{why}</i>" if why else body
        if fits(text):
            break
    if not buttons:
        return Rendered(text)
    row = []
    if article.rowid is not None:
        row.append(InlineKeyboardButton(_("Related"), callback_data=pack("rel", article.rowid)))
    for index, reason in enumerate(reasons[:5]):
        row.append(InlineKeyboardButton(mute_label(reason, sections), callback_data=pack("mute", row_id, index)))
    return Rendered(text, InlineKeyboardMarkup(rows_of(row)) if row else None)


# By digest, given the count and the quiet hours' span ("22:00–07:00", or "" when none now).
def _header(digest: str | None, n: int, quiet: str) -> str:
    if digest == "away":
        text = ngettext("While you were away: {n} story", "While you were away: {n} stories", n)
    elif digest == "overnight" and quiet:
        text = ngettext("During your quiet hours ({hours}): {n} story",
                        "During your quiet hours ({hours}): {n} stories", n)
    elif digest == "overnight":
        text = ngettext("During your quiet hours: {n} story", "During your quiet hours: {n} stories", n)
    else:
        text = ngettext("{n} new story for you", "{n} new stories for you", n)
    return f"<b>{esc(text.format(n=n, hours=quiet))}</b>"


@dataclass(frozen=True, slots=True)
class Item:
    """One story in a combined message: the outbox row it came from, and its reasons."""

    row_id: int
    article: Article
    reasons: tuple[str, ...]
    updated: bool = False


def combined(
    items: Sequence[Item], sections: Mapping[str, str], zone: tzinfo, *, digest: str | None = None,
    quiet: str = "",
) -> Rendered:
    """Several alerts for one chat as one message: a header, the stories (oldest first; held
    during quiet hours — `quiet`, their span — newest first within their section), once why
    they came, then buttons: a numbered Related per story and a Mute per reason involved."""
    if digest == "overnight":
        first_seen: dict[str, int] = {}
        for index, item in enumerate(items):
            first_seen.setdefault(item.article.section or "", index)
        items = sorted(
            items, key=lambda i: (first_seen[i.article.section or ""], -i.article.published_at)
        )
    header = _header(digest, len(items), quiet)
    reasons: dict[str, tuple[int, int]] = {}
    for item in items:
        for index, reason in enumerate(item.reasons):
            reasons.setdefault(reason, (item.row_id, index))
    why = reason_text(list(reasons), sections, sentence=True)
    blocks = [
        article_block(item.article, sections, zone, number=n, updated=item.updated)
        for n, item in enumerate(items, start=1)
    ]
    text, shown = fit_blocks(
        header, blocks, more=lambda n: _("…and {n} more — {command}").format(n=n, command="/latest"),
        footer=f"<i>{why}</i>" if why else "",
    )
    buttons = related_buttons([i.article for i in items[:shown]])
    buttons += [
        InlineKeyboardButton(mute_label(reason, sections), callback_data=pack("mute", row_id, index))
        for reason, (row_id, index) in list(reasons.items())[:6]
    ]
    return Rendered(text, InlineKeyboardMarkup(rows_of(buttons)) if buttons else None)


def briefing(
    items: Sequence[tuple[Article, str]], sections: Mapping[str, str], zone: tzinfo, *,
    when: str, latest_hint: str = "/latest",
) -> Rendered:
    """A briefing: keyword matches first, then by section, each story once, with a numbered
    Related button per story shown."""
    keyword = [(a, r) for a, r in items if r.startswith("keyword:")]
    by_section = sorted(
        ((a, r) for a, r in items if not r.startswith("keyword:")),
        key=lambda pair: (pair[1], -pair[0].published_at),
    )
    ordered = keyword + by_section
    if not ordered:
        heading = esc(_("Your briefing, {time}").format(time=when))
        nothing = esc(_("Nothing new for your sections and keywords since the last one."))
        return Rendered(f"<b>{heading}</b>\n\n{nothing}")
    count = len(ordered)
    heading = ngettext("Your briefing, {time}: {n} story", "Your briefing, {time}: {n} stories", count)
    header = f"<b>{esc(heading.format(time=when, n=count))}</b>"
    blocks = []
    for n, (article, reason) in enumerate(ordered, start=1):
        block = article_block(article, sections, zone, number=n, summary=0)
        blocks.append(f"{block}\n<i>{esc(reason_name(reason, sections))}</i>")
    text, shown = fit_blocks(
        header, blocks, more=lambda n: _("…and {n} more — {command}").format(n=n, command=latest_hint)
    )
    buttons = related_buttons([a for a, _ in ordered[:shown]])
    return Rendered(text, InlineKeyboardMarkup(rows_of(buttons)) if buttons else None)
