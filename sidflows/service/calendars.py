"""Calendar feeds of plan items (``sidflows calendar``, the daily sweep): the store, read.

Each item is followed across the child's activated plan versions with
``sidflows.plan_diff``: an item that keeps its key, or that a re-plan moved to
another day within its stream (an IG session a week later has another key),
keeps its UID (its first key) and its SEQUENCE rises by one for each move, the
day unit's moves within a version included (the audit trail); an item a
re-plan removed stays in the feed with ``STATUS:CANCELLED`` so the calendars
that hold it drop it. Items given, missed or cancelled by their own run stay as
they were. A staff feed names children by ref only.

- ``day-unit``: the IV immunoglobulin sessions in the day unit, timed from the
  unit's opening at the booked chair;
- ``home-care``: the supervised subcutaneous sessions at home (a nurse's visit);
- a child's ref: every appointment of that child (prophylaxis aside), for the family.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from sidflows.errors import InvalidInput
from sidflows.ical import CalendarEvent, calendar_feed
from sidflows.plan_diff import diff_items
from sidflows.store import calendars as store
from sidflows.store.db import session_scope
from sidflows.store.models import ItemStatus
from sidflows.store.patients import get_patient
from sidflows.store.views import stream_of
from sidflows.unit import Unit

# Staff roles with a feed (``worklist``'s names; ``day_unit`` is accepted too).
STAFF_FEEDS = ("day-unit", "home-care")
# What a family's feed leaves out: a medicine taken every day is not an appointment.
NOT_APPOINTMENTS = frozenset({"prophylaxis"})
HISTORY = frozenset({ItemStatus.done, ItemStatus.missed})
LABELS = {
    "ig_session": "immunoglobulin",
    "ig_trough": "IgG trough level",
    "vaccine_dose": "vaccine",
    "reassessment": "reassessment",
    "plan_review": "plan review",
}


def staff_role(word: str) -> str | None:
    """The staff feed ``word`` names (``day-unit``, ``day_unit``...), or None (a ref)."""
    role = word.strip().lower().replace("_", "-")
    return role if role in STAFF_FEEDS else None


@dataclass(frozen=True, slots=True)
class Tracked:
    """An item as the feed knows it: its UID's key, how often it moved, where it is now."""

    uid_key: str
    sequence: int
    row: store.ItemRow
    cancelled: bool
    changed: dt.datetime


def follow(versions: list[store.VersionRows]) -> list[Tracked]:
    """Every item of one child's activated versions, followed from version to version."""
    tracked: dict[str, Tracked] = {}  # uid key -> the item
    current: dict[str, str] = {}  # key in the newest version -> uid key
    previous: list[store.ItemRow] = []
    for version in versions:
        open_before = [r for r in previous if r.status not in HISTORY]
        diff = diff_items(
            [r.as_item() for r in open_before],
            [r.as_item() for r in version.items],
            stream=lambda item: stream_of(dict(item)),
        )
        moved_from = {str(m.after["key"]): str(m.before["key"]) for m in diff.moved}
        placed: dict[str, str] = {}
        for row in version.items:
            before_key = row.key if row.key in current else moved_from.get(row.key)
            uid = current.get(before_key) if before_key is not None else None
            if uid is None:
                # New to the calendars, or back after a re-plan removed it.
                uid = row.key
                known = tracked.get(uid)
                sequence = known.sequence + 1 if known is not None else 0
            else:
                known = tracked[uid]
                sequence = known.sequence + (known.row.due != row.due)
            # A row the re-plan cancelled and the next version carries on is not cancelled.
            cancelled = row.status == ItemStatus.cancelled
            tracked[uid] = Tracked(
                uid,
                sequence + row.moves,
                row,
                cancelled,
                max(row.updated_at, version.activated_at),
            )
            placed[row.key] = uid
        for gone in diff.removed:
            uid = current[str(gone["key"])]
            known = tracked[uid]
            tracked[uid] = replace(
                known, cancelled=True, changed=max(known.changed, version.activated_at)
            )
        current = placed
        previous = list(version.items)
    # A cancellation is a change a calendar must take: one more SEQUENCE.
    return [replace(t, sequence=t.sequence + 1) if t.cancelled else t for t in tracked.values()]


