"""The daily sweep in the store: due items in batches, overdue, expected runs, census."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.store import db, items, sweep
from sidflows.store.census import unit_census
from sidflows.store.models import (
    AuditEntry,
    Booking,
    CarePlan,
    ItemStatus,
    PlanItem,
    PlanStatus,
)
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, example, refer_and_activate, synthetic

DAY = date(2026, 12, 15)
ACTIVE = ("all-after-maintenance", "lupus-on-rituximab", "after-autologous-transplant")


@pytest.fixture
def unit(database_url: str) -> list[str]:
    """Five children on active plans and one whose plan waits for approval."""
    refs = [refer_and_activate(example(name)) for name in ACTIVE]
    refs += [refer_and_activate(json.dumps(d)) for d in synthetic(2)]
    waiting = service.refer(
        json.dumps(synthetic(3, prefix="WAIT")[2]), unit=Unit(), actor="intake"
    ).ref
    service.propose(
        waiting,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="referral",
        actor="t",
    )
    return refs


def _open_due_ids(on: date) -> set[int]:
    with db.session_scope() as session:
        rows = session.exec(
            select(PlanItem.id)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .where(
                col(PlanItem.status).in_(sweep.OPEN),
                PlanItem.due <= on,
                CarePlan.status == PlanStatus.active,
            )
        ).all()
    return {i for i in rows if i is not None}


def _items() -> list[PlanItem]:
    with db.session_scope() as session:
        return list(session.exec(select(PlanItem).order_by(col(PlanItem.id))))


def _audit_count() -> int:
    with db.session_scope() as session:
        return len(session.exec(select(AuditEntry)).all())


def test_due_batches_read_exactly_the_open_items_of_the_day(unit: list[str]) -> None:
    """The sweep counts every open item of an active plan due by the day, and writes nothing."""
    done = service.item_outcome(
        "EX-0001",
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        plan_version=1,
        item_key="vaccine_dose:IIV:2026:1",
        outcome={"result": "given"},
        actor="nurse",
        on=date(2026, 12, 1),
    )
    assert done.status == ItemStatus.done
    before = _items()
    expected = _open_due_ids(DAY)
    assert len(expected) > 5
    assert not any(i.id in expected for i in before if i.status == ItemStatus.done)
    audit_before = _audit_count()
    with db.session_scope() as session:
        found = sweep.read_due(session=session, on=DAY, keep=3)
    assert found.rows == sum(found.by_kind.values()) == len(expected)
    overdue = [i for i in before if i.id in expected and i.due < DAY]
    assert found.overdue == len(overdue)
    oldest_days = sorted(i.due for i in overdue)[:3]
    assert [o.due for o in found.oldest_overdue] == oldest_days  # the oldest, oldest first
    assert {o.key for o in found.oldest_overdue} <= {i.key for i in overdue}
    assert [(i.id, i.status) for i in _items()] == [(i.id, i.status) for i in before]
    assert _audit_count() == audit_before, "the sweep reads; it writes nothing"


def test_overdue_lists_due_items_before_the_day(unit: list[str]) -> None:
    """Overdue: open items whose day has passed, oldest first, with their delay."""
    open_ids = _open_due_ids(DAY)
    due = [i for i in _items() if i.id in open_ids]
    later = DAY + timedelta(days=3)
    first_day = min(i.due for i in due)
    with db.session_scope() as session:
        listed = sweep.overdue(session=session, on=later)
        on_first_day = sweep.overdue(session=session, on=first_day)
    assert [(o.key, o.due) for o in listed] == [
        (i.key, i.due) for i in sorted(due, key=lambda i: (i.due, i.id or 0))
    ]
    assert all(o.days == (later - o.due).days for o in listed)
    assert on_first_day == [], "an item due today is not overdue yet"


def test_expected_runs_are_the_next_item_of_each_stream_within_the_look_ahead(
    unit: list[str],
) -> None:
    """One run per stream of every active plan, only for items due inside the look-ahead."""
    until = TODAY + timedelta(days=45)
    got: list[tuple[int, str, int, str, str, date]] = []
    after = 0
    with db.session_scope() as session:
        while rows := sweep.expected_runs(
            session=session, until=until, after_plan_id=after, limit=2
        ):
            got += rows
            after = rows[-1][0]
        wanted = []
        for plan in session.exec(
            select(CarePlan).where(CarePlan.status == PlanStatus.active).order_by(col(CarePlan.id))
        ):
            ref = plan.document["patient_ref"]
            wanted += [
                (plan.id, ref, plan.version, i.key, i.kind, i.due)
                for i in items.next_in_streams(session=session, plan=plan)
                if i.due <= until
            ]
    assert sorted(got) == sorted(wanted)
    assert len(got) > len(unit)
    assert all(due <= until for *_rest, due in got)
    assert len({(plan_id, key) for plan_id, _r, _v, key, _k, _d in got}) == len(got)
    assert "WAIT-000002" not in {ref for _p, ref, *_rest in got}, "a proposed plan has no runs"


def test_census_counts_children_and_todays_work(unit: list[str]) -> None:
    """The census counts children by state, today's due items, overdue items and chairs."""
    first = date(2026, 12, 1)
    with db.session_scope() as session:
        figures = unit_census(session=session, on=first)
        chairs = len(session.exec(select(Booking).where(Booking.day == first)).all())
    items = [i for i in _items() if i.id in _open_due_ids(DAY)]
    today = Counter(i.kind for i in items if i.due == first)
    assert figures["children active"] == len(unit)
    assert figures["children awaiting_approval"] == 1
    for kind, count in today.items():
        assert figures[f"due today: {kind}"] == count
    assert figures["overdue items"] == 0
    assert figures["day-unit chairs booked today"] == chairs > 0
    with db.session_scope() as session:
        later = unit_census(session=session, on=DAY + timedelta(days=1))
    assert later["overdue items"] == len(items)
