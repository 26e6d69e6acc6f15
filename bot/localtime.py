"""Readers' local times: "HH:MM", quiet hours and briefing slots in a time zone, exact across
daylight-saving changes (zoneinfo does the arithmetic; we only ever ask it for wall-clock
times on a given date)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

_HHMM = re.compile(r"^([01]?[0-9]|2[0-3])[:.h]?([0-5][0-9])$")
DAY_MINUTES = 24 * 60


def parse_hhmm(text: str) -> int | None:
    """'07:30', '7:30', '0730', '7.30' → minutes after midnight; None if it is not a time."""
    match = _HHMM.match(text.strip())
    if match is None:
        return None
    return int(match.group(1)) * 60 + int(match.group(2))


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def span(start: int, end: int) -> str:
    """Quiet hours as readers see them: '22:00–07:00'."""
    return f"{hhmm(start)}–{hhmm(end)}"


def _at(day: date, minutes: int, zone: tzinfo) -> float:
    """The first instant the wall clock in `zone` shows `minutes` on `day` (a UTC timestamp).
    In the hour that a spring change skips, the time after it (02:30 → 03:30): fold 0 reads
    a skipped time with the offset before the change, which is that instant."""
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone).timestamp()


def local_minutes(now: float, zone: tzinfo) -> tuple[date, int]:
    moment = datetime.fromtimestamp(now, zone)
    return moment.date(), moment.hour * 60 + moment.minute


def quiet_until(start: int | None, end: int | None, zone: tzinfo, now: float) -> float | None:
    """When the quiet hours that hold at `now` end (a UTC timestamp), or None when `now` is
    not within them. `start`–`end` may cross midnight (22:00–07:00)."""
    if start is None or end is None or start == end:
        return None
    today, _ = local_minutes(now, zone)
    # Instants, not wall-clock minutes: on a day the clocks change, the wall clock skips or
    # repeats an hour, and only instants agree with the end this returns.
    for day in (today - timedelta(days=1), today):
        begins = _at(day, start, zone)
        ends = _at(day + timedelta(days=1) if end < start else day, end, zone)
        if begins <= now < ends:
            return ends
    return None


def next_slot(times: tuple[int, ...] | list[int], zone: tzinfo, after: float) -> float | None:
    """The first of the daily local `times` strictly after `after` (a UTC timestamp)."""
    if not times:
        return None
    today, _ = local_minutes(after, zone)
    for offset in range(3):
        day = today + timedelta(days=offset)
        for minutes in sorted(times):
            at = _at(day, minutes, zone)
            if at > after:
                return at
    return None


def slot_name(at: float, zone: tzinfo) -> str:
    """'2026-03-29T07:30': a briefing slot, in the reader's zone (one per chat and slot)."""
    return datetime.fromtimestamp(at, zone).strftime("%Y-%m-%dT%H:%M")