def _event(t: Tracked, ref: str, unit: Unit, staff: bool, name: str | None) -> CalendarEvent:
    row = t.row
    details = row.details
    opens = unit.calendar.config.day_unit.opens
    start: dt.date | dt.datetime = row.booking_day or row.due
    location = None
    minutes = None
    what = LABELS.get(row.kind, row.kind.replace("_", " "))
    if row.kind == "ig_session":
        route = str(details.get("route", "")).upper()
        where = {"day_unit": "day unit", "supervised": "home, nurse visit", "home": "home"}
        setting = str(details.get("setting", "day_unit" if row.hospital else "home"))
        what = f"{route} immunoglobulin {details.get('dose_g', '')} g".replace("  ", " ")
        location = where.get(setting, setting)
        if row.chair is not None:
            location = f"day unit, chair {row.chair}"
            start = dt.datetime.combine(row.booking_day or row.due, opens)
            minutes = row.minutes
    elif row.kind == "vaccine_dose":
        what = f"vaccine {details.get('vaccine', '')} dose {details.get('dose_number', '')}"
        location = "hospital"
    elif row.hospital:
        location = "hospital"
    return CalendarEvent(
        ref=ref,
        key=t.uid_key,
        summary=what.strip(),
        start=start,
        changed=t.changed,
        sequence=t.sequence,
        minutes=minutes,
        cancelled=t.cancelled,
        location=location,
        description=f"{row.key} ({row.status})",
        patient_name=None if staff else name,
    )


def _in_range(event: CalendarEvent, start: dt.date | None, end: dt.date | None) -> bool:
    day = event.start.date() if isinstance(event.start, dt.datetime) else event.start
    return (start is None or day >= start) and (end is None or day <= end)


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidInput("--to", f"before --from ({start.isoformat()})")


def _wanted(role: str | None, row: store.ItemRow) -> bool:
    if role is None:
        return row.kind not in NOT_APPOINTMENTS
    if row.kind != "ig_session":
        return False
    setting = row.details.get("setting")
    if role == "day-unit":
        return setting == "day_unit" or (setting is None and row.details.get("route") == "iv")
    return setting == "supervised"


def _events(
    versions: dict[str, list[store.VersionRows]],
    *,
    unit: Unit,
    role: str | None,
    start: dt.date | None,
    end: dt.date | None,
    name: str | None = None,
) -> list[CalendarEvent]:
    events: list[CalendarEvent] = []
    for ref, found in sorted(versions.items()):
        for t in follow(found):
            if not _wanted(role, t.row):
                continue
            event = _event(t, ref, unit, role is not None, name)
            if _in_range(event, start, end):
                events.append(event)
    events.sort(key=lambda e: (str(e.start), e.ref, e.key))
    return events


def staff_feed(
    role: str, *, unit: Unit, start: dt.date | None = None, end: dt.date | None = None
) -> bytes:
    """The feed of a staff role (``day-unit``, ``home-care``): every child, refs only."""
    _check_range(start, end)
    wanted = staff_role(role)
    if wanted is None:
        raise InvalidInput("ROLE", f"no feed for {role!r} (expected {', '.join(STAFF_FEEDS)})")
    with session_scope() as session:
        versions = store.activated_versions(session=session, kinds=["ig_session"])
    events = _events(versions, unit=unit, role=wanted, start=start, end=end)
    title = {"day-unit": "day unit chairs", "home-care": "home-care visits"}[wanted]
    return calendar_feed(
        events, name=f"sidflows: {title}", timezone=unit.calendar.config.timezone, staff=True
    )


def child_feed(
    ref: str,
    *,
    unit: Unit,
    start: dt.date | None = None,
    end: dt.date | None = None,
    identity: bool = False,
) -> bytes:
    """One child's appointments, for the family; the name only with ``identity``."""
    _check_range(start, end)
    with session_scope() as session:
        get_patient(session=session, ref=ref)  # an unknown ref: UnknownPatient (exit 3)
        versions = store.activated_versions(session=session, refs=[ref])
        name = store.identity_name(session=session, ref=ref) if identity else None
    events = _events(versions, unit=unit, role=None, start=start, end=end, name=name)
    return calendar_feed(
        events,
        name=f"sidflows: appointments of {ref}",
        timezone=unit.calendar.config.timezone,
        staff=False,
    )


def all_feeds(*, unit: Unit, start: dt.date | None = None) -> dict[str, bytes]:
    """Every feed the unit serves: ``<role>.ics`` and ``children/<ref>.ics``, refs only."""
    feeds = {f"{role}.ics": staff_feed(role, unit=unit, start=start) for role in STAFF_FEEDS}
    with session_scope() as session:
        versions = store.activated_versions(session=session)
    zone = unit.calendar.config.timezone
    for ref, found in sorted(versions.items()):
        events = _events({ref: found}, unit=unit, role=None, start=start, end=None)
        feeds[f"children/{ref}.ics"] = calendar_feed(
            events, name=f"sidflows: appointments of {ref}", timezone=zone, staff=False
        )
    return feeds


def write_atomically(path: Path, data: bytes) -> bool:
    """Write ``path`` whole or not at all (a temporary file, then a rename); False: unchanged."""
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def write_feeds(directory: Path, *, unit: Unit, start: dt.date | None = None) -> list[str]:
    """Every feed into ``directory`` (the one the unit serves); the names rewritten."""
    written = []
    for name, data in all_feeds(unit=unit, start=start).items():
        if write_atomically(directory / name, data):
            written.append(name)
    return written
