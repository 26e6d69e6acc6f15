"""Every text a reader or an admin sees, in their language: gettext catalogs through Babel.

The catalogs are bot/locale/<lang>/LC_MESSAGES/newsbot.po; the languages shipped are the
folders found there (nothing else in the code lists them). A catalog is compiled in memory
the first time its language is asked for, so a fresh clone and an installed package work
with no build step. Messages are English in the code (the source language) and carry
`{name}` placeholders filled with str.format after translation.

`translator(lang)` gives a language's gettext, ngettext and times in the reader's zone. The
handlers and the delivery stages say whose message they are writing with `speaking(lang)`
(a context variable: every update and every send is its own task), and the short helpers
`_`, `ngettext` and `N_` (marks a constant for extraction; translated where it is used)
translate for that language.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, tzinfo
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "newsbot"
SOURCE = "en"  # the language of the messages in the code
# Every shipped language, by its own name, as /language offers it.
_NATIVE_NAMES_FALLBACK = {"en": "English"}


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def languages() -> tuple[str, ...]:
    """The languages shipped: a folder with a catalog under bot/locale, the source first."""
    found = {p.name for p in LOCALE_DIR.iterdir() if catalog_path(p.name).is_file()} if LOCALE_DIR.is_dir() else set()
    found.add(SOURCE)
    return (SOURCE, *sorted(found - {SOURCE}))


def supported(code: str | None) -> str | None:
    """A shipped language for a Telegram language_code ("sv", "sv-SE", "en-GB"), or None."""
    if not code:
        return None
    lang = code.replace("_", "-").split("-")[0].strip().lower()
    return lang if lang in languages() else None


def native_name(lang: str) -> str:
    """"Svenska", "English": a language as its readers call it."""
    try:
        name = Locale.parse(lang).get_display_name(lang) or _NATIVE_NAMES_FALLBACK.get(lang, lang)
    except (ValueError, LookupError):
        return lang
    return name[:1].upper() + name[1:]


@functools.cache
def _translations(lang: str) -> Translations:
    path = catalog_path(lang)
    buffer = BytesIO()
    if path.is_file():
        with path.open("rb") as po:
            catalog = read_po(po, locale=lang, domain=DOMAIN)
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        return Translations(buffer, domain=DOMAIN)
    return Translations(None, domain=DOMAIN)


@dataclass(frozen=True, slots=True)
class Translator:
    """One language's messages, lists and times."""

    lang: str
    translations: Translations

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.lang)

    def gettext(self, message: str) -> str:
        return str(self.translations.gettext(message))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return str(self.translations.ngettext(singular, plural, n))

    def date_time(self, ts: float, zone: tzinfo) -> str:
        """'03 Mar 2025 21:45 CET' ('03 mars 2025 21:45 CET'): the reader's zone, with its name."""
        moment = datetime.fromtimestamp(ts, zone)
        return f"{format_datetime(moment, 'dd MMM y HH:mm', tzinfo=zone, locale=self.lang)} {moment.strftime('%Z')}"

    def time_of_day(self, ts: float, zone: tzinfo) -> str:
        """'21:45 CET'."""
        moment = datetime.fromtimestamp(ts, zone)
        return f"{format_datetime(moment, 'HH:mm', tzinfo=zone, locale=self.lang)} {moment.strftime('%Z')}"

    def join(self, items: Sequence[str], style: str = "standard") -> str:
        """'a, b and c' ('a, b och c'); style "or" for 'a, b or c'."""
        return format_list(list(items), style=style, locale=self.lang) if items else ""  # type: ignore[arg-type]


@functools.cache
def translator(lang: str | None) -> Translator:
    """The translator for a shipped language (anything else: the source language)."""
    code = supported(lang) or SOURCE
    return Translator(code, _translations(code))


_speaking: ContextVar[str | None] = ContextVar("newsbot_language", default=None)


def current() -> Translator:
    return translator(_speaking.get())


def language() -> str:
    return current().lang


@contextmanager
def speaking(lang: str | None) -> Iterator[Translator]:
    """Messages written within are in `lang` (the source language when it is not shipped)."""
    token = _speaking.set(supported(lang) or SOURCE)
    try:
        yield current()
    finally:
        _speaking.reset(token)


def set_language(lang: str | None) -> None:
    """For the rest of this task (one update's handling): messages in `lang`."""
    _speaking.set(supported(lang) or SOURCE)


def _(message: str) -> str:
    return current().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return current().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a message for the catalogs where it is defined; `_` translates it where used."""
    return message
