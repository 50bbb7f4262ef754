"""The day's work: reminders, escalations, digests; run ids; counts."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select

from sidflows.notify import outbox
from sidflows.store import items
from sidflows.store.db import session_scope
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    Patient,
    PatientState,
    PlanItem,
)
from sidflows.unit import Unit


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
