"""State changes every store module makes, each with its audit entry.

A child's state, a plan version's status and an item's audit entry are written
by plan versions, items and day-unit bookings alike; they live here so that
none of those modules imports another just for them.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sidflows.store.audit import audit
from sidflows.store.models import CarePlan, Patient, PatientState, PlanItem, PlanStatus, utcnow


def set_state(session: Session, patient: Patient, state: PatientState, actor: str) -> None:
    """Move the child to ``state``; staying in the same state writes nothing."""
    if patient.state != state:
        assert patient.id is not None
        audit(
            session=session,
            actor=actor,
            entity="patient",
            entity_id=patient.id,
            ref=patient.ref,
            action="state",
            before={"state": patient.state},
            after={"state": state},
        )
        patient.state = state
        patient.updated_at = utcnow()
        session.add(patient)


def set_plan_status(
    session: Session, patient: Patient, plan: CarePlan, status: PlanStatus, actor: str, why: str
) -> None:
    assert plan.id is not None
    audit(
        session=session,
        actor=actor,
        entity="plan",
        entity_id=plan.id,
        ref=patient.ref,
        action=f"plan v{plan.version} {status}",
        before={"status": plan.status},
        after={"status": status, "why": why},
    )
    plan.status = status
    session.add(plan)
    session.flush()


def audit_item(
    session: Session,
    item: PlanItem,
    actor: str,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """One audit entry for a change to an item, under its child's ref."""
    patient = session.get(Patient, item.patient_id)
    assert item.id is not None and patient is not None
    audit(
        session=session,
        actor=actor,
        entity="item",
        entity_id=item.id,
        ref=patient.ref,
        action=action,
        before=before,
        after=after,
    )
