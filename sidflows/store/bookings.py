"""Day-unit bookings: a chair for each IV immunoglobulin session, never two on one chair."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlmodel import Session, col, select

from sidflows.calendar import UnitCalendar
from sidflows.errors import InvalidInput
from sidflows.store.models import Booking, PlanItem
from sidflows.store.states import audit_item

# One transaction-scoped PostgreSQL advisory lock for the unit's chairs (any constant key).
DAY_UNIT_LOCK = 0x5346_4455


def _lock_day_unit(session: Session) -> None:
    """Give chairs out one transaction at a time (PostgreSQL; SQLite has one writer anyway).

    Without it, parallel activations of different children pick the same free chair
    and all but one fail on the unique (day, chair) index, again on every retry.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DAY_UNIT_LOCK})


def book_session(
    *, session: Session, item: PlanItem, calendar: UnitCalendar, actor: str
) -> Booking:
    """A day-unit chair inside the session's window; never two sessions on one chair.

    A session that cannot have a chair on its due day moves, and the move is audited.
    """
    _lock_day_unit(session)
    chairs = calendar.config.day_unit.chairs_per_day
    earliest = dt.date.fromisoformat(item.details.get("earliest", item.due.isoformat()))
    latest = dt.date.fromisoformat(item.details.get("latest", item.due.isoformat()))
    window = list(calendar.working_days(earliest, latest))
    # The due day first, then earlier days of the window, then the next working days.
    candidates = sorted(window, key=lambda d: (d != item.due, -d.toordinal()))
    candidates += list(
        calendar.working_days(latest + dt.timedelta(days=1), latest + dt.timedelta(days=21))
    )
    used = {
        (b.day, b.chair)
        for b in session.exec(select(Booking).where(col(Booking.day).in_(candidates)))
    }
    for day in candidates:
        for chair in range(1, chairs + 1):
            if (day, chair) not in used:
                booking = Booking(
                    item_id=item.id or 0,
                    day=day,
                    chair=chair,
                    minutes=item.details.get("session_minutes"),
                )
                session.add(booking)
                session.flush()
                if day != item.due:
                    _audit_move(session, item, day, day > latest, actor)
                    item.details = {
                        **item.details,
                        "booked_day": day.isoformat(),
                        "outside_window": day > latest,
                    }
                    item.due = day
                    session.add(item)
                return booking
    raise InvalidInput("day_unit", f"no chair free for {item.key} within 3 weeks of {latest}")


def _audit_move(
    session: Session, item: PlanItem, day: dt.date, outside_window: bool, actor: str
) -> None:
    audit_item(
        session,
        item,
        actor,
        "moved: day unit full",
        {"due": item.due.isoformat()},
        {"due": day.isoformat(), "outside_window": outside_window},
    )
