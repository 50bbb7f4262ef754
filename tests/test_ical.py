"""Calendar feeds: parse with icalendar; a moved item shows once (same UID, higher
SEQUENCE) with recurring_ical_events; cancelled items; no identity in a staff feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

# Not yet in pyproject.toml / requirements.lock (the lead adds them): skip, do not fail.
pytest.importorskip("icalendar", reason="icalendar not installed (pip install icalendar)")
recurring_ical_events = pytest.importorskip("recurring_ical_events")

from icalendar import Calendar  # noqa: E402

from sidflows.ical import CalendarEvent, calendar_feed  # noqa: E402

CHANGED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
TZ = "Europe/Madrid"


def _sessions(moved: bool) -> list[CalendarEvent]:
    out = []
    for n, planned in enumerate((date(2026, 12, 1), date(2026, 12, 29), date(2027, 1, 26))):
        day, seq = planned, 0
        if moved and n == 1:
            day, seq = date(2026, 12, 22), 1  # re-booked inside its window
        out.append(
            CalendarEvent(
                ref="EX-0001",
                key=f"ig_session:{['2026-12-01', '2026-12-29', '2027-01-26'][n]}",
                summary="IV immunoglobulin 11 g",
                start=datetime(day.year, day.month, day.day, 8, 0),  # noqa: DTZ001 (unit local time)
                minutes=184,
                changed=CHANGED,
                sequence=seq,
                location="day unit, chair 2",
                patient_name="Example Child One",
            )
        )
    return out


def _parse(feed: bytes) -> Calendar:
    return Calendar.from_ical(feed)


def test_feed_parses_with_timezone_and_refresh() -> None:
    cal = _parse(calendar_feed(_sessions(False), name="Day unit", timezone=TZ, staff=True))
    assert str(cal["REFRESH-INTERVAL"].to_ical().decode()) == "PT1H"
    assert cal["X-PUBLISHED-TTL"].to_ical().decode() == "PT1H"
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == [TZ]
    events = cal.walk("VEVENT")
    assert len(events) == 3
    start = events[0].decoded("DTSTART")
    assert str(start.tzinfo) == TZ
    assert start.hour == 8
    assert events[0]["UID"] == "ig_session:2026-12-01/EX-0001@sidflows"
    assert events[0].decoded("DTEND") - start == timedelta(minutes=184)


def test_moved_item_same_uid_higher_sequence_each_occurrence_once() -> None:
    before = _parse(calendar_feed(_sessions(False), name="x", timezone=TZ, staff=True))
    after = _parse(calendar_feed(_sessions(True), name="x", timezone=TZ, staff=True))
    old = {e["UID"]: e for e in before.walk("VEVENT")}
    new = {e["UID"]: e for e in after.walk("VEVENT")}
    assert old.keys() == new.keys()
    uid = "ig_session:2026-12-29/EX-0001@sidflows"
    assert int(new[uid]["SEQUENCE"]) > int(old[uid]["SEQUENCE"])
    seen = recurring_ical_events.of(after).between(date(2026, 11, 1), date(2027, 3, 1))
    days = sorted(e.decoded("DTSTART").date() for e in seen)
    assert days == [date(2026, 12, 1), date(2026, 12, 22), date(2027, 1, 26)]
    assert len({e["UID"] for e in seen}) == len(seen)


def test_cancelled_items() -> None:
    events = [
        CalendarEvent(
            ref="EX-0002",
            key="vaccine_dose:PCV:1",
            summary="PCV dose 1",
            start=date(2027, 1, 15),
            changed=CHANGED,
            sequence=2,
            cancelled=True,
        ),
        CalendarEvent(
            ref="EX-0002",
            key="plan_review:2027-03-01",
            summary="plan review",
            start=date(2027, 3, 1),
            changed=CHANGED,
        ),
    ]
    cal = _parse(calendar_feed(events, name="x", timezone=TZ, staff=True))
    status = {e["UID"]: str(e["STATUS"]) for e in cal.walk("VEVENT")}
    assert status == {
        "vaccine_dose:PCV:1/EX-0002@sidflows": "CANCELLED",
        "plan_review:2027-03-01/EX-0002@sidflows": "CONFIRMED",
    }
    allday = next(e for e in cal.walk("VEVENT") if "plan_review" in str(e["UID"]))
    assert allday.decoded("DTSTART") == date(2027, 3, 1)


def test_no_identity_in_a_staff_feed() -> None:
    staff = calendar_feed(_sessions(False), name="Day unit", timezone=TZ, staff=True)
    assert b"Example Child One" not in staff.replace(b"\r\n ", b"")
    assert b"EX-0001" in staff
    family = calendar_feed(_sessions(False), name="Family", timezone=TZ, staff=False)
    assert b"Example Child One" in family.replace(b"\r\n ", b"")


def test_refused_events() -> None:
    e = _sessions(False)[0]
    with pytest.raises(ValueError, match="twice"):
        calendar_feed([e, e], name="x", timezone=TZ, staff=True)
    naive = CalendarEvent(
        ref="R",
        key="k",
        summary="s",
        start=date(2027, 1, 1),
        changed=datetime(2026, 1, 1),  # noqa: DTZ001 (naive on purpose: refused)
    )
    with pytest.raises(ValueError, match="aware"):
        calendar_feed([naive], name="x", timezone=TZ, staff=True)
