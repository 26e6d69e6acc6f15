"""Articles and alerts → Telegram HTML: the one place text from feeds and readers is escaped.

Every function returns text that Telegram's HTML parser accepts (only b, i, a, code,
blockquote are used) and that stays within a message's 4096 characters.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from storage.models import Article

MAX_MESSAGE = 4096
SUMMARY_IN_LIST = 200
SUMMARY_IN_ALERT = 500
# Longer links are not real article links; one could fill a whole message with its href.
MAX_LINK_URL = 2048
REASONS_BUDGET = 600
# C0 and C1 control characters other than whitespace: nothing a reader means to see.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def esc(text: str) -> str:
    """Escape text for Telegram HTML (`<`, `>`, `&` and quotes for attributes)."""
    return html.escape(text, quote=True)


def visible_length(html_text: str) -> int:
    """Telegram's 4096 limit counts the text after entity parsing; counting the markup too is
    stricter, so staying under the limit by this measure is always safe."""
    return len(html_text)


def echo(text: str, limit: int = 100) -> str:
    """A reader's own words shown back: control characters dropped, whitespace collapsed,
    shortened to `limit` characters and escaped."""
    return esc(short(_CONTROL_RE.sub("", text), limit))


def short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y %H:%M UTC")


def section_label(article: Article, sections: Mapping[str, str]) -> str:
    if not article.section:
        return "News"
    return sections.get(article.section, article.section.title())


def linked_title(article: Article) -> str:
    title = esc(short(article.title, 300)) or "(untitled)"
    href = esc(article.url)
    if article.url.startswith(("https://", "http://")) and len(href) <= MAX_LINK_URL:
        return f'<a href="{href}">{title}</a>'
    return title


def article_block(article: Article, sections: Mapping[str, str], *, summary: int = SUMMARY_IN_LIST) -> str:
    """Section, bold linked title, short summary, time."""
    lines = [f"<i>{esc(section_label(article, sections))}</i> · <b>{linked_title(article)}</b>"]
    if article.summary and summary:
        lines.append(esc(short(article.summary, summary)))
    lines.append(f"<i>{format_time(article.published_at)}</i>")
    return "\n".join(lines)


def fit_blocks(
    header: str,
    blocks: Sequence[str],
    *,
    more: Callable[[int], str] = lambda n: f"…and {n} more",
    separator: str = "\n\n",
    limit: int = MAX_MESSAGE,
) -> str:
    """Join as many whole blocks as fit; the rest become one "…and N more" line."""
    out = header
    for index, block in enumerate(blocks):
        rest = len(blocks) - index - 1
        tail = separator + more(rest) if rest else ""
        candidate = (out + separator if out else "") + block
        if visible_length(candidate + tail) <= limit:
            out = candidate
            continue
        line = more(len(blocks) - index)
        return (out + separator if out else "") + line
    return out


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
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def fit_lines(lines: Sequence[str], *, limit: int = MAX_MESSAGE) -> str:
    """Lines of HTML (each complete) joined by newlines, with "…and N more" if cut."""
    return fit_blocks("", lines, separator="\n", limit=limit)


def article_list(
    title: str, articles: Sequence[Article], sections: Mapping[str, str], *, empty: str
) -> str:
    """A reply to /latest, /search or /related: `title` is already HTML, the rest is escaped."""
    if not articles:
        return f"{title}\n\n{esc(empty)}" if title else esc(empty)
    blocks = [article_block(a, sections) for a in articles]
    return fit_blocks(title, blocks)


def subscription_name(kind: str, value: str, sections: Mapping[str, str]) -> str:
    """What readers call a subscription: a section's display name, or the keyword itself."""
    return sections.get(value, value) if kind == "section" else value


def reason_name(reason: str, sections: Mapping[str, str]) -> str:
    """The name of an alert's reason ("section:world" → "World", "keyword:drones" → "drones")."""
    kind, _, value = reason.partition(":")
    return subscription_name(kind, value, sections)


def reason_text(reasons: Sequence[str], sections: Mapping[str, str]) -> str:
    """("section:world", "keyword:drones") → 'because you follow <b>World</b> and <b>drones</b>'."""
    names = [reason_name(reason, sections) for reason in reasons]
    if not names:
        return ""
    quoted = [f"<b>{esc(n)}</b>" for n in names]
    if len(quoted) == 1:
        joined = quoted[0]
    elif sum(len(q) + 2 for q in quoted) <= REASONS_BUDGET:
        joined = ", ".join(quoted[:-1]) + " and " + quoted[-1]
    else:  # a chat following dozens of words that all match one story
        joined = join_names(names, budget=REASONS_BUDGET)
    return f"because you follow {joined}"


def alert_html(article: Article, reasons: Sequence[str], sections: Mapping[str, str]) -> str:
    """One alert: the story and why the reader got it."""
    why = reason_text(reasons, sections)
    # Only pathological feed text gets past the first try; cutting HTML could break a tag,
    # so less is shown instead: a shorter summary, then none.
    for summary in (SUMMARY_IN_ALERT, SUMMARY_IN_LIST, 0):
        body = article_block(article, sections, summary=summary)
        text = f"{body}\n\n<i>{why}</i>" if why else body
        if visible_length(text) <= MAX_MESSAGE:
            return text
    return body


def combined_alert_html(
    items: Sequence[tuple[Article, Sequence[str]]], sections: Mapping[str, str]
) -> str:
    """Several alerts due at once for one chat, as one message."""
    header = f"<b>{len(items)} new stories for you</b>"
    blocks = []
    for article, reasons in items:
        block = article_block(article, sections, summary=SUMMARY_IN_LIST)
        why = reason_text(reasons, sections)
        blocks.append(f"{block}\n<i>{why}</i>" if why else block)
    return fit_blocks(header, blocks, more=lambda n: f"…and {n} more — see /latest")
