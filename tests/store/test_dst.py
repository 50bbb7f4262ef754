"""Daylight saving: the daily sweep across the changes, in the unit's timezone.

A small cohort on active plans, and the sweep's store work (due and overdue
items, reminders, escalations, digests) run once a day, at a given local time,
from a week before to a week after each change of 2026: the last Sundays of
March and October in Europe/Madrid (the shipped calendar), and 2026-03-08 and
2026-11-01 in America/New_York (a unit's own calendar file, SIDFLOWS_CALENDAR),
so that nothing hangs on the European dates.

The sweep takes its day from the clock, as a deployed run does (``calendar.today``
with the clock frozen at the run's instant), at 07:00 (the deployed cron's hour)
or near midnight, where the UTC date is not the unit's (00:30 in Madrid, 23:30 in
New York); on each change day it runs again at 23:45 and must queue nothing.
Every day of each window has items due (items are moved onto the days the plans
leave empty, the change Sunday included); after each sweep the day's items are
marked due and recorded done (the item run and the nurse), except three per
change, left open to be escalated across it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pendulum
import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.settings import get_settings
from sidflows.store import db, items, sweep
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    CarePlan,
    ItemStatus,
    Notification,
    NotificationStatus,
    Patient,
    PlanItem,
)
from sidflows.testing.cohort import synthetic_referrals
from sidflows.unit import Unit

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "calendar.toml"
# The changes of 2026 (local date of the Sunday the clocks move).
CHANGES = {
    "Europe/Madrid": (dt.date(2026, 3, 29), dt.date(2026, 10, 25)),
    "America/New_York": (dt.date(2026, 3, 8), dt.date(2026, 11, 1)),
}
WEEK = dt.timedelta(days=7)
PROPOSED = dt.date(2026, 2, 1)  # the cohort's plans start a month before the first window
COHORT = 6
# The sweep's local time: the deployed cron's hour (flows/deployments.py SWEEP_CRON), and
# near midnight, when the UTC date is not the unit's: just after it east of UTC (Madrid's
# 00:30 is 23:30Z or 22:30Z the day before), just before it west of UTC (New York's
# 23:30 is 04:30Z or 03:30Z the day after).
CRON_HOUR = dt.time(7, 0)
NEAR_MIDNIGHT = {"Europe/Madrid": dt.time(0, 30), "America/New_York": dt.time(23, 30)}
RERUN = dt.time(23, 45)  # a second sweep on the change day itself


def _windows(zone: str) -> list[list[dt.date]]:
    """Every day from a week before to a week after each change."""
    return [
        [change - WEEK + dt.timedelta(days=n) for n in range(2 * WEEK.days + 1)]
        for change in CHANGES[zone]
    ]


@pytest.fixture(params=sorted(CHANGES))
def zone(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The unit's timezone: the shipped calendar, or a unit's own file in New York."""
    name: str = request.param
    if name == "Europe/Madrid":
        monkeypatch.delenv("SIDFLOWS_CALENDAR", raising=False)
    else:
        text = SHIPPED.read_text(encoding="utf-8")
        for old, new in (
            ('timezone = "Europe/Madrid"', f'timezone = "{name}"'),
            ('holidays_country = "ES"', 'holidays_country = "US"'),
            ('holidays_subdivision = "CT"', 'holidays_subdivision = "NY"'),
        ):
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / "calendar.toml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("SIDFLOWS_CALENDAR", str(path))
    get_settings.cache_clear()
    assert Unit().calendar.config.timezone == name
    return name


