"""bot.pipeline.lanes.Planner: which chat's message goes next, and what goes together.

The planner decides on rows as the dispatcher loads them (`DueMessage`); these tests hand
it such rows and play the dispatcher's part: pick a chat, take its message, and count.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

import pytest

from bot.pipeline.lanes import COMBINE_MAX, COMBINE_OVER, COMBINE_WAITED, Planner
from storage.due import DueMessage
from storage.models import Article, Chat
from storage.outbox import LANE_BROADCAST, LANE_EDIT, LANE_PERSONAL, LANE_SECTION

_ids = itertools.count(1)
T0 = 1_774_000_000.0


def chat(chat_id: int, *, combine: bool = True) -> Chat:
    return Chat(
        id=chat_id, type="private" if chat_id > 0 else "supergroup", title=None, active=True,
        paused=False, link_previews=False, combine=combine,
    )


def row(
    chat_id: int, lane: int, *, kind: str | None = None, published: float = T0, due: float = T0,
    thread_id: int | None = None, digest: str | None = None, combine: bool = True,
    row_id: int | None = None,
) -> DueMessage:
    kind = kind or ("broadcast" if lane == LANE_BROADCAST else "alert")
    number = next(_ids) if row_id is None else row_id
    article = None
    if kind in ("alert", "post", "edit"):
        article = Article(
            id=f"a{number}", url=f"https://news.example/{number}", title=f"Story {number}",
            summary="", section="world", tags=(), published_at=published, fetched_at=published,
            rowid=number,
        )
    return DueMessage(
        id=number, chat=chat(chat_id, combine=combine), kind=kind, lane=lane,
        reasons=("section:world",) if lane == LANE_SECTION else ("keyword:drones",),
        attempts=0, article=article, broadcast_id=number if kind == "broadcast" else None,
        broadcast_html="<b>News</b>" if kind == "broadcast" else None, thread_id=thread_id,
        digest=digest, next_attempt_at=due, created_at=due,
    )


def now_ready(message: DueMessage, now: float) -> float:
    return now


def drain(planner: Planner, picks: int, *, busy: Iterable[int] = ()) -> list[list[DueMessage]]:
    """Play the dispatcher: pick, take, `picks` times (fewer if nothing is left)."""
    sent: list[list[DueMessage]] = []
    for _ in range(picks):
        chat_id, _ = planner.pick(0.0, now_ready, set(busy))
        if chat_id is None:
            break
        sent.append(planner.take(chat_id))
    return sent


def lane_counts(batches: list[list[DueMessage]]) -> Counter[int]:
    return Counter(batch[0].lane for batch in batches)


def fan_out(lane: int, chats: range) -> list[DueMessage]:
    return [row(c, lane) for c in chats]


def test_busy_lanes_share_the_sends_16_8_2() -> None:
    planner = Planner()
    planner.replace(
        fan_out(LANE_BROADCAST, range(1, 1001)) + fan_out(LANE_PERSONAL, range(2001, 3001))
        + fan_out(LANE_SECTION, range(4001, 5001)),
        set(),
    )  # fmt: skip
    counts = lane_counts(drain(planner, 260))
    assert counts[LANE_BROADCAST] == pytest.approx(160, abs=1)
    assert counts[LANE_PERSONAL] == pytest.approx(80, abs=1)
    assert counts[LANE_SECTION] == pytest.approx(20, abs=1)
    # The share holds in every stretch, not only on average.
    for _ in range(10):
        window = lane_counts(drain(planner, 26))
        assert window[LANE_SECTION] >= 1 and window[LANE_PERSONAL] >= 7


def test_a_lone_lane_gets_every_send() -> None:
    planner = Planner()
    planner.replace(fan_out(LANE_SECTION, range(1, 301)), set())
    assert lane_counts(drain(planner, 300)) == {LANE_SECTION: 300}
    assert not planner


def test_a_lane_back_from_idle_starts_level() -> None:
    """Sections that ran alone for a while do not owe their turns to a broadcast that
    arrives: from then on the sends are shared again."""
    planner = Planner()
    sections = fan_out(LANE_SECTION, range(1, 2001))
    planner.replace(sections, set())
    sent = drain(planner, 500)
    left = {m.id for batch in sent for m in batch}
    planner.replace(
        [m for m in sections if m.id not in left] + fan_out(LANE_BROADCAST, range(-3000, -2000)), set()
    )
    # Two lanes busy: 16 to 2 (a broadcast starting at pass 0 would take every send).
    counts = lane_counts(drain(planner, 180))
    assert counts[LANE_SECTION] == pytest.approx(20, abs=1)
    assert counts[LANE_BROADCAST] == pytest.approx(160, abs=1)


def _picks_until(planner: Planner, chat_id: int, limit: int = 5000) -> int:
    for n in range(1, limit + 1):
        batches = drain(planner, 1)
        assert batches, "the planner ran dry"
        if batches[0][0].chat_id == chat_id:
            return n
    raise AssertionError(f"chat {chat_id} never picked")


def test_a_keyword_alert_waits_behind_a_few_section_sends_only() -> None:
    """A reader's keyword alert arriving during another chat's big section fan-out goes
    within a few sends; under 0.1's one queue it waited for the whole fan-out."""
    for fifo, most in ((False, 3), (True, None)):
        planner = Planner(fifo=fifo)
        sections = fan_out(LANE_SECTION, range(1, 1001))
        planner.replace(sections, set())
        sent = {m.id for batch in drain(planner, 100) for m in batch}
        keyword = row(5000, LANE_PERSONAL, due=T0 + 1)
        planner.replace([m for m in sections if m.id not in sent] + [keyword], set())
        waited = _picks_until(planner, 5000)
        if most is None:
            assert waited == 901  # every section row due before it went first
        else:
            assert waited <= most


