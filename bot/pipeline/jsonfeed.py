"""JSON Feed (https://jsonfeed.org, versions 1 and 1.1) → entries in feedparser's shape.

feedparser 6.0.14 does not read JSON Feed (it hands the bytes to its XML parsers), so the
document is read here with `json` and each item becomes the entry `parse.articles_from_entries`
turns into a story, like any RSS item.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFeed", "NotJsonFeed", "read_json_feed"]

# Items read at most: a feed lists its latest stories, and a document of a million items
# (within the size cap) must not turn into a million stories at once.
MAX_ITEMS = 1000


class NotJsonFeed(ValueError):
    """The body is not a JSON Feed; the text says why."""


class JsonFeed:
    def __init__(
        self, title: str | None, entries: list[dict[str, Any]], hubs: tuple[str, ...], self_url: str | None,
        dropped: int,
    ) -> None:
        self.title = title
        self.entries = entries
        self.hubs = hubs
        self.self_url = self_url
        self.dropped = dropped


def read_json_feed(body: bytes) -> JsonFeed:
    """The feed's title, its items as entries, its WebSub hubs and its own URL."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotJsonFeed(f"not JSON: {exc}"[:200]) from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise NotJsonFeed("JSON without a JSON Feed version (https://jsonfeed.org/version/1.1)")
    items = data.get("items")
    if not isinstance(items, list):
        raise NotJsonFeed("a JSON Feed without an items list")
    entries = [_entry(item) for item in items[:MAX_ITEMS] if isinstance(item, dict)]
    hubs = tuple(
        str(hub["url"]) for hub in data.get("hubs") or () if isinstance(hub, dict)
        and str(hub.get("type", "")).lower() == "websub" and isinstance(hub.get("url"), str)
    )
    self_url = data.get("feed_url") if isinstance(data.get("feed_url"), str) else None
    title = data.get("title") if isinstance(data.get("title"), str) else None
    return JsonFeed(title, entries, hubs, self_url, max(0, len(items) - MAX_ITEMS))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    # The spec: id is a string, but 1.0 feeds often give numbers.
    item_id = item.get("id")
    if isinstance(item_id, str | int) and not isinstance(item_id, bool):
        entry["id"] = str(item_id)
    entry["link"] = _text(item.get("url")) or _text(item.get("external_url"))
    if _text(item.get("title")):
        entry["title"] = _text(item["title"])
        entry["title_detail"] = {"type": "text/plain"}
    if _text(item.get("summary")):
        entry["summary"], entry["summary_detail"] = _text(item["summary"]), {"type": "text/plain"}
    elif _text(item.get("content_text")):
        entry["summary"], entry["summary_detail"] = _text(item["content_text"]), {"type": "text/plain"}
    elif _text(item.get("content_html")):
        entry["summary"], entry["summary_detail"] = _text(item["content_html"]), {"type": "text/html"}
    for key, target in (("date_published", "published_parsed"), ("date_modified", "updated_parsed")):
        parsed = rfc3339(_text(item.get(key)))
        if parsed is not None:
            entry[target] = parsed
    tags = item.get("tags")
    if isinstance(tags, list):
        entry["tags"] = [{"term": tag} for tag in tags if isinstance(tag, str)]
    image = _text(item.get("image")) or _text(item.get("banner_image"))
    if image:
        entry["media_thumbnail"] = [{"url": image}]
    return entry


def rfc3339(value: str) -> time.struct_time | None:
    """An RFC 3339 / ISO 8601 date as a UTC struct_time (feedparser's form); None when it is
    not one or names no time zone (a time without a zone is no time at all)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(UTC).timetuple()
