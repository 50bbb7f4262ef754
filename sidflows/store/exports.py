"""What a plan's FHIR export reads and records: each version as shown, what was sent.

A version's shown document is ``views.version_document``, what ``show`` prints
for that version, not only the current one: a re-plan's proposal waits beside the
active plan and is exported too. An export to an HTTP endpoint is recorded in the
audit trail (``fhir export vN <status>``), so each version goes once; a directory
export is recorded by its file.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from sidflows.store.audit import audit
from sidflows.store.models import (
    AuditEntry,
    CarePlan,
    Identity,
    Patient,
    PlanStatus,
)

# The statuses a version is exported in: proposed (a CarePlan draft), active.
EXPORTED_STATUSES = (PlanStatus.proposed, PlanStatus.active)


def previous_version(*, session: Session, patient: Patient, version: int) -> int | None:
    """The version plan ``version`` replaces: the newest earlier one that was ever active."""
    return session.exec(
        select(CarePlan.version)
        .where(CarePlan.patient_id == patient.id)
        .where(CarePlan.version < version)
        .where(col(CarePlan.activated_at).is_not(None))
        .order_by(col(CarePlan.version).desc())
    ).first()


def identity_of(*, session: Session, patient: Patient) -> dict[str, Any] | None:
    """The child's identity ({name, mrn}) from its own table, or None when none is kept."""
    row = session.exec(select(Identity).where(Identity.patient_id == patient.id)).first()
    if row is None or (row.name is None and row.mrn is None):
        return None
    return {"name": row.name, "mrn": row.mrn}


def versions_to_export(*, session: Session, patient: Patient) -> list[CarePlan]:
    """The child's versions in an exported status (proposed or active), oldest first."""
    return list(
        session.exec(
            select(CarePlan)
            .where(CarePlan.patient_id == patient.id)
            .where(col(CarePlan.status).in_(list(EXPORTED_STATUSES)))
            .order_by(col(CarePlan.version))
        ).all()
    )


def export_action(plan: CarePlan) -> str:
    return f"fhir export v{plan.version} {plan.status}"


def was_exported(*, session: Session, plan: CarePlan, to: str) -> bool:
    """Plan ``plan`` in its present status was already sent to ``to`` (``http``)."""
    entries = session.exec(
        select(AuditEntry)
        .where(AuditEntry.entity == "plan")
        .where(AuditEntry.entity_id == plan.id)
        .where(AuditEntry.action == export_action(plan))
    ).all()
    return any((e.after or {}).get("to") == to for e in entries)


def record_export(
    *,
    session: Session,
    patient: Patient,
    plan: CarePlan,
    to: str,
    key: str,
    identity: bool,
    actor: str,
) -> None:
    """The audit entry of one export: which version, in which status, where (no URL)."""
    assert plan.id is not None
    audit(
        session=session,
        actor=actor,
        entity="plan",
        entity_id=plan.id,
        ref=patient.ref,
        action=export_action(plan),
        after={"to": to, "export": key, "identity": identity},
    )