class Clock:
    """``pendulum.now`` frozen at an instant (calendar.today and the store's timestamps)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = pendulum.datetime(2026, 1, 1, tz="UTC")
        monkeypatch.setattr(pendulum, "now", self.now)

    def now(self, tz: str | pendulum.Timezone | None = None) -> pendulum.DateTime:
        return self.at.in_timezone(tz or "UTC")

    def set(self, instant: dt.datetime) -> None:
        self.at = pendulum.instance(instant).in_timezone("UTC")


@dataclass(frozen=True)
class Item:
    id: int
    ref: str
    version: int
    key: str
    kind: str
    due: dt.date


@dataclass
class Swept:
    """What the sweeps of a window saw and did."""

    days: list[dt.date] = field(default_factory=list)
    due_today: dict[dt.date, set[int]] = field(default_factory=dict)
    counted_today: dict[dt.date, int] = field(default_factory=dict)
    overdue: dict[dt.date, set[int]] = field(default_factory=dict)
    queued: Counter[str] = field(default_factory=Counter)


def _cohort(unit: Unit) -> None:
    """Six children of the synthetic cohort on active plans proposed on PROPOSED."""
    received = PROPOSED - dt.timedelta(days=3)
    for doc in synthetic_referrals(COHORT, seed=7, prefix="DST", received=received):
        ref = service.refer(json.dumps(doc), unit=unit, actor="intake").ref
        service.propose(ref, unit=unit, today=PROPOSED, reason="referral", actor="t")
        service.decide(ref, unit=unit, decision="approve", by="dr.approver")
        service.consent(ref, unit=unit, by="family liaison")
        assert service.activate(ref, unit=unit, actor="t").status == "activated"


def _open_items() -> dict[int, Item]:
    with db.session_scope() as session:
        rows = session.exec(
            select(PlanItem, Patient.ref, CarePlan.version)
            .join(Patient, col(Patient.id) == PlanItem.patient_id)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .where(col(PlanItem.status).in_(OPEN_ITEM_STATUSES))
        ).all()
    return {
        i.id: Item(i.id, ref, version, i.key, i.kind, i.due)
        for i, ref, version in rows
        if i.id is not None
    }


def _fill_every_day(windows: list[list[dt.date]]) -> dict[dt.date, int]:
    """Each day of the windows without an item gets one due far from every window.

    IV sessions keep their day (their chair is booked); any other item may move.
    Returns the item now due on each day (the first, when there are several).
    """
    near = {w[0] + dt.timedelta(days=n) for w in windows for n in range(-7, len(w) + 14)}
    found = _open_items()
    spare = sorted(
        (i for i in found.values() if i.due not in near and i.kind != "ig_session"),
        key=lambda i: (i.due, i.id),
    )
    on_day: dict[dt.date, int] = {}
    for i in sorted(found.values(), key=lambda i: i.id):
        on_day.setdefault(i.due, i.id)
    with db.session_scope() as session:
        for day in (d for w in windows for d in w):
            if day in on_day:
                continue
            assert spare, "the cohort has no item left to move"
            moved = session.get(PlanItem, spare.pop().id)
            assert moved is not None
            assert moved.id is not None
            moved.due = day
            session.add(moved)
            on_day[day] = moved.id
    return on_day


def _close(found: list[Item], *, actor: str) -> None:
    """The item runs mark the items due; the nurses record them done (one transaction)."""
    with db.session_scope() as session:
        for i in found:
            item = items.get_item(session=session, ref=i.ref, key=i.key, version=i.version)
            for status in (ItemStatus.due, ItemStatus.done):
                items.set_item_status(
                    session=session,
                    item=item,
                    status=status,
                    actor=actor,
                    outcome={"result": "done"} if status == ItemStatus.done else None,
                )


def _overdue_ids(on: dt.date, by_key: dict[tuple[str, str], int]) -> set[int]:
    with db.session_scope() as session:
        return {by_key[(o.ref, o.key)] for o in sweep.overdue(session=session, on=on)}


def _sweep(
    day: dt.date, unit: Unit, swept: Swept, by_key: dict[tuple[str, str], int]
) -> dict[str, int]:
    """The sweep's store work on ``day``: due and overdue items, then notify_day."""
    with db.session_scope() as session:
        found = sweep.read_due(session=session, on=day)
    swept.counted_today[day] = found.rows - found.overdue
    overdue = _overdue_ids(day, by_key)
    assert found.overdue == len(overdue)
    swept.overdue[day] = overdue
    swept.due_today[day] = _overdue_ids(day + dt.timedelta(days=1), by_key) - overdue
    return service.notify_day(day, unit=unit, actor="sweep")


def _run_windows(
    zone: str, at: dt.time, clock: Clock, left_open: set[int]
) -> tuple[Swept, dict[int, Item]]:
    unit = Unit()
    tz = ZoneInfo(zone)
    swept = Swept()
    tracked: dict[int, Item] = {}
    for window in _windows(zone):
        before = [i for i in _open_items().values() if i.due < window[0]]
        _close(before, actor="nurse (before the window)")
        still_open = _open_items()
        tracked.update(still_open)
        by_key = {(i.ref, i.key): i.id for i in still_open.values()}
        for day in window:
            clock.set(dt.datetime.combine(day, at, tzinfo=tz))
            today = unit.calendar.today()
            swept.days.append(today)
            swept.queued.update(_sweep(today, unit, swept, by_key))
            if day in CHANGES[zone]:
                # Swept again late on the change day: nothing new.
                clock.set(dt.datetime.combine(day, RERUN, tzinfo=tz))
                again = service.notify_day(unit.calendar.today(), unit=unit, actor="sweep")
                assert again == {"reminders": 0, "escalations": 0, "digests": 0}, (day, again)
            _close(
                [i for i in still_open.values() if i.due == today and i.id not in left_open],
                actor="nurse",
            )
    return swept, tracked


def _local_day(instant: dt.datetime | None, tz: ZoneInfo) -> dt.date:
    assert instant is not None
    if instant.tzinfo is None:  # SQLite gives back the UTC instant without its zone
        instant = instant.replace(tzinfo=dt.UTC)
    return instant.astimezone(tz).date()


