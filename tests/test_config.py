from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_feeds_file, load_settings, parse_feeds_config

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
        ({"NEWSBOT_POLL_SECONDS": "0"}, "NEWSBOT_POLL_SECONDS: must be at least 1"),
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
