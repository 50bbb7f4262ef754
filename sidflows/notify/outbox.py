"""The outbox in the store: messages are written in the transaction of the change
that causes them, under a unique key, and later sent by the dispatcher.

A repeated flow run finds the key taken and queues nothing (INSERT ... ON
CONFLICT DO NOTHING, on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, exists, func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from sidflows.calendar import UnitCalendar
from sidflows.notify.config import NotificationConfig
from sidflows.notify.messages import (
    Notice,
    delivered_after_failure,
    item_facts,
    lines,
    render,
)
from sidflows.notify.routes import route_for
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    AuditEntry,
    Booking,
    CarePlan,
    Notification,
    NotificationStatus,
    Patient,
    PlanItem,
    PlanStatus,
    utcnow,
)


def message_key(notice: Notice, route: str) -> str:
    """event | ref | item | plan version | route [| suffix]: one message per key, ever."""
    parts = [
        notice.event,
        notice.ref or "-",
        notice.item_key or "-",
        f"v{notice.plan_version or 0}",
        route,
    ]
    if notice.suffix:
        parts.append(notice.suffix)
    return "|".join(parts)[:300]


def messages(
    notice: Notice, *, config: NotificationConfig, ui_url: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """The outbox rows of a notice, one per role that hears of it."""
    event = config.events.get(notice.event)
    if event is None:
        return []  # the unit switched this event off
    common = {"ui": ui_url, "when": notice.facts.get("when", now.date().isoformat())}
    rows: list[dict[str, Any]] = []
    for role in notice.roles or event.roles:
        if not event.wants(role, notice.facts):
            continue
        route = route_for(role, service=notice.service)
        subject, body = render(config, notice, role, common)
        rows.append(
            {
                "key": message_key(notice, route),
                "event": notice.event,
                "ref": notice.ref,
                "item_id": notice.item_id,
                "item_key": notice.item_key,
                "plan_version": notice.plan_version,
                "route": route,
                "subject": subject[:300],
                "body": body,
                "status": NotificationStatus.queued if event.digest else NotificationStatus.pending,
                "attempts": 0,
                "delivered": [],
                "created_at": now,
            }
        )
    return rows


def insert_new(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert the rows whose key is new; the others are already in the outbox."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    keys = [r["key"] for r in rows]
    taken: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        taken |= set(session.exec(select(Notification.key).where(col(Notification.key).in_(chunk))))
    session.execute(make(Notification).on_conflict_do_nothing(index_elements=["key"]), rows)
    return len(set(keys) - taken)


def enqueue(
    session: Session,
    notices: Iterable[Notice],
    *,
    config: NotificationConfig,
    ui_url: str,
    now: dt.datetime | None = None,
) -> int:
    """Queue the messages of these notices in the caller's transaction."""
    at = now or utcnow()
    rows = [r for n in notices for r in messages(n, config=config, ui_url=ui_url, now=at)]
    return insert_new(session, _unique(rows))


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["key"], row)
    return list(seen.values())


# ----------------------------------------------------------------------------- the daily part


def _open_items() -> Any:
    return (
        select(PlanItem, Patient.ref, CarePlan.version, Booking.chair)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .outerjoin(Booking, col(Booking.item_id) == PlanItem.id)
        .where(
            col(CarePlan.status) == PlanStatus.active,
            col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
            # A held item waits for a clinician's answer: nobody is reminded or chased.
            col(PlanItem.hold_reason).is_(None),
        )
    )


def _item_notice(
    event: str, item: PlanItem, ref: str, version: int, chair: int | None, language: str
) -> Notice:
    return Notice(
        event,
        ref,
        item_facts(
            kind=item.kind,
            due=item.due.isoformat(),
            details=item.details,
            chair=chair,
            language=language,
        ),
        item_id=item.id,
        item_key=item.key,
        plan_version=version,
    )


def queue_reminders(
    *,
    session: Session,
    on: dt.date,
    calendar: UnitCalendar,
    config: NotificationConfig,
    ui_url: str,
) -> int:
    """A reminder for each open item due within the lead time that has not had one."""
    until = calendar.add_working_days(on, config.reminders.lead_working_days)
    reminded = exists().where(
        col(Notification.item_id) == col(PlanItem.id), col(Notification.event) == "item_reminder"
    )
    found = session.exec(
        _open_items().where(col(PlanItem.due) >= on, col(PlanItem.due) <= until, ~reminded)
    ).all()
    notices = [
        _item_notice("item_reminder", item, ref, version, chair, config.language)
        for item, ref, version, chair in found
    ]
    return enqueue(session, notices, config=config, ui_url=ui_url)


