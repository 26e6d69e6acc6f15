"""The simulated clock itself (tests/simtime.py): what the tests on it rely on."""

from __future__ import annotations

import asyncio
import math

import pytest

from tests.simtime import SimClock


async def test_a_wait_until_a_deadline_a_hair_away_reaches_it(clock: SimClock) -> None:
    """A task that waits "until the deadline" with other work ready meanwhile (the
    dispatcher waits so, on its events and a time-out) gets there, and does not spin."""
    loop = clock.loop
    deadline = math.nextafter(loop.time(), math.inf)
    turns = 0
    while loop.time() < deadline:
        turns += 1
        assert turns < 10, "the clock stood still while a timer fired early"
        event = asyncio.Event()
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait([waiter], timeout=deadline - loop.time())
        waiter.cancel()
    assert loop.time() == deadline


async def test_timers_run_in_order_at_their_own_time(clock: SimClock) -> None:
    loop = clock.loop
    start = loop.time()
    seen: list[float] = []
    for delay in (3.0, 1.0, 2.0):
        loop.call_later(delay, lambda d=delay: seen.append(loop.time() - start))
    await clock.run_for(5)
    assert seen == pytest.approx([1.0, 2.0, 3.0])
