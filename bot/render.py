"""Articles and alerts → Telegram HTML: the one place text from feeds and readers is escaped.

Every function returns text that Telegram's HTML parser accepts (only b, i, a, code,
blockquote are used) and that stays within a message's 4096 characters.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from storage.models import Article

MAX_MESSAGE = 4096
SUMMARY_IN_LIST = 200
SUMMARY_IN_ALERT = 500


def esc(text: str) -> str:
    """Escape text for Telegram HTML (`<`, `>`, `&` and quotes for attributes)."""
    return html.escape(text, quote=True)


def visible_length(html_text: str) -> int:
    """Telegram's 4096 limit counts the text after entity parsing; counting the markup too is
    stricter, so staying under the limit by this measure is always safe."""
    return len(html_text)


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
    if article.url.startswith(("https://", "http://")):
        return f'<a href="{esc(article.url)}">{title}</a>'
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


def article_list(
    title: str, articles: Sequence[Article], sections: Mapping[str, str], *, empty: str
) -> str:
    """A reply to /latest, /search or /related: `title` is already HTML, the rest is escaped."""
    if not articles:
        return f"{title}\n\n{esc(empty)}" if title else esc(empty)
    blocks = [article_block(a, sections) for a in articles]
    return fit_blocks(title, blocks)


def reason_text(reasons: Sequence[str], sections: Mapping[str, str]) -> str:
    """("section:world", "keyword:drones") → 'because you follow <b>World</b> and <b>drones</b>'."""
    names = []
    for reason in reasons:
        kind, _, value = reason.partition(":")
        names.append(sections.get(value, value) if kind == "section" else value)
    if not names:
        return ""
    quoted = [f"<b>{esc(n)}</b>" for n in names]
    joined = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    return f"because you follow {joined}"


def alert_html(article: Article, reasons: Sequence[str], sections: Mapping[str, str]) -> str:
    """One alert: the story and why the reader got it."""
    body = article_block(article, sections, summary=SUMMARY_IN_ALERT)
    why = reason_text(reasons, sections)
    text = f"{body}\n\n<i>{why}</i>" if why else body
    if visible_length(text) > MAX_MESSAGE:  # only a pathological title could get here
        text = article_block(article, sections, summary=0)[: MAX_MESSAGE - 1]
    return text


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
