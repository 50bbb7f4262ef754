"""Plan items in the store: their status machine, their Prefect runs, their outcomes.

Every change to an item writes an audit entry in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from sidflows.errors import InvalidInput
from sidflows.protocol import Protocol
from sidflows.rules.outcomes import OutcomeContext, OutcomeDecision, decide_outcome
from sidflows.store.models import (
    ITEM_TRANSITIONS,
    OPEN_ITEM_STATUSES,
    AuditEntry,
    Booking,
    CarePlan,
    IgDose,
    ItemStatus,
    Lab,
    Patient,
    PatientState,
    PlanItem,
    PlanStatus,
    Vaccination,
    utcnow,
)
from sidflows.store.states import audit_item, set_plan_status, set_state


def get_item(*, session: Session, ref: str, key: str, version: int | None = None) -> PlanItem:
    """The child's item ``key`` in plan ``version``, or in the active plan."""
    query = (
        select(PlanItem)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .where(Patient.ref == ref, PlanItem.key == key)
    )
    query = (
        query.where(CarePlan.version == version)
        if version is not None
        else query.where(CarePlan.status == PlanStatus.active)
    )
    item = session.exec(query).first()
    if item is None:
        raise InvalidInput(
            "item", f"{ref} has no item {key}" + (f" in v{version}" if version else "")
        )
    return item


def set_item_status(
    *,
    session: Session,
    item: PlanItem,
    status: ItemStatus,
    actor: str,
    outcome: dict[str, Any] | None = None,
) -> bool:
    """Move an item along its status machine; a repeated move changes nothing."""
    current = ItemStatus(item.status)
    if current == status:
        return False
    if status not in ITEM_TRANSITIONS[current]:
        raise InvalidInput("status", f"{item.key} cannot go from {current} to {status}")
    audit_item(
        session,
        item,
        actor,
        str(status),
        {"status": current},
        {"status": status, "outcome": outcome},
    )
    item.status = status
    if outcome is not None:
        item.outcome = outcome
    item.updated_at = utcnow()
    session.add(item)
    return True


def record_run(*, session: Session, item: PlanItem, run_id: str, actor: str) -> None:
    """The Prefect run that stands for the item: the first schedules it, a new one is audited."""
    if item.flow_run_id == run_id:
        return
    before = item.flow_run_id
    item.flow_run_id = run_id
    if item.status == ItemStatus.planned:
        set_item_status(session=session, item=item, status=ItemStatus.scheduled, actor=actor)
    else:
        audit_item(
            session,
            item,
            actor,
            "run replaced" if before else "run recorded",
            {"flow_run_id": before},
            {"flow_run_id": run_id},
        )
    session.add(item)


def last_plan_review(*, session: Session, patient: Patient, today: dt.date) -> dt.date | None:
    """The day of the child's last plan review held (done) by ``today``, any plan version."""
    found = session.exec(
        select(func.max(PlanItem.due)).where(
            PlanItem.patient_id == patient.id,
            PlanItem.kind == "plan_review",
            PlanItem.status == ItemStatus.done,
            PlanItem.due <= today,
        )
    ).one()
    return found if isinstance(found, dt.date) else None


def next_in_streams(*, session: Session, plan: CarePlan) -> list[PlanItem]:
    """The next open item of each stream of a plan: the ones that get a Prefect run."""
    items = session.exec(
        select(PlanItem)
        .where(PlanItem.plan_id == plan.id, col(PlanItem.status).in_(OPEN_ITEM_STATUSES))
        .order_by(col(PlanItem.due), col(PlanItem.id))
    ).all()
    first: dict[str, PlanItem] = {}
    for item in items:
        first.setdefault(item.stream, item)
    return list(first.values())


def held_items(*, session: Session, plan: CarePlan) -> list[PlanItem]:
    """The plan's open items held while a re-plan waits (docs/clinical-reference.md §4.8)."""
    return list(
        session.exec(
            select(PlanItem)
            .where(
                PlanItem.plan_id == plan.id,
                col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
                col(PlanItem.hold_reason).is_not(None),
            )
            .order_by(col(PlanItem.due), col(PlanItem.id))
        ).all()
    )


