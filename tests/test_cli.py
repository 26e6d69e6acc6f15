"""The `newsbot` command as an operator runs it: clear one-line errors, clean stop, no token leaks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from tests.conftest import REPO
from tests.fakes.telegram_api import FakeTelegram

SECRET = "7311:AAH_secret-value-that-must-never-be-printed"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
    env.update({"PYTHONPATH": str(REPO), "NEWSBOT_DB": str(tmp_path / "newsbot.db"), **extra})
    return env


def test_version_is_pyprojects_and_the_changelog_has_its_release(tmp_path: Path) -> None:
    """`newsbot --version` prints pyproject.toml's version (through the installed package's
    metadata: an install older than the tree fails here), with no settings needed; the
    changelog has that release, dated, with its upgrading notes, under an Unreleased section."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert version == "0.2.0"
    env = {k: v for k, v in env_for(tmp_path).items() if k != "NEWSBOT_DB"}
    out = subprocess.run([sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, timeout=60,
                         env={**env, "NEWSBOT_TIMEZONE": "Mars/Olympus_Mons"}, cwd=REPO)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"newsbot {version}\n", "")

    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, flags=re.M)
    assert releases == [("Unreleased", ""), ("0.2.0", "2026-12-06"), ("0.1.0", "2026-11-27")]
    section = changelog.split("## [0.2.0] - 2026-12-06\n", 1)[1].split("\n## [", 1)[0]
    for heading in ("### For readers", "### For admins", "### For operators", "### Upgrading"):
        assert f"\n{heading}\n" in section, heading


def test_run_without_token_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot", "run"], capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=env_for(tmp_path),
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "newsbot: NEWSBOT_TOKEN: not set (the bot token from @BotFather is required)"


def test_malformed_token_is_not_echoed(tmp_path: Path) -> None:
    bad = "not-a-token " + SECRET
    out = subprocess.run(
        [sys.executable, "-m", "bot", "run"], capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=env_for(tmp_path, NEWSBOT_TOKEN=bad),
    )
    assert out.returncode == 2
    assert "NEWSBOT_TOKEN: malformed" in out.stderr
    assert SECRET not in out.stderr + out.stdout


def test_help_for_every_command(tmp_path: Path) -> None:
    # All at once: each is a fresh interpreter, most of whose time is its imports.
    procs = {
        " ".join(args): subprocess.Popen(
            [sys.executable, "-m", "bot", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=tmp_path, env=env_for(tmp_path),
        )
        for args in (["--help"], *([c, "--help"] for c in ("run", "check-feed", "ingest", "backup", "healthcheck")))
    }
    for args, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "usage: newsbot" in stdout, (args, stderr)


def wait_for_text(path: Path, text: str, timeout: float = 30.0) -> None:
    """Until the file (a subprocess's log) says `text`."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not in {path.name} within {timeout} s"
        time.sleep(0.05)


def test_run_answers_and_stops_cleanly_on_sigterm_without_logging_the_token(tmp_path: Path) -> None:
    # Files, not pipes: a DEBUG log can outgrow a pipe's buffer and block the bot.
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with FakeTelegram(token=SECRET) as tg, out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], stdout=out_file, stderr=err_file,
            text=True, cwd=tmp_path, env=env_for(tmp_path, **tg.bot_env(), NEWSBOT_LOG_LEVEL="DEBUG"),
        )
        try:
            # Queued before the bot polls: its first getUpdates takes it.
            tg.user_message(55, "/start")
            [reply] = tg.wait_for_messages(55, 1, timeout=30)
            assert "Welcome" in reply["text"]
            # A failure path that logs a traceback must not carry the token either.
            tg.fail_chat(56, 500, "Internal Server Error")
            tg.user_message(56, "/help")
            wait_for_text(err_path, "Traceback")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    stdout, stderr = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, stderr
    assert SECRET not in stdout + stderr
    assert SECRET.split(":")[1] not in stdout + stderr
    # The logs were written at DEBUG (so the absence above means something).
    assert " DEBUG " in stderr and "Application started" in stderr
