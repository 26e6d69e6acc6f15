"""The catalogs: every message in the code is in every shipped catalog, translated (not
empty, not fuzzy), with the same placeholders and the right number of plural forms; and
every message, in every language, is Telegram HTML Telegram accepts, within its limits."""

from __future__ import annotations

import ast
import re
import string

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import i18n
from bot.app import READER_COMMANDS
from bot.commands import admin
from bot.render import esc
from tests.conftest import REPO
from tests.fakes.telegram_api import validate_telegram_html

KEYWORDS = {"_": None, "ngettext": (1, 2), "N_": None}
SAMPLES = {"name": "Sweden Herald", "n": 3, "section": "Sports", "limit": 50, "command": "/latest",
           "hours": "22:00–07:00", "time": "07:30", "names": "<b>drones</b>", "zone": "Europe/Stockholm",
           "channel": "@herald_sports", "words": "drones", "title": "Storm &amp; rain", "max": 20,
           "sections": "Sports, World", "body": "Following <b>drones</b>.", "rule": "more than 3 alerts due at once",
           "keywords": "2 keywords", "excluded": "1 excluded word", "items": "Sports, World", "first": "<b>drones</b>",
           "second": "<b>nato</b>", "third": "<b>malmo</b>", "times": "07:30, 18:00", "text": "25:99", "min": 2,
           "combine": "more than 3 alerts due at once come as one message",
           # admin replies (broadcasts, /stats, /feeds)
           "id": 12, "duration": "1 h 20 min", "sent": 1_200, "total": 1_250, "blocked": 30, "failed": 20,
           "cancelled": 0, "percent": "96", "reason": "Not enough Stars", "admin": "<code>9001</code>",
           "active": "1,234", "paused": 12, "inactive": 3,
           "figures": "4 articles stored", "latency": "half within 30 s, 95 % within 2 min",
           "queue": "personal 12 (≈ 5 s)", "size": "1.5 MB", "half": "30 s", "most": "2 min",
           "lane": "personal", "polled": 6, "failing": 1, "url": "https://example.com/rss",
           "kind": "RSS/Atom feed", "error": "HTTP 503 from https://example.com/rss",
           "trouble": "the bot is not an admin there", "domain": "section", "selector": "div.teaser",
           "via": "WebSub + ping", "state": "failed", "s": 5, "m": 2, "h": 1}
BUTTON_LABELS: set[str | tuple[str, str]] = {
    "Related", "Related {n}", "Mute {name}", "Quiet {hours}", "Quiet off", "Briefing {time}", "Briefings off",
    "Resume alerts", "Pause alerts", "Previews: turn off", "Previews: turn on", "Combine: turn off",
    "Combine: turn on", "In quiet hours: hold → silent", "In quiet hours: silent → hold", "Nothing new: stay quiet",
    "Nothing new: tell me", "Choose sections", "My subscriptions", "✖ not {name}", "📰 Briefing only", "⚡ Instant",
    "More from {name}",
    ("Send to {n} chat (≈ {duration})", "Send to {n} chats (≈ {duration})"),
    ("Send fast (≈ {duration}, ≈ {n} Star)", "Send fast (≈ {duration}, ≈ {n} Stars)"),
    "Send fast (≈ {duration}, no Stars)", "Urgent: on ✅", "Urgent: off", "Cancel", "Stop", "Try #{id} now",
}
ANSWERS: set[str | tuple[str, str]] = {  # callback answers: up to 200 characters
    "This button is no longer valid.", "Added {section}", "Added {section} in this topic",
    "Removed {section}", "{section} alerts now come to this topic", "You already follow {section}",
    "Limit reached: at most {limit} subscriptions", "Language: English", ("Resumed: {n} held story follows.",
    "Resumed: {n} held stories follow."), "Paused: alerts are kept until you resume.", "Saved", "Time zone: {zone}",
    "Quiet hours: off", "Quiet hours: {hours}, alerts held and sent as one message when they end",
    "Quiet hours: {hours}, alerts delivered silently", "In quiet hours alerts will be held. Set the hours with "
    "/quiet 22:00-07:00.", "In quiet hours alerts will be delivered silently. Set the hours with /quiet 22:00-07:00.",
    "Briefings off.", "Briefings at {times}; the next at {time}.", "At most three briefings a day: turn one off first.",
    "Already removed.", "Removed {name}", "Removed exclusion of {name}", "{name}: instant alerts.",
    "{name}: in your briefing only.", "{name}: in your briefing only. Set a time with /briefing 07:30.",
    "Muted {name}. /mysubs shows what is left.", "{name} was already muted.", "This story is no longer available.",
    # admins'
    "Sorry, that button is for the newsroom's admins.",
    "Only the admin who wrote this broadcast can send or cancel it.",
    "This preview has expired. Send /broadcast again.", "This broadcast can no longer be changed.",
    "This broadcast is already sending.", "This broadcast is already done.", "This broadcast is already stopped.",
    "This broadcast is already cancelled.", "Urgent: it will reach readers in their quiet hours too.",
    "Not urgent: readers in quiet hours get it when those end.", "Cancelled. Nothing was sent.",
    "Nobody to send to: the audience has no active readers any more.", ("Sending to {n} chat.", "Sending to {n} chats."),
    "Stopped. {sent} sent, {cancelled} not sent.", "Fetching feed #{id} now. /feeds shows how it went.",
    "Feed #{id} is being fetched right now.", "Feed #{id} is not polled (removed?). /feeds lists the feeds.",
}


