"""Care plans in the store: propose, approve, activate, items and their outcomes.

Every change to a plan or an item writes an audit entry in the same
transaction. Plan versions replace each other: at most one proposed and one
active version per child (unique indexes), so concurrent re-plans cannot leave
two active versions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import delete, func, text, update
from sqlmodel import Session, col, select

from sidflows.calendar import UnitCalendar
from sidflows.errors import InvalidInput
from sidflows.plan_document import plan_document
from sidflows.rules.model import Plan
from sidflows.store.audit import audit
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
from sidflows.store.patients import has_consent

Decision = Literal["approve", "modify", "reject"]


def stream_of(item: dict[str, Any]) -> str:
    """Items of one stream follow each other: only the next one has a Prefect run."""
    kind = str(item["kind"])
    if kind == "vaccine_dose":
        return f"vaccine_dose:{item['vaccine']}"
    if kind == "prophylaxis":
        return f"prophylaxis:{item['drug']}"
    return kind


def _comparable(document: dict[str, Any]) -> Any:
    return (document["items"], document["deferred"], [d["decision"] for d in document["decisions"]])


def latest_plan(
    *, session: Session, patient: Patient, status: str | None = None
) -> CarePlan | None:
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
        _set_plan_status(session, patient, current, PlanStatus.superseded, actor, "replaced")
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
    _set_state(
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


def _set_state(session: Session, patient: Patient, state: PatientState, actor: str) -> None:
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


def _set_plan_status(
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
) -> ApprovalResult:
    """A clinician's answer to the proposed plan. Approving twice changes nothing."""
    proposed = latest_plan(session=session, patient=patient, status=PlanStatus.proposed)
    if proposed is None:
        active = latest_plan(session=session, patient=patient, status=PlanStatus.active)
        if active is not None and decision == "approve":
            return ApprovalResult(active, False, f"plan v{active.version} is already active")
        raise InvalidInput("ref", f"{patient.ref} has no plan waiting for approval")
    assert proposed.id is not None
    if decision == "approve":
        if proposed.approved_by is not None:
            return ApprovalResult(
                proposed,
                False,
                f"plan v{proposed.version} was already approved by {proposed.approved_by}",
            )
        proposed.approved_by, proposed.approved_at = by, utcnow()
        session.add(proposed)
        audit(
            session=session,
            actor=by,
            entity="plan",
            entity_id=proposed.id,
            ref=patient.ref,
            action=f"plan v{proposed.version} approved",
            after={"note": note},
        )
        return ApprovalResult(proposed, True, f"plan v{proposed.version} approved by {by}")
    if decision == "reject":
        _set_plan_status(session, patient, proposed, PlanStatus.closed, by, f"rejected: {note}")
        if latest_plan(session=session, patient=patient, status=PlanStatus.active) is None:
            _set_state(session, patient, PatientState.referred, by)  # else the active plan stands
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
    _set_plan_status(session, patient, proposed, PlanStatus.superseded, by, "modified")
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
        {"removed": list(remove_items), "note": note},
    )
    return ApprovalResult(row, True, f"plan v{row.version} (modified) approved by {by}")


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
            _set_state(session, patient, PatientState.awaiting_approval, actor)
        return Activation(proposed, "awaiting_approval")
    if needs_consent(proposed.document) and not has_consent(session=session, patient=patient):
        if in_force is None:
            _set_state(session, patient, PatientState.awaiting_consent, actor)
        return Activation(proposed, "awaiting_consent")
    result = Activation(proposed, "activated")
    previous = latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if previous is not None:
        result.cancelled_item_ids = cancel_open_items(
            session=session, plan=previous, actor=actor, why=f"replaced by v{proposed.version}"
        )
        _set_plan_status(
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
    _set_state(session, patient, PatientState.active, actor)
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


def cancel_open_items(*, session: Session, plan: CarePlan, actor: str, why: str) -> list[int]:
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
                after={"status": "cancelled", "why": why},
            )
            for i in items
            if i.id is not None
        ]
    )
    session.expire_all()
    return ids


# One transaction-scoped PostgreSQL advisory lock for the unit's chairs (any constant key).
DAY_UNIT_LOCK = 0x5346_4455


