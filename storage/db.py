"""Connect to SQLite, set its PRAGMAs, apply migrations.

One writer connection behind an asyncio lock (SQLite has one writer anyway, and one
aiosqlite connection must not interleave transactions from several coroutines), plus a
reader connection for queries: in WAL mode readers never wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

BUSY_TIMEOUT_MS = 5000

Params = Sequence[Any] | dict[str, Any]


class StorageError(Exception):
    """The database cannot be used: the message says why, in one line."""


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """The one SQLite file of newsbot."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout: float = BUSY_TIMEOUT_MS / 1000) -> Database:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage: cannot create directory {path.parent}: {exc.strerror}") from None
        writer = await _connect(path, busy_timeout)
        try:
            await _apply_migrations(writer, path)
            reader = await _connect(path, busy_timeout)
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        async with self._lock:
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        async with self._lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StorageError(f"storage: cannot write {self.path}: {exc}") from None
            try:
                yield self._writer
                await self._writer.commit()
            except sqlite3.OperationalError as exc:
                await self._rollback()
                raise StorageError(f"storage: cannot write {self.path}: {exc}") from None
            except BaseException:
                await self._rollback()
                raise

    async def _rollback(self) -> None:
        # The connection may have rolled back already (e.g. after SQLITE_FULL).
        with contextlib.suppress(sqlite3.Error):
            await self._writer.rollback()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        try:
            async with self._reader.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.OperationalError as exc:
            raise StorageError(f"storage: cannot read {self.path}: {exc}") from None

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        try:
            async with self._reader.execute(sql, params) as cursor:
                row: sqlite3.Row | None = await cursor.fetchone()
                return row
        except sqlite3.OperationalError as exc:
            raise StorageError(f"storage: cannot read {self.path}: {exc}") from None

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def execute(self, sql: str, params: Params = ()) -> int:
        """A single write statement in its own transaction; returns the rows changed."""
        async with self.write() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.write() as conn:
            await conn.executemany(sql, rows)


async def _connect(path: Path, busy_timeout: float) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise StorageError(f"storage: cannot open {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        await conn.close()
        raise StorageError(f"storage: cannot use {path}: {exc}") from None
    return conn


async def _apply_migrations(conn: aiosqlite.Connection, path: Path) -> None:
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for version, sql in _migrations():
            if version <= current:
                continue
            # executescript would commit implicitly; run the statements in one transaction
            # so a failed migration leaves nothing half-applied.
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {version:d}")
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
    except sqlite3.Error as exc:
        raise StorageError(f"storage: cannot prepare {path}: {exc}") from None


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about triggers)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
