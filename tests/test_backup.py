"""`newsbot backup PATH` while the bot runs and writes, and restoring it, step by step as
docs/operations.md tells the operator:

    newsbot backup /backups/newsbot.db          # any time; the bot keeps running
    # restore:
    #   1. stop the bot (SIGTERM) and wait until it has exited
    #   2. move newsbot.db and its -wal and -shm (if there) aside, to *.old
    #   3. cp /backups/newsbot.db /data/newsbot.db
    #   4. start the bot
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

from tests.fakes.telegram_api import FakeTelegram
from tests.test_operator import (
    BotProcess,
    bots,  # noqa: F401 - fixture
    newsbot,
    run_env,
    start,
    stopped_cleanly,
    tg,  # noqa: F401 - fixture
)

READERS = range(1000, 1400)


def chat_ids(path: Path) -> set[int]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM chats")}


def test_backup_while_writing_then_restore(
    tg: FakeTelegram, tmp_path: Path, bots: list[BotProcess]  # noqa: F811
) -> None:
    # Telegram's 30 messages a second would make the 400 welcomes take 13 s; the fake
    # allows more, and the bot is told so.
    env = run_env(tg, tmp_path, NEWSBOT_RATE_GLOBAL="1000")
    db_path = tmp_path / "newsbot.db"
    backup_path = tmp_path / "backups" / "newsbot.db"
    backup_path.parent.mkdir()
    bot = start(bots, tmp_path, env)
    bot.wait_for_lines("newsbot running")

    # Readers keep arriving (each /start commits a row before its welcome is sent) while the
    # backup runs; the ones welcomed before it started are committed rows it must hold.
    welcomed_before: set[int] = set()
    started = threading.Event()

    def readers_arrive() -> None:
        for chat_id in READERS:
            tg.user_message(chat_id, "/start")
            if chat_id == READERS[60]:
                tg.wait_for_messages(chat_id, 1, timeout=60)
                welcomed_before.update(c for c in READERS if tg.sent_messages(c))
                started.set()

    arriving = threading.Thread(target=readers_arrive)
    arriving.start()
    try:
        assert started.wait(120)
        out = newsbot(tmp_path, "backup", str(backup_path), env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip() == f"backup written and checked: {backup_path}"
    finally:
        arriving.join()
    tg.wait_for_messages(READERS[-1], 1, timeout=120)  # every reader welcomed after all

    assert sorted(p.name for p in backup_path.parent.iterdir()) == ["newsbot.db"]  # nothing partial left
    with sqlite3.connect(backup_path) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    in_backup = chat_ids(backup_path)
    assert READERS[60] in welcomed_before
    assert welcomed_before <= in_backup, sorted(welcomed_before - in_backup)[:10]

    # Restore, exactly the documented steps.
    stopped_cleanly(bot)  # 1
    for suffix in ("", "-wal", "-shm"):  # 2
        current = Path(f"{db_path}{suffix}")
        if current.exists():
            current.rename(f"{current}.old")
    assert not Path(f"{db_path}-wal").exists() and not Path(f"{db_path}-shm").exists()
    shutil.copyfile(backup_path, db_path)  # 3
    assert chat_ids(db_path) == in_backup
    restored = start(bots, tmp_path, env, name="restored")  # 4
    restored.wait_for_lines("newsbot running")
    _, body = restored.wait_for_health(lambda s, b: True)
    assert body["database"] is True, body
    tg.user_message(READERS[0], "/mysubs")
    tg.wait_for_messages(READERS[0], 2, timeout=60)
    stopped_cleanly(restored)
    assert chat_ids(db_path) == in_backup
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_backup_refuses_a_missing_database_in_one_line(tmp_path: Path) -> None:
    env = run_env(FakeTelegram(), tmp_path)
    out = newsbot(tmp_path, "backup", str(tmp_path / "copy.db"), env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == f"newsbot: storage: no database at {tmp_path / 'newsbot.db'}"
    assert not (tmp_path / "copy.db").exists()


def test_backup_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    db_path = tmp_path / "newsbot.db"
    sqlite3.connect(db_path).close()
    env = run_env(FakeTelegram(), tmp_path)
    target = tmp_path / "nowhere" / "copy.db"
    out = newsbot(tmp_path, "backup", str(target), env=env)
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"newsbot: storage: cannot back up {db_path} to {target}"), line