def hold_item(*, session: Session, item: PlanItem, reason: str, version: int, actor: str) -> bool:
    """Hold an open item until plan ``version`` is answered; the same hold again changes nothing."""
    if item.hold_reason == reason and item.held_for == version:
        return False
    before = {"hold_reason": item.hold_reason, "held_for": item.held_for}
    audit_item(
        session,
        item,
        actor,
        "held",
        before,
        {"hold_reason": reason, "held_for": version, "item_status": item.status},
    )
    item.hold_reason, item.held_for, item.updated_at = reason, version, utcnow()
    session.add(item)
    return True


def release_item(*, session: Session, item: PlanItem, actor: str, why: str) -> bool:
    """Lift an item's hold (it goes ahead under the active plan); an item not held: nothing."""
    if item.hold_reason is None:
        return False
    audit_item(
        session,
        item,
        actor,
        "released",
        {"hold_reason": item.hold_reason, "held_for": item.held_for},
        {"hold_reason": None, "item_status": item.status, "why": why},
    )
    item.hold_reason, item.held_for, item.updated_at = None, None, utcnow()
    session.add(item)
    return True


def apply_holds(
    *, session: Session, plan: CarePlan, holds: dict[str, str], version: int, actor: str
) -> tuple[list[str], list[str]]:
    """Make the plan's holds these (key -> reason) for plan ``version``: (held, released) keys.

    An item held for an earlier proposal that this one no longer holds is released.
    """
    items = session.exec(
        select(PlanItem)
        .where(PlanItem.plan_id == plan.id, col(PlanItem.status).in_(OPEN_ITEM_STATUSES))
        .order_by(col(PlanItem.due), col(PlanItem.id))
    ).all()
    held, released = [], []
    for item in items:
        reason = holds.get(item.key)
        if reason is not None:
            if hold_item(session=session, item=item, reason=reason, version=version, actor=actor):
                held.append(item.key)
        elif release_item(
            session=session, item=item, actor=actor, why=f"plan v{version} does not hold it"
        ):
            released.append(item.key)
    return held, released


def cancel_held(*, session: Session, item: PlanItem, actor: str, why: str) -> None:
    """Cancel a held item (the approved plan dropped it), its chair freed, the hold kept on it."""
    session.execute(delete(Booking).where(col(Booking.item_id) == item.id))
    set_item_status(session=session, item=item, status=ItemStatus.cancelled, actor=actor)
    audit_item(
        session,
        item,
        actor,
        "hold ended: cancelled",
        {"hold_reason": item.hold_reason, "held_for": item.held_for},
        {"item_status": "cancelled", "why": why},
    )


def cancel_open_items(*, session: Session, plan: CarePlan, actor: str, why: str) -> list[int]:
    """Cancel every open item of a plan (and free its chairs), one audit entry each.

    A held item's entry says it was held, and why (docs/clinical-reference.md §4.8).
    """
    items = session.exec(
        select(PlanItem).where(
            PlanItem.plan_id == plan.id, col(PlanItem.status).in_(OPEN_ITEM_STATUSES)
        )
    ).all()
    ids = [i.id for i in items if i.id is not None]
    if not ids:
        return []
    # Read before the bulk update: it also sets the status of the items in the session.
    was = {i.id: str(i.status) for i in items}
    session.execute(delete(Booking).where(col(Booking.item_id).in_(ids)))
    session.execute(
        update(PlanItem)
        .where(col(PlanItem.id).in_(ids))
        .values(status=ItemStatus.cancelled, updated_at=utcnow())
    )
    ref = session.get(Patient, plan.patient_id)
    session.add_all(
        [
            AuditEntry(
                actor=actor,
                entity="item",
                entity_id=i.id,
                patient_ref=ref.ref if ref else "",
                action="cancelled",
                before={"status": was[i.id]},
                after={"status": "cancelled", "why": why}
                | ({"held": i.hold_reason, "held_for": i.held_for} if i.hold_reason else {}),
            )
            for i in items
            if i.id is not None
        ]
    )
    session.expire_all()
    return ids


