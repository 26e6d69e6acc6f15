"""`newsbot backup PATH`: a checked, consistent copy of the database while the bot runs.

SQLite's online backup API copies in one step inside a read transaction: in WAL mode that is
a snapshot, and the bot's writes go on meanwhile. The copy is written to a new file beside
PATH, checked with `PRAGMA integrity_check`, and only then renamed into place: PATH is never
a half-written or damaged copy, and a damaged database is reported instead of backed up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

import aiosqlite

from storage.db import RESTORE_HINT, StorageError, daemon_connection
from storage.integrity import check_file

# Files of the live database that a copy must never replace.
_LIVE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def live_file_named(path: Path, target: Path) -> str | None:
    """Which file of the database at `path` `target` is (by name or by inode: through
    symlinks and hard links), or None when it is none of them."""
    real_target = os.path.realpath(target)
    for suffix in _LIVE_SUFFIXES:
        live = f"{path}{suffix}"
        if real_target == os.path.realpath(live):
            return live
        with contextlib.suppress(OSError):
            if os.path.samefile(live, target):
                return live
    return None


async def backup(path: Path, target: Path) -> None:
    """Copy the database at `path` into `target` (any file name: spaces, `#`, `?`, any
    script); refuse a target that is the live database or one of its files."""
    source_uri, partial = await asyncio.to_thread(_start, path, target)
    failed = f"storage: cannot back up {path} to {target}"
    try:
        source = await daemon_connection(aiosqlite.connect(source_uri, uri=True))
        try:
            dest = await daemon_connection(aiosqlite.connect(partial))
            try:
                await source.backup(dest)
                checked = await check_file(dest, "integrity_check")
            finally:
                await dest.close()
        finally:
            await source.close()
        if checked.damage is not None:
            raise StorageError(f"{failed}: the copy is damaged ({checked.damage}), so the database is: {RESTORE_HINT}")
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StorageError(f"{failed}: {reason}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(partial)  # gone already when renamed into place


def _start(path: Path, target: Path) -> tuple[str, str]:
    """The source's read-only URI and a new, empty file beside `target` for the copy."""
    if not os.path.isfile(path):
        raise StorageError(f"storage: no database at {path}")
    live = live_file_named(path, target)
    if live is not None:
        raise StorageError(f"storage: cannot back up {path} onto {live}, the live database: give another path")
    try:
        # A new, unique file: never an existing one (not even the database itself under some
        # other name), and on the target's file system, for the rename.
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise StorageError(f"storage: cannot back up {path} to {target}: {exc.strerror}") from None
    os.close(fd)
    os.chmod(partial, os.stat(path).st_mode & 0o777)  # whoever may read the database, no one else
    # pathlib escapes "#", "?" and "%" in the URI: pasted into "file:" as they are, they would
    # end the file name early (and a missing "?mode=ro" would create an empty database there).
    return f"{path.resolve().as_uri()}?mode=ro", partial
