"""Is the database file sound: `PRAGMA quick_check` at every start (bounded in time) and
`PRAGMA integrity_check` on every backup's copy, each summed up in one line."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass

import aiosqlite

QUICK_CHECK_ERRORS = 20  # a check stops after this many problems: enough to say what is wrong
_SQLITE_INTERRUPT = 9
_SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


def is_damage(exc: sqlite3.Error) -> bool:
    """The error says the file is damaged (not busy, not full, not read-only, not some other
    kind of file)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_CORRUPT


@dataclass(frozen=True, slots=True)
class FileCheck:
    finished: bool  # False: stopped at its time limit, nothing found in the part it read
    damage: str | None = None  # what is wrong, in one line


async def check_file(conn: aiosqlite.Connection, check: str = "quick_check", *, within: float | None = None) -> FileCheck:
    """Run `PRAGMA quick_check` (or integrity_check), stopped after `within` seconds.

    quick_check walks every page of every b-tree (about 1.3 s a GB from the page cache, a
    whole read of the file from a cold disk), then checks every row (NOT NULL, index entry
    counts); on a 1.17 GB file it took 8-19 s here, 98 % of it in the outbox's rows
    (docs/operations.md). integrity_check also compares each index with its table: two to
    five times the cost (45 s on that file).
    """
    stop = threading.Event()
    if within is not None and within <= 0:
        stop.set()  # no time at all: stopped at its first step
    # Stopped from the event loop: interrupt() ends the page walk at once; the progress
    # handler catches a statement that had not begun when interrupt() came.
    await conn.set_progress_handler(lambda: int(stop.is_set()), 1000)
    query = asyncio.ensure_future(conn.execute_fetchall(f"PRAGMA {check}({QUICK_CHECK_ERRORS:d})"))
    try:
        if within is not None and not (await asyncio.wait([query], timeout=within))[0]:
            stop.set()
            await conn.interrupt()
        rows = await query
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return FileCheck(True, f"{check}: {exc}")
        if stop.is_set() and getattr(exc, "sqlite_errorcode", 0) == _SQLITE_INTERRUPT:
            return FileCheck(False)
        raise
    finally:
        await conn.set_progress_handler(None, 0)  # type: ignore[arg-type] # None removes it
    problems = [
        line.strip()
        for row in rows
        for line in str(row[0]).splitlines()
        if line.strip() and line.strip() != "ok" and not line.startswith("*** in database")
    ]
    if not problems:
        return FileCheck(True)
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    return FileCheck(True, f"{check}: {problems[0][:200]}{more}")
