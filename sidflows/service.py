"""The pathway's steps as store transactions: what the flows (and the CLI) call.

Each function is one transaction: it either happens whole or not at all, so a
crash between two steps leaves nothing half-done that the next sweep cannot
finish. Results carry refs and keys only, never identity.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import col, select

from sidflows.errors import InvalidInput
from sidflows.notify import outbox
from sidflows.notify.messages import Notice, activation_facts, item_facts, lines, unfunded
from sidflows.plan_document import plan_document
from sidflows.planning import plan_changes, propose_plan
from sidflows.referral import (
    load_json_document,
    parse_lab_report,
    parse_referral,
    parse_treatment_change,
)
from sidflows.rules.outcomes import OutcomeContext, decide_outcome, wants_plan_comparison
from sidflows.staff import Role
from sidflows.store import intents, items, patients
from sidflows.store import versions as plan_versions
from sidflows.store.audit import audit
from sidflows.store.db import session_scope
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    Booking,
    CarePlan,
    ItemStatus,
    Patient,
    PatientState,
    PlanItem,
    PlanStatus,
)
from sidflows.unit import Unit

RETRIES_ON_CONFLICT = 5


@dataclass(frozen=True)
class Referred:
    ref: str
    created: bool
    duplicate: bool
    sha256: str = ""  # the referral's digest (identity aside): the same document, the same digest
    state: str = PatientState.referred  # the child's state after intake


@dataclass(frozen=True)
class Proposed:
    ref: str
    version: int
    status: str
    reason: str


@dataclass(frozen=True)
class RunSpec:
    """A Prefect run that should exist for the next item of a stream."""

    ref: str
    plan_version: int
    item_key: str
    kind: str
    due: dt.date


@dataclass
class Activated:
    ref: str
    status: str
    version: int | None
    cancelled: list[str] = field(default_factory=list)
    runs: list[RunSpec] = field(default_factory=list)
    bookings: int = 0


def _queue(session: Any, unit: Unit, *notices: Notice) -> int:
    """Put the notices' messages in the outbox, in the caller's transaction."""
    return outbox.enqueue(session, notices, config=unit.notifications, ui_url=unit.ui_url)


def refer(text: str | bytes, *, unit: Unit, actor: str, today: dt.date | None = None) -> Referred:
    """Validate and store a referral (nothing stored when it is refused).

    In the same transaction: the intent to start the child's pathway (unless the
    same referral's pathway has already run), carried out by whoever reaches
    Prefect first, once.
    """
    referral = parse_referral(text)
    document = load_json_document(text)
    digest = patients.document_digest(document)
    with session_scope() as session:
        result = patients.intake(session=session, referral=referral, document=document, actor=actor)
        ref = result.patient.ref
        if not (result.duplicate and result.patient.state != PatientState.referred):
            intents.add(
                session=session,
                kind="pathway",
                ref=ref,
                key=pathway_key(ref, digest),
                parameters={"ref": ref, "today": today.isoformat() if today else None},
            )
        if not result.duplicate:
            received = referral.received.isoformat()
            _queue(
                session,
                unit,
                Notice(
                    "referral_received",
                    result.patient.ref,
                    {"service": referral.referrer.service, "received": received},
                    item_key=f"referral:{received}",
                    service=referral.referrer.service,
                ),
            )
        return Referred(ref, result.created, result.duplicate, digest, result.patient.state)


def pathway_key(ref: str, digest: str) -> str:
    """The pathway run's idempotency key: the same referral sent again finds its run."""
    return f"pathway:{ref}:{digest}"


def _replan_intent(session: Any, ref: str, reason: str, document: Any) -> None:
    """A re-plan to run once for this change (the same change twice: one re-plan)."""
    key = f"replan:{ref}:{patients.document_digest({'reason': reason, 'change': document})}"
    intents.add(
        session=session,
        kind="replan",
        ref=ref,
        key=key[:300],
        parameters={"ref": ref, "reason": reason},
    )


def _retrying(step: Any) -> Any:
    """Run a transaction again when a concurrent one won a unique index (re-plans)."""
    for attempt in range(RETRIES_ON_CONFLICT):
        try:
            return step()
        except (IntegrityError, OperationalError):
            if attempt == RETRIES_ON_CONFLICT - 1:
                raise
    return None  # pragma: no cover


