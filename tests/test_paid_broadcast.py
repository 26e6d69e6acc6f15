"""Paid broadcasts (NEWSBOT_PAID_BROADCASTS=1) end to end, against the fake Bot API enforcing
Telegram's limits: the free 30 messages a second, and 1,000 a second for messages sent with
allow_paid_broadcast, which the fake counts (and bills beyond the free rate).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.context import Services
from storage import articles, chats, outbox
from storage.outbox import Match
from tests.fakes.telegram_api import PAID_BROADCAST_REFUSED, FakeTelegram, RecordedCall
from tests.harness import ask, bot_settings, press, running_bot
from tests.simtime import SimClock
from tests.test_admin_broadcast import button, query, received, reports, seed_readers
from tests.test_delivery import delivered, settle, story

ADMIN = 9001
TEXT = "Polls close at 20:00 tonight"



def buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


def to_readers(tg: FakeTelegram, readers: Sequence[int]) -> list[RecordedCall]:
    wanted = set(readers)
    return [c for c in tg.calls("sendMessage") if c.chat_id in wanted]


def busiest_second(calls: Sequence[RecordedCall]) -> int:
    """The most accepted sends within one second of the server's clock."""
    times = sorted(c.monotonic for c in calls if c.ok)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


async def queue_alerts(services: Services, chat_ids: Sequence[int]) -> None:
    """Section alerts for these readers, queued the way the poll job queues them."""
    for chat_id in chat_ids:
        await chats.join(services.db, chat_id, "private", now=time.time())
    stories = [story(700 + i) for i in range(len(chat_ids))]
    async with services.db.write() as conn:
        await articles.store_articles(conn, stories, seen=True, now=time.time())
    matches = {s.id: {c: Match(("section:world",))} for s, c in zip(stories, chat_ids, strict=True)}
    assert (await outbox.enqueue_alerts(services.db, stories, matches, now=time.time())).queued == len(chat_ids)
    services.outbox_wake.set()


async def test_send_fast_goes_at_the_paid_rate_within_its_limit_and_alerts_stay_free(
    clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path
) -> None:
    tg = sim_tg
    readers = list(range(100_000, 101_500))
    alerted = list(range(102_000, 102_020))
    settings = bot_settings(tg, tmp_path, NEWSBOT_PAID_BROADCASTS="1")
    await seed_readers(settings.db_path, readers)
    tg.enforce_limits()

    async with running_bot(settings, clock=clock) as rt:
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        # 1,500 readers: 50 s at the free 30/s; 1.5 s at the paid 1,000/s, for 0.1 Star each
        # beyond the free 30.
        assert buttons(preview)[:2] == ["Send to 1500 chats (≈ 50 s)", "Send fast (≈ 2 s, ≈ 147 Stars)"]
        answer = await press(tg, ADMIN, preview["message_id"], button(preview, "Send fast"))
        assert answer["text"] == "Sending to 1500 chats."
        progress = (await tg.await_messages(ADMIN, 2, timeout=10))[1]
        assert "Sending fast (paid)." in progress["text"]
        await queue_alerts(rt.services, alerted)
        await tg.await_for(lambda: reports(tg), timeout=60)
        await settle(rt.services, timeout=30)

    sends = to_readers(tg, readers)
    assert received(tg, readers, TEXT) == dict.fromkeys(readers, 1)
    assert all(c.ok and c.params.get("allow_paid_broadcast") is True for c in sends)
    assert tg.paid_sent_count == len(readers)
    assert tg.violations == []
    # Faster than the free rate allows (which would be a violation without the payment).
    assert busiest_second(sends) > 30
    # Never more Stars than the preview said (Telegram bills what goes beyond the free rate).
    assert math.ceil(tg.paid_billed_count * 0.1) <= 147
    # Alerts sent meanwhile are never paid.
    alerts = to_readers(tg, alerted)
    assert len(alerts) == len(alerted) and all("allow_paid_broadcast" not in c.params for c in alerts)
    assert {c for c, _ in delivered(tg)} == set(alerted)
    assert query(settings.db_path, "SELECT state, paid, paid_refused FROM broadcasts") == [("done", 1, None)]