UPDATE_CHUNK = 5000  # ids per UPDATE ... IN (...): within every driver's parameter limit


def queue_escalations(
    *,
    session: Session,
    on: dt.date,
    calendar: UnitCalendar,
    config: NotificationConfig,
    ui_url: str,
    actor: str,
) -> int:
    """Overdue items climb the escalation steps, each step once per item (audited)."""
    steps = config.escalation
    if not steps:
        return 0
    first = steps[0].after_working_days
    found = session.exec(
        _open_items().where(
            col(PlanItem.due) <= on - dt.timedelta(days=max(first, 1)),
            col(PlanItem.escalations) < len(steps),
        )
    ).all()
    notices: list[Notice] = []
    audits: list[AuditEntry] = []
    raised: dict[int, int] = {}
    for item, ref, version, chair in found:
        late = sum(1 for _ in calendar.working_days(item.due + dt.timedelta(days=1), on))
        reached = sum(1 for s in steps if late >= s.after_working_days)
        assert item.id is not None
        for index in range(item.escalations, reached):
            base = _item_notice("item_overdue", item, ref, version, chair, config.language)
            notices.append(
                Notice(
                    base.event,
                    ref,
                    {**base.facts, "days": late, "step": index + 1},
                    item_id=item.id,
                    item_key=item.key,
                    plan_version=version,
                    roles=steps[index].roles,
                    suffix=f"step{index + 1}",
                )
            )
        if reached > item.escalations:
            raised[item.id] = reached
            audits.append(
                AuditEntry(
                    actor=actor,
                    entity="item",
                    entity_id=item.id,
                    patient_ref=ref,
                    action="escalated",
                    before={"escalations": item.escalations},
                    after={
                        "escalations": reached,
                        "working_days_overdue": late,
                        "roles": sorted(
                            {r for s in steps[item.escalations : reached] for r in s.roles}
                        ),
                    },
                )
            )
    # One statement per step reached (a few), in chunks: never one round trip per item,
    # and no synchronisation of the session's objects (quadratic in the items held).
    by_level: dict[int, list[int]] = {}
    for item_id, level in raised.items():
        by_level.setdefault(level, []).append(item_id)
    for level, ids in by_level.items():
        for start in range(0, len(ids), UPDATE_CHUNK):
            session.execute(
                update(PlanItem)
                .where(col(PlanItem.id).in_(ids[start : start + UPDATE_CHUNK]))
                .values(escalations=level)
                .execution_options(synchronize_session=False)
            )
    session.add_all(audits)
    return enqueue(session, notices, config=config, ui_url=ui_url)


def compose_digests(
    *, session: Session, on: dt.date, config: NotificationConfig, ui_url: str
) -> int:
    """One message per route with every queued message: the role's daily digest."""
    queued = session.exec(
        select(Notification)
        .where(Notification.status == NotificationStatus.queued)
        .order_by(col(Notification.route), col(Notification.id))
    ).all()
    by_route: dict[str, list[Notification]] = {}
    for row in queued:
        by_route.setdefault(row.route, []).append(row)
    made = 0
    for route, rows in by_route.items():
        earlier = session.exec(
            select(func.count())
            .select_from(Notification)
            .where(col(Notification.key).startswith(f"digest|-|-|v0|{route}|{on}"))
        ).one()
        notice = Notice(
            "digest",
            None,
            {
                "day": on.isoformat(),
                "count": len(rows),
                "lines": lines(
                    (f"- {r.subject.removeprefix('sidflows ')}" for r in rows), config.language
                ),
            },
            suffix=f"{on}#{int(earlier) + 1}",
        )
        role = route.split(":", 1)[0]
        subject, body = render(config, notice, role, {"ui": ui_url, "when": on.isoformat()})
        digest = Notification(
            key=message_key(notice, route),
            event="digest",
            route=route,
            subject=subject[:300],
            body=body,
            status=NotificationStatus.pending,
            created_at=utcnow(),
        )
        session.add(digest)
        session.flush()
        session.execute(
            update(Notification)
            .where(col(Notification.id).in_([r.id for r in rows]))
            .values(status=NotificationStatus.digested, digest_id=digest.id)
        )
        made += 1
    return made