def propose(ref: str, *, unit: Unit, today: dt.date, reason: str, actor: str) -> Proposed:
    """Assess the child from the whole record and store plan vN+1 if it differs."""

    def step() -> Proposed:
        with session_scope() as session:
            patient = patients.get_patient(session=session, ref=ref, lock=True)
            if patient.state == PatientState.discharged:
                raise InvalidInput("ref", f"{ref} was discharged")
            referral = patients.referral_for(session=session, patient=patient, today=today)
            plan = propose_plan(
                referral, today=today, protocol=unit.protocol, calendar=unit.calendar
            )
            before = plan_versions.latest_plan(session=session, patient=patient)
            row = plan_versions.propose(
                session=session, patient=patient, plan=plan, reason=reason, actor=actor
            )
            if before is None or row.version > before.version:
                _queue(session, unit, *_proposal_notices(session, unit, patient, row, reason))
            return Proposed(ref, row.version, row.status, reason)

    result: Proposed = _retrying(step)
    return result


_DECISIONS = {"approve": "approval", "modify": "modification", "reject": "rejection"}


def _permitted(ref: str, *, unit: Unit, by: str, role: Role | None, refused: str) -> str:
    """The roster's name for ``by`` when they may act; else the refusal is audited and raised."""
    try:
        return unit.staff.permit(by, role=role).name
    except InvalidInput as refusal:
        with session_scope() as session:
            patient = patients.get_patient(session=session, ref=ref)
            assert patient.id is not None
            audit(
                session=session,
                actor=by.strip()[:200] or "(no name)",
                entity="patient",
                entity_id=patient.id,
                ref=ref,
                action=refused,
                after={"reason": refusal.message},
            )
        raise


def _proposal_notices(
    session: Any, unit: Unit, patient: Patient, row: CarePlan, reason: str
) -> list[Notice]:
    """A new version waits for a clinician; a re-plan also says what changes."""
    notices = [
        Notice(
            "plan_awaiting_approval",
            patient.ref,
            {"version": row.version, "reason": reason, "items": len(row.document["items"])},
            plan_version=row.version,
        )
    ]
    active = plan_versions.latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if active is not None and reason != "referral":
        language = unit.notifications.language
        changed = plan_changes(active.document, row.document)
        notices.append(
            Notice(
                "plan_replanned",
                patient.ref,
                {
                    "version": row.version,
                    "reason": reason,
                    "changes": lines((f"- {c}" for c in changed), language),
                },
                plan_version=row.version,
                service=patient.referrer_service,
            )
        )
    return notices


def decide(
    ref: str,
    *,
    unit: Unit,
    decision: plan_versions.Decision,
    by: str,
    note: str | None = None,
    remove_items: tuple[str, ...] = (),
) -> plan_versions.ApprovalResult:
    """A clinician's answer to the proposed plan; anyone else is refused, and that is audited."""
    by = _permitted(
        ref, unit=unit, by=by, role="clinician", refused=f"{_DECISIONS[decision]} refused"
    )
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        return plan_versions.decide(
            session=session,
            patient=patient,
            decision=decision,
            by=by,
            note=note,
            remove_items=remove_items,
        )


def consent(ref: str, *, unit: Unit, by: str) -> bool:
    """The family's consent to the cost, recorded by anyone on the staff roster."""
    by = _permitted(ref, unit=unit, by=by, role=None, refused="consent refused")
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        return patients.record_consent(session=session, patient=patient, by=by)


