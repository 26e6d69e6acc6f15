"""Settings from the environment and the feeds file: every mistake stops start-up with one
line naming the setting."""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_feeds_file, load_settings, parse_feeds_config
from bot.context import open_services
from storage.models import Section
from tests.conftest import REPO

TOKEN = "123456:AAExampleSecretPartThatMustNeverLeak"


def test_defaults_without_environment(tmp_path: Path) -> None:
    settings = load_settings({}, env_file=None)
    assert settings.token is None
    assert settings.db_path == Path("./data/newsbot.db")
    assert settings.api_url == "https://api.telegram.org/bot"
    assert settings.poll_seconds == 60
    assert settings.admin_ids == frozenset()
    with pytest.raises(ConfigError, match="NEWSBOT_TOKEN: not set"):
        settings.require_token()


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "NEWSBOT_TOKEN": TOKEN,
            "NEWSBOT_ADMIN_IDS": "1, 2 3",
            "NEWSBOT_DB": "/tmp/x.db",
            "NEWSBOT_API_URL": "http://127.0.0.1:9/bot/",
            "NEWSBOT_POLL_SECONDS": "15",
            "NEWSBOT_LOG_LEVEL": "debug",
            "NEWSBOT_HTTP_PORT": "8080",
        },
        env_file=None,
    )
    assert settings.require_token() == TOKEN
    assert settings.admin_ids == {1, 2, 3}
    assert settings.api_url == "http://127.0.0.1:9/bot"
    assert settings.poll_seconds == 15
    assert settings.log_level == "DEBUG"
    assert settings.http_port == 8080
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEWSBOT_TOKEN": "not a token " + TOKEN}, "NEWSBOT_TOKEN: malformed"),
        ({"NEWSBOT_ADMIN_IDS": "12,alice"}, "NEWSBOT_ADMIN_IDS: 'alice'"),
        ({"NEWSBOT_POLL_SECONDS": "soon"}, "NEWSBOT_POLL_SECONDS: 'soon' is not a number"),
        ({"NEWSBOT_POLL_SECONDS": "0"}, "NEWSBOT_POLL_SECONDS: must be a number from 1 to 86400"),
        ({"NEWSBOT_LOG_LEVEL": "LOUD"}, "NEWSBOT_LOG_LEVEL"),
        ({"NEWSBOT_API_URL": "ftp://x"}, "NEWSBOT_API_URL"),
        ({"NEWSBOT_HTTP_PORT": "99999"}, "NEWSBOT_HTTP_PORT"),
        ({"NEWSBOT_WEBHOOK_URL": "https://example.org/hook"}, "NEWSBOT_WEBHOOK_SECRET: required"),
        ({"NEWSBOT_WEBHOOK_URL": "http://example.org/hook"}, "NEWSBOT_WEBHOOK_URL: must be"),
    ],
)
def test_bad_values_name_the_variable_and_never_the_token(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, env_file=None)
    assert message in str(info.value)
    assert TOKEN not in str(info.value)
    assert "\n" not in str(info.value)


def test_env_file_fills_in_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"# comment\nexport NEWSBOT_TOKEN='{TOKEN}'\nNEWSBOT_POLL_SECONDS=30\nNEWSBOT_DB=from-file.db\n"
    )
    settings = load_settings({"NEWSBOT_DB": "from-env.db"}, env_file=env_file)
    assert settings.token == TOKEN
    assert settings.poll_seconds == 30
    assert settings.db_path == Path("from-env.db")
    env_file.write_text("JUST TEXT\n")
    with pytest.raises(ConfigError, match=r"\.env:1: expected KEY=VALUE"):
        load_settings({}, env_file=env_file)


def test_example_feeds_file_has_the_six_sections() -> None:
    config = load_feeds_file(Path(__file__).resolve().parents[1] / "feeds.example.toml")
    assert [s.name for s in config.sections] == [
        "Sweden", "Living", "World", "Business", "Sports", "Entertainment",
    ]
    assert len(config.feeds) == 6
    assert {f.rule.section for f in config.feeds} == {s.slug for s in config.sections}