# ----------------------------------------------------------------------------- reading


def listing(
    *, session: Session, status: str | None = None, ref: str | None = None, limit: int = 200
) -> list[Notification]:
    query = select(Notification)
    if status:
        query = query.where(Notification.status == status)
    if ref:
        query = query.where(Notification.ref == ref)
    return list(session.exec(query.order_by(col(Notification.id).desc()).limit(limit)))


def counts(*, session: Session) -> dict[str, int]:
    return {
        str(status): int(n)
        for status, n in session.exec(
            select(Notification.status, func.count()).group_by(col(Notification.status))
        )
    }


def redeliverable() -> Any:
    """What an operator's redeliver sends now: failed, unrouted, and waiting out a backoff."""
    return or_(
        col(Notification.status).in_([NotificationStatus.failed, NotificationStatus.unrouted]),
        and_(
            col(Notification.status) == NotificationStatus.pending,
            or_(col(Notification.attempts) > 0, col(Notification.next_attempt_at).is_not(None)),
        ),
    )


def requeue_for_redelivery(*, session: Session) -> list[int]:
    """Failed, unrouted and retrying messages become due now, in one statement; their ids.

    Their attempts, last error and the URLs that already have them are kept: the
    count still shows how often the message failed (it goes on counting up), and a
    message that fails again after its last attempt is failed again at once.
    """
    result = session.connection().execute(
        update(Notification)
        .where(redeliverable())
        .values(
            status=NotificationStatus.pending,
            next_attempt_at=None,
            claim=None,
            claimed_until=None,
        )
        .returning(col(Notification.id))
    )
    return sorted(int(row[0]) for row in result)


def statuses_of(*, session: Session, ids: Sequence[int]) -> dict[str, int]:
    """How many of these messages are in each status (a grouped count per 500 ids)."""
    found: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        for status, n in session.exec(
            select(Notification.status, func.count())
            .where(col(Notification.id).in_(chunk))
            .group_by(col(Notification.status))
        ):
            found[str(status)] = found.get(str(status), 0) + int(n)
    return found


def failure_alert_suffix(failed_id: int) -> str:
    """The key suffix of ops' alert about message ``failed_id`` (and of its "delivered" note)."""
    return f"n{failed_id}"


def queue_delivered_notes(
    session: Session,
    *,
    failed_id: int,
    facts: dict[str, Any],
    config: NotificationConfig,
    now: dt.datetime,
) -> int:
    """A message that had failed was delivered: a note to every route its failure alert
    went to, under its own key (``delivery_recovered|...|n<id>``), so sent once."""
    alert = config.events.get("delivery_failed")
    if alert is None:
        return 0  # the unit switched the failure alert off: nobody was told
    suffix = failure_alert_suffix(failed_id)
    # The keys the alert was queued under (as ``messages`` makes them): a lookup on the
    # unique key, not a scan, since every delivery after a failed attempt asks.
    failure = Notice("delivery_failed", None, {}, suffix=suffix)
    keys = {message_key(failure, route_for(role)) for role in alert.roles}
    alerted = session.exec(
        select(Notification.route).where(col(Notification.key).in_(sorted(keys)))
    ).all()
    if not alerted:
        return 0
    digest = alert.digest
    notice = Notice("delivery_recovered", None, facts, suffix=suffix)
    subject, body = delivered_after_failure(
        {**facts, "when": now.isoformat(timespec="seconds")}, config.language
    )
    rows: list[dict[str, Any]] = [
        {
            "key": message_key(notice, route),
            "event": notice.event,
            "ref": None,
            "item_id": None,
            "item_key": None,
            "plan_version": None,
            "route": route,
            "subject": subject[:300],
            "body": body,
            "status": NotificationStatus.queued if digest else NotificationStatus.pending,
            "attempts": 0,
            "delivered": [],
            "created_at": now,
        }
        for route in sorted(set(alerted))
    ]
    return insert_new(session, rows)


def claimable(now: dt.datetime) -> Any:
    """Pending and due, or claimed by a dispatcher whose lease ran out (it died)."""
    return or_(
        and_(
            col(Notification.status) == NotificationStatus.pending,
            or_(
                col(Notification.next_attempt_at).is_(None),
                col(Notification.next_attempt_at) <= now,
            ),
        ),
        and_(
            col(Notification.status) == NotificationStatus.sending,
            col(Notification.claimed_until) < now,
        ),
    )
