"""Read-only questions the demo and the benchmarks ask the store.

Each takes the caller's session and returns plain values (or detached rows):
nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    CarePlan,
    Identity,
    Notification,
    NotificationStatus,
    Patient,
    PatientState,
    PlanItem,
    PlanStatus,
    Treatment,
)


def refs_awaiting_approval(*, session: Session) -> list[str]:
    """The refs of the children whose plan has a proposed version."""
    return list(
        session.exec(
            select(Patient.ref)
            .join(CarePlan, col(CarePlan.patient_id) == Patient.id)
            .where(CarePlan.status == PlanStatus.proposed)
        )
    )


def ongoing_treatments(*, session: Session) -> list[tuple[str, Treatment]]:
    """(ref, treatment) of every treatment without an end, of children on an active plan."""
    return [
        (ref, treatment)
        for ref, treatment in session.exec(
            select(Patient.ref, Treatment)
            .join(Treatment, col(Treatment.patient_id) == Patient.id)
            .where(col(Treatment.end).is_(None), Patient.state == PatientState.active)
            .order_by(col(Patient.ref))
        )
    ]


def items_with_runs_due(*, session: Session, on: dt.date) -> list[PlanItem]:
    """Open items of active plans due by ``on`` that have a Prefect run, oldest first.

    A held item (waiting for a clinician's answer) is not among them: nobody acts on it.
    """
    return list(
        session.exec(
            select(PlanItem)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .where(
                CarePlan.status == PlanStatus.active,
                col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
                PlanItem.due <= on,
                col(PlanItem.flow_run_id).is_not(None),
                col(PlanItem.hold_reason).is_(None),
            )
            .order_by(col(PlanItem.due), col(PlanItem.id))
        )
    )


def patient_states(*, session: Session) -> dict[str, int]:
    """How many children are in each state."""
    return dict(Counter(str(state) for state in session.exec(select(Patient.state))))


@dataclass(frozen=True)
class PlanTally:
    versions: int  # plan versions of every child
    replans: int  # versions proposed for another reason than the referral
    deferred: int  # live-vaccine deferrals in the active and closed versions


def plan_tally(*, session: Session) -> PlanTally:
    plans = session.exec(select(CarePlan.status, CarePlan.reason, CarePlan.document)).all()
    return PlanTally(
        versions=len(plans),
        replans=sum(1 for _, reason, _ in plans if reason != "referral"),
        deferred=sum(
            len(document["deferred"])
            for status, _, document in plans
            if status in (PlanStatus.active, PlanStatus.closed)
        ),
    )


def identities(*, session: Session) -> list[tuple[str | None, str | None]]:
    """(name, record number) of every child: what no ordinary route may ever carry."""
    return [(name, mrn) for name, mrn in session.exec(select(Identity.name, Identity.mrn))]


def outbox_keys(*, session: Session) -> list[tuple[str, str, str, str]]:
    """(event, route, status, key) of every message in the outbox."""
    return [
        (event, route, status, key)
        for event, route, status, key in session.exec(
            select(Notification.event, Notification.route, Notification.status, Notification.key)
        )
    ]


def unsent_errors(*, session: Session) -> dict[str, int]:
    """The last errors of the messages not sent, and how many messages have each."""
    return {
        str(error): int(n)
        for error, n in session.exec(
            select(Notification.last_error, func.count())
            .where(col(Notification.status) != NotificationStatus.sent)
            .group_by(col(Notification.last_error))
        )
    }
