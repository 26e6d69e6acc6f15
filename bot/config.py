"""Settings: the only reader of the environment (and of an optional `.env` file).

Every problem with a value stops start-up with one line naming the variable and what is
wrong. The token's value never appears in a message or a repr.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot import i18n
from bot.pipeline.listing import css_problem
from bot.pipeline.urls import redact_url
from storage.models import Section, SectionRule

DEFAULT_API_URL = "https://api.telegram.org/bot"
DEFAULT_DB = "./data/newsbot.db"
DEFAULT_TIMEZONE = "Europe/Stockholm"
DEFAULT_NAME = "newsbot"
MAX_NAME = 64
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
Getter = Callable[[str], "str | None"]
_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{1,100}$")
# Query parameters whose values URLs shown to admins and in logs keep (every other value is
# hidden, bot.pipeline.urls): they choose which stories a feed carries, which is how an
# operator tells two feeds of one site apart, and no feed service uses them for credentials.
DEFAULT_SAFE_PARAMS = frozenset({"lang", "format", "section", "category", "tag"})


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


# What a feed URL serves: "auto" is found out from the answer (bot.pipeline.sources).
SOURCE_KINDS = ("auto", "rss", "sitemap", "html")


@dataclass(frozen=True, slots=True)
class FeedSpec:
    url: str
    rule: SectionRule
    kind: str = "auto"  # one of SOURCE_KINDS: "rss" covers RSS, Atom, RDF and JSON Feed
    selector: str | None = None  # an HTML listing page's CSS selector for its stories


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    sections: tuple[Section, ...]
    feeds: tuple[FeedSpec, ...]

    def section_names(self) -> dict[str, str]:
        return {s.slug: s.name for s in self.sections}


@dataclass(frozen=True, slots=True)
class Settings:
    token: str | None = field(default=None, repr=False)
    name: str = DEFAULT_NAME  # the newsroom, as the welcome and /help name it
    admin_ids: frozenset[int] = frozenset()
    db_path: Path = Path(DEFAULT_DB)
    feeds_path: Path | None = None
    api_url: str = DEFAULT_API_URL
    poll_seconds: float = 60.0
    # NEWSBOT_POLL_SECONDS set: every feed at that fixed interval; else each feed's interval
    # follows its publishing between poll_min and poll_max (bot.pipeline.cadence).
    poll_fixed: bool = False
    poll_min: float = 10.0
    poll_max: float = 600.0
    public_url: str | None = None
    ping_secret: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    max_subscriptions: int = 50
    global_rate: float = 30.0
    private_interval: float = 1.0
    group_per_minute: int = 20
    send_concurrency: int = 8
    max_attempts: int = 5
    fetch_max_bytes: int = 10 * 1024 * 1024
    fetch_timeout: float = 20.0
    feed_allow_private: bool = False
    feed_backoff_max: float = 600.0
    url_safe_params: frozenset[str] = DEFAULT_SAFE_PARAMS
    alerts_per_poll: int = 20
    alert_max_age: float = 24 * 3600.0
    timezone: str = DEFAULT_TIMEZONE
    language: str = "en"  # the newsroom's language, for chats that have none of their own
    outbox_days: float = 7.0
    archive_days: float = 0.0
    paid_broadcasts: bool = False
    paid_rate: float = 1000.0
    paid_concurrency: int = 64
    edit_interval: float = 600.0
    chart_font: Path | None = None  # a font file for the /stats chart's text

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError("NEWSBOT_TOKEN: not set (the bot token from @BotFather is required)")
        return self.token


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments, optional 'export ' and quotes."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Settings from the environment; a `.env` file fills in what the environment lacks."""
    env: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        env.update(read_env_file(env_file))
    env.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value is not None and value.strip() else None

    token = get("NEWSBOT_TOKEN")
    if token is not None and not _TOKEN_RE.match(token):
        raise ConfigError("NEWSBOT_TOKEN: malformed (expected digits, ':' and the secret part)")

    log_level = (get("NEWSBOT_LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"NEWSBOT_LOG_LEVEL: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")

    api_url = get("NEWSBOT_API_URL") or DEFAULT_API_URL
    if not re.match(r"^https?://[^\s/]+", api_url):
        raise ConfigError(f"NEWSBOT_API_URL: {api_url!r} is not an http(s) URL")

    webhook_url = get("NEWSBOT_WEBHOOK_URL")
    webhook_secret = get("NEWSBOT_WEBHOOK_SECRET")
    if webhook_url is not None:
        if not webhook_url.startswith("https://"):
            raise ConfigError("NEWSBOT_WEBHOOK_URL: must be an https:// URL")
        if webhook_secret is None:
            raise ConfigError("NEWSBOT_WEBHOOK_SECRET: required when NEWSBOT_WEBHOOK_URL is set")
        if not re.match(r"^[A-Za-z0-9_-]{1,256}$", webhook_secret):
            raise ConfigError("NEWSBOT_WEBHOOK_SECRET: use 1-256 characters A-Z, a-z, 0-9, _ and -")

    name = get("NEWSBOT_NAME") or DEFAULT_NAME
    if len(name) > MAX_NAME or not name.isprintable():
        raise ConfigError(f"NEWSBOT_NAME: use 1-{MAX_NAME} printable characters on one line (e.g. The Daily Courier)")

    language = (get("NEWSBOT_LANGUAGE") or i18n.SOURCE).strip()
    if language not in i18n.languages():
        raise ConfigError(f"NEWSBOT_LANGUAGE: {language[:20]!r} is not one of {', '.join(i18n.languages())}")
    timezone = get("NEWSBOT_TIMEZONE") or DEFAULT_TIMEZONE
    if not valid_timezone(timezone):
        raise ConfigError(f"NEWSBOT_TIMEZONE: {timezone!r} is not an IANA time zone (e.g. Europe/Stockholm)")

    poll_min = _duration(get, "NEWSBOT_POLL_MIN", 10.0, minimum=1.0, maximum=86400.0)
    poll_max = _duration(get, "NEWSBOT_POLL_MAX", 600.0, minimum=1.0, maximum=86400.0)
    if poll_max < poll_min:
        raise ConfigError(f"NEWSBOT_POLL_MAX: must not be below NEWSBOT_POLL_MIN ({poll_min:g} s)")

    public_url = get("NEWSBOT_PUBLIC_URL")
    if public_url is not None:
        if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", public_url):
            raise ConfigError(
                "NEWSBOT_PUBLIC_URL: must be the http(s) URL where newsbot's HTTP port is reached "
                "from outside, without query or fragment (e.g. https://news.example/newsbot)"
            )
        if get("NEWSBOT_HTTP_PORT") is None:
            raise ConfigError("NEWSBOT_HTTP_PORT: required with NEWSBOT_PUBLIC_URL (WebSub callbacks are served there)")
        public_url = public_url.rstrip("/")
    ping_secret = get("NEWSBOT_PING_SECRET")
    if ping_secret is not None:
        if len(ping_secret) < 16 or not re.fullmatch(r"[\x21-\x7e]{16,256}", ping_secret):
            raise ConfigError("NEWSBOT_PING_SECRET: use 16-256 printable characters without spaces")
        if get("NEWSBOT_HTTP_PORT") is None:
            raise ConfigError("NEWSBOT_HTTP_PORT: required with NEWSBOT_PING_SECRET (POST /ping is served there)")

    chart_font = get("NEWSBOT_CHART_FONT")
    if chart_font is not None and not Path(chart_font).is_file():
        raise ConfigError("NEWSBOT_CHART_FONT: not a file (a .ttf or .otf font for the /stats chart)")

    feeds = get("NEWSBOT_FEEDS")
    return Settings(
        token=token,
        name=name,
        admin_ids=_admin_ids(get("NEWSBOT_ADMIN_IDS")),
        db_path=Path(get("NEWSBOT_DB") or DEFAULT_DB),
        feeds_path=Path(feeds) if feeds else None,
        api_url=api_url.rstrip("/"),
        poll_seconds=_number(get, "NEWSBOT_POLL_SECONDS", 60.0, minimum=1.0, maximum=86400.0),
        poll_fixed=get("NEWSBOT_POLL_SECONDS") is not None,
        poll_min=poll_min,
        poll_max=poll_max,
        public_url=public_url,
        ping_secret=ping_secret,
        log_level=log_level,
        http_port=_port(get, "NEWSBOT_HTTP_PORT"),
        http_host=get("NEWSBOT_HTTP_HOST") or "127.0.0.1",
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_listen=get("NEWSBOT_WEBHOOK_LISTEN") or "0.0.0.0",
        webhook_port=_port(get, "NEWSBOT_WEBHOOK_PORT") or 8443,
        max_subscriptions=_integer(get, "NEWSBOT_MAX_SUBSCRIPTIONS", 50, minimum=1, maximum=1000),
        global_rate=_number(get, "NEWSBOT_RATE_GLOBAL", 30.0, minimum=0.1, maximum=1000.0),
        private_interval=_number(get, "NEWSBOT_RATE_PRIVATE_INTERVAL", 1.0, minimum=0.0, maximum=60.0),
        group_per_minute=_integer(get, "NEWSBOT_RATE_GROUP_PER_MINUTE", 20, minimum=1, maximum=1000),
        send_concurrency=_integer(get, "NEWSBOT_SEND_CONCURRENCY", 8, minimum=1, maximum=256),
        max_attempts=_integer(get, "NEWSBOT_MAX_ATTEMPTS", 5, minimum=1, maximum=100),
        fetch_max_bytes=_integer(get, "NEWSBOT_FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=1024, maximum=1 << 30),
        fetch_timeout=_number(get, "NEWSBOT_FETCH_TIMEOUT", 20.0, minimum=0.1, maximum=600.0),
        feed_allow_private=_flag(get, "NEWSBOT_FEED_ALLOW_PRIVATE"),
        feed_backoff_max=_duration(get, "NEWSBOT_FEED_BACKOFF_MAX", 600.0, minimum=1.0, maximum=86400.0),
        url_safe_params=_names(get, "NEWSBOT_URL_SAFE_PARAMS", DEFAULT_SAFE_PARAMS),
        alerts_per_poll=_integer(get, "NEWSBOT_ALERTS_PER_POLL", 20, minimum=0, maximum=10_000),
        alert_max_age=_duration(get, "NEWSBOT_ALERT_MAX_AGE", 24 * 3600.0, minimum=60.0, maximum=30 * 86400.0),
        timezone=timezone,
        language=language,
        outbox_days=_number(get, "NEWSBOT_OUTBOX_DAYS", 7.0, minimum=1.0, maximum=3650.0),
        archive_days=_number(get, "NEWSBOT_ARCHIVE_DAYS", 0.0, minimum=0.0, maximum=36500.0),
        paid_broadcasts=_flag(get, "NEWSBOT_PAID_BROADCASTS"),
        paid_rate=_number(get, "NEWSBOT_PAID_RATE", 1000.0, minimum=1.0, maximum=1000.0),
        paid_concurrency=_integer(get, "NEWSBOT_PAID_CONCURRENCY", 64, minimum=1, maximum=512),
        edit_interval=_duration(get, "NEWSBOT_EDIT_INTERVAL", 600.0, minimum=0.0, maximum=86400.0),
        chart_font=Path(chart_font) if chart_font else None,
    )


def valid_timezone(name: str) -> bool:
    """An IANA zone name the zone database knows (from the system or the tzdata package)."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _admin_ids(raw: str | None) -> frozenset[int]:
    if raw is None:
        return frozenset()
    ids = set()
    for part in re.split(r"[,\s]+", raw):
        if not part:
            continue
        if not re.fullmatch(r"-?\d{1,20}", part):
            raise ConfigError(f"NEWSBOT_ADMIN_IDS: {part!r} is not a Telegram user id (a number)")
        ids.add(int(part))
    return frozenset(ids)


def _number(get: Getter, name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ConfigError(f"{name}: must be a number from {minimum:g} to {maximum:g} (got {raw!r})")
    return value


def _integer(get: Getter, name: str, default: int, *, minimum: int, maximum: int) -> int:
    """A whole number within bounds ("1.5" is refused, not rounded)."""
    value = _number(get, name, default, minimum=minimum, maximum=maximum)
    if not float(value).is_integer():
        raise ConfigError(f"{name}: must be a whole number from {minimum:g} to {maximum:g} (got {get(name)!r})")
    return int(value)


_DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(get: Getter, name: str, default: float, *, minimum: float, maximum: float) -> float:
    """Seconds, or a number with s, m, h or d ("24h", "90m")."""
    raw = get(name)
    if raw is None:
        return default
    match = _DURATION_RE.match(raw.lower())
    if match is None:
        raise ConfigError(f"{name}: {raw!r} is not a duration (e.g. 24h, 90m or 3600)")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ConfigError(
            f"{name}: must be from {minimum:g} s to {maximum:g} s (got {raw!r})"
        )
    return value


def _names(get: Getter, name: str, default: frozenset[str]) -> frozenset[str]:
    """Comma- or space-separated names, compared in lower case; "none" is the empty list."""
    raw = get(name)
    if raw is None:
        return default
    if raw.lower() == "none":
        return frozenset()
    names = [part for part in re.split(r"[,\s]+", raw.lower()) if part]
    for part in names:
        if not re.fullmatch(r"[a-z0-9_.\-\[\]]{1,64}", part):
            raise ConfigError(f"{name}: {part[:40]!r} is not a query parameter name")
    return frozenset(names)


def _flag(get: Getter, name: str) -> bool:
    raw = (get(name) or "0").lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"{name}: {raw!r} is not 0 or 1")
    return raw in ("1", "true", "yes", "on")


def _port(get: Getter, name: str) -> int | None:
    raw = get(name)
    if raw is None:
        return None
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ConfigError(f"{name}: {raw!r} is not a TCP port (0-65535)")
    return int(raw)


# --- the feeds file -------------------------------------------------------------------------


def load_feeds_file(path: Path) -> FeedsConfig:
    """Parse the TOML feeds file; every mistake is reported with the file and the feed's place."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"NEWSBOT_FEEDS: cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"NEWSBOT_FEEDS: {path} is not valid TOML: {exc}") from None
    return parse_feeds_config(data, str(path))


_TOP_KEYS = ("sections", "feeds")
_FEED_KEYS = (
    "url", "section", "section_from", "category_domain", "path_segment", "mapping", "kind", "selector",
)
_SECTION_KEYS = ("name", "channel")
# A public channel's @username, or a channel's numeric id (-100…).
_CHANNEL_RE = re.compile(r"^(@[A-Za-z][A-Za-z0-9_]{3,31}|-100[0-9]{6,16})$")


def _unknown(raw: Mapping[str, object], allowed: tuple[str, ...], place: str) -> None:
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise ConfigError(
            f"{place}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})"
        )


def parse_feeds_config(data: Mapping[str, object], where: str = "feeds file") -> FeedsConfig:
    _unknown(data, _TOP_KEYS, where)
    raw_sections = data.get("sections", {})
    if not isinstance(raw_sections, dict) or not raw_sections:
        raise ConfigError(f"{where}: [sections] must map slugs to display names, e.g. sports = \"Sports\"")
    sections = [_section(slug, value, where) for slug, value in raw_sections.items()]
    slugs = {s.slug for s in sections}

    raw_feeds = data.get("feeds", [])
    if not isinstance(raw_feeds, list):
        raise ConfigError(f"{where}: feeds must be an array of tables ([[feeds]])")
    feeds = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_feeds, start=1):
        place = f"{where}: feed #{index}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{place}: must be a table")
        feed = parse_feed_spec(raw, slugs, place)
        if feed.url in seen:
            raise ConfigError(f"{place}: {redact_url(feed.url)} is listed twice")
        seen.add(feed.url)
        feeds.append(feed)
    return FeedsConfig(sections=tuple(sections), feeds=tuple(feeds))


def _section(slug: str, value: object, where: str) -> Section:
    """`sports = "Sports"`, or `sports = { name = "Sports", channel = "@herald_sports" }`."""
    place = f"{where}: section {slug!r}"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", slug):
        raise ConfigError(f"{place}: slug must be lowercase a-z, 0-9, '-' or '_' (at most 32)")
    channel = None
    if isinstance(value, dict):
        _unknown(value, _SECTION_KEYS, place)
        name, channel = value.get("name"), value.get("channel")
        if channel is not None and (not isinstance(channel, str) or not _CHANNEL_RE.match(channel)):
            raise ConfigError(f"{place}: channel must be a channel's @username or its -100… id")
    else:
        name = value
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{place}: needs a non-empty display name, e.g. {slug} = \"Sports\"")
    return Section(slug=slug, name=name.strip(), channel=channel)


