"""Plan versions in the store: propose, approve, activate, close.

Every change to a plan writes an audit entry in the same transaction. Plan
versions replace each other: at most one proposed and one active version per
child (unique indexes), so concurrent re-plans cannot leave two active versions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import Session, col, select

from sidflows.calendar import UnitCalendar
from sidflows.errors import InvalidInput
from sidflows.plan_document import plan_document
from sidflows.rules.holds import kept_by
from sidflows.rules.model import Plan
from sidflows.store.audit import audit
from sidflows.store.bookings import book_session
from sidflows.store.items import (
    cancel_held,
    cancel_open_items,
    discharge,
    held_items,
    release_item,
)
from sidflows.store.models import (
    Booking,
    CarePlan,
    Patient,
    PatientState,
    PlanItem,
    PlanStatus,
    utcnow,
)
from sidflows.store.patients import has_consent
from sidflows.store.states import set_plan_status, set_state
from sidflows.store.views import stream_of

Decision = Literal["approve", "modify", "reject"]


def _comparable(document: dict[str, Any]) -> Any:
    return (document["items"], document["deferred"], [d["decision"] for d in document["decisions"]])


def latest_plan(
    *, session: Session, patient: Patient, status: str | None = None
) -> CarePlan | None:
    """The child's newest plan version (of that status, when one is given)."""
    query = select(CarePlan).where(CarePlan.patient_id == patient.id)
    if status is not None:
        query = query.where(CarePlan.status == status)
    return session.exec(query.order_by(col(CarePlan.version).desc())).first()


def propose(*, session: Session, patient: Patient, plan: Plan, reason: str, actor: str) -> CarePlan:
    """Store plan vN+1 as proposed. The same plan proposed again is recognised."""
    document = plan_document(plan)
    current = latest_plan(session=session, patient=patient, status=PlanStatus.proposed)
    if current is not None and _comparable(current.document) == _comparable(document):
        return current
    active = latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if (
        current is None
        and active is not None
        and reason != "referral"
        and _comparable(active.document) == _comparable(document)
    ):
        return active  # nothing changed: the active plan stands
    if current is not None:
        set_plan_status(session, patient, current, PlanStatus.superseded, actor, "replaced")
    top = session.exec(
        select(func.max(CarePlan.version)).where(CarePlan.patient_id == patient.id)
    ).one()
    assert patient.id is not None
    row = CarePlan(
        patient_id=patient.id,
        version=(top or 0) + 1,
        as_of=plan.as_of,
        protocol_version=plan.protocol_version,
        reason=reason,
        document=document,
    )
    _add_version(
        session,
        patient,
        row,
        actor,
        f"plan v{row.version} proposed",
        {"reason": reason, "items": len(document["items"])},
    )
    set_state(
        session,
        patient,
        PatientState.awaiting_approval if active is None else PatientState(patient.state),
        actor,
    )
    return row


def _add_version(
    session: Session,
    patient: Patient,
    row: CarePlan,
    actor: str,
    action: str,
    after: dict[str, Any],
) -> None:
    """Store a new plan version with its audit entry, in the caller's transaction."""
    session.add(row)
    session.flush()
    assert row.id is not None
    audit(
        session=session,
        actor=actor,
        entity="plan",
        entity_id=row.id,
        ref=patient.ref,
        action=action,
        after=after,
    )


@dataclass(frozen=True)
class ApprovalResult:
    plan: CarePlan | None
    changed: bool
    message: str


