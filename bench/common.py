"""What every benchmark shares: the row format, the table, machine facts, a fake Bot API
server in its own process, settings pointing at it, and small statistics helpers.

A benchmark's `main(argv)` returns a list of rows built with :func:`figure`; `python -m bench`
prints them as one table (figure, value, baseline, ratio, target, pass/fail).

``python -m bench.common serve-fake-telegram`` is the child side of
:class:`FakeTelegramProcess` (JSON lines on stdin/stdout); it is not meant to be run by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

Row = dict[str, Any]


# --------------------------------------------------------------------------- rows


def figure(
    key: str,
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    target: str = "—",
    passed: bool | None = None,
    better: str = "higher",
    value_text: str | None = None,
    baseline_text: str | None = None,
    floor: float | None = None,
    floor_text: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Row:
    """One figure of the table.

    `ratio` says how many times better than the baseline the value is: value / baseline
    when higher is better, baseline / value when lower is better (latency, memory, time).
    `floor` is the least work the same operation could do, measured in the same run (a bare
    SQL statement, the parse alone, a bare send loop); `vs_floor` is value / floor, so for
    a time it is how many times the floor's time it takes (≥ 1), and for a rate which
    fraction of the floor's rate it reaches (≤ 1). `passed` is None for figures without a
    target (shown as "info").
    """
    ratio: float | None = None
    if baseline is not None and value is not None:
        if better == "higher" and baseline > 0:
            ratio = value / baseline
        elif better == "lower" and value > 0:
            ratio = baseline / value
    vs_floor = value / floor if floor and value is not None else None
    return {
        "key": key,
        "figure": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "better": better,
        "target": target,
        "passed": passed,
        "value_text": value_text if value_text is not None else format_value(value, unit),
        "baseline_text": (
            baseline_text
            if baseline_text is not None
            else ("—" if baseline is None else format_value(baseline, unit))
        ),
        "floor": floor,
        "vs_floor": vs_floor,
        "floor_text": (
            floor_text if floor_text is not None else ("—" if floor is None else format_value(floor, unit))
        ),
        "detail": dict(detail or {}),
    }


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if unit == "%":
        return f"{value:.1f} %"
    if unit in ("ms", "s"):
        return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:,.0f} {unit}".rstrip()
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".rstrip()
    return f"{value:,.2f} {unit}".rstrip()


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:,.1f}×"
    return f"{ratio:,.2f}×"


def result_text(passed: bool | None) -> str:
    return "info" if passed is None else ("pass" if passed else "FAIL")


TABLE_HEADER = ("figure", "value", "baseline", "ratio", "floor", "× floor", "target", "result")


def format_vs_floor(vs_floor: float | None) -> str:
    return "—" if vs_floor is None else f"{vs_floor:,.2f}×"


def table_cells(row: Row) -> tuple[str, ...]:
    return (
        str(row["figure"]),
        str(row["value_text"]),
        str(row["baseline_text"]),
        format_ratio(row["ratio"]),
        str(row.get("floor_text", "—")),
        format_vs_floor(row.get("vs_floor")),
        str(row["target"]),
        result_text(row["passed"]),
    )


def markdown_table(rows: Iterable[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(TABLE_HEADER) + " |",
        "| " + " | ".join("---" for _ in TABLE_HEADER) + " |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in table_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_rows(rows: Sequence[Row], title: str | None = None) -> None:
    if title:
        print(f"\n## {title}\n")
    print(markdown_table(rows))
    notes = [(r["figure"], r["detail"].get("note")) for r in rows if r["detail"].get("note")]
    for name, note in notes:
        print(f"- {name}: {note}")
    sys.stdout.flush()


# --------------------------------------------------------------------------- numbers


def words(text: str) -> list[str]:
    """The whitespace-separated words of a long literal (vocabularies)."""
    return text.split()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def machine_info() -> dict[str, str]:
    return {
        "cores": str(os.cpu_count() or "?"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(terse=True),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cpu_once() -> float:
    """A fixed piece of pure-Python work (integer arithmetic, a dict, string joins)."""
    started = time.perf_counter()
    seen: dict[int, int] = {}
    total = 0
    for i in range(2_000_000):
        total += (i * i) % 7
        seen[i % 1024] = total
    "".join(str(v) for v in seen.values())
    return time.perf_counter() - started


def _sqlite_once(path: Path) -> float:
    """A fixed piece of SQLite work: 100,000 rows written with an index, then 5,000 indexed
    lookups and one grouped scan, in a file of its own."""
    remove_db(path)
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL)")
        conn.execute("CREATE INDEX t_k ON t (k)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (k, v) VALUES (?, ?)", ((i * 7919 % 100_003, f"v{i}") for i in range(100_000)))
        conn.execute("COMMIT")
        for i in range(5_000):
            conn.execute("SELECT v FROM t WHERE k = ?", (i * 31 % 100_003,)).fetchall()
        conn.execute("SELECT k % 100, count(*) FROM t GROUP BY 1").fetchall()
    finally:
        conn.close()
        remove_db(path)
    return time.perf_counter() - started


def host_speed(repeat: int = 3) -> dict[str, float]:
    """The machine's speed right now, by two fixed calibrations (best of `repeat`, in ms):
    a run on another day, or beside other work, is compared through these."""
    with tempfile.TemporaryDirectory(prefix="newsbot-calibration-") as tmp:
        cpu = min(_cpu_once() for _ in range(repeat))
        db = min(_sqlite_once(Path(tmp) / "calibration.db") for _ in range(repeat))
    return {"cpu_ms": cpu * 1000, "sqlite_ms": db * 1000}


def host_speed_text(speed: Mapping[str, float]) -> str:
    return f"CPU calibration {speed['cpu_ms']:.0f} ms, SQLite calibration {speed['sqlite_ms']:.0f} ms"


def cache_dir() -> Path:
    """Where generated inputs (big SQLite files) are kept between runs."""
    override = os.environ.get("NEWSBOT_BENCH_CACHE")
    path = Path(override) if override else Path(tempfile.gettempdir()) / "newsbot-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_record(path: Path, key: Sequence[Any]) -> dict[str, Any] | None:
    """What was kept beside a generated file in the cache (`keep_record`) when it was built for
    `key`; None when it must be built (again)."""
    done = Path(f"{path}.done")
    if path.exists() and done.exists():
        record = json.loads(done.read_text())
        if isinstance(record, dict) and record.get("key") == list(key):
            return record
    return None


def keep_record(path: Path, key: Sequence[Any], **record: Any) -> None:
    """Mark a generated file as complete for `key`, with what a run needs of it besides."""
    Path(f"{path}.done").write_text(json.dumps({"key": list(key), **record}))


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# A builder's page cache: index inserts at random places stay in memory instead of going
# through the file once per row (a day of the year's outbox: 65 s → 39 s at 20,000 readers).
BUILD_CACHE_PRAGMA = "PRAGMA cache_size = -2000000"  # KiB: 2 GB


def builder(path: Path) -> sqlite3.Connection:
    """A connection for filling a generated database: no syncing (a crash rebuilds it), a
    large page cache, transactions begun by hand."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(BUILD_CACHE_PRAGMA)
    return conn


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Python subprocess that imports this repository's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PTB_TIMEDELTA", "1")
    env.update(extra or {})
    return env