@pytest.mark.parametrize("when", ["at-07h00", "near-midnight"])
def test_a_daily_sweep_across_the_changes_reports_and_reminds_each_item_once(
    zone: str, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each day swept once; each item due on its day, once; each reminder queued once, on
    its day; each escalation step once; one digest per route and day; in the unit's time."""
    at = CRON_HOUR if when == "at-07h00" else NEAR_MIDNIGHT[zone]
    clock = Clock(monkeypatch)
    unit = Unit()
    calendar = unit.calendar
    tz = ZoneInfo(zone)
    clock.set(dt.datetime.combine(PROPOSED, dt.time(9), tzinfo=tz))
    _cohort(unit)
    windows = _windows(zone)
    on_day = _fill_every_day(windows)
    left_open = {
        on_day[change + dt.timedelta(days=n)] for change in CHANGES[zone] for n in (-2, 0, 1)
    }

    swept, tracked = _run_windows(zone, at, clock, left_open)

    # Every day of the windows swept, once, in order: none twice, none skipped.
    every_day = [d for w in windows for d in w]
    assert swept.days == every_day
    # Each item due in a window was seen due on its day, and on no other day.
    in_windows = {i.id for i in tracked.values() if i.due in set(every_day)}
    seen: Counter[int] = Counter(i for ids in swept.due_today.values() for i in ids)
    assert set(seen) == in_windows
    assert set(seen.values()) == {1}, "an item was due twice"
    for day, ids in swept.due_today.items():
        assert {tracked[i].due for i in ids} <= {day}, day
        assert swept.counted_today[day] == len(ids) >= 1, day
    # Overdue: only the items left open in the window, from the day after theirs.
    for day, ids in swept.overdue.items():
        window = next(w for w in windows if day in w)
        assert ids == {i for i in left_open if window[0] <= tracked[i].due < day}, day

    with db.session_scope() as session:
        notes = list(session.exec(select(Notification).order_by(col(Notification.id))))
    by_id = {n.id: n for n in notes}
    reminders = [n for n in notes if n.event == "item_reminder"]
    escalations = [n for n in notes if n.event == "item_overdue"]
    digests = [n for n in notes if n.event == "digest"]
    assert swept.queued == {
        "reminders": len(reminders),
        "escalations": len(escalations),
        "digests": len(digests),
    }

    # Reminders: an item due on D is reminded on the first sweep S with S <= D <= S + lead
    # working days (none before the first sweep of its window), each route once.
    lead = unit.notifications.reminders.lead_working_days
    expected_day: dict[int, dt.date] = {}
    for item in tracked.values():
        for day in every_day:
            if day <= item.due <= calendar.add_working_days(day, lead):
                expected_day[item.id] = day
                break
    reminded: dict[int, set[dt.date]] = defaultdict(set)
    for n in reminders:
        assert n.item_id is not None
        reminded[n.item_id].add(_local_day(n.created_at, tz))
    assert set(reminded) == set(expected_day), "a reminder skipped, or one too many"
    assert dict(reminded) == {i: {day} for i, day in expected_day.items()}, (
        "a reminder queued on another day than its own"
    )
    assert Counter((n.item_id, n.route) for n in reminders).most_common(1)[0][1] == 1
    coordinators = Counter(n.item_id for n in reminders if n.route == "coordinators")
    assert coordinators == dict.fromkeys(expected_day, 1)

    # Digests: one per route on each day a reminder was queued for it, holding that day's.
    for n in reminders:
        assert n.status == NotificationStatus.digested
        digest = by_id[n.digest_id]
        assert (digest.event, digest.route) == ("digest", n.route)
        assert digest.key.endswith(f"|{_local_day(n.created_at, tz)}#1"), digest.key
    per_day = Counter((n.route, _local_day(n.created_at, tz)) for n in digests)
    assert set(per_day.values()) == {1}, "two digests for one route on one day"
    assert set(per_day) == {(n.route, _local_day(n.created_at, tz)) for n in reminders}
    assert all(n.key.endswith("#1") for n in digests)

    # Escalations: step k on the first sweep at least k's working days after the day.
    steps = unit.notifications.escalation
    wanted: dict[tuple[int, int], dt.date] = {}
    for item_id in left_open:
        due = tracked[item_id].due
        window = next(w for w in windows if due in w)
        for k, step in enumerate(steps, start=1):
            for day in window:
                late = sum(1 for _ in calendar.working_days(due + dt.timedelta(days=1), day))
                if late >= step.after_working_days:
                    wanted[(item_id, k)] = day
                    break
    got: dict[tuple[int, int], list[dt.date]] = defaultdict(list)
    for n in escalations:
        assert n.item_id is not None
        step_number = int(n.key.rsplit("step", 1)[1])
        got[(n.item_id, step_number)].append(_local_day(n.created_at, tz))
    assert dict(got) == {k: [day] for k, day in wanted.items()}
    assert any(k == 2 for _, k in wanted), "no item reached the second step"

    # The change days themselves had items due and reminders.
    for change in CHANGES[zone]:
        assert swept.due_today[change]
        assert any(tracked[i].due == change for i in expected_day)