def _lock_day_unit(session: Session) -> None:
    """Give chairs out one transaction at a time (PostgreSQL; SQLite has one writer anyway).

    Without it, parallel activations of different children pick the same free chair
    and all but one fail on the unique (day, chair) index, again on every retry.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DAY_UNIT_LOCK})


def book_session(
    *, session: Session, item: PlanItem, calendar: UnitCalendar, actor: str
) -> Booking:
    """A day-unit chair inside the session's window; never two sessions on one chair.

    A session that cannot have a chair on its due day moves, and the move is audited.
    """
    _lock_day_unit(session)
    chairs = calendar.config.day_unit.chairs_per_day
    earliest = dt.date.fromisoformat(item.details.get("earliest", item.due.isoformat()))
    latest = dt.date.fromisoformat(item.details.get("latest", item.due.isoformat()))
    window = list(calendar.working_days(earliest, latest))
    # The due day first, then earlier days of the window, then the next working days.
    candidates = sorted(window, key=lambda d: (d != item.due, -d.toordinal()))
    candidates += list(
        calendar.working_days(latest + dt.timedelta(days=1), latest + dt.timedelta(days=21))
    )
    used = {
        (b.day, b.chair)
        for b in session.exec(select(Booking).where(col(Booking.day).in_(candidates)))
    }
    for day in candidates:
        for chair in range(1, chairs + 1):
            if (day, chair) not in used:
                booking = Booking(
                    item_id=item.id or 0,
                    day=day,
                    chair=chair,
                    minutes=item.details.get("session_minutes"),
                )
                session.add(booking)
                session.flush()
                if day != item.due:
                    _audit_move(session, item, day, day > latest, actor)
                    item.details = {
                        **item.details,
                        "booked_day": day.isoformat(),
                        "outside_window": day > latest,
                    }
                    item.due = day
                    session.add(item)
                return booking
    raise InvalidInput("day_unit", f"no chair free for {item.key} within 3 weeks of {latest}")


def _audit_item(
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


def _audit_move(
    session: Session, item: PlanItem, day: dt.date, outside_window: bool, actor: str
) -> None:
    _audit_item(
        session,
        item,
        actor,
        "moved: day unit full",
        {"due": item.due.isoformat()},
        {"due": day.isoformat(), "outside_window": outside_window},
    )


def record_run(*, session: Session, item: PlanItem, run_id: str, actor: str) -> None:
    """The Prefect run that stands for the item: the first schedules it, a new one is audited."""
    if item.flow_run_id == run_id:
        return
    before = item.flow_run_id
    item.flow_run_id = run_id
    if item.status == ItemStatus.planned:
        set_item_status(session=session, item=item, status=ItemStatus.scheduled, actor=actor)
    else:
        _audit_item(
            session,
            item,
            actor,
            "run replaced" if before else "run recorded",
            {"flow_run_id": before},
            {"flow_run_id": run_id},
        )
    session.add(item)


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
    _audit_item(
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


@dataclass
class FollowUp:
    """What an outcome asks for next."""

    replan: bool = False
    escalate: bool = False
    review_reason: str | None = None
    low_trough: tuple[float, float] | None = None  # (IgG, target) in g/L
    notes: list[str] = field(default_factory=list)


def record_outcome(
    *, session: Session, item: PlanItem, outcome: dict[str, Any], actor: str, on: dt.date
) -> FollowUp:
    """Record what happened (given, missed, results) and compute what follows."""
    follow = FollowUp()
    if item.status in (ItemStatus.done, ItemStatus.missed):
        follow.notes.append(f"{item.key} already recorded as {item.status}")
        return follow
    if item.status in (ItemStatus.planned, ItemStatus.scheduled):
        set_item_status(session=session, item=item, status=ItemStatus.due, actor=actor)
    patient = session.get(Patient, item.patient_id)
    assert patient is not None and patient.id is not None and item.id is not None
    result = outcome.get("result", "given")
    if result == "missed":
        set_item_status(
            session=session, item=item, status=ItemStatus.missed, actor=actor, outcome=outcome
        )
        follow.escalate = True
        follow.notes.append(f"{item.key} missed: escalate to the coordinator")
        if item.kind in ("ig_session", "vaccine_dose", "ig_trough", "reassessment"):
            follow.replan = True  # the next occurrence is re-planned from what was really done
        return follow
    if item.kind == "ig_session":
        grams = float(outcome.get("dose_g", item.details["dose_g"]))
        session.add(
            IgDose(
                patient_id=patient.id,
                date=on,
                g_per_kg=round(grams / patient.weight_kg, 3),
                route=item.details["route"],
                grams=grams,
                lot=outcome.get("lot"),
                item_id=item.id,
            )
        )
    elif item.kind == "vaccine_dose":
        session.add(
            Vaccination(
                patient_id=patient.id,
                vaccine=item.details["vaccine"],
                date=on,
                lot=outcome.get("lot"),
                item_id=item.id,
            )
        )
    elif item.kind in ("ig_trough", "reassessment"):
        values = {k: v for k, v in (outcome.get("values") or {}).items() if v is not None}
        if values:
            session.add(Lab(patient_id=patient.id, date=on, values=values, item_id=item.id))
            follow.replan = True  # a new lab result re-plans
        igg = values.get("igg_g_l")
        target = item.details.get("target_g_l")
        if item.kind == "ig_trough" and igg is not None and target is not None and igg < target:
            follow.review_reason = f"trough IgG {igg:g} g/L below target {target:g}"
            follow.low_trough = (float(igg), float(target))
            follow.notes.append(follow.review_reason)
    elif item.kind == "plan_review":
        if outcome.get("result") == "discharge":
            # The review itself is done first: closing the pathway cancels every open item.
            set_item_status(
                session=session, item=item, status=ItemStatus.done, actor=actor, outcome=outcome
            )
            session.flush()
            close_pathway(
                session=session, patient=patient, actor=actor, why="discharged at plan review"
            )
            follow.notes.append("discharged")
            return follow
        follow.replan = True  # each review re-plans from the current record
    set_item_status(
        session=session, item=item, status=ItemStatus.done, actor=actor, outcome=outcome
    )
    return follow


def close_pathway(*, session: Session, patient: Patient, actor: str, why: str) -> None:
    for status in (PlanStatus.active, PlanStatus.proposed):
        plan = latest_plan(session=session, patient=patient, status=status)
        if plan is not None:
            cancel_open_items(session=session, plan=plan, actor=actor, why=why)
            _set_plan_status(session, patient, plan, PlanStatus.closed, actor, why)
    _set_state(session, patient, PatientState.discharged, actor)


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


def get_item(*, session: Session, ref: str, key: str, version: int | None = None) -> PlanItem:
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


def show_document(*, session: Session, patient: Patient) -> dict[str, Any] | None:
    """The child's current plan: the plan document plus version, status and item states."""
    proposed = latest_plan(session=session, patient=patient, status=PlanStatus.proposed)
    plan = (
        latest_plan(session=session, patient=patient, status=PlanStatus.active)
        or proposed
        or latest_plan(session=session, patient=patient)
    )
    if plan is None:
        return None
    document = dict(plan.document)
    states = {i.key: i for i in session.exec(select(PlanItem).where(PlanItem.plan_id == plan.id))}
    bookings = {
        b.item_id: b
        for b in session.exec(
            select(Booking).where(col(Booking.item_id).in_([i.id for i in states.values()]))
        )
    }
    items = []
    for doc in document["items"]:
        row = states.get(doc["key"])
        status = (
            row.status if row else ("proposed" if plan.status == PlanStatus.proposed else "planned")
        )
        extra: dict[str, Any] = {"status": status}
        if row is not None:
            extra["due"] = row.due.isoformat()
            if row.outcome:
                extra["outcome"] = row.outcome
            if row.id in bookings:
                extra["booking"] = {
                    "day": bookings[row.id].day.isoformat(),
                    "chair": bookings[row.id].chair,
                }
        items.append({**doc, **extra})
    document["items"] = items
    document["plan_version"] = plan.version
    document["plan_status"] = plan.status
    document["approved_by"] = plan.approved_by
    document["patient_state"] = patient.state
    if proposed is not None and proposed.id != plan.id:
        document["proposed_version"] = proposed.version  # a re-plan waits for approval
    return document
