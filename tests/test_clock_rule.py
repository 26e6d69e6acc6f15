"""One clock: nothing in bot/ or storage/ reads the time or waits except through bot.clock.

Everything that schedules takes a `Clock` (bot/clock.py) handed down from start, which the
tests replace with simulated time; a stray `time.time()` or `asyncio.sleep()` would run on
the real clock and make a test wait (or a clock step delay alerts). The allow-list is short
and says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# (module, attribute) pairs that read a clock or wait.
FORBIDDEN = {
    ("time", "time"), ("time", "monotonic"), ("time", "sleep"), ("time", "time_ns"),
    ("time", "monotonic_ns"), ("time", "localtime"), ("time", "gmtime"), ("time", "strftime"),
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("asyncio", "sleep"), ("loop", "time"),
}  # fmt: skip
ALLOWED = {
    # The one clock itself.
    "bot/clock.py",
}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN:
                found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "asyncio", "datetime"):
            for alias in node.names:
                if (node.module, alias.name) in FORBIDDEN:
                    found.append(f"from {node.module} import {alias.name} (line {node.lineno})")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "time"
            and isinstance(node.func.value, ast.Call)
        ):
            found.append(f"….time() on a loop (line {node.lineno})")
    return found


def test_nothing_but_the_clock_reads_the_time_or_waits() -> None:
    offences = {}
    for folder in ("bot", "storage"):
        for path in sorted((REPO / folder).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            if name in ALLOWED:
                continue
            found = _offences(path)
            if found:
                offences[name] = found
    assert offences == {}, f"read the time or wait through bot.clock.Clock instead: {offences}"


def test_the_rule_catches_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import asyncio, time\nfrom datetime import datetime\nfrom time import monotonic\n"
        "async def f():\n    await asyncio.sleep(1)\n    return time.time(), datetime.now(), "
        "asyncio.get_running_loop().time()\n"
    )
    found = _offences(sample)
    assert len(found) == 5, found
