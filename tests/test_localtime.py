"""bot.localtime: readers' quiet hours and briefing slots, exact across daylight saving.

Europe/Stockholm changes on 2026-03-29 (02:00 CET → 03:00 CEST: 02:30 never happens) and
on 2026-10-25 (03:00 CEST → 02:00 CET: 02:30 happens twice).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot import briefings, localtime
from bot.config import load_settings
from bot.context import open_services
from bot.localtime import hhmm, next_slot, parse_hhmm, quiet_until, slot_name
from storage import chats

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = 60.0


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def local(ts: float, zone: ZoneInfo = STOCKHOLM) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("07:30", 450), ("7:30", 450), ("0730", 450), ("7.30", 450), ("7h30", 450),
        (" 23:59 ", 1439), ("00:00", 0), ("0:05", 5),
        ("730", 450), ("24:00", None), ("7:60", None), ("7300", None), ("", None), ("seven", None),
        ("07:30pm", None), ("-1:00", None),
    ],
)  # fmt: skip
def test_parse_hhmm(text: str, minutes: int | None) -> None:
    assert parse_hhmm(text) == minutes
    if minutes is not None:
        assert parse_hhmm(hhmm(minutes)) == minutes


def test_quiet_hours_across_midnight() -> None:
    start, end = 22 * 60, 7 * 60
    winter_evening = utc("2026-01-15T21:30")  # 22:30 CET
    assert quiet_until(start, end, STOCKHOLM, winter_evening) == utc("2026-01-16T06:00")
    assert quiet_until(start, end, STOCKHOLM, utc("2026-01-16T02:00")) == utc("2026-01-16T06:00")
    assert quiet_until(start, end, STOCKHOLM, utc("2026-01-15T21:00")) == utc("2026-01-16T06:00")
    assert quiet_until(start, end, STOCKHOLM, utc("2026-01-16T06:00")) is None  # 07:00: over
    assert quiet_until(start, end, STOCKHOLM, utc("2026-01-15T20:59")) is None  # 21:59
    assert quiet_until(start, end, STOCKHOLM, utc("2026-01-15T11:00")) is None
    # Daytime quiet hours, and none at all.
    assert quiet_until(9 * 60, 17 * 60, STOCKHOLM, utc("2026-07-01T10:00")) == utc("2026-07-01T15:00")
    assert quiet_until(9 * 60, 17 * 60, STOCKHOLM, utc("2026-07-01T16:00")) is None
    assert quiet_until(None, None, STOCKHOLM, winter_evening) is None
    assert quiet_until(start, start, STOCKHOLM, winter_evening) is None


def test_quiet_hours_are_read_in_the_readers_zone() -> None:
    at = utc("2026-01-16T04:00")  # 05:00 in Stockholm, 23:00 the day before in New York
    assert quiet_until(22 * 60, 7 * 60, STOCKHOLM, at) == utc("2026-01-16T06:00")
    assert quiet_until(22 * 60, 7 * 60, NEW_YORK, at) == utc("2026-01-16T12:00")


def test_quiet_hours_ending_in_the_skipped_spring_hour() -> None:
    """01:30–02:30 on 2026-03-29: 02:30 does not exist; the quiet hour still ends once,
    and every moment inside it names that same end."""
    start, end = 90, 150
    at = utc("2026-03-29T00:45")  # 01:45 CET
    until = quiet_until(start, end, STOCKHOLM, at)
    assert until is not None and until > at
    assert local(until) in ("2026-03-29 03:00 CEST", "2026-03-29 03:30 CEST")
    _assert_consistent(start, end, STOCKHOLM, utc("2026-03-28T22:00"), utc("2026-03-29T04:00"))


def test_quiet_hours_ending_in_the_repeated_autumn_hour() -> None:
    """01:30–02:30 on 2026-10-25: 02:30 comes twice; quiet hours end at a time still to
    come, never at one already past."""
    start, end = 90, 150
    _assert_consistent(start, end, STOCKHOLM, utc("2026-10-24T21:00"), utc("2026-10-25T04:00"))
    at = utc("2026-10-24T23:45")  # 01:45 CEST
    until = quiet_until(start, end, STOCKHOLM, at)
    assert until is not None and local(until) == "2026-10-25 02:30 CEST"


@pytest.mark.parametrize(
    ("start", "end"),
    [(90, 150), (120, 180), (150, 210), (22 * 60, 7 * 60), (2 * 60 + 30, 2 * 60 + 45), (0, 150), (150, 0)],
)
@pytest.mark.parametrize("zone", [STOCKHOLM, NEW_YORK])
@pytest.mark.parametrize("first", ["2026-03-27", "2026-10-23", "2026-03-06", "2026-10-30"])
def test_quiet_hours_are_consistent_through_every_change(
    start: int, end: int, zone: ZoneInfo, first: str
) -> None:
    """Three days around each change of either zone (Europe: 29 Mar, 25 Oct; America:
    8 Mar, 1 Nov), minute by minute."""
    begin = utc(first + "T00:00")
    _assert_consistent(start, end, zone, begin, begin + 3 * 86400)


def _assert_consistent(start: int, end: int, zone: ZoneInfo, first: float, last: float) -> None:
    """Minute by minute: inside quiet hours, the end announced lies ahead and stays the same
    until it comes; at that end the quiet hours are over."""
    at = first
    while at <= last:
        until = quiet_until(start, end, zone, at)
        if until is not None:
            assert until > at, f"quiet at {local(at, zone)} until {local(until, zone)}, already past"
            if at + MINUTE < until:
                assert quiet_until(start, end, zone, at + MINUTE) == until, local(at, zone)
            assert quiet_until(start, end, zone, until) is None, local(until, zone)
            # Nowhere near a whole day: the hours asked for, give or take the clock change.
            span = (end - start) % (24 * 60) * MINUTE
            assert until - at <= span + 3600
        at += MINUTE


# --- briefing slots --------------------------------------------------------------------------


def slots_between(times: tuple[int, ...], zone: ZoneInfo, first: float, last: float) -> list[float]:
    found: list[float] = []
    after = first
    while (slot := next_slot(times, zone, after)) is not None and slot <= last:
        assert slot > after
        found.append(slot)
        after = slot
    return found


def test_a_briefing_at_0230_on_the_spring_day_comes_once() -> None:
    slots = slots_between((150,), STOCKHOLM, utc("2026-03-28T00:00"), utc("2026-03-30T23:00"))
    assert [local(s) for s in slots] == [
        "2026-03-28 02:30 CET", "2026-03-29 03:30 CEST", "2026-03-30 02:30 CEST",
    ]  # fmt: skip


def test_a_briefing_at_0230_on_the_autumn_day_comes_once() -> None:
    slots = slots_between((150,), STOCKHOLM, utc("2026-10-24T00:00"), utc("2026-10-26T23:00"))
    assert [local(s) for s in slots] == [
        "2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET",
    ]  # fmt: skip
    assert len({slot_name(s, STOCKHOLM) for s in slots}) == 3


def test_next_slot_in_two_zones() -> None:
    after = utc("2026-03-10T12:00")  # New York is on summer time already, Stockholm not yet
    times = (7 * 60 + 30, 18 * 60)
    assert next_slot(times, STOCKHOLM, after) == utc("2026-03-10T17:00")  # 18:00 CET
    assert next_slot(times, NEW_YORK, after) == utc("2026-03-10T22:00")  # 18:00 EDT
    evening = utc("2026-03-10T23:00")
    assert next_slot(times, STOCKHOLM, evening) == utc("2026-03-11T06:30")  # 07:30 CET
    assert next_slot(times, NEW_YORK, evening) == utc("2026-03-11T11:30")  # 07:30 EDT
    assert next_slot((), STOCKHOLM, after) is None
    # Strictly after: a slot that is now is the next day's.
    assert next_slot((18 * 60,), STOCKHOLM, utc("2026-03-10T17:00")) == utc("2026-03-11T17:00")


def test_slot_names_are_local() -> None:
    at = utc("2026-10-25T00:30")
    assert slot_name(at, STOCKHOLM) == "2026-10-25T02:30"
    assert slot_name(at, NEW_YORK) == "2026-10-24T20:30"
    assert localtime.local_minutes(at, STOCKHOLM) == (datetime(2026, 10, 25).date(), 150)


async def test_the_scheduler_queues_one_briefing_for_a_doubled_0230(tmp_path: Path) -> None:
    """Run every five minutes through the autumn night: one briefing row per day for a
    reader who chose 02:30, none twice."""
    settings = load_settings({"NEWSBOT_DB": str(tmp_path / "newsbot.db")}, env_file=None)
    services = await open_services(settings)
    try:
        await chats.join(services.db, 5, "private", now=time.time())
        first = utc("2026-10-24T12:00")
        await chats.set_briefings(services.db, 5, [150], next_slot((150,), STOCKHOLM, first), last_at=first, now=time.time())
        at = first
        while at < utc("2026-10-26T12:00"):
            await briefings.schedule(services, at)
            at += 5 * MINUTE
        rows = await services.db.fetchall("SELECT key FROM outbox WHERE kind = 'briefing' ORDER BY id")
    finally:
        await services.close()
    assert [r[0] for r in rows] == ["br:2026-10-25T02:30", "br:2026-10-26T02:30"]
