"""Calendar feeds from the store (`sidflows calendar`): stable UIDs across a re-plan that
moves one item and removes others, SEQUENCE and STATUS:CANCELLED, no identity for staff."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import icalendar
import pytest
import recurring_ical_events

from flows.cli import main
from sidflows import service
from sidflows.service.calendars import child_feed, staff_feed
from sidflows.unit import Unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "referrals"
TODAY = dt.date(2026, 11, 24)
NAME, MRN = "Calendar Example Child", "MRN-CAL-0001"
# IgG recovered: the IG sessions (and their troughs) go; the reviews move a week later.
RECOVERED = {
    "labs": [{"date": "2026-11-30", "igg_g_l": 8.5, "cd19_per_ul": 300, "cd4_per_ul": 900}]
}
MOVED, REMOVED = "plan_review:2027-03-01", "ig_session:2026-12-01"


def _cycle(ref: str, unit: Unit, day: dt.date, reason: str) -> None:
    service.propose(ref, unit=unit, today=day, reason=reason, actor="test")
    service.decide(ref, unit=unit, decision="approve", by="Dr Test")
    service.consent(ref, unit=unit, by="coordinator")
    assert service.activate(ref, unit=unit, actor="test").status == "activated"


def _referred(unit: Unit) -> str:
    sample = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    sample["identity"] = {"name": NAME, "mrn": MRN}
    ref = service.refer(json.dumps(sample).encode(), unit=unit, actor="test").ref
    _cycle(ref, unit, TODAY, "referral")
    return ref


def _replanned(ref: str, unit: Unit) -> None:
    service.record_lab_result(ref, json.dumps(RECOVERED), actor="Dr Test")
    _cycle(ref, unit, TODAY + dt.timedelta(days=7), "new lab result")


def _events(feed: bytes) -> dict[str, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(feed)
    occurrences = recurring_ical_events.of(calendar).between(
        dt.date(2026, 1, 1), dt.date(2029, 1, 1)
    )
    uids = Counter(str(e["UID"]) for e in occurrences)
    assert uids
    assert max(uids.values()) == 1, "each occurrence once"
    assert len(occurrences) == len(calendar.walk("VEVENT"))
    return {str(e["UID"]).split("/")[0]: e for e in occurrences}


def test_a_replan_moves_one_item_and_cancels_the_removed(database_url: str) -> None:
    unit = Unit()
    ref = _referred(unit)
    before = _events(child_feed(ref, unit=unit))
    assert int(before[MOVED]["SEQUENCE"]) == 0
    assert str(before[REMOVED]["STATUS"]) == "CONFIRMED"
    _replanned(ref, unit)
    feed = child_feed(ref, unit=unit)
    after = _events(feed)
    moved = after[MOVED]
    assert moved["DTSTART"].dt == dt.date(2027, 3, 8)  # the same UID, on its new day
    assert int(moved["SEQUENCE"]) > int(before[MOVED]["SEQUENCE"])
    assert str(moved["STATUS"]) == "CONFIRMED"
    removed = after[REMOVED]
    assert str(removed["STATUS"]) == "CANCELLED"
    assert int(removed["SEQUENCE"]) > int(before[REMOVED]["SEQUENCE"])
    assert set(before) <= set(after)  # nothing vanishes silently: removed means cancelled
    assert b"REFRESH-INTERVAL;VALUE=DURATION:PT1H" in feed
    assert b"X-PUBLISHED-TTL:PT1H" in feed
    assert b"BEGIN:VTIMEZONE" in feed
    assert b"TZID:Europe/Madrid" in feed
    assert NAME.encode() not in feed  # the family's feed carries the name only when asked
    assert NAME in str(icalendar.Calendar.from_ical(child_feed(ref, unit=unit, identity=True)))


def test_the_day_unit_feed_books_chairs_and_names_no_one(database_url: str) -> None:
    unit = Unit()
    ref = _referred(unit)
    feed = staff_feed("day-unit", unit=unit)
    events = _events(feed)
    first = events[REMOVED]
    start = first["DTSTART"].dt
    assert isinstance(start, dt.datetime)
    assert str(start.tzinfo) == "Europe/Madrid"
    assert start.time() == unit.calendar.config.day_unit.opens
    assert "chair" in str(first["LOCATION"])
    assert all(str(e["SUMMARY"]).startswith(f"{ref}: IV immunoglobulin") for e in events.values())
    _replanned(ref, unit)
    for role in ("day-unit", "day_unit", "home-care"):
        staff = staff_feed(role, unit=unit)
        assert NAME.encode() not in staff
        assert MRN.encode() not in staff
    cancelled = _events(staff_feed("day-unit", unit=unit))
    assert {str(e["STATUS"]) for e in cancelled.values()} == {"CANCELLED"}


def test_calendar_command_writes_the_file_and_filters_days(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _referred(Unit())
    output = tmp_path / "feeds" / "day-unit.ics"
    code = main(
        [
            "calendar",
            "day-unit",
            "--from",
            "2027-01-01",
            "--to",
            "2027-02-28",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    assert "events written" in capsys.readouterr().out
    days = [e["DTSTART"].dt.date() for e in _events(output.read_bytes()).values()]
    assert days
    assert all(dt.date(2027, 1, 1) <= d <= dt.date(2027, 2, 28) for d in days)
    assert main(["calendar", ref]) == 0
    assert "BEGIN:VCALENDAR" in capsys.readouterr().out
    assert main(["calendar", "NOPE-1"]) == 3
    assert main(["calendar", ref, "--from", "2027-02-01", "--to", "2027-01-01"]) == 2
    assert main(["calendar", "day-unit", "--identity"]) == 2
    err = capsys.readouterr().err
    assert "--to" in err
    assert "--identity" in err


def test_calendar_command_never_loads_prefect(database_url: str) -> None:
    code = (
        "import sys; from flows.cli import main; "
        "code = main(['calendar', 'home-care']); "
        "print('PREFECT_LOADED' if any(m == 'prefect' or m.startswith('prefect.') "
        "for m in sys.modules) else f'NO_PREFECT {code}', file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "NO_PREFECT 0" in done.stderr