def discharge(*, session: Session, patient: Patient, actor: str, why: str) -> None:
    """The child leaves the pathway: the plans in force closed, their open items cancelled.

    A discharge at plan review applies it here; a clinician closing the pathway at any
    other time calls ``versions.close_pathway``, which is this.
    """
    in_force = session.exec(
        select(CarePlan).where(
            CarePlan.patient_id == patient.id,
            col(CarePlan.status).in_((PlanStatus.active, PlanStatus.proposed)),
        )
    ).all()
    # At most one of each (unique indexes): the active one first.
    for plan in sorted(in_force, key=lambda p: p.status != PlanStatus.active):
        cancel_open_items(session=session, plan=plan, actor=actor, why=why)
        set_plan_status(session, patient, plan, PlanStatus.closed, actor, why)
    set_state(session, patient, PatientState.discharged, actor)


@dataclass
class FollowUp:
    """What an outcome asks for next (sidflows.rules.outcomes decides it)."""

    replan: bool = False
    escalate: bool = False
    review_reason: str | None = None
    low_trough: tuple[float, float] | None = None  # (IgG, target) in g/L
    notes: list[str] = field(default_factory=list)
    rationale: str = ""
    source: str = ""


def record_outcome(
    *,
    session: Session,
    item: PlanItem,
    outcome: dict[str, Any],
    actor: str,
    on: dt.date,
    protocol: Protocol,
) -> FollowUp:
    """Record what happened (given, missed, results) and apply what the rule says follows."""
    if item.status in (ItemStatus.done, ItemStatus.missed):
        return FollowUp(notes=[f"{item.key} already recorded as {item.status}"])
    # What happened is recorded even while the item is held (a form opened before the
    # hold): the record must say it; the hold ends with it.
    release_item(session=session, item=item, actor=actor, why="outcome recorded")
    context = OutcomeContext.build(
        kind=item.kind,
        key=item.key,
        details=item.details,
        outcome=outcome,
        protocol=protocol,
        today=on,
    )
    decision = decide_outcome(context)
    follow = FollowUp(
        replan=decision.replan,
        escalate=decision.escalate,
        review_reason=decision.review_reason,
        low_trough=decision.low_trough,
        notes=list(decision.notes),
        rationale=decision.rationale,
        source=decision.source,
    )
    if item.status in (ItemStatus.planned, ItemStatus.scheduled):
        set_item_status(session=session, item=item, status=ItemStatus.due, actor=actor)
    if decision.status == "missed":
        set_item_status(
            session=session, item=item, status=ItemStatus.missed, actor=actor, outcome=outcome
        )
        return follow
    _record_what_happened(session, item, context, decision, outcome.get("lot"), on)
    set_item_status(
        session=session, item=item, status=ItemStatus.done, actor=actor, outcome=outcome
    )
    if decision.discharge:
        # The review is done first: closing the pathway cancels every open item.
        session.flush()
        patient = session.get(Patient, item.patient_id)
        assert patient is not None
        discharge(session=session, patient=patient, actor=actor, why="discharged at plan review")
    return follow


def _record_what_happened(
    session: Session,
    item: PlanItem,
    context: OutcomeContext,
    decision: OutcomeDecision,
    lot: str | None,
    on: dt.date,
) -> None:
    """The dose given, the vaccination or the results join the child's record."""
    patient = session.get(Patient, item.patient_id)
    assert patient is not None and patient.id is not None and item.id is not None
    if item.kind == "ig_session":
        assert decision.dose_g is not None
        session.add(
            IgDose(
                patient_id=patient.id,
                date=on,
                g_per_kg=round(decision.dose_g / patient.weight_kg, 3),
                route=item.details["route"],
                grams=decision.dose_g,
                lot=lot,
                item_id=item.id,
            )
        )
    elif item.kind == "vaccine_dose":
        session.add(
            Vaccination(
                patient_id=patient.id,
                vaccine=item.details["vaccine"],
                date=on,
                lot=lot,
                item_id=item.id,
            )
        )
    elif context.values:
        session.add(
            Lab(patient_id=patient.id, date=on, values=dict(context.values), item_id=item.id)
        )
