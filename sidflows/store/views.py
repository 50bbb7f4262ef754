"""Read views of a child's plan: the document as shown, and the stream of an item."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from sidflows.store.models import Booking, CarePlan, Patient, PlanItem, PlanStatus


def stream_of(item: dict[str, Any]) -> str:
    """Items of one stream follow each other: only the next one has a Prefect run."""
    kind = str(item["kind"])
    if kind == "vaccine_dose":
        return f"vaccine_dose:{item['vaccine']}"
    if kind == "prophylaxis":
        return f"prophylaxis:{item['drug']}"
    return kind


def show_document(*, session: Session, patient: Patient) -> dict[str, Any] | None:
    """The child's current plan: the plan document plus version, status and item states.

    The current plan is the active version, else the proposed one, else the newest.
    """
    versions = session.exec(
        select(CarePlan)
        .where(CarePlan.patient_id == patient.id)
        .order_by(col(CarePlan.version).desc())
    ).all()
    if not versions:
        return None
    proposed = next((p for p in versions if p.status == PlanStatus.proposed), None)
    plan = next((p for p in versions if p.status == PlanStatus.active), None) or proposed
    plan = plan or versions[0]
    document = version_document(session=session, patient=patient, plan=plan)
    if proposed is not None and proposed.id != plan.id:
        document["proposed_version"] = proposed.version  # a re-plan waits for approval
    return document


def version_document(*, session: Session, patient: Patient, plan: CarePlan) -> dict[str, Any]:
    """Plan ``plan`` as ``show`` shows it: the plan document with version, status and the
    state of each item (due day, outcome, day-unit booking)."""
    document = dict(plan.document)
    rows = {i.key: i for i in session.exec(select(PlanItem).where(PlanItem.plan_id == plan.id))}
    bookings = {
        b.item_id: b
        for b in session.exec(
            select(Booking).where(col(Booking.item_id).in_([i.id for i in rows.values()]))
        )
    }
    items = []
    for doc in document["items"]:
        row = rows.get(doc["key"])
        status = (
            row.status if row else ("proposed" if plan.status == PlanStatus.proposed else "planned")
        )
        extra: dict[str, Any] = {"status": status}
        if row is not None:
            extra["due"] = row.due.isoformat()
            if row.outcome:
                extra["outcome"] = row.outcome
            if row.id in bookings:
                booking = bookings[row.id]
                extra["booking"] = {"day": booking.day.isoformat(), "chair": booking.chair}
        items.append({**doc, **extra})
    document["items"] = items
    document["plan_version"] = plan.version
    document["plan_status"] = plan.status
    document["approved_by"] = plan.approved_by
    document["patient_state"] = patient.state
    return document
