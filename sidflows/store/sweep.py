"""The daily sweep in the store: due and overdue items, in batches (never row by row)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import DateTime, func, insert, literal, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from sidflows.store.models import (
    AuditEntry,
    CarePlan,
    ItemStatus,
    Patient,
    PlanItem,
    PlanStatus,
    utcnow,
)

WAITING = (ItemStatus.planned, ItemStatus.scheduled)


@dataclass
class Overdue:
    ref: str
    key: str
    kind: str
    due: dt.date
    days: int
    escalations: int


@dataclass
class SweepBatch:
    marked_due: int
    last_id: int | None
    overdue: list[Overdue] = field(default_factory=list)


def due_ids(*, session: Session, on: dt.date, after_id: int, limit: int) -> list[int]:
    """The bare indexed query: waiting items whose day has come (benchmark baseline too)."""
    ids = session.exec(
        select(col(PlanItem.id))
        .where(col(PlanItem.status).in_(WAITING), PlanItem.due <= on, col(PlanItem.id) > after_id)
        .order_by(col(PlanItem.id))
        .limit(limit)
    ).all()
    return [i for i in ids if i is not None]


def mark_due_batch(
    *, session: Session, on: dt.date, after_id: int, limit: int, actor: str
) -> SweepBatch:
    """Mark one batch of waiting items due, with their audit entries, in one transaction."""
    ids = due_ids(session=session, on=on, after_id=after_id, limit=limit)
    if not ids:
        return SweepBatch(0, None)
    now = utcnow()
    session.execute(
        update(PlanItem)
        .where(col(PlanItem.id).in_(ids))
        .values(status=ItemStatus.due, updated_at=now)
    )
    rows = (
        sa_select(
            literal(now, DateTime(timezone=True)),  # typed: SQLite cannot bind a pendulum value
            literal(actor),
            literal("item"),
            col(PlanItem.id),
            col(Patient.ref),
            literal("due"),
        )
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .where(col(PlanItem.id).in_(ids))
    )
    session.execute(
        insert(AuditEntry).from_select(
            ["at", "actor", "entity", "entity_id", "patient_ref", "action"], rows
        )
    )
    return SweepBatch(len(ids), ids[-1])


def overdue(*, session: Session, on: dt.date, limit: int = 10_000) -> list[Overdue]:
    """Items due before ``on`` with no outcome yet, oldest first."""
    rows = session.exec(
        select(PlanItem, Patient.ref)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .where(
            PlanItem.status == ItemStatus.due,
            PlanItem.due < on,
            CarePlan.status == PlanStatus.active,
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
        .where(col(PlanItem.status).in_((*WAITING, ItemStatus.due)))
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
