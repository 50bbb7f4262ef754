"""The store in bulk, for the benchmarks: a registry loaded in chunks, the past marked done.

None of this is how a unit's data arrives (no audit, no outbox, no consent):
it builds large synthetic registries fast, to measure the sweep on them.
``wipe`` empties a database: callers refuse any but a benchmark's first.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, text
from sqlmodel import Session, SQLModel, col, select

from sidflows.store import db, fastwrite
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
    fastwrite.insert_rows(
        session,
        _table(Patient),
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
    fastwrite.insert_rows(
        session,
        _table(CarePlan),
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
    return fastwrite.insert_rows(session, _table(PlanItem), rows)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def record_the_past(*, session: Session, before: dt.date, left_open_every: int) -> None:
    """Items due before ``before`` were done, but one in ``left_open_every`` (still overdue)."""
    session.execute(
        text("UPDATE planitem SET status = :done WHERE due < :day AND id % :every <> 0").bindparams(
            done=ItemStatus.done.value, day=before, every=left_open_every
        )
    )


_OPEN_SQL = "status IN ({statuses})".format(
    statuses=", ".join(f"'{s.value}'" for s in OPEN_ITEM_STATUSES)
)

# The bare indexed queries that find the rows each phase of the sweep works on (the
# baseline the benchmark compares the sweep's store work with): no join, no ORM.
BARE_SQL = {
    "due": f"SELECT id FROM planitem WHERE {_OPEN_SQL} AND due <= :day",
    "overdue": f"SELECT id FROM planitem WHERE {_OPEN_SQL} AND due < :day",
    "remind": (
        f"SELECT id, due FROM planitem p WHERE {_OPEN_SQL} AND due >= :day AND due <= :until"
        " AND hold_reason IS NULL AND NOT EXISTS (SELECT 1 FROM notification n"
        " WHERE n.item_id = p.id AND n.event = 'item_reminder')"
    ),
    "escalate": (
        f"SELECT id, due, escalations FROM planitem WHERE {_OPEN_SQL} AND due <= :threshold"
        " AND escalations < :steps AND hold_reason IS NULL"
    ),
    # After the sweep: the messages the day's digests took, by the digests' ids.
    "digest": (
        "SELECT id, route, subject FROM notification WHERE digest_id IN"
        " (SELECT id FROM notification WHERE event = 'digest' AND key LIKE :pattern)"
    ),
}


def bare_rows(*, session: Session, phase: str, **params: Any) -> int:
    """How many rows the bare query of ``phase`` finds (every row fetched)."""
    return len(session.execute(text(BARE_SQL[phase]).bindparams(**params)).all())


@contextmanager
def indexes_deferred(session: Session, table: str) -> Iterator[None]:
    """The table's secondary indexes (and unique constraints) dropped while a bulk load
    runs in this transaction, then built again once: faster than maintaining them row
    by row. The primary key stays. SQLite: its named indexes only (not the automatic
    ones of its UNIQUE constraints)."""
    if table not in SQLModel.metadata.tables:
        raise ValueError(f"no table {table!r} in the store")
    if session.get_bind().dialect.name == "postgresql":
        constraints = session.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:t AS regclass) AND contype = 'u'"
            ).bindparams(t=table)
        ).all()
        indexes = session.execute(
            text(
                "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x"
                " JOIN pg_class i ON i.oid = x.indexrelid"
                " WHERE x.indrelid = CAST(:t AS regclass) AND NOT x.indisprimary"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
            ).bindparams(t=table)
        ).all()
        for name, _ in constraints:
            session.execute(text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'))
        for name, _ in indexes:
            session.execute(text(f'DROP INDEX "{name}"'))
        yield
        for _, definition in indexes:
            session.execute(text(definition))
        for name, definition in constraints:
            session.execute(text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'))
        return
    indexes = session.execute(
        text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name = :t AND sql IS NOT NULL"
        ).bindparams(t=table)
    ).all()
    for name, _ in indexes:
        session.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, definition in indexes:
        session.execute(text(definition))


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
