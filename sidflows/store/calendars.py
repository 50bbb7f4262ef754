"""What the calendar feeds read: the items of every plan version that was ever active.

A feed follows an item from version to version (sidflows/service/calendars.py):
it needs each activated version's items with their store state (day, status,
booking), in version order, and how often the day unit moved each item within
its version (the audit trail's ``moved: ...`` entries). A version never
activated (a proposal waiting, or rejected) has no items in the store and is
not on any calendar. Refs only: nothing here reads identity but ``identity_name``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from sidflows.store.models import AuditEntry, Booking, CarePlan, Identity, Patient, PlanItem


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One item of one activated plan version, as the store holds it."""

    key: str
    kind: str
    stream: str
    due: dt.date
    hospital: bool
    status: str
    details: dict[str, Any]
    updated_at: dt.datetime
    moves: int  # times its day moved within this version (audited)
    booking_day: dt.date | None = None
    chair: int | None = None
    minutes: int | None = None

    def as_item(self) -> dict[str, Any]:
        """The plan-document shape (sidflows.plan_diff compares these)."""
        return {**self.details, "key": self.key, "kind": self.kind, "due": self.due.isoformat()}


@dataclass(frozen=True, slots=True)
class VersionRows:
    ref: str
    version: int
    activated_at: dt.datetime
    items: tuple[ItemRow, ...]


def activated_versions(
    *, session: Session, refs: Iterable[str] | None = None, kinds: Iterable[str] | None = None
) -> dict[str, list[VersionRows]]:
    """Ref -> its activated plan versions, oldest first, with their items (of ``kinds``)."""
    query = (
        select(CarePlan, Patient.ref)
        .join(Patient, col(Patient.id) == col(CarePlan.patient_id))
        .where(col(CarePlan.activated_at).is_not(None))
        .order_by(col(Patient.ref), col(CarePlan.version))
    )
    if refs is not None:
        query = query.where(col(Patient.ref).in_(list(refs)))
    plans = session.exec(query).all()
    if not plans:
        return {}
    item_query = select(PlanItem).where(col(PlanItem.plan_id).in_([p.id for p, _ in plans]))
    if kinds is not None:
        item_query = item_query.where(col(PlanItem.kind).in_(list(kinds)))
    rows = session.exec(item_query.order_by(col(PlanItem.due), col(PlanItem.key))).all()
    ids = [r.id for r in rows]
    bookings = {
        b.item_id: b for b in session.exec(select(Booking).where(col(Booking.item_id).in_(ids)))
    }
    moves = Counter(
        entity_id
        for entity_id in session.exec(
            select(AuditEntry.entity_id)
            .where(AuditEntry.entity == "item")
            .where(col(AuditEntry.action).startswith("moved"))
            .where(col(AuditEntry.entity_id).in_(ids))
        )
    )
    by_plan: dict[int, list[ItemRow]] = {}
    for r in rows:
        assert r.id is not None
        booking = bookings.get(r.id)
        by_plan.setdefault(r.plan_id, []).append(
            ItemRow(
                key=r.key,
                kind=r.kind,
                stream=r.stream,
                due=r.due,
                hospital=r.hospital,
                status=r.status,
                details=dict(r.details),
                updated_at=aware(r.updated_at),
                moves=moves[r.id],
                booking_day=booking.day if booking else None,
                chair=booking.chair if booking else None,
                minutes=(booking.minutes if booking else None) or r.details.get("session_minutes"),
            )
        )
    found: dict[str, list[VersionRows]] = {}
    for plan, ref in plans:
        assert plan.id is not None and plan.activated_at is not None
        found.setdefault(ref, []).append(
            VersionRows(
                ref, plan.version, aware(plan.activated_at), tuple(by_plan.get(plan.id, ()))
            )
        )
    return found


def identity_name(*, session: Session, ref: str) -> str | None:
    """The child's name, for the family's own feed only (never a staff feed)."""
    return session.exec(
        select(Identity.name)
        .join(Patient, col(Patient.id) == col(Identity.patient_id))
        .where(Patient.ref == ref)
    ).first()


def aware(moment: dt.datetime) -> dt.datetime:
    """SQLite gives timestamps back without their zone: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
