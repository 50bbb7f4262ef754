"""Plan versions: proposal, the clinician's answer, the family's consent, activation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import col, select

from sidflows.errors import InvalidInput
from sidflows.notify.messages import Notice, activation_facts, lines, unfunded
from sidflows.planning import plan_changes, propose_plan
from sidflows.referral import ReferralDocument
from sidflows.rules.holds import OpenItem, Proposal, held_items
from sidflows.service.common import (
    Activated,
    Proposed,
    next_runs,
    queue,
    retrying,
)
from sidflows.staff import Role
from sidflows.store import intents, patients
from sidflows.store import items as plan_items
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
    utcnow,
)
from sidflows.unit import Unit


def propose(ref: str, *, unit: Unit, today: dt.date, reason: str, actor: str) -> Proposed:
    """Assess the child from the whole record and store plan vN+1 if it differs."""

    def step() -> Proposed:
        with session_scope() as session:
            patient = patients.get_patient(session=session, ref=ref, lock=True)
            if patient.state == PatientState.discharged:
                raise InvalidInput("ref", f"{ref} was discharged")
            referral = patients.referral_for(session=session, patient=patient, today=today)
            plan = propose_plan(
                referral,
                today=today,
                protocol=unit.protocol,
                calendar=unit.calendar,
                last_review=plan_items.last_plan_review(
                    session=session, patient=patient, today=today
                ),
            )
            before = plan_versions.latest_plan(session=session, patient=patient)
            row = plan_versions.propose(
                session=session, patient=patient, plan=plan, reason=reason, actor=actor
            )
            if before is None or row.version > before.version:
                queue(session, unit, *_proposal_notices(session, unit, patient, row, reason))
                if row.status == PlanStatus.proposed:
                    queue(session, unit, *_hold(session, unit, patient, row, referral, today))
            return Proposed(ref, row.version, row.status, reason)

    result: Proposed = retrying(step)
    return result


_DECISIONS = {"approve": "approval", "modify": "modification", "reject": "rejection"}


# ----------------------------------------------------------------------------- safety holds


def _hold(
    session: Any,
    unit: Unit,
    patient: Patient,
    row: CarePlan,
    referral: ReferralDocument,
    today: dt.date,
) -> list[Notice]:
    """Hold the active plan's items the new proposal makes unsafe, in its transaction (§4.8).

    The rule (sidflows.rules.holds) decides; the store holds (an item held for an
    earlier proposal that this one does not hold is released). The coordinators hear
    of it once per proposal.
    """
    active = plan_versions.latest_plan(session=session, patient=patient, status=PlanStatus.active)
    if active is None:
        return []
    open_items = [
        OpenItem.of(key=i.key, kind=i.kind, due=i.due, details=i.details)
        for i in session.exec(
            select(PlanItem)
            .where(PlanItem.plan_id == active.id, col(PlanItem.status).in_(OPEN_ITEM_STATUSES))
            .order_by(col(PlanItem.due), col(PlanItem.id))
        )
    ]
    proposal = Proposal.build(
        referral,
        version=row.version,
        items={i["key"]: dt.date.fromisoformat(i["due"]) for i in row.document["items"]},
        today=today,
        protocol=unit.protocol,
        calendar=unit.calendar,
    )
    holds = held_items(open_items, proposal, today=today, protocol=unit.protocol)
    plan_items.apply_holds(
        session=session,
        plan=active,
        holds={h.key: h.text for h in holds},
        version=row.version,
        actor="sidflows (safety hold)",
    )
    if not holds:
        return []
    language = unit.notifications.language
    return [
        Notice(
            "items_held",
            patient.ref,
            {
                "version": row.version,
                "active_version": active.version,
                "count": len(holds),
                "items": lines((f"- {h.key}: {h.text}" for h in holds), language),
            },
            item_key="held",
            plan_version=row.version,
        )
    ]


def held(ref: str) -> list[dict[str, Any]]:
    """The child's items held while a re-plan waits: key, kind, due, status, reason, version."""
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        active = plan_versions.latest_plan(
            session=session, patient=patient, status=PlanStatus.active
        )
        if active is None:
            return []
        return [
            {
                "key": i.key,
                "kind": i.kind,
                "due": i.due.isoformat(),
                "status": str(i.status),
                "plan_version": active.version,
                "held_for": i.held_for,
                "reason": i.hold_reason,
            }
            for i in plan_items.held_items(session=session, plan=active)
        ]


