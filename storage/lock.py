"""One newsbot process per database file, whatever name it is reached by.

The lock is an exclusive `flock` on the database file itself, so it belongs to the file
(its inode), not to one of its names: a symlink, a hard link, a bind mount or another
container on the same volume all reach the same lock. The kernel drops it when the process
dies, however it dies, so a crashed bot never blocks its successor, while a second copy
started by mistake is refused before it can reset the first one's rows in flight or fight it
for Telegram's updates.

Why a `flock` on the file SQLite itself locks is safe (Linux): SQLite's unix VFS locks with
POSIX `fcntl` byte-range locks, and on Linux `flock` and `fcntl` locks are separate
mechanisms that never conflict with each other (flock(2), "NOTES"). Two rules keep it so:

* POSIX locks belong to the process and are all dropped when the process closes *any*
  descriptor of the file. The lock's descriptor is therefore held open for as long as the
  lock is, and closed only at `release()`, after the database connections are closed.
* On NFS, Linux emulates `flock` with `fcntl` locks over the whole file, which would
  conflict with SQLite's; SQLite's write-ahead log does not work over NFS anyway (it needs
  shared memory), so newsbot's database must be on a local file system in any case.

Elsewhere (BSDs, macOS) `flock` and `fcntl` locks may share one lock manager, so there the
lock is a `<db>.lock` file beside the database's real path (symlinks resolved; a hard link
is not recognised).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from storage.db import LockedError, StorageError

ON_LINUX = sys.platform.startswith("linux")


class ProcessLock:
    """An exclusive lock on the database file for the life of the process (see the module)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The file that is locked: the database itself on Linux, else `<real path>.lock`."""
        if ON_LINUX:
            return self.db_path
        return Path(f"{os.path.realpath(self.db_path)}.lock")

    def acquire(self) -> None:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage: cannot create directory {path.parent}: {exc.strerror}") from None
        try:
            # An empty file is a new SQLite database: creating it here changes nothing. Reading
            # is enough for flock; the lock file elsewhere also gets the holder's pid.
            mode = os.O_RDONLY if ON_LINUX else os.O_RDWR
            fd = os.open(path, mode | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"storage: cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd) if ON_LINUX else _read_pid(fd)
            os.close(fd)
            raise LockedError(
                f"storage: another newsbot process (pid {holder or 'unknown'}) is using {self.db_path}; "
                "stop it first (one process per database)"
            ) from None
        if not ON_LINUX:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str | None:
    """The pid holding a flock on the file of `fd`, from /proc/locks (Linux)."""
    stat = os.fstat(fd)
    key = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    with contextlib.suppress(OSError), open("/proc/locks", encoding="ascii", errors="replace") as locks:
        for line in locks:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2157127 0 EOF"; waiters have "->".
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key and fields[4] != "0":
                return fields[4]
    return None


def _read_pid(fd: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or None
    return None
