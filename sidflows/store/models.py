"""The store's tables (SQLModel). The database is the source of truth; Prefect
runs are a projection of it.

Identity (name, record number) lives in its own table and never leaves the
store: everything sent to Prefect or an ordinary notification route carries
only the pseudonymous ``ref``.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import pendulum
from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    """An aware timestamp (stored as timestamptz on PostgreSQL)."""
    return pendulum.now("UTC")


def _ts(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kwargs))


class PatientState(StrEnum):
    referred = "referred"
    awaiting_approval = "awaiting_approval"
    awaiting_consent = "awaiting_consent"
    active = "active"
    discharged = "discharged"


class PlanStatus(StrEnum):
    """CarePlan.status, after FHIR: proposed (draft), active, superseded (revoked), closed."""

    proposed = "proposed"
    active = "active"
    superseded = "superseded"
    closed = "closed"


class ItemStatus(StrEnum):
    """After FHIR Task / CarePlan activity status."""

    planned = "planned"
    scheduled = "scheduled"
    due = "due"
    done = "done"
    missed = "missed"
    cancelled = "cancelled"
    deferred = "deferred"


FINAL_ITEM_STATUSES = frozenset({ItemStatus.done, ItemStatus.missed, ItemStatus.cancelled})
OPEN_ITEM_STATUSES = (ItemStatus.planned, ItemStatus.scheduled, ItemStatus.due)

# Which transitions an item may make. Anything else is refused.
ITEM_TRANSITIONS: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.planned: frozenset(
        {ItemStatus.scheduled, ItemStatus.due, ItemStatus.cancelled, ItemStatus.deferred}
    ),
    ItemStatus.scheduled: frozenset(
        {ItemStatus.planned, ItemStatus.due, ItemStatus.cancelled, ItemStatus.deferred}
    ),
    ItemStatus.due: frozenset({ItemStatus.done, ItemStatus.missed, ItemStatus.cancelled}),
    ItemStatus.deferred: frozenset({ItemStatus.planned, ItemStatus.cancelled}),
    ItemStatus.done: frozenset(),
    ItemStatus.missed: frozenset(),
    ItemStatus.cancelled: frozenset(),
}


class Patient(SQLModel, table=True):
    """A child followed by the unit, known outside the store only by ``ref``."""

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=40, unique=True, index=True)
    birth_date: dt.date
    sex: str = Field(max_length=10)
    weight_kg: float
    diagnosis_category: str = Field(max_length=20)
    diagnosis_label: str = Field(max_length=200)
    # The diagnosis as coded by the referral (ICD-10 or SNOMED CT), when it was.
    diagnosis_code: str | None = Field(default=None, max_length=32)
    diagnosis_system: str | None = Field(default=None, max_length=220)
    referrer_service: str = Field(max_length=200)
    hsct: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    preferences: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    state: str = Field(default=PatientState.referred, max_length=20, index=True)
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class Identity(SQLModel, table=True):
    """Who the child is. Read only by the store and by secure routes."""

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", unique=True)
    name: str | None = Field(default=None, max_length=200)
    mrn: str | None = Field(default=None, max_length=200)


class Referral(SQLModel, table=True):
    """Each referral document received (identity removed), recognised by its hash."""

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    received: dt.date
    referrer_clinician: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    document_sha256: str = Field(max_length=64, unique=True)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: dt.datetime = _ts()


class Treatment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("patient_id", "drug", "start"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    drug: str = Field(max_length=200)
    drug_class: str = Field(max_length=30)
    start: dt.date
    end: dt.date | None = None
    dose_mg_per_kg_day: float | None = None
    dose_mg_day: float | None = None
    dose_mg_per_kg_week: float | None = None
    # The drug as coded by its document (WHO ATC), when it was.
    code: str | None = Field(default=None, max_length=32)
    system: str | None = Field(default=None, max_length=220)


class Lab(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    date: dt.date
    values: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    item_id: int | None = Field(default=None, foreign_key="planitem.id")


class Infection(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    date: dt.date
    kind: str = Field(max_length=200)
    serious: bool


class IgDose(SQLModel, table=True):
    """An immunoglobulin dose, from the referral or given under the plan."""

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    date: dt.date
    g_per_kg: float
    route: str = Field(max_length=2)
    grams: float | None = None
    lot: str | None = Field(default=None, max_length=100)
    item_id: int | None = Field(default=None, foreign_key="planitem.id")


class BloodProduct(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    date: dt.date
    product: str = Field(max_length=40)


class Vaccination(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    vaccine: str = Field(max_length=10)
    date: dt.date
    lot: str | None = Field(default=None, max_length=100)
    item_id: int | None = Field(default=None, foreign_key="planitem.id")


class CarePlan(SQLModel, table=True):
    """One version of a child's plan. At most one active and one proposed per child."""

    __table_args__ = (
        UniqueConstraint("patient_id", "version"),
        Index(
            "one_active_plan",
            "patient_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index(
            "one_proposed_plan",
            "patient_id",
            unique=True,
            sqlite_where=text("status = 'proposed'"),
            postgresql_where=text("status = 'proposed'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    version: int
    status: str = Field(default=PlanStatus.proposed, max_length=12)
    as_of: dt.date
    protocol_version: str = Field(max_length=40)
    # Text: a re-plan's reason may list what the new results change, unbounded.
    reason: str = Field(sa_type=Text)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    activated_at: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    created_at: dt.datetime = _ts()


class PlanItem(SQLModel, table=True):
    """Scheduled work of an active plan, with its status machine."""

    __table_args__ = (
        UniqueConstraint("plan_id", "key"),
        Index("item_due_open", "status", "due"),
    )

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="careplan.id", index=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    key: str = Field(max_length=80)
    kind: str = Field(max_length=20)
    stream: str = Field(max_length=60)
    due: dt.date
    hospital: bool = True
    status: str = Field(default=ItemStatus.planned, max_length=12)
    details: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    outcome: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    flow_run_id: str | None = Field(default=None, max_length=40)
    escalations: int = 0
    # A safety hold while a re-plan waits (docs/clinical-reference.md §4.8): why, with its
    # source, and the proposed version whose answer releases or cancels the item. Text:
    # the reasons of several rules, each with its figures and sources, have no bound.
    hold_reason: str | None = Field(default=None, sa_type=Text)
    held_for: int | None = None
    updated_at: dt.datetime = _ts()


class Booking(SQLModel, table=True):
    """A day-unit chair for an IV session: never two sessions on one chair and day."""

    __table_args__ = (UniqueConstraint("day", "chair"), UniqueConstraint("item_id"))

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="planitem.id")
    day: dt.date = Field(index=True)
    chair: int
    minutes: int | None = None


class CostConsent(SQLModel, table=True):
    """The family's consent to the cost of items public health does not cover."""

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    accepted: bool
    recorded_by: str = Field(max_length=200)
    source: str = Field(max_length=20)
    recorded_at: dt.datetime = _ts()


class AuditEntry(SQLModel, table=True):
    """Append-only: who changed what, when, before and after.

    Database triggers refuse UPDATE and DELETE on this table (migration 0001).
    """

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = _ts()
    actor: str = Field(max_length=200)
    entity: str = Field(max_length=20)
    entity_id: int
    patient_ref: str = Field(max_length=40, index=True)
    action: str = Field(max_length=40)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class NotificationStatus(StrEnum):
    """A message's way through the outbox."""

    queued = "queued"  # waits for its role's daily digest
    pending = "pending"  # to be sent (now, or at next_attempt_at after a failure)
    sending = "sending"  # claimed by a dispatcher until claimed_until
    sent = "sent"
    failed = "failed"  # every attempt failed: ops was told
    unrouted = "unrouted"  # the role has no route configured
    digested = "digested"  # went out inside a digest (digest_id)


class Notification(SQLModel, table=True):
    """The outbox: one row per message, written in the transaction that causes it.

    ``key`` (event, ref, item, plan version, route) is unique, so a repeated flow
    run never queues a message twice. Content carries the ref, never identity;
    a secure route has the identity added at delivery, from the store.
    """

    __table_args__ = (
        Index("notification_due", "status", "next_attempt_at"),
        Index("notification_item_event", "item_id", "event"),
        # The worklist's replaced runs: one event's rows of the last days.
        Index("notification_event_created", "event", "created_at"),
        # A digest's members (what it listed), found by the digest's id.
        Index("notification_digest", "digest_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    event: str = Field(max_length=40)
    ref: str | None = Field(default=None, max_length=40, index=True)
    item_id: int | None = None
    item_key: str | None = Field(default=None, max_length=80)
    plan_version: int | None = None
    # Text: "referrers:<the referring service>", the service's name up to 200 characters.
    route: str = Field(sa_type=Text)
    subject: str = Field(max_length=300)
    body: str
    status: str = Field(default=NotificationStatus.pending, max_length=12)
    attempts: int = 0
    next_attempt_at: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    claimed_until: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    claim: str | None = Field(default=None, max_length=40)
    # Digests of the URLs that already have it: a retry goes only to the others.
    delivered: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    last_error: str | None = Field(default=None, max_length=300)
    digest_id: int | None = None
    created_at: dt.datetime = _ts()
    sent_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class IntentStatus(StrEnum):
    """An intent's way to Prefect."""

    pending = "pending"  # to be carried out (now, or at next_attempt_at after a failure)
    done = "done"  # Prefect has it (a run, or the flow ran here)
    replaced = "replaced"  # its run died (crashed, failed, cancelled, lost): attempt #n+1
    failed = "failed"  # its run died on every attempt: left for a person to look at


class Intent(SQLModel, table=True):
    """What must happen in Prefect because of a committed change: Prefect is its projection.

    Written in the same transaction as the change (a referral, a treatment change,
    a result, a consent), under a unique ``key`` that is also the Prefect run's
    idempotency key: carried out right away when Prefect answers, else by the next
    command, `serve`'s every-minute pass or the sweep, and exactly once. Its
    parameters carry the ref, never identity.
    """

    __table_args__ = (
        Index("intent_due", "status", "next_attempt_at"),
        Index("intent_carried", "status", "done_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    kind: str = Field(max_length=20)
    ref: str = Field(max_length=40, index=True)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=IntentStatus.pending, max_length=12)
    attempts: int = 0
    next_attempt_at: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_error: str | None = Field(default=None, max_length=300)
    run_id: str | None = Field(default=None, max_length=40)
    created_at: dt.datetime = _ts()
    done_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # Its run was seen to have done its work (completed), or there is nothing more to
    # watch (the child discharged, the pathway past referral): not read again.
    settled_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
