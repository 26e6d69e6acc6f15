"""The /stats chart: the hourly series (table-style, on simulated time), what an admin gets
through the fake Bot API (a real PNG, the figures as its caption), the text alone when the
chart cannot be drawn, and the lane counters the database keeps."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image

from bot.charts import hourly_series
from bot.commands.admin import CHART_CAPTION, REFUSAL
from storage import chats, counters, subscriptions
from storage.counters import Figures, latencies
from storage.db import Database
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import ask, bot_settings, running_bot
from tests.simtime import SimClock
from tests.test_admin import ADMIN, STRANGER, seed_newsroom

H = 3600


@pytest.mark.parametrize(
    ("rows", "sent", "p50", "p95"),
    [
        # nothing counted: 24 empty hours
        ({}, {"personal": [0] * 24}, [None] * 24, [None] * 24),
        # the current hour is the last bar, 23 hours ago the first; older hours are left out
        ({0: {"lane_personal_sent": 3}, -23: {"lane_personal_sent": 5}, -24: {"lane_personal_sent": 9}},
         {"personal": [5] + [0] * 22 + [3]}, [None] * 24, [None] * 24),
        # lanes apart; latency buckets → the bound half (95 %) of the hour's alerts arrived within
        ({-1: {"lane_sections_sent": 4, "lane_broadcasts_sent": 2, **latencies([5, 8, 25, 500])}},
         {"sections": [0] * 22 + [4, 0], "broadcasts": [0] * 22 + [2, 0], "corrections": [0] * 24},
         [None] * 22 + [10.0, None], [None] * 22 + [600.0, None]),
    ],
)
async def test_hourly_series(clock: SimClock, rows: dict[int, dict[str, int]],
                             sent: dict[str, list[int]], p50: list[float | None], p95: list[float | None]) -> None:
    # Simulated time runs on to the middle of the next hour; `rows` are keyed by hours before it.
    now_hour = int(clock.time() // H) + 1
    await clock.sleep(now_hour * H + 1800 - clock.time())
    series = hourly_series({now_hour + hour: Figures(names) for hour, names in rows.items()}, clock.time())
    assert series.hours == tuple(range(now_hour - 23, now_hour + 1))
    for lane, counts in sent.items():
        assert list(series.sent[lane]) == counts, lane
    assert list(series.p50) == p50 and list(series.p95) == p95


def lane_counters(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        return dict(conn.execute("SELECT name, sum(n) FROM counters WHERE name LIKE 'lane%' GROUP BY name"))


async def test_admin_gets_a_chart_with_the_figures_as_caption(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    settings = bot_settings(tg, tmp_path, NEWSBOT_HTTP_PORT="0")
    await seed_newsroom(settings.db_path)
    async with running_bot(settings, clock=clock) as runtime:
        await tg.await_messages(11, 1, timeout=10)
        answer = await ask(tg, ADMIN, "/stats")
        stranger = await ask(tg, STRANGER, "/stats")
        metrics = runtime.services.metrics
    # The alert due now went out in the sections lane, and the hour's counters say so.
    assert lane_counters(settings.db_path) == {"lane_sections_sent": 1}
    assert metrics.value("newsbot_lane_messages_sent_total", lane="sections") == 1
    assert metrics.value("newsbot_alert_latency_seconds_count") == 1
    assert "photo" in answer, answer
    caption = str(answer["caption"])
    assert "Readers: 5 active, 2 paused, 1 inactive" in caption
    assert "half within 30 s" in caption and "Outbox:" in caption
    upload = tg.uploads[(ADMIN, int(answer["message_id"]))]  # type: ignore[call-overload]
    assert upload.data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(upload.data)) as image:
        assert image.format == "PNG" and image.size == (800, 500)
    assert stranger["text"] == REFUSAL and "photo" not in stranger


async def test_long_figures_follow_the_chart_as_a_message(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    settings = bot_settings(tg, tmp_path)
    db = await Database.open(settings.db_path)
    try:
        for n in range(10):  # ten keywords of 60 letters: the figures pass 1,024 characters
            await chats.join(db, 50 + n, "private", now=time.time())
            await subscriptions.add_subscription(db, 50 + n, "keyword", f"{n}" + "x" * 59, f"{n}" + "x" * 59,
                                                 limit=50, now=time.time())
    finally:
        await db.close()
    async with running_bot(settings, clock=clock):
        photo = await ask(tg, ADMIN, "/stats")
        [text] = (await tg.await_messages(ADMIN, 2, timeout=10))[1:]
    assert photo["caption"] == "Newsroom stats — the last 24 hours by hour; the figures follow."
    assert "Newsroom stats" in CHART_CAPTION
    assert len(str(text["text"])) > 1024 and "Top keywords: 0xxx" in str(text["text"])


async def test_a_chart_that_cannot_be_drawn_leaves_the_text(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    font = tmp_path / "broken.ttf"
    font.write_bytes(b"this file is not a font")  # matplotlib cannot open it: drawing raises
    settings = bot_settings(tg, tmp_path, NEWSBOT_CHART_FONT=str(font))
    async with running_bot(settings, clock=clock) as runtime:
        answer = await ask(tg, ADMIN, "/stats")
        failures = runtime.services.metrics.value("newsbot_errors_total", stage="chart")
    assert "photo" not in answer and "Readers: 0 active" in str(answer["text"])
    assert failures == 1
    assert not tg.calls("sendPhoto")


async def test_lane_counters_are_filled_in_from_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    db = await Database.open(path)
    await db.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO chats (id, type, created_at, updated_at) VALUES (1, 'private', 0, 0)")
        for i, lane in enumerate((1, 2, 2, 3)):
            conn.execute("INSERT INTO outbox (chat_id, kind, key, lane, state, next_attempt_at, created_at, sent_at) "
                         "VALUES (1, 'alert', ?, ?, 'sent', 0, 0, ?)", (f"k{i}", lane, 7200.0 + i))
        conn.execute("PRAGMA user_version = 13")
    db = await Database.open(path)
    try:
        hours = await counters.by_hour(db.reports, 0)
    finally:
        await db.close()
    assert hours[2].totals == {"lane_personal_sent": 1, "lane_sections_sent": 2, "lane_corrections_sent": 1}
