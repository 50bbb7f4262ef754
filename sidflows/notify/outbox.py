"""The outbox in the store: messages are written in the transaction of the change
that causes them, under a unique key, and later sent by the dispatcher.

A repeated flow run finds the key taken and queues nothing (INSERT ... ON
CONFLICT DO NOTHING, on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Table, and_, exists, func, insert, or_, text, update
from sqlalchemy import select as sa_select
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
from sidflows.store import fastwrite
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
    """Insert the rows whose key is new (the others are already in the outbox); how many.

    Multi-row INSERT ... ON CONFLICT (key) DO NOTHING in batches (store.fastwrite):
    the count of rows that went in is what was new, with no lookup of the keys first.
    """
    return fastwrite.insert_rows(session, _table(Notification), rows, skip_taken="key")


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


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
#
# Set-based: each phase reads its rows in one streamed query (plain rows, no ORM
# objects held by the session), renders their messages in Python (the unit's
# templates), and writes them in multi-row statements of BATCH rows; the items'
# escalation levels and the digests are single UPDATEs. Nothing is one round trip
# per row, and memory stays flat in the number of items.

BATCH = 5000  # rows read, rendered and written per statement


@dataclass
class QueuedDay:
    """What the day's notification part queued, and the store seconds of each phase."""

    reminders: int = 0
    escalations: int = 0
    digests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "reminders": self.reminders,
            "escalations": self.escalations,
            "digests": self.digests,
        }


def queue_day(
    *,
    session: Session,
    on: dt.date,
    calendar: UnitCalendar,
    config: NotificationConfig,
    ui_url: str,
    actor: str,
) -> QueuedDay:
    """Reminders, escalations, then the digests of everything queued, in the caller's
    transaction; each phase timed (``seconds``: remind, escalate, digest)."""
    day = QueuedDay()
    started = time.perf_counter()
    day.reminders = queue_reminders(
        session=session, on=on, calendar=calendar, config=config, ui_url=ui_url
    )
    day.seconds["remind"] = time.perf_counter() - started
    started = time.perf_counter()
    day.escalations = queue_escalations(
        session=session, on=on, calendar=calendar, config=config, ui_url=ui_url, actor=actor
    )
    day.seconds["escalate"] = time.perf_counter() - started
    started = time.perf_counter()
    day.digests = compose_digests(session=session, on=on, config=config, ui_url=ui_url)
    day.seconds["digest"] = time.perf_counter() - started
    return day


_OPEN_ITEM_COLUMNS = (
    col(PlanItem.id),
    col(PlanItem.key),
    col(PlanItem.kind),
    col(PlanItem.due),
    col(PlanItem.details),
    col(PlanItem.escalations),
    col(Patient.ref),
    col(CarePlan.version),
    col(Booking.chair),
)


def open_items_where(*conditions: Any) -> Any:
    """Open, unheld items of active plans (and their booked chair), as plain rows."""
    return (
        sa_select(*_OPEN_ITEM_COLUMNS)
        .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
        .join(Patient, col(Patient.id) == PlanItem.patient_id)
        .outerjoin(Booking, col(Booking.item_id) == PlanItem.id)
        .where(*_open_conditions(), *conditions)
        .order_by(col(PlanItem.id))
    )


def _open_conditions() -> tuple[Any, ...]:
    return (
        col(CarePlan.status) == PlanStatus.active,
        col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
        # A held item waits for a clinician's answer: nobody is reminded or chased.
        col(PlanItem.hold_reason).is_(None),
    )


