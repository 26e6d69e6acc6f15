"""Settings: the only reader of the environment (and of an optional `.env` file).

Every problem with a value stops start-up with one line naming the variable and what is
wrong. The token's value never appears in a message or a repr.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storage.models import Section, SectionRule

DEFAULT_API_URL = "https://api.telegram.org/bot"
DEFAULT_DB = "./data/newsbot.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
Getter = Callable[[str], "str | None"]
_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{1,100}$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class FeedSpec:
    url: str
    rule: SectionRule


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    sections: tuple[Section, ...]
    feeds: tuple[FeedSpec, ...]

    def section_names(self) -> dict[str, str]:
        return {s.slug: s.name for s in self.sections}


@dataclass(frozen=True, slots=True)
class Settings:
    token: str | None = field(default=None, repr=False)
    admin_ids: frozenset[int] = frozenset()
    db_path: Path = Path(DEFAULT_DB)
    feeds_path: Path | None = None
    api_url: str = DEFAULT_API_URL
    poll_seconds: float = 60.0
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

    feeds = get("NEWSBOT_FEEDS")
    return Settings(
        token=token,
        admin_ids=_admin_ids(get("NEWSBOT_ADMIN_IDS")),
        db_path=Path(get("NEWSBOT_DB") or DEFAULT_DB),
        feeds_path=Path(feeds) if feeds else None,
        api_url=api_url.rstrip("/"),
        poll_seconds=_number(get, "NEWSBOT_POLL_SECONDS", 60.0, minimum=1.0),
        log_level=log_level,
        http_port=_port(get, "NEWSBOT_HTTP_PORT"),
        http_host=get("NEWSBOT_HTTP_HOST") or "127.0.0.1",
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_listen=get("NEWSBOT_WEBHOOK_LISTEN") or "0.0.0.0",
        webhook_port=_port(get, "NEWSBOT_WEBHOOK_PORT") or 8443,
        max_subscriptions=int(_number(get, "NEWSBOT_MAX_SUBSCRIPTIONS", 50, minimum=1)),
        global_rate=_number(get, "NEWSBOT_RATE_GLOBAL", 30.0, minimum=0.1),
        private_interval=_number(get, "NEWSBOT_RATE_PRIVATE_INTERVAL", 1.0, minimum=0.0),
        group_per_minute=int(_number(get, "NEWSBOT_RATE_GROUP_PER_MINUTE", 20, minimum=1)),
        send_concurrency=int(_number(get, "NEWSBOT_SEND_CONCURRENCY", 8, minimum=1)),
        max_attempts=int(_number(get, "NEWSBOT_MAX_ATTEMPTS", 5, minimum=1)),
        fetch_max_bytes=int(_number(get, "NEWSBOT_FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)),
        fetch_timeout=_number(get, "NEWSBOT_FETCH_TIMEOUT", 20.0, minimum=0.1),
    )


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


def _number(get: Getter, name: str, default: float, *, minimum: float) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if value != value or value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum:g} (got {raw!r})")
    return value


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


def parse_feeds_config(data: Mapping[str, object], where: str = "feeds file") -> FeedsConfig:
    raw_sections = data.get("sections", {})
    if not isinstance(raw_sections, dict) or not raw_sections:
        raise ConfigError(f"{where}: [sections] must map slugs to display names, e.g. sports = \"Sports\"")
    sections = []
    for slug, name in raw_sections.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", slug) or not isinstance(name, str) or not name:
            raise ConfigError(
                f"{where}: section {slug!r}: slug must be lowercase a-z, 0-9, '-' or '_' "
                "(at most 32) with a non-empty display name"
            )
        sections.append(Section(slug=slug, name=name))
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
            raise ConfigError(f"{place}: {feed.url} is listed twice")
        seen.add(feed.url)
        feeds.append(feed)
    return FeedsConfig(sections=tuple(sections), feeds=tuple(feeds))


def parse_feed_spec(raw: Mapping[str, object], slugs: set[str], place: str) -> FeedSpec:
    url = raw.get("url")
    if not isinstance(url, str) or not re.match(r"^(https?://\S+|file:\S+)$", url):
        raise ConfigError(f"{place}: url must be an http(s) URL")
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
    return FeedSpec(url=url, rule=rule)