def parse_feed_spec(raw: Mapping[str, object], slugs: set[str], place: str) -> FeedSpec:
    _unknown(raw, _FEED_KEYS, place)
    url = raw.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+\S*$", url):
        raise ConfigError(
            f"{place}: url must be an http:// or https:// address of a feed (got {redact_url(str(url))[:80]!r}); "
            "a local file can be looked at with: newsbot check-feed PATH"
        )
    section = raw.get("section")
    if section is not None and (not isinstance(section, str) or section not in slugs):
        raise ConfigError(f"{place}: section {section!r} is not one of {', '.join(sorted(slugs))}")
    kind = raw.get("section_from", "fixed")
    mapping_raw = raw.get("mapping", {})
    if not isinstance(mapping_raw, dict):
        raise ConfigError(f"{place}: mapping must be a table of text = section slug")
    for key, value in mapping_raw.items():
        if value not in slugs:
            raise ConfigError(f"{place}: mapping {key!r} → {value!r}: not a section slug")
    mapping = tuple((str(k).casefold(), str(v)) for k, v in mapping_raw.items())
    if kind == "fixed":
        if section is None:
            raise ConfigError(f"{place}: needs section = \"<slug>\" or section_from = \"category\"|\"path\"")
        rule = SectionRule(kind="fixed", section=section)
    elif kind == "category":
        domain = raw.get("category_domain")
        if domain is not None and not isinstance(domain, str):
            raise ConfigError(f"{place}: category_domain must be text")
        rule = SectionRule(kind="category", section=section, domain=domain, mapping=mapping)
    elif kind == "path":
        segment = raw.get("path_segment", 0)
        if not isinstance(segment, int) or segment < 0:
            raise ConfigError(f"{place}: path_segment must be a number ≥ 0")
        rule = SectionRule(kind="path", section=section, segment=segment, mapping=mapping)
    else:
        raise ConfigError(f"{place}: section_from must be \"fixed\", \"category\" or \"path\"")
    source = raw.get("kind", "auto")
    if source not in SOURCE_KINDS:
        raise ConfigError(f"{place}: kind must be one of {', '.join(repr(k) for k in SOURCE_KINDS)} (got {str(source)[:40]!r})")
    selector = raw.get("selector")
    if selector is not None:
        if not isinstance(selector, str) or not selector.strip() or len(selector) > 500:
            raise ConfigError(f"{place}: selector must be a CSS selector (text, at most 500 characters)")
        if source not in ("auto", "html"):
            raise ConfigError(f"{place}: selector is for HTML listing pages (kind = \"html\"), not kind = {source!r}")
        problem = css_problem(selector)
        if problem is not None:
            raise ConfigError(f"{place}: selector {selector[:80]!r} is not a CSS selector newsbot understands: {problem}")
        source = "html"
    return FeedSpec(url=url, rule=rule, kind=str(source), selector=selector.strip() if selector else None)
