"""Connect to SQLite, set its PRAGMAs, apply migrations; the one process lock per database.

One writer connection behind an asyncio lock (SQLite has one writer anyway, and one
aiosqlite connection must not interleave transactions from several coroutines), a reader
connection for the hot paths (dispatcher, commands, health) and a second reader for reports
(/stats, /feeds, audience counts): each aiosqlite connection runs its queries on its own
thread, so a long report never holds up a reader's command or the dispatcher. In WAL mode
readers never wait for the writer.

Every `sqlite3` error reaches callers as `StorageError` with a one-line message. A file is
checked before it is used: one written by a newer newsbot (a schema this one does not know)
or a damaged one (`PRAGMA quick_check`) is refused at open, and the last failed write is kept
(`last_write_error`) for /healthz, so a pipeline that cannot write does not pass as healthy.
The process lock is in storage/lock.py, backups in storage/backup.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage import words
from storage.integrity import SQLITE_NOTADB, check_file, is_damage

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# The start's quick_check stops after this long (it finishes for a file up to about 1 GB here,
# docs/operations.md): short of STOP_SECONDS, so a SIGTERM during it still stops in time.
CHECK_SECONDS = 10.0
RESTORE_HINT = 'restore the last backup made with "newsbot backup" (docs/operations.md, "Restore")'
T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class StorageError(Exception):
    """The database cannot be used: the message says why, in one line."""


class LockedError(StorageError):
    """Another process holds the database (see storage.lock.ProcessLock)."""


class DamagedError(StorageError):
    """The file is damaged: the message says so and how to restore it."""


def newest_schema() -> int:
    """The schema version this newsbot writes: its last migration's number."""
    return max((version for version, _ in _migrations()), default=0)


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Reader:
    """One read connection: queries run on its own thread."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self.conn = conn

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        # Run, read and finish the statement in one call on the connection's thread: between
        # separate calls another coroutine's query would run inside this statement's read
        # transaction and miss what was committed since it began.
        try:
            return list(await self.conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StorageError(f"storage: cannot read {self.path}: {exc}") from None

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


class Database:
    """The one SQLite file of newsbot."""

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
        reports: aiosqlite.Connection,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = Reader(path, reader)
        self.reports = Reader(path, reports)
        self._lock = asyncio.Lock()
        self._here: sqlite3.Connection | None = None  # see fetchall_here
        self._identity = _file_identity(path)
        # Why the last write transaction failed, None once one commits. The pipeline's own
        # writes (a poll's store, the dispatcher's marks) can fail where /healthz's small
        # probe succeeds (a nearly full disk, a damaged table): this is how it learns of it.
        self.last_write_error: str | None = None

    @classmethod
    async def open(
        cls, path: Path | str, *, busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
        check_seconds: float | None = CHECK_SECONDS,
    ) -> Database:
        """Open (creating) the file; refuse it when it is damaged or from a newer newsbot.

        `check_seconds` bounds the start's quick_check (None: no bound): on a file too big to
        check in that time the bot starts anyway, and says so in the log."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage: cannot create directory {path.parent}: {exc.strerror}") from None
        writer = await _connect(path, busy_timeout)
        opened = [writer]
        try:
            await _prepare(writer, path, check_seconds)
            for _ in range(2):
                opened.append(await _connect(path, busy_timeout))
        except BaseException:
            for conn in opened:
                await conn.close()
            raise
        return cls(path, writer, opened[1], opened[2])

    async def close(self) -> None:
        async with self._lock:
            here, self._here = self._here, None
            if here is not None:
                here.close()
            for conn in (self._reader.conn, self.reports.conn, self._writer):
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()

    @asynccontextmanager
    async def write(self, *, record: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        `record=False` for a health check's own write: its outcome is reported by the check
        itself and must not hide (or stand for) the outcome of the bot's real writes.
        """
        async with self._lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._write_failed(exc, record) from None
            try:
                yield self._writer
                await self._writer.commit()
            except sqlite3.Error as exc:
                await self._rollback()
                raise self._write_failed(exc, record) from None
            except BaseException:
                await self._rollback()
                raise
            if record:
                self.last_write_error = None

    def _write_failed(self, exc: sqlite3.Error, record: bool) -> StorageError:
        error = StorageError(f"storage: cannot write {self.path}: {exc}")
        if record:
            self.last_write_error = str(error)
        return error

    async def _rollback(self) -> None:
        # The connection may have rolled back already (e.g. after SQLITE_FULL).
        with contextlib.suppress(sqlite3.Error):
            await self._writer.rollback()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._reader.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        return await self._reader.fetchone(sql, params)

    async def fetchall_here(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """A read of a few rows through an index (tens of microseconds), run in this thread.

        Handing a query to the reader's thread and its answer back takes two thread wake-ups,
        more than such a read costs, and on a busy machine each wake-up can wait milliseconds
        for a core. Only for reads bounded by an index and a small LIMIT: this blocks the
        event loop while it runs. A database busy for a moment (a reader never waits here)
        sends the read to the reader's thread."""
        try:
            if self._here is None:
                self._here = _connect_here(self.path)
            return self._here.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StorageError(f"storage: cannot read {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise StorageError(f"storage: cannot read {self.path}: {exc}") from None
        return await self._reader.fetchall(sql, params)

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        return await self._reader.scalar(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """A single write statement in its own transaction; returns the rows changed."""
        async with self.write() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.write() as conn:
            await conn.executemany(sql, rows)

    def file_problem(self) -> str | None:
        """Why the file we write is not the file at `path` any more, or None.

        Deleted or replaced while we run, our writes would go to an unlinked file and vanish
        at the next start: that must show, not pass as healthy.
        """
        now = _file_identity(self.path)
        if now is None:
            return f"database file {self.path} was deleted"
        if now != self._identity:
            return f"database file {self.path} was replaced"
        return None

    async def size(self) -> int:
        """Bytes on disk: the file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    async def maintain(self, *, free_pages: int = 2000) -> None:
        """Give freed pages back to the file system and keep the log short.

        `incremental_vacuum` returns at most `free_pages` free pages per call (a few MB, a few
        ms); a TRUNCATE checkpoint copies the log into the file and cuts it to nothing when no
        reader holds it (otherwise it only copies, and the next call cuts).
        """
        async with self._lock:
            try:
                # Each step of the vacuum frees one page, and its steps return no rows, so
                # fetchall() would stop after one: a script runs it to its end. The checkpoint
                # returns one row, read to its end; neither leaves a statement open.
                await self._writer.executescript(f"PRAGMA incremental_vacuum({int(free_pages):d});")
                await self._writer.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                error = StorageError(f"storage: cannot maintain {self.path}: {exc}")
                self.last_write_error = str(error)
                raise error from None
            self.last_write_error = None


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


class GroupCommit:
    """Writes that arrive while one transaction runs share the next one.

    Every send writes twice (pending → sending, then sent); with many sends in flight, one
    commit and one turn of the writer lock serve them all. Nothing is reported done before
    its commit, so a crash loses no acknowledged write.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ops: list[tuple[Callable[[aiosqlite.Connection], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="outbox-writes")
        return await future

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a deadline for shutdown
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=timeout)

    async def _flush(self) -> None:
        while self._ops:
            ops, self._ops = self._ops, []
            try:
                async with self._db.write() as conn:
                    results = [await op(conn) for op, _ in ops]
            except Exception as exc:
                for _, future in ops:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(ops, results, strict=True):
                    if not future.done():  # a caller cancelled at stop no longer waits
                        future.set_result(result)


def daemon_connection(conn: aiosqlite.Connection) -> aiosqlite.Connection:
    """aiosqlite runs each connection on a thread that, left as it is, keeps the process
    alive at exit until the connection is closed: a crash that skipped `close()` would leave
    a bot that neither runs nor exits (and is never restarted). As a daemon it ends with the
    process; SQLite's journal keeps the file consistent whatever was under way."""
    conn._thread.daemon = True
    return conn


async def _connect(path: Path, busy_timeout: float) -> aiosqlite.Connection:
    try:
        conn = await daemon_connection(aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout))
    except sqlite3.Error as exc:
        raise _open_error("open", path, exc) from None
    conn.row_factory = sqlite3.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        # Before anything writes the file's header: a new file starts with incremental vacuum
        # (on a file that has tables this only takes effect with a VACUUM, see _prepare).
        await conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        # Checkpoint after 10,000 pages (40 MB) of log, not SQLite's 1,000: each checkpoint
        # copies the pages into the file and syncs it, and on a big file every sent message
        # dirties pages of its own (the message index), so the default synced every few
        # dozen commits. The maintenance job's TRUNCATE checkpoint still cuts the log every
        # minute.
        await conn.execute("PRAGMA wal_autocheckpoint = 10000")
        # A log that a long reader kept from being cut is truncated to this at checkpoints.
        await conn.execute("PRAGMA journal_size_limit = 67108864")
    except sqlite3.Error as exc:
        await conn.close()
        raise _open_error("use", path, exc) from None
    return conn


def _connect_here(path: Path) -> sqlite3.Connection:
    """The connection of `Database.fetchall_here`: read-only, never waiting for a lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _open_error(verb: str, path: Path, exc: sqlite3.Error) -> StorageError:
    if is_damage(exc):
        return DamagedError(f"storage: {path} is damaged ({exc}); {RESTORE_HINT}")
    if getattr(exc, "sqlite_errorcode", 0) == SQLITE_NOTADB:
        # NEWSBOT_DB naming some other file, or a database whose first page is gone.
        return StorageError(f"storage: cannot use {path}: {exc} (check NEWSBOT_DB; if it is the "
                            f"right file, it is damaged: {RESTORE_HINT})")
    return StorageError(f"storage: cannot {verb} {path}: {exc}")


def _megabytes(path: Path) -> float:
    try:
        return os.stat(path).st_size / 1e6
    except OSError:
        return 0.0


async def _prepare(conn: aiosqlite.Connection, path: Path, check_seconds: float | None) -> None:
    """Refuse a file from a newer newsbot or a damaged one, turn incremental vacuum on, then
    every migration not applied yet."""
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version, newest = (int(row[0]) if row else 0), newest_schema()
        if version > newest:
            # Its tables may have columns and rules this newsbot would not keep.
            raise StorageError(
                f"storage: {path} has schema version {version}, newer than this newsbot's {newest}: "
                "it was written by a newer newsbot; run that one, or restore a backup made by this one"
            )
        started = time.perf_counter()
        checked = await check_file(conn, within=check_seconds)
        if checked.damage is not None:
            raise DamagedError(f"storage: {path} is damaged ({checked.damage}); {RESTORE_HINT}")
        if checked.finished:
            log.info("database checked path=%s seconds=%.1f", path, time.perf_counter() - started)
        else:
            log.info("database check stopped at its limit path=%s seconds=%g size_mb=%.0f "
                     "(every backup checks the whole file)", path, check_seconds, _megabytes(path))
        async with conn.execute("PRAGMA auto_vacuum") as cursor:
            row = await cursor.fetchone()
        if row is not None and int(row[0]) != 2:
            # Freed pages only go back to the file system with auto_vacuum = INCREMENTAL. A
            # new file has it (set before WAL, see _connect); an older one takes the setting
            # with one VACUUM, once, at its first start.
            await conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            async with conn.execute("SELECT count(*) FROM sqlite_master") as cursor:
                tables = await cursor.fetchone()
            if tables is not None and int(tables[0]):
                log.warning("database converted to incremental vacuum (one VACUUM) path=%s", path)
            await conn.execute("VACUUM")
        await _apply_migrations(conn)
    except sqlite3.Error as exc:
        raise _open_error("prepare", path, exc) from None


async def _apply_migrations(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    for version, sql in _migrations():
        if version <= current:
            continue
        # executescript would commit implicitly; run the statements in one transaction so a
        # failed migration leaves nothing half-applied.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(sql):
                await conn.execute(statement)
            step = _AFTER_SQL.get(version)
            if step is not None:
                await step(conn)
            await conn.execute(f"PRAGMA user_version = {version:d}")
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


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


# --- steps a migration's SQL cannot do: they need the word rules --------------------------------


async def _after_v3(conn: aiosqlite.Connection) -> None:
    """Fill the new search index with stems and give every stored story its title key."""
    last = 0
    while True:
        async with conn.execute(
            "SELECT rowid, title, summary, tags FROM articles WHERE rowid > ? ORDER BY rowid LIMIT 2000",
            (last,),
        ) as cursor:
            rows = list(await cursor.fetchall())
        if not rows:
            return
        await conn.executemany(
            "INSERT INTO articles_fts (rowid, title, summary, tags) VALUES (?, ?, ?, ?)",
            [
                (r[0], words.index_text(r[1]), words.index_text(r[2]),
                 words.index_tags(r[3].split("|") if r[3] else ()))
                for r in rows
            ],
        )  # fmt: skip
        await conn.executemany(
            "UPDATE articles SET title_key = ? WHERE rowid = ?",
            [(words.title_key(r[1]), r[0]) for r in rows],
        )
        last = rows[-1][0]


_AFTER_SQL: dict[int, Callable[[aiosqlite.Connection], Awaitable[None]]] = {3: _after_v3}