def test_feed_rules() -> None:
    config = parse_feeds_config(
        {
            "sections": {"world": "World", "sports": "Sports"},
            "feeds": [
                {"url": "https://a.example/rss", "section_from": "category", "category_domain": "section",
                 "mapping": {"Football": "sports"}},
                {"url": "https://b.example/rss", "section_from": "path", "path_segment": 1, "section": "world"},
            ],
        }
    )
    first, second = config.feeds
    assert first.rule.kind == "category" and first.rule.domain == "section"
    assert first.rule.mapping == (("football", "sports"),)
    assert second.rule.kind == "path" and second.rule.segment == 1 and second.rule.section == "world"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"feeds": []}, "[sections]"),
        ({"sections": {"World": "World"}}, "slug must be lowercase"),
        ({"sections": {"world": "World"}, "feeds": [{"url": "nope", "section": "world"}]}, "feed #1: url"),
        ({"sections": {"world": "World"}, "feeds": [{"url": "https://x.example"}]}, "needs section"),
        ({"sections": {"world": "World"}, "feeds": [{"url": "https://x.example", "section": "moon"}]},
         "'moon' is not one of world"),
        ({"sections": {"world": "World"}, "feeds": [{"url": "https://x.example", "section_from": "magic"}]},
         "section_from must be"),
    ],
)
def test_bad_feeds_file(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_feeds_config(data)
    assert message in str(info.value)


def test_unreadable_or_invalid_feeds_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_feeds_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sections\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_feeds_file(bad)


# --- numbers: finite and within bounds -----------------------------------------------------

# Every numeric setting, with its default, a value just below its bounds and one just above.
NUMBERS = [
    ("NEWSBOT_POLL_SECONDS", "poll_seconds", 60.0, "0.5", "86401"),
    ("NEWSBOT_MAX_SUBSCRIPTIONS", "max_subscriptions", 50, "0", "1001"),
    ("NEWSBOT_RATE_GLOBAL", "global_rate", 30.0, "0.05", "1001"),
    ("NEWSBOT_RATE_PRIVATE_INTERVAL", "private_interval", 1.0, "-1", "61"),
    ("NEWSBOT_RATE_GROUP_PER_MINUTE", "group_per_minute", 20, "0", "1001"),
    ("NEWSBOT_SEND_CONCURRENCY", "send_concurrency", 8, "0", "257"),
    ("NEWSBOT_MAX_ATTEMPTS", "max_attempts", 5, "0", "101"),
    ("NEWSBOT_FETCH_MAX_BYTES", "fetch_max_bytes", 10 * 1024 * 1024, "1000", str((1 << 30) + 1)),
    ("NEWSBOT_FETCH_TIMEOUT", "fetch_timeout", 20.0, "0.05", "601"),
    ("NEWSBOT_ALERTS_PER_POLL", "alerts_per_poll", 20, "-1", "10001"),
    ("NEWSBOT_ALERT_MAX_AGE", "alert_max_age", 86400.0, "59", "31d"),
    ("NEWSBOT_FEED_BACKOFF_MAX", "feed_backoff_max", 600.0, "0.5", "2d"),
    ("NEWSBOT_OUTBOX_DAYS", "outbox_days", 7.0, "0.5", "3651"),
    ("NEWSBOT_ARCHIVE_DAYS", "archive_days", 0.0, "-1", "36501"),
    ("NEWSBOT_PAID_RATE", "paid_rate", 1000.0, "0.5", "1001"),
    ("NEWSBOT_HTTP_PORT", "http_port", None, "-1", "65536"),
    ("NEWSBOT_WEBHOOK_PORT", "webhook_port", 8443, "-1", "65536"),
]


@pytest.mark.parametrize(("name", "field", "default", "below", "above"), NUMBERS, ids=[n[0] for n in NUMBERS])
def test_every_number_refuses_infinite_nan_and_out_of_bounds(
    name: str, field: str, default: object, below: str, above: str
) -> None:
    assert getattr(load_settings({}, env_file=None), field) == default
    for raw in ("inf", "-inf", "Infinity", "nan", "NaN", "1e999", below, above, "many"):
        with pytest.raises(ConfigError) as info:
            load_settings({"NEWSBOT_TOKEN": TOKEN, name: raw}, env_file=None)
        message = str(info.value)
        assert message.startswith(f"{name}: "), message
        assert "\n" not in message and TOKEN not in message


def test_numbers_at_their_bounds_are_taken() -> None:
    settings = load_settings(
        {"NEWSBOT_POLL_SECONDS": "1", "NEWSBOT_OUTBOX_DAYS": "3650", "NEWSBOT_ALERTS_PER_POLL": "0",
         "NEWSBOT_ALERT_MAX_AGE": "90m", "NEWSBOT_ARCHIVE_DAYS": "30", "NEWSBOT_PAID_RATE": "1000",
         "NEWSBOT_PAID_BROADCASTS": "yes"},
        env_file=None,
    )  # fmt: skip
    assert (settings.poll_seconds, settings.outbox_days, settings.alerts_per_poll) == (1, 3650, 0)
    assert settings.alert_max_age == 5400 and settings.archive_days == 30
    assert settings.paid_broadcasts and all(
        math.isfinite(float(getattr(settings, n[1]) or 0)) for n in NUMBERS
    )


def test_feed_backoff_max_and_safe_url_parameters() -> None:
    defaults = load_settings({}, env_file=None)
    assert defaults.feed_backoff_max == 600
    assert defaults.url_safe_params == frozenset({"lang", "format", "section", "category", "tag"})
    chosen = load_settings(
        {"NEWSBOT_FEED_BACKOFF_MAX": "1h", "NEWSBOT_URL_SAFE_PARAMS": "Lang, edition region"}, env_file=None
    )
    assert chosen.feed_backoff_max == 3600
    assert chosen.url_safe_params == frozenset({"lang", "edition", "region"})
    assert load_settings({"NEWSBOT_URL_SAFE_PARAMS": "none"}, env_file=None).url_safe_params == frozenset()
    with pytest.raises(ConfigError, match=r"^NEWSBOT_URL_SAFE_PARAMS: 'a=b' is not a query parameter name$"):
        load_settings({"NEWSBOT_URL_SAFE_PARAMS": "lang a=b"}, env_file=None)


@pytest.mark.parametrize("flag", ["NEWSBOT_FEED_ALLOW_PRIVATE", "NEWSBOT_PAID_BROADCASTS"])
def test_flags_are_zero_or_one(flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{flag}: 'maybe' is not 0 or 1$"):
        load_settings({flag: "maybe"}, env_file=None)


# --- the time zone ---------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "Europe/", "CET;rm"])
def test_timezone_must_be_an_iana_zone(zone: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"NEWSBOT_TIMEZONE": zone}, env_file=None)
    assert str(info.value).startswith("NEWSBOT_TIMEZONE: ") and "\n" not in str(info.value)


def test_timezone_default_and_choice() -> None:
    assert load_settings({}, env_file=None).timezone == "Europe/Stockholm"
    assert load_settings({"NEWSBOT_TIMEZONE": "America/New_York"}, env_file=None).timezone == "America/New_York"


@pytest.mark.parametrize("name", ["Sweden\nHerald", "Herald\u202e", "x" * 65, "Tab\there"])
def test_the_newsrooms_name_is_one_printable_line(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"NEWSBOT_NAME": name}, env_file=None)
    assert str(info.value).startswith("NEWSBOT_NAME: ") and "\n" not in str(info.value)