def _cancelled_while_held(session: Any, patient: Patient, plan: CarePlan) -> list[str]:
    """``vN:key`` of the items of the version ``plan`` replaced that its approval cancelled
    while they were held: their waiting runs go with the rest of that version's."""
    previous = session.exec(
        select(CarePlan)
        .where(
            CarePlan.patient_id == patient.id,
            CarePlan.version < plan.version,
            CarePlan.status == PlanStatus.superseded,
            col(CarePlan.activated_at).is_not(None),
        )
        .order_by(col(CarePlan.version).desc())
    ).first()
    if previous is None:
        return []
    return [
        f"v{previous.version}:{i.key}"
        for i in session.exec(
            select(PlanItem).where(
                PlanItem.plan_id == previous.id,
                PlanItem.status == ItemStatus.cancelled,
                col(PlanItem.hold_reason).is_not(None),
            )
        )
    ]


def _proven(ref: str, *, unit: Unit, login: str, decision: str) -> str:
    """The roster name of the clinician whose login single sign-on proved; else the
    refusal, audited under the login, naming the field ``login``."""
    member = unit.staff.by_login(login) if login.strip() else None
    if member is not None and member.has("clinician"):
        return member.name
    reason = (
        f"{login.strip()!r} is no login in the staff roster ({unit.staff.origin})"
        if member is None
        else f"{login.strip()!r} ({member.name}) is not a clinician in the staff roster: "
        f"listed as {', '.join(member.roles)}"
    )
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        assert patient.id is not None
        audit(
            session=session,
            actor=f"login {login.strip()[:190]}" if login.strip() else "(no login)",
            entity="patient",
            entity_id=patient.id,
            ref=ref,
            action=f"{_DECISIONS[decision]} refused",
            after={"reason": reason, "identity": "proven"},
        )
    raise InvalidInput("login", reason)


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
    identity: dict[str, Any] | None = None,
) -> plan_versions.ApprovalResult:
    """A clinician's answer to the proposed plan; anyone else is refused, and that is audited.

    ``identity``: None for a typed name (looked up by name or login); a proven one
    (single sign-on, flows/approvals_page.py) carries the login, and only the roster
    member with that login may answer under it.
    """
    if identity is not None and identity.get("identity") == "proven":
        # the login the proxy proved names the clinician; a name given beside it is ignored
        by = _proven(ref, unit=unit, login=str(identity.get("login") or ""), decision=decision)
    by = _permitted(
        ref, unit=unit, by=by, role="clinician", refused=f"{_DECISIONS[decision]} refused"
    )
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        answered = plan_versions.decide(
            session=session,
            patient=patient,
            decision=decision,
            by=by,
            note=note,
            remove_items=remove_items,
            identity=identity,
        )
        activation_intent(session=session, patient=patient)
        return answered


def consent(ref: str, *, unit: Unit, by: str) -> bool:
    """The family's consent to the cost, recorded by anyone on the staff roster."""
    by = _permitted(ref, unit=unit, by=by, role=None, refused="consent refused")
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        recorded = patients.record_consent(session=session, patient=patient, by=by)
        activation_intent(session=session, patient=patient)
        return recorded


def activation_intent(*, session: Any, patient: Patient) -> str | None:
    """An approved plan that waits for nothing more (the family's consent given where it
    is needed) must become active: the intent is written with the answer that makes it
    ready, in its transaction, so the activation happens once, wherever and whenever
    Prefect takes it (the command, serve's pass, the sweep). Returns its key."""
    proposed = plan_versions.latest_plan(
        session=session, patient=patient, status=PlanStatus.proposed
    )
    if proposed is None or proposed.approved_by is None:
        return None
    if plan_versions.needs_consent(proposed.document) and not patients.has_consent(
        session=session, patient=patient
    ):
        return None
    key = f"activate:{patient.ref}:v{proposed.version}"
    intents.add(
        session=session, kind="activate", ref=patient.ref, key=key, parameters={"ref": patient.ref}
    )
    return key


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
            if result.status in ("activated", "already_active"):
                # Whichever run activated the plan fulfils the child's activate intents.
                intents.settle(session=session, ref=ref, kind="activate", now=utcnow())
            if result.status == "awaiting_consent" and result.plan is not None:
                queue(
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
                queue(
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
                out.cancelled += [
                    k
                    for k in _cancelled_while_held(session, patient, result.plan)
                    if k not in out.cancelled
                ]
                out.runs = next_runs(session=session, plan=result.plan, ref=ref)
            return out

    result: Activated = retrying(step)
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