def activate(ref: str, *, unit: Unit, actor: str) -> Activated:
    """Make the approved plan active: items, day-unit bookings, the runs to schedule."""

    def step() -> Activated:
        with session_scope() as session:
            patient = patients.get_patient(session=session, ref=ref, lock=True)
            result = plan_versions.activate(
                session=session, patient=patient, calendar=unit.calendar, actor=actor
            )
            out = Activated(
                ref,
                result.status,
                result.plan.version if result.plan else None,
                bookings=len(result.bookings),
            )
            if result.status == "awaiting_consent" and result.plan is not None:
                _queue(
                    session,
                    unit,
                    Notice(
                        "plan_awaiting_consent",
                        ref,
                        {
                            "version": result.plan.version,
                            "unfunded": unfunded(result.plan.document, unit.notifications.language),
                        },
                        plan_version=result.plan.version,
                    ),
                )
            if result.status == "activated" and result.plan is not None:
                _queue(
                    session,
                    unit,
                    _activation_notice(unit, session, patient, result.plan, result.bookings),
                )
                cancelled = session.exec(
                    select(PlanItem).where(col(PlanItem.id).in_(result.cancelled_item_ids))
                ).all()
                versions = {
                    p.id: p.version
                    for p in session.exec(select(CarePlan).where(CarePlan.patient_id == patient.id))
                }
                out.cancelled = [f"v{versions[i.plan_id]}:{i.key}" for i in cancelled]
                out.runs = next_runs(session=session, plan=result.plan, ref=ref)
            return out

    result: Activated = _retrying(step)
    return result


def unfinished_activations() -> list[str]:
    """Approved plans that wait for nothing but were never activated (a crash mid-way)."""
    with session_scope() as session:
        return plan_versions.unfinished_activations(session=session)


def _activation_notice(
    unit: Unit, session: Any, patient: Patient, plan: CarePlan, bookings: list[Booking]
) -> Notice:
    """What the day unit, pharmacy, home care, coordinators and referrer hear of a new plan."""
    keys = {i.id: i.key for i in session.exec(select(PlanItem).where(PlanItem.plan_id == plan.id))}
    chairs = {keys[b.item_id]: (b.day.isoformat(), b.chair) for b in bookings if b.item_id in keys}
    facts = activation_facts(
        {**plan.document, "plan_version": plan.version}, chairs, unit.notifications.language
    )
    return Notice(
        "plan_activated",
        patient.ref,
        {**facts, "when": plan.as_of.isoformat()},
        plan_version=plan.version,
        service=patient.referrer_service,
    )


def next_runs(*, session: Any, plan: CarePlan, ref: str) -> list[RunSpec]:
    return [
        RunSpec(ref, plan.version, i.key, i.kind, i.due)
        for i in items.next_in_streams(session=session, plan=plan)
    ]


def record_treatment_change(ref: str, text: str | bytes, *, actor: str) -> list[dict[str, Any]]:
    """Record the change and, in the same transaction, the intent to re-plan."""
    change = parse_treatment_change(text)
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        changes = patients.record_treatment_change(
            session=session, patient=patient, change=change, actor=actor
        )
        _replan_intent(session, ref, "treatment change", load_json_document(text))
        return changes


def record_lab_result(ref: str, text: str | bytes, *, actor: str) -> int:
    """Store new results (``{"labs": [...]}``, shaped as a referral's labs); how many were new."""
    report = parse_lab_report(text)
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        if patient.state == PatientState.discharged:
            raise InvalidInput("ref", f"{ref} was discharged: refer the child again first")
        count = patients.record_lab_report(
            session=session, patient=patient, report=report, actor=actor
        )
        _replan_intent(session, ref, "new lab result", load_json_document(text))
        return count


@dataclass
class ItemStep:
    ref: str
    item_key: str
    kind: str
    status: str
    follow: items.FollowUp | None = None
    next_run: RunSpec | None = None


def item_due(ref: str, *, plan_version: int, item_key: str, actor: str) -> ItemStep:
    """The item's day has come: mark it due (unless it was cancelled or superseded)."""
    with session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=item_key, version=plan_version)
        if item.status in (ItemStatus.planned, ItemStatus.scheduled):
            items.set_item_status(session=session, item=item, status=ItemStatus.due, actor=actor)
        return ItemStep(ref, item_key, item.kind, item.status)