def test_the_newsrooms_name_default_and_choice() -> None:
    assert load_settings({}, env_file=None).name == "newsbot"
    assert load_settings({"NEWSBOT_NAME": "  Sweden Herald  "}, env_file=None).name == "Sweden Herald"
    assert load_settings({"NEWSBOT_NAME": "x" * 64}, env_file=None).name == "x" * 64


# --- the feeds file ----------------------------------------------------------------------------

FEEDS_HEAD = '[sections]\nworld = "World"\n'


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        (FEEDS_HEAD + '\n[[feed]]\nurl = "https://x.example/rss"\nsection = "world"\n', "'feed'"),
        (FEEDS_HEAD + '\n[[feeds]]\nurl = "https://x.example/rss"\nsection = "world"\ninterval = 30\n', "'interval'"),
        ("interval = 30\n" + FEEDS_HEAD, "'interval'"),
        ('[sections]\nworld = { name = "World", chanel = "@world_news" }\n', "'chanel'"),
        (FEEDS_HEAD + "\n[settings]\npoll = 5\n", "'settings'"),
    ],
)
def test_unknown_keys_in_the_feeds_file_are_named(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_feeds_file(path)
    message = str(info.value)
    assert named in message and "unknown key" in message and "\n" not in message
    assert str(path) in message


def test_unknown_keys_stop_start_up(tmp_path: Path) -> None:
    """`newsbot run` with a feeds file naming "[[feed]]": one line on stderr, exit status 2,
    before Telegram is tried."""
    path = tmp_path / "feeds.toml"
    path.write_text(FEEDS_HEAD + '\n[[feed]]\nurl = "https://x.example/rss"\nsection = "world"\n')
    env = {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "NEWSBOT_TOKEN": TOKEN,
        "NEWSBOT_API_URL": "http://127.0.0.1:9/bot", "NEWSBOT_DB": str(tmp_path / "n.db"),
        "NEWSBOT_FEEDS": str(path),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'feed'" in lines[0] and lines[0].startswith("newsbot: ")
    assert TOKEN not in done.stderr


@pytest.mark.parametrize("url", ["file:///var/feeds/world.xml", "/var/feeds/world.xml", "ftp://x.example/rss"])
def test_a_feed_url_that_is_not_http_says_what_is_accepted(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_feeds_config({"sections": {"world": "World"}, "feeds": [{"url": url, "section": "world"}]})
    message = str(info.value)
    assert "feed #1: url must be an http:// or https:// address" in message
    assert "newsbot check-feed PATH" in message and url in message and "\n" not in message


def test_section_channels_are_parsed() -> None:
    config = parse_feeds_config(
        {"sections": {"sports": {"name": "Sports", "channel": "@herald_sports"},
                      "world": {"name": "World", "channel": "-1001234567890"},
                      "living": {"name": "Living"}, "business": "Business"}}
    )  # fmt: skip
    assert config.sections == (
        Section("sports", "Sports", "@herald_sports"), Section("world", "World", "-1001234567890"),
        Section("living", "Living", None), Section("business", "Business", None),
    )  # fmt: skip
    for bad in ("herald_sports", "@ab", "https://t.me/herald", "-42", 1001):
        with pytest.raises(ConfigError, match="section 'sports': channel must be"):
            parse_feeds_config({"sections": {"sports": {"name": "Sports", "channel": bad}}})
    with pytest.raises(ConfigError, match="needs a non-empty display name"):
        parse_feeds_config({"sections": {"sports": {"channel": "@herald_sports"}}})


# --- nothing site-specific in code -----------------------------------------------------------


def test_no_site_specific_defaults_in_code() -> None:
    """The sections and feeds of a site come from its feeds file; no text in bot/ or storage/
    names one."""
    found = []
    for path in sorted([*(REPO / "bot").rglob("*.py"), *(REPO / "storage").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.casefold()
                if "swedenherald" in text or "sweden" in text:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}")
    assert found == []


async def test_without_a_feeds_file_there_are_no_sections(tmp_path: Path) -> None:
    services = await open_services(load_settings({"NEWSBOT_DB": str(tmp_path / "n.db")}, env_file=None))
    try:
        assert services.sections == () and services.section_names == {}
    finally:
        await services.close()
