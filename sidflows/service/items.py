"""An item on its day: due, then its outcome and what follows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import col, select

from sidflows.notify.messages import Notice, item_facts
from sidflows.plan_document import plan_document
from sidflows.planning import plan_changes, propose_plan
from sidflows.rules.outcomes import OutcomeContext, decide_outcome, wants_plan_comparison
from sidflows.service.common import (
    ItemStep,
    RunSpec,
    queue,
)
from sidflows.store import items, patients
from sidflows.store.db import session_scope
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    Booking,
    CarePlan,
    ItemStatus,
    Patient,
    PlanItem,
    PlanStatus,
)
from sidflows.unit import Unit


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
        queue(session, unit, *_outcome_notices(session, unit, item, plan, follow, on))
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