def bot_settings(api_url: str, token: str, db_path: Path, **extra: str) -> Any:
    """Settings as the bot reads them, pointing at a fake Bot API and a SQLite file."""
    from bot.config import load_settings

    env = {
        "NEWSBOT_TOKEN": token,
        "NEWSBOT_API_URL": api_url,
        "NEWSBOT_DB": str(db_path),
        "NEWSBOT_LOG_LEVEL": "WARNING",
        # The benchmarks' feeds are served on loopback.
        "NEWSBOT_FEED_ALLOW_PRIVATE": "1",
        **extra,
    }
    return load_settings(env, env_file=None)


# --------------------------------------------------------------------------- fake Bot API


class FakeTelegramProcess:
    """`tests.fakes.telegram_api.FakeTelegram` served from a child process.

    In its own process the fake neither competes with the code under test for the GIL nor
    shifts its clock readings (the limit checks) by the client's pauses: it is on the other
    core, like Telegram is on another machine. Control goes through JSON lines.
    """

    def __init__(self, token: str = "123456:BENCH-token") -> None:
        self.token = token
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/bot"

    def start(self) -> FakeTelegramProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.common", "serve-fake-telegram", self.token],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=child_env(),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(10)
            raise RuntimeError("fake Bot API process did not start")
        self.url = json.loads(line)["url"]
        return self

    def command(self, name: str, **kwargs: Any) -> Any:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("fake Bot API process not running")
        with self._lock:
            proc.stdin.write(json.dumps({"command": name, "kwargs": kwargs}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        if not line:
            raise RuntimeError("fake Bot API process ended")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"fake Bot API: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> FakeTelegramProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve_fake_telegram(token: str) -> None:
    from tests.fakes.telegram_api import FakeTelegram

    tg = FakeTelegram(token)
    tg.start()

    def sends(method: str = "sendMessage") -> list[list[Any]]:
        # [chat_id, status, server monotonic time, text] per request of that method.
        return [
            [c.chat_id, c.status, c.monotonic, c.params.get("text", "")]
            for c in tg.calls(method)
        ]

    def violations() -> list[list[Any]]:
        return [[v.kind, v.chat_id, v.time] for v in tg.violations]

    commands: dict[str, Any] = {
        "enforce_limits": tg.enforce_limits,
        "disable_limits": tg.disable_limits,
        "clear": tg.clear,
        "reset": tg.reset,
        "sends": sends,
        "violations": violations,
        "internal_errors": lambda: [repr(e) for e in tg.internal_errors],
    }
    print(json.dumps({"url": tg.url}), flush=True)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                result = commands[request["command"]](**request.get("kwargs", {}))
                answer: dict[str, Any] = {"result": result}
            except Exception as exc:  # reported to the parent, which raises
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        tg.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve-fake-telegram":
        _serve_fake_telegram(sys.argv[2])
    else:
        raise SystemExit("usage: python -m bench.common serve-fake-telegram TOKEN")
