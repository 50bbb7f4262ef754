"""What the pathway's steps share: their results, the outbox in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError

from sidflows.notify import outbox
from sidflows.notify.messages import Notice
from sidflows.store import items
from sidflows.store.models import (
    CarePlan,
    PatientState,
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


def queue(session: Any, unit: Unit, *notices: Notice) -> int:
    """Put the notices' messages in the outbox, in the caller's transaction."""
    return outbox.enqueue(session, notices, config=unit.notifications, ui_url=unit.ui_url)


def retrying(step: Any) -> Any:
    """Run a transaction again when a concurrent one won a unique index (re-plans)."""
    for attempt in range(RETRIES_ON_CONFLICT):
        try:
            return step()
        except (IntegrityError, OperationalError):
            if attempt == RETRIES_ON_CONFLICT - 1:
                raise
    return None  # pragma: no cover


def next_runs(*, session: Any, plan: CarePlan, ref: str) -> list[RunSpec]:
    return [
        RunSpec(ref, plan.version, i.key, i.kind, i.due)
        for i in items.next_in_streams(session=session, plan=plan)
    ]


@dataclass
class ItemStep:
    ref: str
    item_key: str
    kind: str
    status: str
    follow: items.FollowUp | None = None
    next_run: RunSpec | None = None
