"""bot.pipeline.core, the delivery core: decisions from plain values, table by table.

No server, no database, no clock: each test hands the core rows, answers and times and
reads back what it decided — which message goes when, in which lane, within which limits,
what an outage does, what goes together.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from bot.pipeline.answers import Reading, Verdict, no_answer, read_answer
from bot.pipeline.botapi import Answer
from bot.pipeline.core import EDIT_SHARE, PROBE_MAX_DELAY, Core, Defer, Launch, Plan
from bot.pipeline.kinds import COMBINED, EDIT, PAID
from bot.pipeline.lanes import Planner
from bot.pipeline.ratelimit import RateLimits
from storage.due import DueMessage
from storage.models import Chat
from storage.outbox import LANE_BROADCAST, LANE_EDIT, LANE_PERSONAL, LANE_SECTION
from tests.test_lanes import T0, row

WALL = T0


def core(**limits: float) -> Core:
    settings = {"global_rate": 30.0, "private_interval": 1.0, "group_per_minute": 20, "margin": 0.0, **limits}
    return Core(
        RateLimits(**settings),  # type: ignore[arg-type]
        Planner(), zone_of=lambda name: ZoneInfo(name) if name else UTC,
        concurrency=8, paid_concurrency=64, global_rate=float(settings["global_rate"]),
    )


def launches(plan: Plan) -> list[Launch]:
    return [s for s in plan.steps if isinstance(s, Launch)]


def run(c: Core, seconds: float, *, answer: Reading | None = None, step: float = 0.01) -> list[Launch]:
    """Play the shell for `seconds`: plan, and answer every send at once (ok by default)."""
    sent: list[Launch] = []
    t = 0.0
    while t <= seconds:
        for launch in launches(c.plan(t, WALL + t)):
            sent.append(launch)
            action = c.answered(launch, answer or Reading(Verdict.SENT), t, WALL + t)
            if action.verdict is not Verdict.SENT:
                c.retried(launch.batch, delay=action.delay, mono=t, count_attempt=action.count_attempt)
            c.finished(launch, t, answered=True, went_out=True)
        t = round(t + step, 6)
    return sent


# --- answers: one rule for what Telegram's answer means ---------------------------------------

ANSWERS = [
    (Answer(True, 200, result={"message_id": 1}), {}, Verdict.SENT),
    (Answer(False, 400, description="Bad Request: message is not modified"), {"edit": True}, Verdict.SENT),
    (Answer(False, 429, description="Too Many Requests: retry after 3", retry_after=3), {}, Verdict.LATER),
    (Answer(False, 400, description="Bad Request: group chat was upgraded", migrate_to=-1002), {}, Verdict.MIGRATED),
    (Answer(False, 403, description="Forbidden: bot was blocked by the user"), {}, Verdict.GONE),
    (Answer(False, 400, description="Bad Request: chat not found"), {}, Verdict.GONE),
    (Answer(False, 400, description="Bad Request: message thread not found"), {"in_topic": True}, Verdict.TOPIC_GONE),
    (Answer(False, 400, description="Bad Request: not enough Stars"), {"paid": True}, Verdict.PAID_REFUSED),
    (Answer(False, 400, description="Bad Request: message is too long"), {"stories": 5}, Verdict.SPLIT),
    (Answer(False, 400, description="Bad Request: message is too long"), {}, Verdict.REFUSED),
    (Answer(False, 400, description="Bad Request: can't parse entities"), {}, Verdict.REFUSED),
    (Answer(False, 400, description="Bad Request: something new"), {}, Verdict.FAULTY),
    (Answer(False, 502, description="HTTP 502 without a Bot API answer"), {}, Verdict.OUTAGE),
    (Answer(False, 500, description="Internal Server Error"), {}, Verdict.OUTAGE),
    (Answer(False, 401, description="Unauthorized"), {}, Verdict.OUTAGE),
    (Answer(False, 404, description="Not Found"), {}, Verdict.OUTAGE),
    (Answer(False, 409, description="Conflict"), {}, Verdict.OUTAGE),
]


@pytest.mark.parametrize(("answer", "context", "verdict"), ANSWERS, ids=[f"{a.status}-{v.value}" for a, _, v in ANSWERS])
def test_only_answers_about_the_chat_or_the_message_can_fail_it(
    answer: Answer, context: dict[str, object], verdict: Verdict
) -> None:
    assert read_answer(answer, **context).verdict is verdict  # type: ignore[arg-type]


def test_no_answer_at_all_is_an_outage() -> None:
    assert no_answer("timeout", "no answer within 20 s").verdict is Verdict.OUTAGE
    assert no_answer("network", "connection reset").verdict is Verdict.OUTAGE


# --- lanes and limits -------------------------------------------------------------------------


def test_busy_lanes_share_the_rate_by_weight_and_corrections_keep_to_their_share() -> None:
    c = core(global_rate=1000.0, private_interval=0.0)
    rows = (
        [row(1000 + i, LANE_SECTION) for i in range(3000)]
        + [row(5000 + i, LANE_PERSONAL) for i in range(3000)]
        + [row(9000 + i, LANE_EDIT, kind="edit") for i in range(3000)]
    )
    c.view(rows, mono=0.0, wall=WALL)
    sent = run(c, 1.0)
    lanes = Counter(launch.batch[0].lane for launch in sent)
    # Personal 8 : sections 2; corrections by weight would get 1 in 11 — and never more
    # than EDIT_SHARE of the rate while anything else waits.
    assert lanes[LANE_PERSONAL] == pytest.approx(4 * lanes[LANE_SECTION], rel=0.1)
    assert 0 < lanes[LANE_EDIT] <= math.floor(1000 * EDIT_SHARE) + 1


def test_corrections_alone_take_the_whole_rate() -> None:
    c = core(private_interval=0.0)
    c.view([row(9000 + i, LANE_EDIT, kind="edit") for i in range(100)], mono=0.0, wall=WALL)
    sent = run(c, 0.999)
    assert len(sent) == 30 and all(launch.kind is EDIT for launch in sent)


def test_a_chats_new_alert_goes_before_its_older_edit() -> None:
    """In a chat's own queue an edit ranks last: a reader's new story is not kept a second
    (a private chat's one message a second) behind a correction of an older one."""
    c = core()
    edit = row(7, LANE_EDIT, kind="edit", due=WALL - 30)
    alert = row(7, LANE_PERSONAL, due=WALL)
    c.view([edit, alert], mono=0.0, wall=WALL)
    sent = run(c, 1.5)
    assert [launch.batch[0].id for launch in sent] == [alert.id, edit.id]
    assert [launch.kind for launch in sent][1] is EDIT


@pytest.mark.parametrize(
    ("chats", "seconds", "most"),
    [
        ([1], 3.0, 3),  # a private chat: one message a second
        ([-100], 60.0, 20),  # a group: 20 a minute
        (list(range(1, 200)), 1.0, 30),  # everyone together: the global 30 a second
    ],
)
def test_limits_hold_whatever_is_waiting(chats: list[int], seconds: float, most: int) -> None:
    c = core()
    c.view([row(chat_id, LANE_PERSONAL) for chat_id in chats for _ in range(1)] * 1, mono=0.0, wall=WALL)
    for chat_id in chats:  # plenty more for each chat
        c.planner.put_back([row(chat_id, LANE_PERSONAL, kind="briefing") for _ in range(40)])
    sent = run(c, seconds - 0.001, step=0.005)
    assert len(sent) == most


def test_sends_in_flight_are_bounded_and_a_chat_never_has_two() -> None:
    c = core(private_interval=0.0, global_rate=1000.0)
    c.view([row(chat_id, LANE_PERSONAL, kind="briefing") for chat_id in (1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)],
           mono=0.0, wall=WALL)
    first = launches(c.plan(0.0, WALL))
    assert len(first) == 8  # NEWSBOT_SEND_CONCURRENCY
    assert len({launch.chat_id for launch in first}) == 8
    assert launches(c.plan(0.0, WALL)) == []  # nothing more until one finishes
    c.answered(first[0], Reading(Verdict.SENT), 0.1, WALL)
    c.finished(first[0], 0.1, answered=True, went_out=True)
    assert len(launches(c.plan(0.1, WALL))) == 1


def test_a_paid_broadcast_has_its_own_room_in_flight_and_its_own_rate() -> None:
    c = core(private_interval=0.0)
    paid = [row(1000 + i, LANE_BROADCAST) for i in range(200)]
    paid = [DueMessage(**{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "paid": True}) for m in paid]
    c.view(paid + [row(5000 + i, LANE_PERSONAL) for i in range(50)], mono=0.0, wall=WALL)
    first = launches(c.plan(0.0, WALL))
    assert sum(1 for launch in first if launch.kind is PAID) == 64  # NEWSBOT_PAID_CONCURRENCY
    assert sum(1 for launch in first if launch.kind is not PAID) == 8


# --- outages ----------------------------------------------------------------------------------

OUTAGE = Reading(Verdict.OUTAGE, "HTTP 502", "5xx")


def test_an_outage_pauses_every_lane_and_only_the_failed_method_ends_it() -> None:
    c = core(private_interval=0.0)
    c.view([row(1, LANE_PERSONAL), row(2, LANE_SECTION), row(3, LANE_BROADCAST), row(4, LANE_EDIT, kind="edit")],
           mono=0.0, wall=WALL)
    first = launches(c.plan(0.0, WALL))
    broadcast = next(launch for launch in first if launch.batch[0].lane == LANE_BROADCAST)
    action = c.answered(broadcast, OUTAGE, 0.1, WALL)
    assert action.verdict is Verdict.OUTAGE and not action.count_attempt and action.delay == 0
    assert c.outage is not None and c.outage.method == "sendMessage"
    # The edit's answer (another method) says nothing about sendMessage.
    edit = next(launch for launch in first if launch.kind is EDIT)
    c.answered(edit, Reading(Verdict.SENT), 0.1, WALL)
    assert c.outage is not None
    for launch in first:
        if launch is broadcast:
            c.retried(launch.batch, delay=0.0, mono=0.1, count_attempt=False)
        elif launch is not edit:
            c.answered(launch, OUTAGE, 0.1, WALL)
            c.retried(launch.batch, delay=0.0, mono=0.1, count_attempt=False)
        c.finished(launch, 0.1, answered=True, went_out=True)
    # Nothing goes while paused, until the first try of the failed request (after 1 s).
    assert c.plan(0.5, WALL) == Plan([], 1.1)
    probe = launches(c.plan(1.1, WALL))
    assert len(probe) == 1 and probe[0].probe and probe[0].chat_id == 3  # the oldest failed one
    c.answered(probe[0], Reading(Verdict.SENT), 1.2, WALL)
    c.finished(probe[0], 1.2, answered=True, went_out=True)
    assert c.outage is None
    assert {launch.chat_id for launch in launches(c.plan(1.2, WALL))} == {1, 2}


def test_probes_back_off_to_thirty_seconds_and_move_on_from_a_chat_that_keeps_failing() -> None:
    c = core(private_interval=0.0)
    c.view([row(chat_id, LANE_PERSONAL) for chat_id in (1, 2, 3)], mono=0.0, wall=WALL)
    t = 0.0
    probes: list[tuple[float, int]] = []
    for launch in launches(c.plan(t, WALL)):
        c.answered(launch, OUTAGE, t, WALL)
        c.retried(launch.batch, delay=0.0, mono=t, count_attempt=False)
        c.finished(launch, t, answered=True, went_out=True)
    while t < 200:
        plan = c.plan(t, WALL)
        for launch in launches(plan):
            probes.append((t, launch.chat_id))
            action = c.answered(launch, OUTAGE, t, WALL)
            c.retried(launch.batch, delay=action.delay, mono=t, count_attempt=False)
            c.finished(launch, t, answered=True, went_out=True)
        if not plan.steps:
            t = plan.wake_at
    gaps = [round(b[0] - a[0]) for a, b in itertools.pairwise(probes)]
    assert gaps[:6] == [2, 4, 8, 16, 30, 30] and max(gaps) == PROBE_MAX_DELAY
    assert probes[0][1] == 1 and {chat for _, chat in probes[:3]} == {1, 2, 3}  # rotating


def test_a_chat_telegram_keeps_failing_backs_off_without_spending_attempts() -> None:
    c = core(private_interval=0.0)
    bad = row(1, LANE_PERSONAL)
    delays = []
    for n in range(6):
        c.view([bad], mono=float(n), wall=WALL)
        [launch] = launches(c.plan(float(n) + 1000 * n, WALL))
        action = c.answered(launch, OUTAGE, 0.0, WALL)
        delays.append(action.delay)
        assert not action.count_attempt
        c.finished(launch, 0.0, answered=True, went_out=True)
        c.outage = None
    assert delays == [0, 2, 4, 8, 16, 32]


# --- what goes together ------------------------------------------------------------------------


def test_more_than_three_alerts_go_as_one_message_unless_it_proved_too_long() -> None:
    c = core()
    alerts = [row(1, LANE_SECTION, published=T0 + n) for n in range(5)]
    c.view(alerts, mono=0.0, wall=WALL)
    [launch] = launches(c.plan(0.0, WALL))
    assert launch.kind is COMBINED and len(launch.batch) == 5
    action = c.answered(launch, Reading(Verdict.SPLIT, "Bad Request: message is too long"), 0.1, WALL)
    assert action.verdict is Verdict.SPLIT and not action.count_attempt
    c.retried(launch.batch, delay=0.0, mono=0.1, count_attempt=False)
    c.finished(launch, 0.1, answered=True, went_out=True)
    sent = run(c, 10.0)
    assert [len(launch.batch) for launch in sent] == [1, 1, 1, 1, 1]


# --- quiet hours ---------------------------------------------------------------------------------


def quiet_chat(chat_id: int, mode: str) -> Chat:
    return Chat(id=chat_id, type="private", title=None, active=True, paused=False, link_previews=False,
                combine=True, timezone="UTC", quiet_start=22 * 60, quiet_end=7 * 60, quiet_mode=mode)  # type: ignore[arg-type]


def test_quiet_hours_hold_alerts_and_ordinary_broadcasts_not_urgent_ones_or_corrections() -> None:
    c = core()
    night = 1_767_312_000.0  # 2026-01-02 00:00 UTC
    chat = quiet_chat(1, "hold")
    rows = [
        DueMessage(**{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "chat": chat})
        for m in (row(1, LANE_SECTION, due=night), row(1, LANE_BROADCAST, due=night),
                  row(1, LANE_EDIT, kind="edit", due=night))
    ]
    urgent = DueMessage(**{**{f: getattr(rows[1], f) for f in rows[1].__dataclass_fields__}, "urgent": True, "id": 999})
    c.view([*rows, urgent], mono=0.0, wall=night)
    steps = run_steps(c, night)
    deferred = [m.kind for step in steps if isinstance(step, Defer) for m in step.rows]
    went = [m.kind for step in steps if isinstance(step, Launch) for m in step.batch]
    assert sorted(deferred) == ["alert", "broadcast"]
    assert sorted(went) == ["broadcast", "edit"]  # the urgent broadcast and the correction
    assert all(step.until == night + 7 * 3600 for step in steps if isinstance(step, Defer))


def run_steps(c: Core, wall: float) -> list[Launch | Defer]:
    steps: list[Launch | Defer] = []
    for t in (0.0, 1.1, 2.2, 3.3):
        for step in c.plan(t, wall + t).steps:
            steps.append(step)
            if isinstance(step, Launch):
                c.answered(step, Reading(Verdict.SENT), t, wall + t)
                c.finished(step, t, answered=True, went_out=True)
    return steps


def test_silent_mode_sends_without_sound_in_quiet_hours_except_urgent_broadcasts() -> None:
    c = core()
    night = 1_767_312_000.0
    chat = quiet_chat(1, "silent")
    alert = DueMessage(**{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "chat": chat}) if (m := row(1, LANE_SECTION)) else None
    assert alert is not None
    assert c.silent([alert], night) and not c.silent([alert], night + 12 * 3600)


# --- our own failures ----------------------------------------------------------------------------


def test_a_fault_of_ours_keeps_the_row_due_and_is_reported_until_it_goes() -> None:
    c = core()
    message = row(1, LANE_SECTION)
    c.view([message], mono=0.0, wall=WALL)
    [launch] = launches(c.plan(0.0, WALL))
    action, new = c.broke(launch, "KeyError: 'title'")
    assert new and action.delay == 2 and not action.count_attempt and c.undeliverable == 1
    c.finished(launch, 0.0, answered=False, went_out=False)
    c.view([message], mono=0.0, wall=WALL)
    [launch] = launches(c.plan(5.0, WALL))
    action, new = c.broke(launch, "KeyError: 'title'")
    assert not new and action.delay == 4 and not action.count_attempt  # logged once; backing off
    c.finished(launch, 5.0, answered=False, went_out=False)
    c.view([message], mono=5.0, wall=WALL)
    [launch] = launches(c.plan(10.0, WALL))
    c.answered(launch, Reading(Verdict.SENT), 10.0, WALL)
    assert c.undeliverable == 0

