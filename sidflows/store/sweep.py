"""The daily sweep in the store: due and overdue items, in batches (never row by row)."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from sidflows.store.models import CarePlan, ItemStatus, Patient, PlanItem, PlanStatus

OPEN = (ItemStatus.planned, ItemStatus.scheduled, ItemStatus.due)


@dataclass
class Overdue:
    ref: str
    key: str
    kind: str
    due: dt.date
    days: int
    escalations: int


@dataclass
class DueItems:
    """What the sweep read: open items whose day has come, counted, and the oldest overdue."""

    rows: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    overdue: int = 0
    oldest_overdue: list[Overdue] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # store time: due, overdue


def read_due(*, session: Session, on: dt.date, keep: int = 50) -> DueItems:
    """Open items of active plans due on or before ``on``, counted by the database.

    The sweep reads; it never rewrites. "Due" is derivable (the day has come and
    the item is still open); an item's own run records its transitions, so a
    sweep run twice, or a crashed one, changes nothing. Counting and ordering
    happen in the database over the (status, due) index: no row comes into
    Python but the ``keep`` oldest overdue ones, so memory stays flat.
    """
    is_due = (
        col(PlanItem.status).in_(OPEN),
        col(PlanItem.due) <= on,
        col(CarePlan.status) == PlanStatus.active,
    )
    to_plan = (CarePlan, col(CarePlan.id) == PlanItem.plan_id)
    found = DueItems()
    started = time.perf_counter()
    for kind, count in session.execute(
        sa_select(col(PlanItem.kind), func.count())
        .join(*to_plan)
        .where(*is_due)
        .group_by(col(PlanItem.kind))
    ):
        found.by_kind[kind] = count
    found.rows = sum(found.by_kind.values())
    found.seconds["due"] = time.perf_counter() - started
    started = time.perf_counter()
    found.overdue = session.execute(
        sa_select(func.count())
        .select_from(PlanItem)
        .join(*to_plan)
        .where(*is_due, col(PlanItem.due) < on)
    ).scalar_one()
    oldest = session.exec(
        select(PlanItem, Patient.ref)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .join(*to_plan)
        .where(*is_due, col(PlanItem.due) < on)
        .order_by(col(PlanItem.due), col(PlanItem.id))
        .limit(keep)
    ).all()
    found.oldest_overdue = [
        Overdue(ref, item.key, item.kind, item.due, (on - item.due).days, item.escalations)
        for item, ref in oldest
    ]
    found.seconds["overdue"] = time.perf_counter() - started
    return found


def overdue(*, session: Session, on: dt.date, limit: int = 10_000) -> list[Overdue]:
    """Open items of active plans whose day is before ``on``, oldest first."""
    rows = session.exec(
        select(PlanItem, Patient.ref)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .where(
            col(PlanItem.status).in_(OPEN), PlanItem.due < on, CarePlan.status == PlanStatus.active
        )
        .order_by(col(PlanItem.due), col(PlanItem.id))
        .limit(limit)
    ).all()
    return [
        Overdue(ref, item.key, item.kind, item.due, (on - item.due).days, item.escalations)
        for item, ref in rows
    ]


def expected_runs(
    *, session: Session, until: dt.date, after_plan_id: int, limit: int
) -> list[tuple[int, str, int, str, str, dt.date]]:
    """(plan id, ref, version, item key, kind, due) of the next open item of each stream.

    Only items due by ``until`` (the Prefect look-ahead) get a run. Batched by plan id.
    """
    ranked = (
        sa_select(
            col(PlanItem.plan_id),
            col(PlanItem.key),
            col(PlanItem.kind),
            col(PlanItem.due),
            func.row_number()
            .over(
                partition_by=(col(PlanItem.plan_id), col(PlanItem.stream)),
                order_by=(col(PlanItem.due), col(PlanItem.id)),
            )
            .label("n"),
        )
        .where(col(PlanItem.status).in_(OPEN))
        .subquery()
    )
    plans = (
        sa_select(col(CarePlan.id))
        .where(col(CarePlan.status) == PlanStatus.active, col(CarePlan.id) > after_plan_id)
        .order_by(col(CarePlan.id))
        .limit(limit)
        .subquery()
    )
    query = (
        sa_select(
            col(CarePlan.id),
            col(Patient.ref),
            col(CarePlan.version),
            ranked.c.key,
            ranked.c.kind,
            ranked.c.due,
        )
        .join(plans, plans.c.id == CarePlan.id)
        .join(Patient, col(Patient.id) == CarePlan.patient_id)
        .join(ranked, ranked.c.plan_id == CarePlan.id)
        .where(ranked.c.n == 1, ranked.c.due <= until)
        .order_by(col(CarePlan.id))
    )
    return [
        (plan_id, ref, version, key, kind, due)
        for plan_id, ref, version, key, kind, due in session.execute(query)
        if plan_id is not None
    ]
