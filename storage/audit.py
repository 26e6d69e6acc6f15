"""The audit table: what admins did (broadcasts, feeds), kept for good."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database


@dataclass(frozen=True, slots=True)
class Entry:
    at: float
    admin_id: int
    action: str
    detail: str


async def record(db: Database, admin_id: int, action: str, detail: str = "", *, now: float) -> None:
    await db.execute(
        "INSERT INTO audit (at, admin_id, action, detail) VALUES (?, ?, ?, ?)",
        (now, admin_id, action, detail[:500]),
    )


async def recent(db: Database, limit: int = 20) -> list[Entry]:
    rows = await db.reports.fetchall(
        "SELECT at, admin_id, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [Entry(r[0], r[1], r[2], r[3]) for r in rows]
