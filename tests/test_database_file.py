"""The database file is checked, not trusted: what `newsbot` does, as an operator sees it
(exit status, the one line it prints), with a file that is damaged, written by a newer
newsbot, reached through a link while another process holds it, or given to `newsbot backup`
under an awkward name or as its own target. Every command here is a real subprocess that
stops before reaching Telegram, in about a second."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.db import Database, newest_schema
from storage.lock import ProcessLock
from tests.conftest import REPO
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, running_bot, store_sample
from tests.simtime import SimClock
from tests.test_operator import LOCKED, newsbot, run_env

RESTORE = 'restore the last backup made with "newsbot backup" (docs/operations.md, "Restore")'


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def sample_database(path: Path) -> Path:
    """A real newsbot database holding the 50 sample stories, its log folded into the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(store_sample(path))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def damage(path: Path) -> None:
    """Scribble over one page of the stories' unique index, as a bad disk or a half-copied
    file does: the file still opens and its header still reads."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        [(page,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_articles_1'")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))


def digest(path: Path) -> str:
    """The file's bytes, but for the header's change counter (offsets 24 and 92), which
    SQLite moves when a connection to a WAL file closes."""
    data = bytearray(path.read_bytes())
    data[24:28] = data[92:96] = b"\0\0\0\0"
    return hashlib.sha256(data).hexdigest()


def one_line(out: object) -> str:
    stdout, stderr = out.stdout, out.stderr  # type: ignore[attr-defined]
    assert stdout == "", stdout
    [line] = stderr.strip().splitlines()
    return str(line)


def story_count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM articles").fetchone()[0])


# --- refused at start -----------------------------------------------------------------------


def test_a_damaged_database_is_refused_at_start_in_one_line(tg: FakeTelegram, tmp_path: Path) -> None:
    """A file damaged while the bot was stopped: `run` and `ingest` stop with status 2 and
    one line that names the damage and the way back (a backup, docs' "Restore" section),
    before Telegram is asked anything; the file is left as it was."""
    db_path = sample_database(tmp_path / "newsbot.db")
    damage(db_path)
    before = digest(db_path)
    for command in ("run", "ingest"):
        out = newsbot(tmp_path, command, env=run_env(tg, tmp_path), timeout=30)
        assert out.returncode == 2, out
        line = one_line(out)
        assert re.fullmatch(rf"newsbot: storage: {re.escape(str(db_path))} is damaged \(quick_check: .+\); "
                            + re.escape(RESTORE), line), line
    assert tg.calls() == []
    assert digest(db_path) == before
    assert "\n## Restore\n" in (REPO / "docs" / "operations.md").read_text()


def test_a_database_from_a_newer_newsbot_is_refused_naming_both_versions(tg: FakeTelegram, tmp_path: Path) -> None:
    db_path = sample_database(tmp_path / "newsbot.db")
    newer = newest_schema() + 1
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    before = digest(db_path)
    out = newsbot(tmp_path, "run", env=run_env(tg, tmp_path), timeout=30)
    assert out.returncode == 2, out
    assert one_line(out) == (
        f"newsbot: storage: {db_path} has schema version {newer}, newer than this newsbot's "
        f"{newest_schema()}: it was written by a newer newsbot; run that one, or restore a backup "
        "made by this one"
    )
    assert tg.calls() == []
    assert digest(db_path) == before  # not migrated, not vacuumed


# --- one process per database file, whatever its name ---------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_second_process_through_a_link_is_refused(tg: FakeTelegram, tmp_path: Path, link: str) -> None:
    """The lock belongs to the file: while this process holds it, `newsbot run` and `newsbot
    ingest` on a symlink or a hard link to the same file are refused in one line naming the
    holder; held through the link, the real name is refused too."""
    db_path = sample_database(tmp_path / "data" / "newsbot.db")
    other = tmp_path / "elsewhere" / "newsbot.db"
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(db_path)
    else:
        os.link(db_path, other)
    for held, used in ((db_path, other), (other, db_path)):
        lock = ProcessLock(held)
        lock.acquire()
        try:
            for command in (("run",), ("ingest",)) if held == db_path else (("run",),):
                out = newsbot(tmp_path, *command, env=run_env(tg, tmp_path, NEWSBOT_DB=str(used)), timeout=30)
                assert out.returncode == 2, out
                line = one_line(out)
                found = re.match(LOCKED, line)
                assert found and int(found.group(1)) == os.getpid(), line
                assert str(used) in line, line
        finally:
            lock.release()
    assert tg.calls() == []


# --- newsbot backup -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["copy #1.db", "copy?x=1&y=2.db", "kopia ünïcødé 備份.db"])
def test_backup_takes_any_file_name(tg: FakeTelegram, tmp_path: Path, name: str) -> None:
    """A database and a target whose names carry `#`, `?`, spaces or any script: the copy
    holds every story and passes integrity_check, and nothing else is created."""
    data = tmp_path / "data #2 ?ro"
    db_path = sample_database(data / "news #1?.db")
    backups = tmp_path / "backups"
    backups.mkdir()
    target = backups / name
    db_path.chmod(0o640)
    out = newsbot(tmp_path, "backup", str(target), env=run_env(tg, tmp_path, NEWSBOT_DB=str(db_path)), timeout=30)
    assert out.returncode == 0, out
    assert out.stdout.strip() == f"backup written and checked: {target}"
    assert story_count(target) == 50
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the database's own permissions
    with contextlib.closing(sqlite3.connect(target)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert sorted(p.name for p in backups.iterdir()) == [name]
    # SQLite may leave the database's own -wal and -shm beside it; nothing else appears.
    assert {p.name for p in data.iterdir()} <= {db_path.name + s for s in ("", "-wal", "-shm")}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["backups", data.name, "no-feeds.toml"])


def test_backup_refuses_the_live_database_as_its_target(tg: FakeTelegram, tmp_path: Path) -> None:
    """The database itself, a symlink or a hard link to it, or its write-ahead log: refused
    in one line, and the live file is the same file with the same stories afterwards."""
    db_path = sample_database(tmp_path / "newsbot.db")
    (tmp_path / "link.db").symlink_to(db_path)
    os.link(db_path, tmp_path / "hard.db")
    identity = os.stat(db_path).st_ino
    env = run_env(tg, tmp_path)
    for target in (db_path, tmp_path / "link.db", tmp_path / "hard.db", Path(f"{db_path}-wal")):
        out = newsbot(tmp_path, "backup", str(target), env=env, timeout=30)
        assert out.returncode == 2, out
        live = f"{db_path}-wal" if str(target).endswith("-wal") else str(db_path)
        assert one_line(out) == (
            f"newsbot: storage: cannot back up {db_path} onto {live}, the live database: give another path"
        )
    assert os.stat(db_path).st_ino == identity
    assert story_count(db_path) == 50


def test_backup_of_a_damaged_database_fails_and_writes_nothing(tg: FakeTelegram, tmp_path: Path) -> None:
    db_path = sample_database(tmp_path / "newsbot.db")
    damage(db_path)
    backups = tmp_path / "backups"
    backups.mkdir()
    target = backups / "newsbot.db"
    out = newsbot(tmp_path, "backup", str(target), env=run_env(tg, tmp_path), timeout=30)
    assert out.returncode == 2, out
    line = one_line(out)
    assert line.startswith(f"newsbot: storage: cannot back up {db_path} to {target}: the copy is damaged "
                           "(integrity_check: "), line
    assert line.endswith(f"so the database is: {RESTORE}"), line
    assert list(backups.iterdir()) == []


# --- the start's check, bounded -------------------------------------------------------------


async def test_the_start_check_stops_at_its_time_limit_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file too big to check within the limit (here: a limit of 0 s) is opened anyway,
    with one line saying the check stopped; within the limit it is checked in full."""
    db_path = await asyncio.to_thread(sample_database, tmp_path / "newsbot.db")
    caplog.set_level(logging.INFO, logger="storage.db")
    db = await Database.open(db_path, check_seconds=0)
    await db.close()
    [stopped] = [r.getMessage() for r in caplog.records if "database check" in r.getMessage()]
    assert stopped.startswith(f"database check stopped at its limit path={db_path} seconds=0 "), stopped
    caplog.clear()
    db = await Database.open(db_path)
    await db.close()
    [checked] = [r.getMessage() for r in caplog.records if "database check" in r.getMessage()]
    assert checked.startswith(f"database checked path={db_path} seconds="), checked


async def test_a_0_1_database_is_migrated_at_start_keeping_its_readers(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    """Upgrading from 0.1.0: its file (schema 2, written by migrations 0001 and 0002, which
    have not changed since) is brought to the newest schema when the bot starts, and its
    readers and their subscriptions go on as they were."""
    settings = bot_settings(sim_tg, tmp_path)
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn:
        for name in ("0001_init.sql", "0002_broadcast_final_counts.sql"):
            conn.executescript((REPO / "storage" / "migrations" / name).read_text(encoding="utf-8"))
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO chats (id, type, created_at, updated_at) VALUES (4242, 'private', 0, 0)")
        conn.execute("INSERT INTO subscriptions (chat_id, kind, value, display, created_at) "
                     "VALUES (4242, 'keyword', 'drones', 'drones', 0)")
        conn.commit()
    async with running_bot(settings, clock=clock):
        subs = await ask(sim_tg, 4242, "/mysubs")
        settings_text = await ask(sim_tg, 4242, "/settings")
    assert "drones" in str(subs["text"])
    assert "A briefing with nothing new: not sent" in str(settings_text["text"])
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (newest_schema(),)
        assert conn.execute("SELECT id, active, nothing_new FROM chats").fetchall() == [(4242, 1, 0)]