def decide(
    *,
    session: Session,
    patient: Patient,
    decision: Decision,
    by: str,
    note: str | None = None,
    remove_items: tuple[str, ...] = (),
    identity: dict[str, Any] | None = None,
) -> ApprovalResult:
    """A clinician's answer to the proposed plan. The same answer twice changes nothing
    (a suspended run resumed with an answer the store already has applies it again).

    ``identity``: how the clinician was known, in the answer's audit entry: typed (a
    name given on a form or the command line, the default) or proven (``{"identity":
    "proven", "login": ...}``: the hospital's single sign-on, docs/sso.md).
    """
    proof = identity or {"identity": "typed"}
    proposed = latest_plan(session=session, patient=patient, status=PlanStatus.proposed)
    if proposed is None:
        active = latest_plan(session=session, patient=patient, status=PlanStatus.active)
        if active is not None and decision == "approve":
            return ApprovalResult(active, False, f"plan v{active.version} is already active")
        newest = latest_plan(session=session, patient=patient)
        if (
            decision == "reject"
            and newest is not None
            and newest.status == PlanStatus.closed
            and newest.activated_at is None
        ):
            return ApprovalResult(newest, False, f"plan v{newest.version} was already rejected")
        raise InvalidInput("ref", f"{patient.ref} has no plan waiting for approval")
    assert proposed.id is not None
    if decision in ("approve", "modify") and proposed.approved_by is not None:
        # approved already (a modified version is approved by its author): nothing to do
        return ApprovalResult(
            proposed,
            False,
            f"plan v{proposed.version} was already approved by {proposed.approved_by}",
        )

    def answered(action: str) -> None:
        assert proposed is not None and proposed.id is not None
        audit(
            session=session,
            actor=by,
            entity="plan",
            entity_id=proposed.id,
            ref=patient.ref,
            action=f"plan v{proposed.version} {action}",
            after={"note": note, **proof},
        )

    if decision == "approve":
        proposed.approved_by, proposed.approved_at = by, utcnow()
        session.add(proposed)
        answered("approved")
        settle_holds(session=session, patient=patient, answered=proposed, kept=proposed, by=by)
        return ApprovalResult(proposed, True, f"plan v{proposed.version} approved by {by}")
    if decision == "reject":
        set_plan_status(session, patient, proposed, PlanStatus.closed, by, f"rejected: {note}")
        answered("rejected")
        settle_holds(session=session, patient=patient, answered=proposed, kept=None, by=by)
        if latest_plan(session=session, patient=patient, status=PlanStatus.active) is None:
            set_state(session, patient, PatientState.referred, by)  # else the active plan stands
        return ApprovalResult(proposed, True, f"plan v{proposed.version} rejected by {by}")
    # modify: the clinician removes items; the modified plan is the new version, approved by them.
    unknown = [k for k in remove_items if k not in {i["key"] for i in proposed.document["items"]}]
    if unknown:
        raise InvalidInput("remove_items", f"not in plan v{proposed.version}: {', '.join(unknown)}")
    document = dict(proposed.document)
    document["items"] = [i for i in document["items"] if i["key"] not in set(remove_items)]
    document["decisions"] = [
        *document["decisions"],
        {
            "topic": "reassessment",
            "decision": f"modified by {by}",
            "rationale": note or f"removed: {', '.join(remove_items) or 'nothing'}",
            "source": "clinician decision",
        },
    ]
    set_plan_status(session, patient, proposed, PlanStatus.superseded, by, "modified")
    assert patient.id is not None
    row = CarePlan(
        patient_id=patient.id,
        version=proposed.version + 1,
        as_of=proposed.as_of,
        protocol_version=proposed.protocol_version,
        reason=f"modified by {by}",
        document=document,
        approved_by=by,
        approved_at=utcnow(),
    )
    _add_version(
        session,
        patient,
        row,
        by,
        f"plan v{row.version} modified and approved",
        {"removed": list(remove_items), "note": note, **proof},
    )
    settle_holds(session=session, patient=patient, answered=proposed, kept=row, by=by)
    return ApprovalResult(row, True, f"plan v{row.version} (modified) approved by {by}")


def settle_holds(
    *, session: Session, patient: Patient, answered: CarePlan, kept: CarePlan | None, by: str
) -> tuple[list[str], list[str]]:
    """The clinician answered the proposal the active plan's items were held for.

    Rejected (``kept`` None): the active plan stands, its held items are released.
    Approved (``kept`` the approved version): a held item the approved plan still
    has, same key on the same day, is released; one it dropped is cancelled, the
    hold's reason kept in the cancellation (docs/clinical-reference.md §4.8).
    Returns the (released, cancelled) keys.
    """
    active = latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if active is None:
        return [], []
    approved = (
        {i["key"]: dt.date.fromisoformat(i["due"]) for i in kept.document["items"]}
        if kept is not None
        else None
    )
    released, cancelled = [], []
    for item in held_items(session=session, plan=active):
        if item.held_for not in (None, answered.version, kept.version if kept else None):
            continue  # held for another proposal (cannot happen: one proposal at a time)
        if approved is None:
            why = f"plan v{answered.version} rejected by {by}: plan v{active.version} stands"
            release_item(session=session, item=item, actor=by, why=why)
            released.append(item.key)
        elif kept_by(item.key, item.due, approved):
            why = f"plan v{kept.version if kept else '?'} approved by {by} keeps it on its day"
            release_item(session=session, item=item, actor=by, why=why)
            released.append(item.key)
        else:
            why = (
                f"held while plan v{answered.version} waited ({item.hold_reason}); plan "
                f"v{kept.version if kept else '?'} approved by {by} does not give it on its day"
            )
            cancel_held(session=session, item=item, actor=by, why=why)
            cancelled.append(item.key)
    return released, cancelled