def _batches(session: Session, query: Any) -> Iterator[Sequence[Row[Any]]]:
    """The query's rows, BATCH at a time, from one statement (a server-side cursor on
    PostgreSQL): the rows of one batch, never all of them, are in memory.

    Every row is read, so the cursor is planned for all of them (PostgreSQL plans
    a cursor for its first tenth by default: a scan in id order over every item)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    result = session.execute(query.execution_options(yield_per=BATCH))
    yield from result.partitions()


def _row_facts(row: Row[Any], language: str) -> dict[str, Any]:
    return item_facts(
        kind=row.kind,
        due=row.due.isoformat(),
        details=row.details,
        chair=row.chair,
        language=language,
    )


def _item_notice(
    event: str,
    row: Row[Any],
    language: str,
    *,
    facts: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    roles: tuple[str, ...] | None = None,
    suffix: str = "",
) -> Notice:
    facts = facts if facts is not None else _row_facts(row, language)
    return Notice(
        event,
        row.ref,
        {**facts, **(extra or {})},
        item_id=row.id,
        item_key=row.key,
        plan_version=row.version,
        roles=roles,
        suffix=suffix,
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
    query = open_items_where(col(PlanItem.due) >= on, col(PlanItem.due) <= until, ~reminded)
    queued = 0
    at = utcnow()
    # Written while the read goes on: a reminder is of an item already read (by id).
    pending: list[Notice] = []
    for rows in _batches(session, query):
        pending += [_item_notice("item_reminder", row, config.language) for row in rows]
        if len(pending) >= BATCH:
            queued += enqueue(session, pending, config=config, ui_url=ui_url, now=at)
            pending = []
    return queued + enqueue(session, pending, config=config, ui_url=ui_url, now=at)


def escalation_thresholds(
    on: dt.date, calendar: UnitCalendar, after_working_days: Sequence[int]
) -> list[dt.date]:
    """For each step (ascending), the latest due day at which an item has reached it on ``on``.

    An item due on ``d`` is ``late`` = the working days in (d, on]; it has reached a step
    of ``n`` working days when late >= n, i.e. when d is before the n-th working day
    counting back from ``on`` (``on`` included). Never later than the day before ``on``.
    """
    out: list[dt.date] = []
    for n in sorted(after_working_days):
        day, counted = on, 0
        while n > 0 and day > dt.date.min + dt.timedelta(days=1):
            if calendar.is_working_day(day):
                counted += 1
                if counted == n:
                    break
            day -= dt.timedelta(days=1)
        out.append(min(day, on - dt.timedelta(days=1)) if n <= 0 else day - dt.timedelta(days=1))
    return out


def queue_escalations(
    *,
    session: Session,
    on: dt.date,
    calendar: UnitCalendar,
    config: NotificationConfig,
    ui_url: str,
    actor: str,
) -> int:
    """Overdue items climb the escalation steps, each step once per item (audited).

    One streamed read of the items below their reached step, the messages and the
    audit rows in multi-row inserts, then one UPDATE per step for the items' levels.
    """
    steps = config.escalation
    if not steps:
        return 0
    thresholds = escalation_thresholds(on, calendar, [s.after_working_days for s in steps])
    query = open_items_where(
        col(PlanItem.due) <= thresholds[0], col(PlanItem.escalations) < len(steps)
    )
    late_of: dict[dt.date, int] = {}  # working days late, by due day (a month: ~30 days)
    queued = 0
    at = utcnow()
    notices: list[Notice] = []
    audits: list[dict[str, Any]] = []
    for rows in _batches(session, query):
        for row in rows:
            late = late_of.get(row.due)
            if late is None:
                late = sum(1 for _ in calendar.working_days(row.due + dt.timedelta(days=1), on))
                late_of[row.due] = late
            reached = sum(1 for s in steps if late >= s.after_working_days)
            if reached <= row.escalations:
                continue
            facts = _row_facts(row, config.language)  # once per item, not once per step
            for index in range(row.escalations, reached):
                notices.append(
                    _item_notice(
                        "item_overdue",
                        row,
                        config.language,
                        facts=facts,
                        extra={"days": late, "step": index + 1},
                        roles=steps[index].roles,
                        suffix=f"step{index + 1}",
                    )
                )
            audits.append(
                {
                    "at": at,
                    "actor": actor,
                    "entity": "item",
                    "entity_id": row.id,
                    "patient_ref": row.ref,
                    "action": "escalated",
                    "before": {"escalations": row.escalations},
                    "after": {
                        "escalations": reached,
                        "working_days_overdue": late,
                        "roles": sorted(
                            {r for s in steps[row.escalations : reached] for r in s.roles}
                        ),
                    },
                }
            )
        if len(audits) >= BATCH:
            queued += _write_escalations(session, notices, audits, config, ui_url, at)
            notices, audits = [], []
    queued += _write_escalations(session, notices, audits, config, ui_url, at)
    _raise_levels(session, thresholds, len(steps))
    return queued


def raise_escalation_levels(
    *, session: Session, on: dt.date, calendar: UnitCalendar, config: NotificationConfig
) -> None:
    """Only the levels ``queue_escalations`` would leave on ``on``, without its messages
    and audit rows (a benchmark's stand-in for a sweep it does not time)."""
    after = [s.after_working_days for s in config.escalation]
    if after:
        _raise_levels(session, escalation_thresholds(on, calendar, after), len(after))


def _raise_levels(session: Session, thresholds: Sequence[dt.date], steps: int) -> None:
    """One UPDATE per step, highest first, over the open items that reached it."""
    active = sa_select(col(CarePlan.id)).where(col(CarePlan.status) == PlanStatus.active)
    for level in range(steps, 0, -1):
        session.execute(
            update(PlanItem)
            .where(
                col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
                col(PlanItem.due) <= thresholds[level - 1],
                col(PlanItem.escalations) < level,
                col(PlanItem.hold_reason).is_(None),
                col(PlanItem.plan_id).in_(active),
            )
            .values(escalations=level)
            .execution_options(synchronize_session=False)
        )


def _write_escalations(
    session: Session,
    notices: list[Notice],
    audits: list[dict[str, Any]],
    config: NotificationConfig,
    ui_url: str,
    at: dt.datetime,
) -> int:
    fastwrite.insert_rows(session, _table(AuditEntry), audits)
    return enqueue(session, notices, config=config, ui_url=ui_url, now=at)


def compose_digests(
    *, session: Session, on: dt.date, config: NotificationConfig, ui_url: str
) -> int:
    """One message per route with every queued message: the role's daily digest.

    Per route (a handful): one grouped count, one streamed read of the subjects, one
    insert and one UPDATE that files the route's queued messages under the digest.
    """
    routes = session.execute(
        sa_select(col(Notification.route), func.count(), func.max(col(Notification.id)))
        .where(col(Notification.status) == NotificationStatus.queued)
        .group_by(col(Notification.route))
        .order_by(col(Notification.route))
    ).all()
    made = 0
    for route, count, last_id in routes:
        taken = (
            col(Notification.status) == NotificationStatus.queued,
            col(Notification.route) == route,
            col(Notification.id) <= last_id,
        )
        subjects = [
            f"- {subject.removeprefix('sidflows ')}"
            for rows in _batches(
                session,
                sa_select(col(Notification.subject)).where(*taken).order_by(col(Notification.id)),
            )
            for (subject,) in rows
        ]
        earlier = session.execute(
            sa_select(func.count())
            .select_from(Notification)
            .where(
                col(Notification.event) == "digest",
                col(Notification.key).startswith(f"digest|-|-|v0|{route}|{on}"),
            )
        ).scalar_one()
        notice = Notice(
            "digest",
            None,
            {"day": on.isoformat(), "count": int(count), "lines": lines(subjects, config.language)},
            suffix=f"{on}#{int(earlier) + 1}",
        )
        role = route.split(":", 1)[0]
        subject, body = render(config, notice, role, {"ui": ui_url, "when": on.isoformat()})
        digest_id = session.execute(
            insert(Notification)
            .values(
                key=message_key(notice, route),
                event="digest",
                route=route,
                subject=subject[:300],
                body=body,
                status=NotificationStatus.pending,
                attempts=0,
                delivered=[],
                created_at=utcnow(),
            )
            .returning(col(Notification.id))
        ).scalar_one()
        session.execute(
            update(Notification)
            .where(*taken)
            .values(status=NotificationStatus.digested, digest_id=digest_id)
            .execution_options(synchronize_session=False)
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
