"""The store in bulk, for the benchmarks: a registry loaded in chunks, the past marked done.

None of this is how a unit's data arrives (no audit, no outbox, no consent):
it builds large synthetic registries fast, to measure the sweep on them.
``wipe`` empties a database: callers refuse any but a benchmark's first.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, SQLModel, col, select

from sidflows.store import db
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    CarePlan,
    ItemStatus,
    Patient,
    PatientState,
    PlanItem,
    PlanStatus,
)
from sidflows.store.views import stream_of


@dataclass(frozen=True)
class ActiveChild:
    """A child to load on an active plan v1: its ref, birth date and the plan's items."""

    ref: str
    birth_date: dt.date
    items: Sequence[dict[str, Any]]


def load_active_plans(
    *, session: Session, children: Sequence[ActiveChild], as_of: dt.date, label: str
) -> int:
    """Insert the children, each on an active plan v1 with its items. Returns the items."""
    if not children:
        return 0
    session.execute(
        insert(Patient),
        [
            {
                "ref": child.ref,
                "birth_date": child.birth_date,
                "sex": "unknown",
                "weight_kg": 20.0,
                "diagnosis_category": "other",
                "diagnosis_label": label,
                "referrer_service": label,
                "state": PatientState.active,
            }
            for child in children
        ],
    )
    refs = sorted(child.ref for child in children)
    patient_ids: dict[str, int] = {
        ref: pid
        for ref, pid in session.exec(
            select(Patient.ref, Patient.id).where(
                col(Patient.ref) >= refs[0], col(Patient.ref) <= refs[-1]
            )
        )
        if pid is not None
    }
    session.execute(
        insert(CarePlan),
        [
            {
                "patient_id": patient_ids[child.ref],
                "version": 1,
                "status": PlanStatus.active,
                "as_of": as_of,
                "protocol_version": label,
                "reason": "referral",
                "document": {"items": []},
            }
            for child in children
        ],
    )
    ids = [patient_ids[child.ref] for child in children]
    plan_ids: dict[int, int] = {
        patient: plan
        for patient, plan in session.exec(
            select(CarePlan.patient_id, CarePlan.id).where(
                col(CarePlan.patient_id) >= min(ids), col(CarePlan.patient_id) <= max(ids)
            )
        )
        if plan is not None
    }
    rows = [
        {
            "plan_id": plan_ids[patient_ids[child.ref]],
            "patient_id": patient_ids[child.ref],
            "key": item["key"],
            "kind": item["kind"],
            "stream": stream_of(item),
            "due": dt.date.fromisoformat(item["due"]),
            "hospital": item["hospital"],
            "status": ItemStatus.planned,
            "details": item,
        }
        for child in children
        for item in child.items
    ]
    if rows:
        session.execute(insert(PlanItem), rows)
    return len(rows)


def record_the_past(*, session: Session, before: dt.date, left_open_every: int) -> None:
    """Items due before ``before`` were done, but one in ``left_open_every`` (still overdue)."""
    session.execute(
        text("UPDATE planitem SET status = :done WHERE due < :day AND id % :every <> 0").bindparams(
            done=ItemStatus.done.value, day=before, every=left_open_every
        )
    )


_BARE_DUE_SQL = "SELECT id FROM planitem WHERE status IN ({statuses}) AND due <= :day"


def bare_due_ids(*, session: Session, on: dt.date) -> list[int]:
    """The ids of the open items due by ``on``, by the bare indexed query (the baseline)."""
    statuses = ", ".join(f"'{s.value}'" for s in OPEN_ITEM_STATUSES)
    query = text(_BARE_DUE_SQL.format(statuses=statuses)).bindparams(day=on)
    return [row[0] for row in session.execute(query)]


def analyze(*, session: Session, table: str | None = None) -> None:
    """Fresh planner statistics after a bulk change (PostgreSQL; nothing to do on SQLite)."""
    if table is not None and table not in SQLModel.metadata.tables:
        raise ValueError(f"no table {table!r} in the store")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f'ANALYZE "{table}"' if table else "ANALYZE"))


def wipe(url: str) -> None:
    """Empty the database at ``url``, then bring it to the newest schema."""
    if url.startswith("postgresql"):
        with db.get_engine(url).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    db.dispose_engines()
    db.upgrade(url)
