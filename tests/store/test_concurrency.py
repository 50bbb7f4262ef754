"""Concurrent steps on the same child: one active version, no duplicate versions.

PostgreSQL runs the transactions truly in parallel (the patient row is locked
FOR UPDATE); SQLite serialises writers, and a transaction that read a stale
state loses on a unique index and is retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from sidflows import service
from sidflows.store import db
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    AuditEntry,
    Booking,
    CarePlan,
    ItemStatus,
    PlanItem,
    PlanStatus,
)
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, example, iv_child, refer_and_activate

THREADS = 4
MANY_THREADS = 16  # more than the engine's pool (5 + 5 overflow): some wait for a connection
PROCESSES = 4
ROUNDS = 4  # re-plans per process, each from another day (so each proposes a new version)
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
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="treatment change",
        actor="replan",
    )
    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    return service.activate(ref, unit=Unit(calendar=CALENDAR), actor="replan").status


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
    ref = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake").ref
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="referral",
        actor="t",
    )
    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    results = _together(lambda _i: service.activate(ref, unit=Unit(calendar=CALENDAR), actor="t"))
    assert sorted(r.status for r in results) == ["activated"] + ["already_active"] * (THREADS - 1)
    assert _plans() == [(1, PlanStatus.active)]
    with db.session_scope() as session:
        keys = session.exec(select(PlanItem.key)).all()
        chairs = session.exec(select(func.count()).select_from(Booking)).one()
    assert len(keys) == len(set(keys))
    assert chairs == sum(r.bookings for r in results)


def test_concurrent_activations_of_different_children_share_the_chairs(database_url: str) -> None:
    """Children activated in parallel never get the same chair on the same day."""
    refs = [
        service.refer(iv_child(f"PAR-{i}"), unit=Unit(), actor="intake").ref
        for i in range(CHILDREN)
    ]
    for ref in refs:
        service.propose(
            ref,
            unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
            today=TODAY,
            reason="referral",
            actor="t",
        )
        service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    results = _together(
        lambda i: service.activate(refs[i], unit=Unit(calendar=CALENDAR), actor="t"),
        threads=CHILDREN,
    )
    assert [r.status for r in results] == ["activated"] * CHILDREN
    chairs = CALENDAR.config.day_unit.chairs_per_day
    with db.session_scope() as session:
        per_day = session.exec(select(Booking.day, func.count()).group_by(col(Booking.day))).all()
        slots = session.exec(select(Booking.day, Booking.chair)).all()
    assert max(n for _day, n in per_day) <= chairs
    assert len(slots) == len(set(slots)) == sum(r.bookings for r in results)


def _one_active_version_and_a_consistent_store() -> list[CarePlan]:
    """The invariants of a child's versions, whatever interleaving produced them."""
    with db.session_scope() as session:
        versions = list(session.exec(select(CarePlan).order_by(col(CarePlan.version))))
        items = list(session.exec(select(PlanItem)))
        bookings = list(session.exec(select(Booking)))
        actions = list(session.exec(select(AuditEntry.action)))
    assert [p.version for p in versions] == list(range(1, len(versions) + 1))
    statuses = [p.status for p in versions]
    assert statuses.count(PlanStatus.active) == 1
    assert statuses.count(PlanStatus.proposed) <= 1
    assert set(statuses) <= {PlanStatus.active, PlanStatus.proposed, PlanStatus.superseded}
    (active,) = [p for p in versions if p.status == PlanStatus.active]
    for plan in versions:
        keys = sorted(i.key for i in items if i.plan_id == plan.id)
        if plan.activated_at is None:
            assert keys == [], f"v{plan.version} was never activated but has items"
            assert f"plan v{plan.version} active" not in actions
        else:
            assert keys == sorted(i["key"] for i in plan.document["items"])
            assert actions.count(f"plan v{plan.version} active") == 1
    open_items = {i.id for i in items if i.status in OPEN_ITEM_STATUSES}
    assert open_items == {i.id for i in items if i.plan_id == active.id}
    iv = [i for i in items if i.plan_id == active.id and i.details.get("route") == "iv"]
    assert sorted(b.item_id for b in bookings) == sorted(i.id for i in iv)
    return versions


def test_many_threads_replanning_one_child_leave_one_active_version(database_url: str) -> None:
    """Sixteen threads re-plan one child at once: v2 is made once and activated once."""
    ref = refer_and_activate(example("all-after-maintenance"))
    service.record_treatment_change(ref, RELAPSE, actor="dr.oncology")
    statuses = _together(lambda _i: _replan(ref), threads=MANY_THREADS)
    assert sorted(statuses) == ["activated"] + ["already_active"] * (MANY_THREADS - 1)
    assert _plans() == [(1, PlanStatus.superseded), (2, PlanStatus.active)]
    _one_active_version_and_a_consistent_store()


REPLAN_ROUNDS = """
    import datetime as dt
    import sys

    from sidflows import service
    from sidflows.calendar import load_calendar
    from sidflows.protocol import load_protocol
    from sidflows.unit import Unit

    worker, rounds, ref = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    unit = Unit(protocol=load_protocol(), calendar=load_calendar())
    print("ready", flush=True)
    sys.stdin.readline()  # every process starts at once
    for r in range(rounds):
        day = dt.date(2026, 11, 24) + dt.timedelta(days=1 + worker + r)
        service.propose(ref, unit=unit, today=day, reason="review", actor="w")
        approver = ("dr.one", "dr.two", "dr.three")[worker % 3]
        service.decide(ref, unit=unit, decision="approve", by=approver)
        print(service.activate(ref, unit=unit, actor="w").status, flush=True)
"""


def test_replans_from_several_processes_leave_one_active_version(database_url: str) -> None:
    """Four processes re-plan one child four times each: one active version, nothing doubled."""
    ref = refer_and_activate(example("all-after-maintenance"))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(REPLAN_ROUNDS), str(w), str(ROUNDS), ref],
            env={**os.environ, "SIDFLOWS_DATABASE_URL": database_url},
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    statuses = [s for out, _err in outputs for s in out.split()]
    assert len(statuses) == PROCESSES * ROUNDS
    assert set(statuses) <= {"activated", "already_active", "awaiting_approval"}
    versions = _one_active_version_and_a_consistent_store()
    activated = [p for p in versions if p.activated_at is not None]
    assert statuses.count("activated") == len(activated) - 1  # v1 was activated before
    assert len(activated) > 2, "the processes did re-plan the child several times"
