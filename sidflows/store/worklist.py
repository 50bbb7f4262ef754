"""The unit's worklist in the store: the day's work and what is stuck, for the whole unit.

Every read here is one set-based query over the whole unit (never one per child),
starting from an index: open items by the (status, due) index, proposed plans by
the one-proposed-plan index, the outbox by its (status, next attempt) index, the
intents by theirs. Each list comes with its full count and at most ``limit``
rows, so a unit of 100,000 children brings only what is printed into Python.

Rows carry the pseudonymous ref only: no query here reads the identity table,
the birth date or any other column that says who the child is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, false, func, or_, true
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    Booking,
    CarePlan,
    CostConsent,
    IgDose,
    Intent,
    IntentStatus,
    ItemStatus,
    Notification,
    NotificationStatus,
    Patient,
    PlanItem,
    PlanStatus,
)

# The worklist's sections of a day: who does the item.
SECTIONS = ("day_unit", "home_care", "labs", "vaccines", "other")
# Items of the day in any of these states are the day's work (done and missed: already recorded).
DAY_STATUSES = (*OPEN_ITEM_STATUSES, ItemStatus.done, ItemStatus.missed)
STUCK_MESSAGES = (NotificationStatus.failed, NotificationStatus.unrouted)
CHUNK = 500  # children per query where a list of them is read in chunks


def section_of() -> ColumnElement[str]:
    """The section of an item, computed by the database from its kind and route."""
    route = col(PlanItem.details)["route"].as_string()
    return case(
        (and_(col(PlanItem.kind) == "ig_session", route == "iv"), "day_unit"),
        (col(PlanItem.kind) == "ig_session", "home_care"),
        (col(PlanItem.kind).in_(("ig_trough", "reassessment")), "labs"),
        (col(PlanItem.kind) == "vaccine_dose", "vaccines"),
        else_="other",
    )


@dataclass(frozen=True)
class WorkItem:
    """An item of an active plan, with where it stands (no identity: the ref only)."""

    section: str
    ref: str
    plan_version: int
    key: str
    kind: str
    status: str
    due: dt.date
    details: dict[str, Any]
    escalations: int
    chair: int | None
    minutes: int | None
    last_ig_dose: dt.date | None  # the child's newest IG dose before the day (first infusion)
    hold_reason: str | None = None  # held by a safety hold while a re-plan waits
    held_for: int | None = None  # the proposed version whose answer ends the hold


@dataclass(frozen=True)
class Listed:
    """At most ``limit`` rows of a list, and how many the whole unit holds."""

    count: int
    rows: list[Any]


def _items(
    on: dt.date | None,
    statuses: Sequence[str],
    *,
    before: bool = False,
    children: Sequence[int] | None = None,
) -> Any:
    """Items of active plans due on ``on`` (before it; any day: None), with section and chair.

    ``children``: only the held items of these children (by the item's patient_id index).
    """
    query = sa_select(
        col(PlanItem.id).label("id"),
        col(PlanItem.patient_id).label("patient_id"),
        col(Patient.ref).label("ref"),
        col(CarePlan.version).label("version"),
        col(PlanItem.key).label("key"),
        col(PlanItem.kind).label("kind"),
        col(PlanItem.status).label("status"),
        col(PlanItem.due).label("due"),
        col(PlanItem.details).label("details"),
        col(PlanItem.escalations).label("escalations"),
        col(PlanItem.hold_reason).label("hold_reason"),
        col(PlanItem.held_for).label("held_for"),
        col(Booking.chair).label("chair"),
        col(Booking.minutes).label("minutes"),
        section_of().label("section"),
    )
    if children is not None:
        query = query.where(
            col(PlanItem.patient_id).in_(children), col(PlanItem.hold_reason).is_not(None)
        )
    return (
        query.join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .outerjoin(Booking, col(Booking.item_id) == PlanItem.id)
        .where(
            # Held items: their status is read after (the (status, due) index would be
            # chosen over the children's, and read every open item of the unit).
            col(PlanItem.status).in_(statuses) if children is None else true(),
            col(CarePlan.status) == PlanStatus.active,
            *(
                ()
                if on is None
                else (col(PlanItem.due) < on if before else col(PlanItem.due) == on,)
            ),
        )
        .subquery()
    )


def _counts(session: Session, base: Any, sections: Sequence[str]) -> dict[str, int]:
    return {
        section: int(n)
        for section, n in session.execute(
            sa_select(base.c.section, func.count())
            .where(base.c.section.in_(sections))
            .group_by(base.c.section)
        )
    }


def _work_items(session: Session, query: Any) -> list[WorkItem]:
    return [
        WorkItem(
            section=row.section,
            ref=row.ref,
            plan_version=row.version,
            key=row.key,
            kind=row.kind,
            status=row.status,
            due=row.due,
            details=dict(row.details or {}),
            escalations=row.escalations,
            chair=row.chair,
            minutes=row.minutes,
            last_ig_dose=getattr(row, "last_ig_dose", None),
            hold_reason=row.hold_reason,
            held_for=row.held_for,
        )
        for row in session.execute(query)
    ]


def _last_ig_dose(patient_id: Any, on: dt.date) -> Any:
    """The child's newest immunoglobulin dose before ``on`` (by the patient_id index)."""
    return (
        sa_select(func.max(IgDose.date))
        .where(col(IgDose.patient_id) == patient_id, col(IgDose.date) < on)
        .scalar_subquery()
        .label("last_ig_dose")
    )


def day_work(
    *, session: Session, on: dt.date, sections: Sequence[str], limit: int
) -> dict[str, Listed]:
    """The day's items of each section: two queries for the whole unit.

    Within a section: the day unit by chair, the others by ref and key; at most
    ``limit`` rows per section (a window over the day's items), each with its count.
    """
    base = _items(on, DAY_STATUSES, before=False)
    ranked = sa_select(
        base,
        func.row_number()
        .over(
            partition_by=base.c.section,
            order_by=(func.coalesce(base.c.chair, 0), base.c.ref, base.c.key),
        )
        .label("n"),
    ).where(base.c.section.in_(sections))
    inner = ranked.subquery()
    query = (
        sa_select(inner, _last_ig_dose(inner.c.patient_id, on))
        .where(inner.c.n <= limit)
        .order_by(inner.c.section, inner.c.n)
    )
    found = _work_items(session, query)
    counts = _counts(session, base, sections)
    return {
        section: Listed(counts.get(section, 0), [w for w in found if w.section == section])
        for section in sections
    }


def overdue_work(*, session: Session, on: dt.date, sections: Sequence[str], limit: int) -> Listed:
    """Open items of active plans whose day is before ``on``: the latest first (oldest due)."""
    base = _items(on, OPEN_ITEM_STATUSES, before=True)
    query = (
        sa_select(base, _last_ig_dose(base.c.patient_id, on))
        .where(base.c.section.in_(sections))
        .order_by(base.c.due, base.c.id)
        .limit(limit)
    )
    found = _work_items(session, query)
    return Listed(sum(_counts(session, base, sections).values()), found)


# ----------------------------------------------------------------------------- plans waiting


@dataclass(frozen=True)
class WaitingPlan:
    """A proposed plan version and what it waits for (ref only)."""

    ref: str
    version: int
    reason: str
    replan: bool  # an active plan stands beside it
    proposed_at: dt.datetime | None
    approved_by: str | None
    approved_at: dt.datetime | None


def _proposed(*, approved: bool) -> Any:
    has_active = exists().where(
        col(CarePlan.patient_id) == Patient.id, col(CarePlan.status) == PlanStatus.active
    )
    proposed = CarePlan.__table__.alias("proposed")  # type: ignore[attr-defined]
    consent = (
        sa_select(col(CostConsent.accepted))
        .where(col(CostConsent.patient_id) == proposed.c.patient_id)
        .order_by(col(CostConsent.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    required = proposed.c.document[("funding", "consent_required")].as_boolean()
    return (
        sa_select(
            col(Patient.ref).label("ref"),
            proposed.c.version,
            proposed.c.reason,
            has_active.label("replan"),
            proposed.c.created_at,
            proposed.c.approved_by,
            proposed.c.approved_at,
            # Waits for the family: its items need consent and none is on record.
            and_(
                func.coalesce(required, false()), or_(consent.is_(None), consent == false())
            ).label("wants_consent"),
        )
        .join(Patient, col(Patient.id) == proposed.c.patient_id)
        .where(
            proposed.c.status == PlanStatus.proposed,
            proposed.c.approved_by.is_not(None) if approved else proposed.c.approved_by.is_(None),
            col(Patient.state) != "discharged",
        )
        .subquery()
    )


def _listed(session: Session, base: Any, where: Any, order: Any, limit: int) -> Listed:
    count = session.execute(sa_select(func.count()).select_from(base).where(where)).scalar_one()
    rows = session.execute(sa_select(base).where(where).order_by(*order).limit(limit)).all()
    return Listed(
        int(count),
        [
            WaitingPlan(
                ref=r.ref,
                version=r.version,
                reason=r.reason,
                replan=bool(r.replan),
                proposed_at=r.created_at,
                approved_by=r.approved_by,
                approved_at=r.approved_at,
            )
            for r in rows
        ],
    )


def awaiting_approval(*, session: Session, limit: int) -> Listed:
    """Proposed plans no clinician has answered yet: the longest waiting first."""
    base = _proposed(approved=False)
    return _listed(session, base, base.c.ref.is_not(None), (base.c.created_at, base.c.ref), limit)


def awaiting_consent(*, session: Session, limit: int) -> Listed:
    """Approved plans whose unfunded items wait for the family's consent to the cost.

    "Needs consent" is the plan document's ``funding.consent_required``.
    """
    base = _proposed(approved=True)
    order = (base.c.approved_at, base.c.ref)
    return _listed(session, base, base.c.wants_consent.is_(True), order, limit)


def unfinished_activations(*, session: Session, limit: int) -> Listed:
    """Approved plans that wait for nothing yet are not active (the sweep finishes them)."""
    base = _proposed(approved=True)
    order = (base.c.approved_at, base.c.ref)
    return _listed(session, base, base.c.wants_consent.is_(False), order, limit)


# ----------------------------------------------------------------------------- Prefect, outbox


def pending_intents(*, session: Session, limit: int) -> Listed:
    """Intents not yet carried out in Prefect (the store's side of it), and those whose run
    died on every attempt (failed: for a person to look at): the oldest first."""
    where = col(Intent.status).in_([IntentStatus.pending, IntentStatus.failed])
    count = session.execute(sa_select(func.count()).select_from(Intent).where(where)).scalar_one()
    rows = session.execute(
        sa_select(Intent).where(where).order_by(col(Intent.created_at), col(Intent.id)).limit(limit)
    ).scalars()
    return Listed(int(count), list(rows))


@dataclass(frozen=True)
class MessageGroup:
    """Stuck messages of one status, route and event: how many, since when."""

    status: str
    route: str
    event: str
    count: int
    oldest: dt.datetime | None


@dataclass(frozen=True)
class StuckMessages:
    count: int
    groups: list[MessageGroup]
    rows: list[Notification]


def stuck_messages(*, session: Session, routes: Sequence[str] | None, limit: int) -> StuckMessages:
    """Outbox messages that failed or found no route (of these routes; None: every route):
    grouped by status, route and event, and the oldest ``limit`` of them."""
    where: list[Any] = [col(Notification.status).in_(STUCK_MESSAGES)]
    if routes is not None:
        where.append(col(Notification.route).in_(routes))
    keys = (col(Notification.status), col(Notification.route), col(Notification.event))
    groups = [
        MessageGroup(status, route, event, int(n), oldest)
        for status, route, event, n, oldest in session.execute(
            sa_select(*keys, func.count(), func.min(col(Notification.created_at)))
            .where(*where)
            .group_by(*keys)
            .order_by(*keys)
        )
    ]
    rows = session.execute(
        sa_select(Notification)
        .where(*where)
        .order_by(col(Notification.created_at), col(Notification.id))
        .limit(limit)
    ).scalars()
    return StuckMessages(sum(g.count for g in groups), groups, list(rows))


# ----------------------------------------------------------------------------- safety holds


def held_work(*, session: Session, on: dt.date, sections: Sequence[str], limit: int) -> Listed:
    """Open items of active plans held by a safety hold while a re-plan waits, by day.

    A hold is kept for a proposed version and ends with its answer, so the read
    starts from the children whose proposal waits (the proposed plans), then reads
    their held items by the item's patient_id index, 500 children a query; only
    held items come into Python. An item still held once its proposal is answered
    would not be listed: a partial index on ``hold_reason`` would let one query read
    every held item as cheaply (the store's migrations have none yet).
    """
    waiting = list(
        session.execute(
            sa_select(col(CarePlan.patient_id)).where(col(CarePlan.status) == PlanStatus.proposed)
        ).scalars()
    )
    found: list[WorkItem] = []
    for start in range(0, len(waiting), CHUNK):
        base = _items(None, OPEN_ITEM_STATUSES, children=waiting[start : start + CHUNK])
        # Status and section are read here, not in the query: a condition on the status
        # would have the database read every open item of the unit by its (status, due)
        # index instead of these children's items.
        found += [
            w
            for w in _work_items(session, sa_select(base))
            if w.status in OPEN_ITEM_STATUSES and w.section in sections
        ]
    found.sort(key=lambda w: (w.due, w.ref, w.key))
    return Listed(len(found), found[:limit])


# ----------------------------------------------------------------------------- one child (show)


@dataclass(frozen=True)
class ChildPlans:
    """One child's plan versions (newest first), the consents recorded (oldest first), and
    the active plan's items still to come (as plan-document items, with their stored day)."""

    versions: list[CarePlan]
    consents: list[CostConsent]
    to_come: list[dict[str, Any]]


def child_plans(*, session: Session, patient: Patient) -> ChildPlans:
    """What ``show`` compares a waiting proposal with: three queries for one child."""
    versions = list(
        session.execute(
            sa_select(CarePlan)
            .where(col(CarePlan.patient_id) == patient.id)
            .order_by(col(CarePlan.version).desc())
        ).scalars()
    )
    consents = list(
        session.execute(
            sa_select(CostConsent)
            .where(col(CostConsent.patient_id) == patient.id)
            .order_by(col(CostConsent.id))
        ).scalars()
    )
    active = next((v for v in versions if v.status == PlanStatus.active), None)
    to_come: list[dict[str, Any]] = []
    if active is not None:
        final = (ItemStatus.done, ItemStatus.missed, ItemStatus.cancelled)
        to_come = [
            {**item.details, "key": item.key, "due": item.due.isoformat(), "status": item.status}
            for item in session.execute(
                sa_select(PlanItem)
                .where(col(PlanItem.plan_id) == active.id, col(PlanItem.status).not_in(final))
                .order_by(col(PlanItem.due), col(PlanItem.id))
            ).scalars()
        ]
    return ChildPlans(versions, consents, to_come)


# ----------------------------------------------------------------------------- replaced runs

REPLACED_EVENT = "item_run_replaced"


@dataclass(frozen=True)
class ReplacedRun:
    """An item whose Prefect run ended without recording it and was given a fresh one."""

    ref: str
    item_key: str
    plan_version: int | None
    replacements: int
    last: dt.datetime | None


def replaced_runs(*, session: Session, since: dt.datetime, limit: int) -> Listed:
    """Items whose runs crashed (or were cancelled, or timed out) and were replaced since
    ``since``: read from the outbox rows the replacement wrote (one per route and
    attempt), by the (event, created_at) index, grouped per item, the newest first."""
    where = (col(Notification.event) == REPLACED_EVENT, col(Notification.created_at) >= since)
    keys = (col(Notification.ref), col(Notification.item_key), col(Notification.plan_version))
    grouped = (
        sa_select(
            *keys,
            # one row per route and attempt: the attempts are the keys' suffixes
            func.count(func.distinct(col(Notification.key))).label("rows"),
            func.count(func.distinct(col(Notification.route))).label("routes"),
            func.max(col(Notification.created_at)).label("last"),
        )
        .where(*where)
        .group_by(*keys)
        .subquery()
    )
    count = session.execute(sa_select(func.count()).select_from(grouped)).scalar_one()
    rows = session.execute(
        sa_select(grouped)
        .order_by(grouped.c.last.desc(), grouped.c.ref, grouped.c.item_key)
        .limit(limit)
    ).all()
    return Listed(
        int(count),
        [
            ReplacedRun(
                ref=r.ref or "",
                item_key=r.item_key or "",
                plan_version=r.plan_version,
                replacements=max(1, int(r.rows) // max(1, int(r.routes))),
                last=r.last,
            )
            for r in rows
        ],
    )


# ----------------------------------------------------------------------------- day-unit chairs


def chairs_booked(*, session: Session, start: dt.date, end: dt.date) -> dict[dt.date, int]:
    """Chairs booked per day from ``start`` to ``end`` (inclusive), for open and recorded
    sessions of active plans: one grouped query by the bookings' day index."""
    day = col(Booking.day)
    rows = session.execute(
        sa_select(day, func.count())
        .join(PlanItem, col(PlanItem.id) == Booking.item_id)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .where(
            day >= start,
            day <= end,
            col(CarePlan.status) == PlanStatus.active,
            col(PlanItem.status).in_(DAY_STATUSES),
        )
        .group_by(day)
    ).all()
    return {d: int(n) for d, n in rows}
