"""The counters table: newsroom figures per UTC hour, written in the same transactions that
change what they count, so /stats, /metrics and /healthz read a few small rows whatever the
traffic, and the figures survive retention and a reader's /stop.

Names: 'articles' (stories stored), '<kind>_<state>' for outbox rows reaching a final state
('alert_sent', 'broadcast_blocked', 'edit_sent' = corrections, …; a combined message counts
each of its alerts), 'lane_<lane>_sent' for the rows sent per delivery lane
('lane_personal_sent', …; storage.outbox.LANE_NAMES), and 'latency_le_<s>' / 'latency_inf'
for the time from a story's publication (or first sight, when its feed gives no date) to
Telegram accepting its alert, one histogram bucket each. Rows are pruned after
storage.maintenance.COUNTERS_DAYS: a few dozen small rows an hour.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiosqlite

from storage.db import Reader

HOUR = 3600
# Upper bounds (seconds) of the publication → alert buckets.
LATENCY_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 10800, 43200, 86400)


def latency_bucket(seconds: float) -> str:
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return f"latency_le_{bound}"
    return "latency_inf"


async def add(conn: aiosqlite.Connection, now: float, counts: Mapping[str, int]) -> None:
    """Add `counts` to the current hour's row of each name (inside the caller's transaction)."""
    hour = int(now // HOUR)
    rows = [(hour, name, n) for name, n in counts.items() if n]
    if rows:
        await conn.executemany(
            "INSERT INTO counters (hour, name, n) VALUES (?, ?, ?) "
            "ON CONFLICT(hour, name) DO UPDATE SET n = n + excluded.n",
            rows,
        )


def lane_sent(lane: str) -> str:
    """The counter of the messages sent in a lane (by its name: 'personal', 'sections'…)."""
    return f"lane_{lane}_sent"


def latencies(seconds: Iterable[float]) -> Counter[str]:
    return Counter(latency_bucket(max(0.0, s)) for s in seconds)


@dataclass(frozen=True, slots=True)
class Figures:
    """Sums over a span of hours, by name."""

    totals: dict[str, int]

    def get(self, name: str) -> int:
        return self.totals.get(name, 0)

    def latency_percentile(self, p: float) -> float | None:
        """The bucket bound under which `p` of the alerts arrived (None: no alert); the last,
        open bucket reads as its lower bound."""
        counts = [self.get(f"latency_le_{b}") for b in LATENCY_BUCKETS] + [self.get("latency_inf")]
        total = sum(counts)
        if not total:
            return None
        rank = max(1, math.ceil(p * total))
        seen = 0
        for bound, count in zip((*LATENCY_BUCKETS, LATENCY_BUCKETS[-1]), counts, strict=True):
            seen += count
            if seen >= rank:
                return float(bound)
        return float(LATENCY_BUCKETS[-1])


async def since(reader: Reader, start: float) -> Figures:
    """Every counter summed over the hours from the one holding `start` to now."""
    rows = await reader.fetchall(
        "SELECT name, sum(n) FROM counters WHERE hour >= ? GROUP BY name", (int(start // HOUR),)
    )
    return Figures({str(r[0]): int(r[1]) for r in rows})


async def by_hour(reader: Reader, start: float, prefixes: tuple[str, ...] = ("lane_", "latency_")) -> dict[int, Figures]:
    """The counters whose names start with one of `prefixes`, per hour (epoch seconds //
    3600), from the hour holding `start` to now; hours with nothing counted are left out."""
    clauses = " OR ".join("substr(name, 1, ?) = ?" for _ in prefixes)
    params: list[object] = [int(start // HOUR)]
    for prefix in prefixes:
        params += [len(prefix), prefix]
    rows = await reader.fetchall(
        f"SELECT hour, name, n FROM counters WHERE hour >= ? AND ({clauses})", tuple(params)  # noqa: S608
    )
    hours: dict[int, dict[str, int]] = {}
    for hour, name, n in rows:
        hours.setdefault(int(hour), {})[str(name)] = int(n)
    return {hour: Figures(totals) for hour, totals in hours.items()}


async def prune(conn: aiosqlite.Connection, before: float) -> int:
    cursor = await conn.execute("DELETE FROM counters WHERE hour < ?", (int(before // HOUR),))
    return cursor.rowcount