@dataclass
class Activation:
    plan: CarePlan | None
    status: Literal["activated", "already_active", "awaiting_approval", "awaiting_consent", "none"]
    cancelled_item_ids: list[int] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)


def needs_consent(document: dict[str, Any]) -> bool:
    return any(not item.get("publicly_funded", False) for item in document["items"])


def activate(
    *, session: Session, patient: Patient, calendar: UnitCalendar, actor: str
) -> Activation:
    """An approved plan (with the family's consent where needed) becomes scheduled work."""
    proposed = latest_plan(session=session, patient=patient, status=PlanStatus.proposed)
    if proposed is None:
        active = latest_plan(session=session, patient=patient, status=PlanStatus.active)
        return Activation(active, "already_active" if active else "none")
    in_force = latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if proposed.approved_by is None:
        if in_force is None:
            set_state(session, patient, PatientState.awaiting_approval, actor)
        return Activation(proposed, "awaiting_approval")
    if needs_consent(proposed.document) and not has_consent(session=session, patient=patient):
        if in_force is None:
            set_state(session, patient, PatientState.awaiting_consent, actor)
        return Activation(proposed, "awaiting_consent")
    result = Activation(proposed, "activated")
    previous = latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if previous is not None:
        result.cancelled_item_ids = cancel_open_items(
            session=session, plan=previous, actor=actor, why=f"replaced by v{proposed.version}"
        )
        set_plan_status(
            session,
            patient,
            previous,
            PlanStatus.superseded,
            actor,
            f"replaced by v{proposed.version}",
        )
    proposed.status, proposed.activated_at = PlanStatus.active, utcnow()
    session.add(proposed)
    session.flush()
    assert proposed.id is not None and patient.id is not None
    items = [
        PlanItem(
            plan_id=proposed.id,
            patient_id=patient.id,
            key=i["key"],
            kind=i["kind"],
            stream=stream_of(i),
            due=dt.date.fromisoformat(i["due"]),
            hospital=bool(i.get("hospital", True)),
            details=i,
        )
        for i in proposed.document["items"]
    ]
    session.add_all(items)
    session.flush()
    for item in items:
        if item.kind == "ig_session" and item.details.get("route") == "iv":
            result.bookings.append(
                book_session(session=session, item=item, calendar=calendar, actor=actor)
            )
    audit(
        session=session,
        actor=actor,
        entity="plan",
        entity_id=proposed.id,
        ref=patient.ref,
        action=f"plan v{proposed.version} active",
        before={"status": PlanStatus.proposed},
        after={"status": PlanStatus.active, "items": len(items), "bookings": len(result.bookings)},
    )
    set_state(session, patient, PatientState.active, actor)
    return result


def unfinished_activations(*, session: Session) -> list[str]:
    """Refs whose proposed plan is approved, with the family's consent where it needs it,
    yet not active: an activation that died before its commit (the sweep finishes it)."""
    rows = session.exec(
        select(CarePlan, Patient)
        .join(Patient, col(Patient.id) == CarePlan.patient_id)
        .where(CarePlan.status == PlanStatus.proposed, col(CarePlan.approved_by).is_not(None))
        .order_by(col(Patient.ref))
    ).all()
    return [
        patient.ref
        for plan, patient in rows
        if not needs_consent(plan.document) or has_consent(session=session, patient=patient)
    ]


def close_pathway(*, session: Session, patient: Patient, actor: str, why: str) -> None:
    """A clinician closes the child's pathway (moved away, recovered): see ``discharge``."""
    discharge(session=session, patient=patient, actor=actor, why=why)