def test_fifo_reproduces_the_01_order() -> None:
    """Broadcasts strictly first, then every alert in one queue by due time, then id."""
    rows = [
        row(1, LANE_SECTION, due=T0 + 5, row_id=101),
        row(2, LANE_PERSONAL, due=T0 + 9, row_id=102),
        row(3, LANE_BROADCAST, due=T0 + 20, row_id=103),
        row(4, LANE_SECTION, due=T0 + 1, row_id=104),
        row(5, LANE_PERSONAL, due=T0 + 5, row_id=99),
        row(6, LANE_BROADCAST, due=T0 + 30, row_id=105),
        row(7, LANE_SECTION, due=T0 + 7, row_id=106),
    ]
    planner = Planner(fifo=True)
    planner.replace(rows, set())
    order = [batch[0].id for batch in drain(planner, 10)]
    assert order == [103, 105, 104, 99, 101, 106, 102]
    # The stride policy, given the same rows, shares instead.
    stride = Planner()
    stride.replace(rows, set())
    assert [b[0].id for b in drain(stride, 10)] != order


def test_a_chat_not_ready_is_passed_over_and_the_earliest_wake_reported() -> None:
    planner = Planner()
    planner.replace([row(1, LANE_BROADCAST), row(2, LANE_SECTION), row(3, LANE_SECTION)], set())

    def limits(message: DueMessage, now: float) -> float:
        return {1: now + 5.0, 2: now + 2.0}.get(message.chat_id, now)

    assert planner.pick(10.0, limits, set()) == (3, 10.0)
    planner.take(3)
    assert planner.pick(10.0, limits, set()) == (None, 12.0)
    assert planner.pick(10.0, now_ready, {1}) == (2, 10.0)  # chat 1 has a send in flight


# --- what goes together ---------------------------------------------------------------------


def test_more_than_three_alerts_go_as_one_message() -> None:
    planner = Planner()
    planner.replace([row(1, LANE_SECTION) for _ in range(COMBINE_OVER)], set())
    assert [len(b) for b in drain(planner, 10)] == [1] * COMBINE_OVER
    planner.replace([row(1, LANE_SECTION) for _ in range(COMBINE_OVER + 1)], set())
    assert [len(b) for b in drain(planner, 10)] == [COMBINE_OVER + 1]
    planner.replace([row(1, LANE_SECTION, combine=False) for _ in range(5)], set())
    assert [len(b) for b in drain(planner, 10)] == [1] * 5
    planner.replace([row(1, LANE_SECTION) for _ in range(COMBINE_MAX + 50)], set())
    assert [len(b) for b in drain(planner, 10)] == [COMBINE_MAX, 50]


def test_alerts_that_waited_a_minute_go_together_with_what_came_due_behind_them() -> None:
    """Two alerts for one chat: apart while the older is fresh, one message once it has
    waited COMBINE_WAITED (stuck behind a fan-out); never with combining off, nor in FIFO."""

    def batches(*, waited: float, combine: bool = True, fifo: bool = False) -> list[int]:
        planner = Planner(fifo=fifo)
        planner.replace(
            [row(1, LANE_SECTION, due=T0, combine=combine),
             row(1, LANE_SECTION, due=T0 + waited / 2, combine=combine)],
            set(),
        )
        sizes = []
        while planner:
            chat_id, _ = planner.pick(T0 + waited, now_ready, set())
            assert chat_id == 1
            sizes.append(len(planner.take(chat_id, now=T0 + waited)))
        return sizes

    assert COMBINE_WAITED == 60.0  # the documented minute
    assert batches(waited=COMBINE_WAITED - 1) == [1, 1]
    assert batches(waited=COMBINE_WAITED) == [2]
    assert batches(waited=10 * COMBINE_WAITED, combine=False) == [1, 1]
    assert batches(waited=10 * COMBINE_WAITED, fifo=True) == [1, 1]


