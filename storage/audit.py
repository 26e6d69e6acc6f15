"""The audit table: what admins did (broadcasts, feeds), kept for good."""

from __future__ import annotations

from storage.db import Database


async def record(db: Database, admin_id: int, action: str, detail: str = "", *, now: float) -> None:
    await db.execute(
        "INSERT INTO audit (at, admin_id, action, detail) VALUES (?, ?, ?, ?)",
        (now, admin_id, action, detail[:500]),
    )
