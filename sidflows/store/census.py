"""The unit's daily census: children by state and today's work, counts only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from sidflows.store.models import Booking, CarePlan, Patient, PlanItem, PlanStatus
from sidflows.store.sweep import OPEN


def unit_census(*, session: Session, on: dt.date) -> dict[str, Any]:
    by_state = dict(session.exec(select(Patient.state, func.count()).group_by(Patient.state)).all())
    active_items = (
        select(PlanItem.kind, func.count())
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .where(CarePlan.status == PlanStatus.active)
    )
    due_today = dict(
        session.exec(
            active_items.where(PlanItem.due == on, col(PlanItem.status).in_(OPEN)).group_by(
                PlanItem.kind
            )
        ).all()
    )
    overdue = session.exec(
        select(func.count())
        .select_from(PlanItem)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .where(
            CarePlan.status == PlanStatus.active,
            col(PlanItem.status).in_(OPEN),
            PlanItem.due < on,
        )
    ).one()
    chairs = session.exec(select(func.count()).select_from(Booking).where(Booking.day == on)).one()
    figures: dict[str, Any] = {
        f"children {state}": count for state, count in sorted(by_state.items())
    }
    figures.update({f"due today: {kind}": count for kind, count in sorted(due_today.items())})
    figures["overdue items"] = overdue
    figures["day-unit chairs booked today"] = chairs
    return figures
