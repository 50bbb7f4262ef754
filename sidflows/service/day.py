"""The day's work: reminders, escalations, digests; run ids; counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import col, select

from sidflows.notify import outbox
from sidflows.notify.messages import Notice, item_facts
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
    return notify_day_timed(day, unit=unit, actor=actor).counts()


def notify_day_timed(day: dt.date, *, unit: Unit, actor: str) -> outbox.QueuedDay:
    """``notify_day``, with the store seconds of each phase (the sweep benchmark's)."""
    config, ui, calendar = unit.notifications, unit.ui_url, unit.calendar
    with session_scope() as session:
        return outbox.queue_day(
            session=session, on=day, calendar=calendar, config=config, ui_url=ui, actor=actor
        )


def record_run_ids(run_ids: dict[tuple[str, int, str], str]) -> None:
    """Remember which Prefect run stands for which item (ref, version, key)."""
    if not run_ids:
        return
    with session_scope() as session:
        for (ref, version, key), run_id in run_ids.items():
            item = items.get_item(session=session, ref=ref, key=key, version=version)
            items.record_run(session=session, item=item, run_id=run_id, actor="scheduler")


@dataclass(frozen=True)
class ReplacedRun:
    """An item whose run ended without recording it, and the attempt that replaced it."""

    ref: str
    plan_version: int
    item_key: str
    state: str  # what the dead run ended as: Crashed, Cancelled, Failed...
    message: str
    attempt: int
    run_id: str


def runs_replaced(replaced: list[ReplacedRun], *, unit: Unit) -> int:
    """Tell the coordinators, once per attempt, that an item has a fresh run to act on."""
    if not replaced:
        return 0
    language = unit.notifications.language
    notices = []
    with session_scope() as session:
        for each in replaced:
            item = items.get_item(
                session=session, ref=each.ref, key=each.item_key, version=each.plan_version
            )
            facts = item_facts(
                kind=item.kind,
                due=item.due.isoformat(),
                details=item.details,
                chair=None,
                language=language,
            )
            facts.update(state=each.state, attempt=each.attempt, version=each.plan_version)
            notices.append(
                Notice(
                    "item_run_replaced",
                    each.ref,
                    facts,
                    item_id=item.id,
                    item_key=item.key,
                    plan_version=each.plan_version,
                    suffix=f"attempt{each.attempt}",
                )
            )
        return outbox.enqueue(session, notices, config=unit.notifications, ui_url=unit.ui_url)


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
