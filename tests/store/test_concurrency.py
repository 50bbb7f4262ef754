"""Concurrent steps on the same child: one active version, no duplicate versions.

PostgreSQL runs the transactions truly in parallel (the patient row is locked
FOR UPDATE); SQLite serialises writers, and a transaction that read a stale
state loses on a unique index and is retried.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from sqlmodel import col, func, select

from sidflows import service
from sidflows.store import db
from sidflows.store.models import Booking, CarePlan, ItemStatus, PlanItem, PlanStatus

from .support import CALENDAR, PROTOCOL, TODAY, example, iv_child, refer_and_activate

THREADS = 4
CHILDREN = 8  # more children than chairs, all activated at once
RELAPSE = json.dumps(
    {
        "date": "2026-11-23",
        "treatments": [
            {"drug": "relapse induction", "class": "chemotherapy", "start": "2026-11-22"}
        ],
    }
)


def _together(step: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run ``step(i)`` in ``threads`` threads released at the same moment; re-raise any error."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = step(i)
        except BaseException as exc:  # collected and re-raised in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a thread is stuck"
    if errors:
        raise errors[0]
    return results


def _replan(ref: str) -> str:
    service.propose(
        ref,
        today=TODAY,
        protocol=PROTOCOL,
        calendar=CALENDAR,
        reason="treatment change",
        actor="replan",
    )
    service.decide(ref, decision="approve", by="dr.approver")
    return service.activate(ref, calendar=CALENDAR, actor="replan").status


def _plans() -> list[tuple[int, str]]:
    with db.session_scope() as session:
        return sorted((p.version, p.status) for p in session.exec(select(CarePlan)))


def test_concurrent_replans_leave_one_active_version(database_url: str) -> None:
    """Re-planning one child in parallel threads makes v2 once and activates it once."""
    ref = refer_and_activate(example("all-after-maintenance"))
    service.record_treatment_change(ref, RELAPSE, actor="dr.oncology")
    statuses = _together(lambda _i: _replan(ref))
    assert sorted(statuses) == ["activated"] + ["already_active"] * (THREADS - 1)
    assert _plans() == [(1, PlanStatus.superseded), (2, PlanStatus.active)]
    with db.session_scope() as session:
        v2 = session.exec(select(CarePlan).where(CarePlan.version == 2)).one()
        items = session.exec(select(PlanItem).where(PlanItem.plan_id == v2.id)).all()
        old = session.exec(select(PlanItem).where(PlanItem.plan_id != v2.id)).all()
        bookings = session.exec(select(Booking)).all()
    assert sorted(i.key for i in items) == sorted(i["key"] for i in v2.document["items"])
    assert {i.status for i in old} == {ItemStatus.cancelled}
    assert {b.item_id for b in bookings} <= {i.id for i in items}
    assert len(bookings) == sum(1 for i in items if i.details.get("route") == "iv")


def test_concurrent_activations_activate_once(database_url: str) -> None:
    """Activating the same approved plan in parallel creates its items and chairs once."""
    ref = service.refer(example("all-after-maintenance"), actor="intake").ref
    service.propose(
        ref, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR, reason="referral", actor="t"
    )
    service.decide(ref, decision="approve", by="dr.approver")
    results = _together(lambda _i: service.activate(ref, calendar=CALENDAR, actor="t"))
    assert sorted(r.status for r in results) == ["activated"] + ["already_active"] * (THREADS - 1)
    assert _plans() == [(1, PlanStatus.active)]
    with db.session_scope() as session:
        keys = session.exec(select(PlanItem.key)).all()
        chairs = session.exec(select(func.count()).select_from(Booking)).one()
    assert len(keys) == len(set(keys))
    assert chairs == sum(r.bookings for r in results)


def test_concurrent_activations_of_different_children_share_the_chairs(database_url: str) -> None:
    """Children activated in parallel never get the same chair on the same day."""
    refs = [service.refer(iv_child(f"PAR-{i}"), actor="intake").ref for i in range(CHILDREN)]
    for ref in refs:
        service.propose(
            ref, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR, reason="referral", actor="t"
        )
        service.decide(ref, decision="approve", by="dr.approver")
    results = _together(
        lambda i: service.activate(refs[i], calendar=CALENDAR, actor="t"), threads=CHILDREN
    )
    assert [r.status for r in results] == ["activated"] * CHILDREN
    chairs = CALENDAR.config.day_unit.chairs_per_day
    with db.session_scope() as session:
        per_day = session.exec(select(Booking.day, func.count()).group_by(col(Booking.day))).all()
        slots = session.exec(select(Booking.day, Booking.chair)).all()
    assert max(n for _day, n in per_day) <= chairs
    assert len(slots) == len(set(slots)) == sum(r.bookings for r in results)