async def test_a_tiny_audience_is_estimated_at_a_second_and_no_stars(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    """3 messages fit in the free 30 a second: a fast send costs nothing, and the button says
    so; what Telegram bills for it (nothing) is checked by sending it."""
    tg = sim_tg
    readers = [120_001, 120_002, 120_003]
    settings = bot_settings(tg, tmp_path, NEWSBOT_PAID_BROADCASTS="1")
    await seed_readers(settings.db_path, readers)
    tg.enforce_limits()

    async with running_bot(settings, clock=clock):
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        # 0.1 s free, 0.003 s paid: nothing is sent in no time.
        assert buttons(preview)[:2] == ["Send to 3 chats (≈ 1 s)", "Send fast (≈ 1 s, no Stars)"]
        await press(tg, ADMIN, preview["message_id"], button(preview, "Send fast"))
        await tg.await_for(lambda: reports(tg), timeout=60)
    assert received(tg, readers, TEXT) == dict.fromkeys(readers, 1)
    assert tg.paid_sent_count == 3 and tg.paid_billed_count == 0


async def test_paid_sending_refused_mid_way_goes_on_at_the_free_rate(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    readers = list(range(110_000, 110_300))
    settings = bot_settings(tg, tmp_path, NEWSBOT_PAID_BROADCASTS="1")
    await seed_readers(settings.db_path, readers)
    tg.enforce_limits()
    tg.refuse_paid(after=100)  # Stars for 100 messages, then BALANCE_TOO_LOW

    async with running_bot(settings, clock=clock):
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        await press(tg, ADMIN, preview["message_id"], button(preview, "Send fast"))
        progress = (await tg.await_messages(ADMIN, 2, timeout=10))[1]
        [report] = await tg.await_for(lambda: reports(tg), timeout=60)

    sends = to_readers(tg, readers)
    refused = [c for c in sends if not c.ok]
    assert refused and all(c.status == 400 and c.description == PAID_BROADCAST_REFUSED for c in refused)
    # Only the sends in flight when the first refusal came back were refused (paid sending
    # keeps up to paid_concurrency requests in flight).
    assert len(refused) <= settings.paid_concurrency
    accepted = [c for c in sends if c.ok]
    paid = Counter(c.params.get("allow_paid_broadcast") is True for c in accepted)
    assert paid == {True: 100, False: 200}
    assert tg.paid_sent_count == 100
    # Nothing lost, nothing twice, and the free part within the free limit.
    assert received(tg, readers, TEXT) == dict.fromkeys(readers, 1)
    assert tg.violations == []
    # The admin is told, while it goes on and at the end.
    edits = [c.params["text"] for c in tg.calls("editMessageText") if c.params.get("message_id") == progress["message_id"]]
    going_on = "Telegram refused paid sending (Bad Request: BALANCE_TOO_LOW); going on at the free rate."
    assert any(going_on in text for text in edits[:-1]), edits
    final = tg.message(ADMIN, progress["message_id"])
    assert final is not None
    assert "Sent 300 / 300 · blocked 0 · failed 0" in final["text"]
    assert "Telegram refused paid sending (Bad Request: BALANCE_TOO_LOW); the rest went at the free rate." in final["text"]
    assert report["text"].startswith("Report: broadcast #1 finished — 300 readers of 300 reached")
    assert query(settings.db_path, "SELECT paid, paid_refused FROM broadcasts") == [(0, PAID_BROADCAST_REFUSED)]
    assert query(settings.db_path, "SELECT state, attempts, count(*) FROM outbox GROUP BY state, attempts") == [
        ("sent", 1, 300)
    ]


async def test_without_the_setting_there_is_no_fast_button_and_no_paid_send(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    readers = [120_001, 120_002, 120_003]
    settings = bot_settings(tg, tmp_path, NEWSBOT_RATE_PRIVATE_INTERVAL="0")
    await seed_readers(settings.db_path, readers)

    async with running_bot(settings, clock=clock):
        preview = await ask(tg, ADMIN, f"/broadcast {TEXT}")
        assert not [label for label in buttons(preview) if "fast" in label.casefold() or "Stars" in label]
        # A button from a preview made while the setting was on still sends at the free rate.
        forged = button(preview, "Send").replace("bc:send:", "bc:fast:")
        answer = await press(tg, ADMIN, preview["message_id"], forged)
        assert answer["text"] == "Sending to 3 chats."
        await tg.await_for(lambda: reports(tg), timeout=30)
        await tg.await_for(lambda: all(received(tg, readers, TEXT).values()), timeout=10)

    assert received(tg, readers, TEXT) == dict.fromkeys(readers, 1)
    assert all("allow_paid_broadcast" not in c.params for c in to_readers(tg, readers))
    assert tg.paid_sent_count == 0
    assert query(settings.db_path, "SELECT paid FROM broadcasts") == [(0,)]