def test_an_alert_that_waited_gathers_its_chats_alerts_beyond_the_view() -> None:
    """The view holds only each lane's oldest rows: once an alert has waited a minute, the
    dispatcher reads the chat's other due alerts and they go with it, in publication order;
    those in the view leave it, other topics and digests stay."""
    planner = Planner()
    old = row(1, LANE_SECTION, due=T0, published=T0 + 5)
    in_view = row(1, LANE_PERSONAL, due=T0 + 1, published=T0 + 1)
    planner.replace([old, in_view, row(2, LANE_SECTION, due=T0)], set())
    chat_id, _ = planner.pick(T0 + 10, now_ready, set())
    assert chat_id == 1
    batch = planner.take(1, now=T0 + 10)
    assert [m.id for m in batch] == [in_view.id]  # keyword lane first; two alerts, fresh: apart
    assert not planner.gathers(batch, T0 + 10)
    assert planner.gathers(batch, T0 + 1 + COMBINE_WAITED)
    assert not Planner(fifo=True).gathers(batch, T0 + 1 + COMBINE_WAITED)
    assert not planner.gathers([row(1, LANE_SECTION, combine=False)], T0 + 10 * COMBINE_WAITED)
    assert not planner.gathers([row(1, LANE_PERSONAL, kind="briefing")], T0 + 10 * COMBINE_WAITED)

    beyond = row(1, LANE_SECTION, due=T0 + 50, published=T0 + 3)
    other_topic = row(1, LANE_SECTION, due=T0 + 50, thread_id=9)
    merged = planner.gather(batch, [old, beyond, other_topic, in_view])
    assert [m.id for m in merged] == [in_view.id, beyond.id, old.id]
    # `old` left the view with it; chat 2's alert is all that is left.
    assert planner.waiting()[LANE_SECTION] == 1
    assert [m.chat_id for batch in drain(planner, 10) for m in batch] == [2]

    many = [row(1, LANE_SECTION, published=T0 + n) for n in range(COMBINE_MAX + 20)]
    assert len(Planner().gather([row(1, LANE_SECTION)], many)) == COMBINE_MAX


def test_held_alerts_always_go_together() -> None:
    """Alerts held overnight or while away are one digest, two of them and with combining
    off alike."""
    for digest in ("away", "overnight"):
        planner = Planner()
        planner.replace([row(1, LANE_SECTION, digest=digest, combine=False) for _ in range(2)], set())
        batches = drain(planner, 10)
        assert [len(b) for b in batches] == [2] and batches[0][0].digest == digest


def test_only_alerts_for_the_same_topic_go_together() -> None:
    planner = Planner()
    rows = [row(-100, LANE_SECTION, thread_id=7, published=T0 + n) for n in range(4)] + [
        row(-100, LANE_SECTION, thread_id=None, published=T0 + 10 + n) for n in range(4)
    ]
    planner.replace(rows, set())
    batches = drain(planner, 10)
    assert [(len(b), {m.thread_id for m in b}) for b in batches] == [(4, {7}), (4, {None})]


def test_a_chats_broadcast_goes_first_then_its_new_alerts_and_its_edits_last() -> None:
    """A reader's new alerts never wait behind an edit of an older message (a correction
    storm must not delay the news); broadcasts, briefings and edits go alone."""
    planner = Planner()
    rows = [
        row(1, LANE_SECTION, published=T0 + n) for n in range(5)
    ] + [
        row(1, LANE_PERSONAL, kind="briefing"),
        row(1, LANE_EDIT, kind="edit"),
        row(1, LANE_BROADCAST),
    ]
    planner.replace(rows, set())
    kinds = [[m.kind for m in batch] for batch in drain(planner, 10)]
    assert kinds == [["broadcast"], ["alert"] * 5, ["briefing"], ["edit"]]


def test_alerts_go_in_publication_order_within_a_chat() -> None:
    published = [T0 + 30, T0 + 10, T0 + 20]
    planner = Planner()
    planner.replace([row(1, LANE_SECTION, published=p) for p in published], set())
    order = [b[0].article.published_at for b in drain(planner, 10) if b[0].article is not None]
    assert order == sorted(published)
    planner.replace([row(1, LANE_SECTION, published=T0 + 100 - n) for n in range(6)], set())
    (combined,) = drain(planner, 10)
    assert [m.article.published_at for m in combined if m.article] == [T0 + 95 + n for n in range(6)]


def test_put_back_rows_are_next_for_their_chat() -> None:
    """Rows retried later go back to the front of their chat's queue, without a reload."""
    planner = Planner()
    first, second = row(1, LANE_PERSONAL, published=T0), row(1, LANE_PERSONAL, published=T0 + 1)
    planner.replace([first, second, row(2, LANE_SECTION)], set())
    assert planner.pick(0.0, now_ready, set()) == (1, 0.0)
    assert planner.take(1) == [first]
    planner.put_back([first])
    assert len(planner) == 3 and planner.waiting() == {0: 0, 1: 2, 2: 1, 3: 0}
    order = [m.id for batch in drain(planner, 10) for m in batch if m.chat_id == 1]
    assert order == [first.id, second.id]
    # A chat whose rows were all taken is back in its lane once one is put back.
    assert not planner
    planner.put_back([second])
    assert planner.pick(0.0, now_ready, set()) == (1, 0.0)
    assert planner.take(1) == [second]


def test_skipped_and_dropped_rows_are_not_offered() -> None:
    planner = Planner()
    rows = [row(1, LANE_SECTION), row(2, LANE_SECTION), row(3, LANE_SECTION)]
    planner.replace(rows, {rows[0].id})
    assert planner.drop_chat(2) == [rows[1]]
    assert [b[0].chat_id for b in drain(planner, 10)] == [3]
