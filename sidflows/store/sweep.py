"""The daily sweep in the store: due and overdue items, in batches (never row by row)."""

from __future__ import annotations

import datetime as dt
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
class DueBatch:
    """One batch of open items whose day has come, as the sweep reads them."""

    rows: int
    last_id: int | None
    by_kind: Counter[str] = field(default_factory=Counter)
    overdue: list[Overdue] = field(default_factory=list)


def due_batch(*, session: Session, on: dt.date, after_id: int, limit: int) -> DueBatch:
    """Open items of active plans due on or before ``on``, by id, one batch.

    The sweep reads; it never rewrites. "Due" is derivable (the day has come and
    the item is still open); an item's own run records its transition, so a
    sweep run twice, or a crashed one, changes nothing.
    """
    rows = session.execute(
        sa_select(
            col(PlanItem.id),
            col(Patient.ref),
            col(PlanItem.key),
            col(PlanItem.kind),
            col(PlanItem.due),
            col(PlanItem.escalations),
        )
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .where(
            col(PlanItem.status).in_(OPEN),
            col(PlanItem.due) <= on,
            col(PlanItem.id) > after_id,
            col(CarePlan.status) == PlanStatus.active,
        )
        .order_by(col(PlanItem.id))
        .limit(limit)
    ).all()
    if not rows:
        return DueBatch(0, None)
    batch = DueBatch(len(rows), rows[-1][0])
    for _id, ref, key, kind, due, escalations in rows:
        batch.by_kind[kind] += 1
        if due < on:
            batch.overdue.append(Overdue(ref, key, kind, due, (on - due).days, escalations))
    return batch


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
