"""bot.pipeline.ratelimit.RateLimits: Telegram's flood limits kept on the sending side.

Times are passed in (the dispatcher's monotonic clock), so nothing here waits.
"""

from __future__ import annotations

import pytest

from bot.pipeline.ratelimit import RateLimits


def test_window_counts_sends_in_flight_as_now_and_answered_ones_at_their_answer() -> None:
    limits = RateLimits(global_rate=3, private_interval=1.0, group_per_minute=2, margin=0.0)
    for _ in range(3):
        limits.begin()
    # Three sends in flight fill a window of three, however long ago they started.
    assert limits.global_ready_at(100.0) > 100.0
    limits.end(1, 100.5)
    limits.end(2, 100.7)
    limits.end(-5, 100.9)
    # Telegram may have counted the first one as late as its answer: free again 1 s after it.
    assert limits.global_ready_at(101.0) == pytest.approx(101.5)
    assert limits.global_ready_at(101.6) == 101.6
    assert limits.chat_ready_at(1, 101.0) == pytest.approx(101.5)
    assert limits.chat_ready_at(3, 101.0) == 101.0
    limits.begin()
    limits.end(-5, 101.0)
    assert limits.chat_ready_at(-5, 101.0) == pytest.approx(160.9)  # 2 per minute for a group
    # A request that never went out (its row was cancelled meanwhile) is not counted.
    limits.begin()
    limits.end(4, 101.2, sent=False)
    assert limits.chat_ready_at(4, 101.3) == 101.3
    limits.hold(3, 105.0)
    assert limits.chat_ready_at(3, 101.0) == 105.0


def test_the_paid_window_counts_every_send() -> None:
    """Free sends fill the paid window too: paid_rate is Telegram's limit for all messages."""
    limits = RateLimits(global_rate=30, paid_rate=5, margin=0.0)
    for chat_id in range(1, 6):
        limits.record(chat_id, 10.0)  # five free sends
    assert limits.global_ready_at(10.2, paid=True) == pytest.approx(11.0)
    for chat_id in range(1, 6):
        limits.record(chat_id, 11.0, paid=True)  # five paid sends
    # The free window has room (5 of 30), the window of all sends does not.
    assert limits.global_ready_at(11.5) == pytest.approx(12.0)


def test_the_free_window_counts_only_free_sends() -> None:
    limits = RateLimits(global_rate=2, paid_rate=100, margin=0.0)
    for chat_id in range(1, 51):
        limits.record(chat_id, 10.0, paid=True)
    assert limits.global_ready_at(10.1) == 10.1
    limits.record(60, 10.1)
    limits.record(61, 10.2)
    assert limits.global_ready_at(10.3) == pytest.approx(11.1)


def test_a_paid_send_is_not_held_by_the_free_window() -> None:
    limits = RateLimits(global_rate=2, paid_rate=100, margin=0.0)
    limits.record(1, 10.0)
    limits.record(2, 10.0)
    assert limits.global_ready_at(10.5) == pytest.approx(11.0)
    assert limits.global_ready_at(10.5, paid=True) == 10.5
    assert limits.ready_at(3, 10.5, paid=True) == 10.5
    # Paid sends in flight count in the window of all sends, not in the free one.
    for _ in range(98):
        limits.begin(paid=True)
    assert limits.global_ready_at(11.5) == 11.5
    limits.begin(paid=True)
    limits.begin(paid=True)
    assert limits.global_ready_at(11.5, paid=True) > 11.5


def test_per_chat_limits_apply_to_paid_sends() -> None:
    limits = RateLimits(global_rate=30, paid_rate=1000, private_interval=1.0, group_per_minute=2, margin=0.0)
    limits.begin(paid=True)
    limits.end(7, 10.0, paid=True)
    assert limits.ready_at(7, 10.5, paid=True) == pytest.approx(11.0)
    for at in (10.0, 20.0):
        limits.begin(paid=True)
        limits.end(-100, at, paid=True)
    assert limits.ready_at(-100, 30.0, paid=True) == pytest.approx(70.0)
    assert limits.ready_at(8, 10.5, paid=True) == 10.5


def test_in_flight_counts_as_now_for_either_kind() -> None:
    limits = RateLimits(global_rate=2, paid_rate=3, margin=0.0)
    limits.begin()
    limits.begin()
    assert limits.global_ready_at(50.0) > 50.0  # the free window is full of sends in flight
    assert limits.global_ready_at(50.0, paid=True) == 50.0
    limits.begin(paid=True)
    assert limits.global_ready_at(50.0, paid=True) > 50.0  # 3 in flight fill the paid window
    limits.end(1, 50.2)
    limits.end(2, 50.3)
    limits.end(3, 50.4, paid=True)
    assert limits.global_ready_at(50.5) == pytest.approx(51.2)
    assert limits.global_ready_at(50.5, paid=True) == pytest.approx(51.2)


def test_pause_holds_everything_and_unlimited_counts_nothing() -> None:
    limits = RateLimits(global_rate=1, margin=0.0)
    limits.pause_until = 20.0
    assert limits.ready_at(1, 10.0) == 20.0 and limits.ready_at(1, 10.0, paid=True) == 20.0
    free = RateLimits(unlimited=True)
    for _ in range(100):
        free.record(1, 10.0)
    assert free.ready_at(1, 10.0) == 10.0


def test_prune_forgets_chats_whose_limits_passed() -> None:
    limits = RateLimits(private_interval=1.0, margin=0.0)
    limits.record(1, 10.0)
    limits.record(-2, 10.0)
    limits.hold(3, 12.0)
    limits.prune(80.0)
    assert limits.chat_ready_at(1, 80.0) == 80.0
    assert (limits._last, dict(limits._groups), limits._held) == ({}, {}, {})