def code_messages() -> set[str | tuple[str, str]]:
    found: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(REPO / "bot"), method_map=[("**.py", "python")], keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def catalog(lang: str):  # type: ignore[no-untyped-def]
    with i18n.catalog_path(lang).open("rb") as po:
        return read_po(po, locale=lang)


def placeholders(text: str) -> set[str]:
    names = {field for _lit, field, _spec, _conv in string.Formatter().parse(text) if field}
    return names | set(re.findall(r"%\((\w+)\)[sd]", text))


def test_english_and_swedish_are_shipped_and_found_from_the_locale_folder() -> None:
    assert i18n.languages() == ("en", "sv")
    assert i18n.supported("sv-SE") == "sv" and i18n.supported("de") is None


@pytest.mark.parametrize("lang", i18n.languages())
def test_each_catalog_holds_every_message_of_the_code_translated(lang: str) -> None:
    wanted = code_messages()
    assert len(wanted) > 50
    messages = {m.id if isinstance(m.id, str) else tuple(m.id): m for m in catalog(lang) if m.id}
    assert wanted - set(messages) == set(), f"{lang}: not in the catalog"
    plurals = catalog(lang).num_plurals
    assert not catalog(lang).fuzzy, f"{lang}: the catalog's header is fuzzy (pybabel compile would skip it)"
    for key, message in messages.items():
        assert not message.fuzzy, f"{lang}: fuzzy {key!r}"
        forms = [message.string] if isinstance(message.string, str) else list(message.string)
        assert all(forms), f"{lang}: empty translation of {key!r}"
        ids = [key] if isinstance(key, str) else list(key)
        if not isinstance(key, str):
            assert len(forms) == plurals, f"{lang}: {key!r} has {len(forms)} plural forms"
        expected = set().union(*(placeholders(i) for i in ids))
        for form in forms:
            assert placeholders(form) == expected, f"{lang}: placeholders of {key!r}"


@pytest.mark.parametrize("lang", i18n.languages())
def test_every_message_renders_as_telegram_html_within_its_limits(lang: str) -> None:
    tr = i18n.translator(lang)
    for key in code_messages():
        if isinstance(key, str):
            texts = [tr.gettext(key)]
        else:
            texts = [tr.ngettext(key[0], key[1], n) for n in (1, 2, 5)]
        for text in texts:
            rendered = text.format(**SAMPLES)
            # Messages carry their own markup (b, i, code); everything else is escaped.
            source = key if isinstance(key, str) else key[0]
            shown = rendered if "<" in source else esc(rendered)
            assert validate_telegram_html(shown) is None, (lang, key, shown)
            assert len(rendered) <= 4096
            if key in BUTTON_LABELS:
                assert len(rendered) <= 40, (lang, key)
            if key in ANSWERS:
                assert len(rendered) <= 200, (lang, key)
    assert (BUTTON_LABELS | ANSWERS) - code_messages() == set(), "labels or answers named here, not in the code"
    for _name, description in (*READER_COMMANDS, *admin.MENU):
        assert 3 <= len(tr.gettext(description)) <= 256, (lang, description)


def test_no_message_hides_in_an_f_string() -> None:
    """pybabel extract does not look inside f-strings: a `_()` there never reaches a catalog and
    stays English in every language."""
    hidden = []
    for path in sorted((REPO / "bot").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                hidden += [f"{path.relative_to(REPO)}:{call.lineno}" for call in ast.walk(node)
                           if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in KEYWORDS]
    assert hidden == []


def test_times_are_written_in_the_readers_language_and_zone() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Stockholm")
    assert i18n.translator("en").date_time(1_741_800_000, zone) == "12 Mar 2025 18:20 CET"
    assert i18n.translator("sv").date_time(1_741_800_000, zone) == "12 mars 2025 18:20 CET"
    assert i18n.translator("sv").time_of_day(1_741_800_000, ZoneInfo("Asia/Tokyo")) == "02:20 JST"