def item_outcome(
    ref: str,
    *,
    plan_version: int,
    item_key: str,
    outcome: dict[str, Any],
    actor: str,
    on: dt.date,
    unit: Unit,
) -> ItemStep:
    """Record the outcome and say what follows (next run, review, escalation, re-plan)."""
    with session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=item_key, version=plan_version)
        plan = session.get(CarePlan, item.plan_id)
        assert plan is not None
        if plan.status != PlanStatus.active:
            return ItemStep(ref, item_key, item.kind, "superseded")
        follow = items.record_outcome(
            session=session, item=item, outcome=outcome, actor=actor, on=on, protocol=unit.protocol
        )
        session.flush()
        _queue(session, unit, *_outcome_notices(session, unit, item, plan, follow, on))
        if wants_plan_comparison(
            item.kind, replan=follow.replan, review_reason=follow.review_reason
        ):
            patient = patients.get_patient(session=session, ref=ref)
            referral = patients.referral_for(session=session, patient=patient, today=on)
            fresh = plan_document(
                propose_plan(referral, today=on, protocol=unit.protocol, calendar=unit.calendar)
            )
            compared = decide_outcome(
                OutcomeContext.build(
                    kind=item.kind,
                    key=item.key,
                    details=item.details,
                    outcome=outcome,
                    protocol=unit.protocol,
                    today=on,
                    plan_changes=tuple(plan_changes(plan.document, fresh)),
                )
            )
            follow.replan, follow.review_reason = compared.replan, compared.review_reason
        following = session.exec(
            select(PlanItem)
            .where(
                PlanItem.plan_id == plan.id,
                PlanItem.stream == item.stream,
                col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
            )
            .order_by(col(PlanItem.due), col(PlanItem.id))
        ).first()
        next_run = (
            RunSpec(ref, plan.version, following.key, following.kind, following.due)
            if following is not None
            else None
        )
        return ItemStep(ref, item_key, item.kind, item.status, follow, next_run)


def _outcome_notices(
    session: Any, unit: Unit, item: PlanItem, plan: CarePlan, follow: items.FollowUp, on: dt.date
) -> list[Notice]:
    patient = session.get(Patient, item.patient_id)
    assert patient is not None
    ref = patient.ref
    found = []
    if follow.escalate and item.kind == "ig_session":
        chair = session.exec(select(Booking.chair).where(Booking.item_id == item.id)).first()
        facts = item_facts(
            kind=item.kind,
            due=item.due.isoformat(),
            details=item.details,
            chair=chair,
            language=unit.notifications.language,
        )
        found.append(
            Notice(
                "ig_session_missed",
                ref,
                {**facts, "when": on.isoformat()},
                item_id=item.id,
                item_key=item.key,
                plan_version=plan.version,
            )
        )
    if follow.low_trough is not None:
        igg, target = follow.low_trough
        found.append(
            Notice(
                "trough_below_target",
                ref,
                {"igg": f"{igg:g}", "target": f"{target:g}", "when": on.isoformat()},
                item_id=item.id,
                item_key=item.key,
                plan_version=plan.version,
            )
        )
    return found


def notify_day(day: dt.date, *, unit: Unit, actor: str) -> dict[str, int]:
    """The daily part of notifications: reminders, escalations of overdue items, digests."""
    config, ui, calendar = unit.notifications, unit.ui_url, unit.calendar
    with session_scope() as session:
        reminders = outbox.queue_reminders(
            session=session, on=day, calendar=calendar, config=config, ui_url=ui
        )
        escalations = outbox.queue_escalations(
            session=session, on=day, calendar=calendar, config=config, ui_url=ui, actor=actor
        )
        digests = outbox.compose_digests(session=session, on=day, config=config, ui_url=ui)
    return {"reminders": reminders, "escalations": escalations, "digests": digests}


def record_run_ids(run_ids: dict[tuple[str, int, str], str]) -> None:
    """Remember which Prefect run stands for which item (ref, version, key)."""
    if not run_ids:
        return
    with session_scope() as session:
        for (ref, version, key), run_id in run_ids.items():
            item = items.get_item(session=session, ref=ref, key=key, version=version)
            items.record_run(session=session, item=item, run_id=run_id, actor="scheduler")


def active_refs(*, limit: int | None = None) -> list[str]:
    with session_scope() as session:
        query = (
            select(Patient.ref)
            .where(Patient.state != PatientState.discharged)
            .order_by(Patient.ref)
        )
        return list(session.exec(query.limit(limit) if limit else query))


def open_item_count() -> int:
    with session_scope() as session:
        return len(
            session.exec(
                select(PlanItem.id).where(col(PlanItem.status).in_(OPEN_ITEM_STATUSES))
            ).all()
        )
