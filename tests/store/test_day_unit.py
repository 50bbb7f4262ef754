"""The day unit: never more IV sessions on a day than chairs, one session per chair and day."""

from __future__ import annotations

from collections import Counter
from datetime import date

from sqlmodel import col, select

from sidflows.store import db, patients, versions
from sidflows.store.models import Booking, PlanItem

from .support import CALENDAR, iv_child, refer_and_activate

CHAIRS = CALENDAR.config.day_unit.chairs_per_day
CHILDREN = CHAIRS + 2


def _sessions() -> list[tuple[PlanItem, Booking]]:
    with db.session_scope() as session:
        return list(
            session.exec(
                select(PlanItem, Booking)
                .join(Booking, col(Booking.item_id) == PlanItem.id)
                .order_by(col(PlanItem.due), col(PlanItem.id))
            )
        )


def test_chairs_are_never_overbooked(database_url: str) -> None:
    """More children than chairs: no day has more sessions than chairs, (day, chair) unique."""
    refs = [refer_and_activate(iv_child(f"DU-{i}")) for i in range(CHILDREN)]
    sessions = _sessions()
    with db.session_scope() as session:
        iv_items = session.exec(select(PlanItem).where(PlanItem.kind == "ig_session")).all()
    assert len(sessions) == len(iv_items) > 0, "every IV session has exactly one chair"
    per_day = Counter(booking.day for _item, booking in sessions)
    assert max(per_day.values()) == CHAIRS  # the busiest days are full, never more
    slots = [(booking.day, booking.chair) for _item, booking in sessions]
    assert len(slots) == len(set(slots))
    assert all(1 <= chair <= CHAIRS for _day, chair in slots)
    assert all(CALENDAR.is_working_day(day) for day, _chair in slots)
    for item, booking in sessions:
        assert item.due == booking.day, "the item's due day is the booked day"
    assert len(set(refs)) == CHILDREN


def test_a_full_day_moves_the_session_inside_its_window(database_url: str) -> None:
    """When the due day is full the session takes another working day of its window."""
    for i in range(CHILDREN):
        refer_and_activate(iv_child(f"DU-{i}"))
    moved = [
        (item, booking)
        for item, booking in _sessions()
        if item.details.get("booked_day") is not None
    ]
    assert moved, "some sessions had to move"
    inside = [(i, b) for i, b in moved if not i.details["outside_window"]]
    assert inside, "a session with a window moved inside it"
    for item, booking in inside:
        earliest = date.fromisoformat(item.details["earliest"])
        latest = date.fromisoformat(item.details["latest"])
        assert earliest <= booking.day < latest
        assert item.details["booked_day"] == booking.day.isoformat()
    for item, booking in moved:
        if item.details["outside_window"]:  # a one-day window (the first session) moves after it
            assert booking.day > date.fromisoformat(item.details["latest"])


def test_cancelled_sessions_free_their_chairs(database_url: str) -> None:
    """A discharged child's chairs are released and the next child gets them."""
    for i in range(CHAIRS):
        refer_and_activate(iv_child(f"DU-{i}"))
    day_one = min(booking.day for _item, booking in _sessions())
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref="DU-0", lock=True)
        versions.close_pathway(session=session, patient=patient, actor="dr", why="moved away")
    refer_and_activate(iv_child("DU-late"))
    with db.session_scope() as session:
        late = patients.get_patient(session=session, ref="DU-late")
        gone = patients.get_patient(session=session, ref="DU-0")
        on_day_one = session.exec(
            select(PlanItem.patient_id)
            .join(Booking, col(Booking.item_id) == PlanItem.id)
            .where(Booking.day == day_one)
        ).all()
    assert len(on_day_one) == CHAIRS
    assert late.id in on_day_one
    assert gone.id not in on_day_one
