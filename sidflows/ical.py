"""Calendar feeds (iCalendar, RFC 5545 + RFC 7986) of plan items, with ``icalendar``.

One VEVENT per item: a stable UID (the item's key and the child's ref), a
SEQUENCE the caller raises whenever the item moves, STATUS:CANCELLED for a
cancelled item, DTSTART in the unit's timezone (its VTIMEZONE included) or an
all-day date. A staff feed carries refs only: no name, whatever the events hold.
Pure: DTSTAMP is the event's ``changed`` (the caller's record of the last change),
never the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vDuration

__all__ = ["CalendarEvent", "calendar_feed"]

PRODID = "-//sidflows//plan items//EN"
REFRESH = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """One plan item on a calendar.

    ``start``: a date (an all-day item) or a naive datetime in the unit's local time
    (an IV session at the day unit); ``minutes`` its length (timed events only).
    ``sequence`` rises each time the item moves (a re-booking, a re-plan).
    ``changed``: when the item last changed (aware), written as DTSTAMP.
    ``patient_name`` appears only in a feed that is not a staff feed.
    """

    ref: str
    key: str
    summary: str
    start: date | datetime
    changed: datetime
    sequence: int = 0
    minutes: int | None = None
    cancelled: bool = False
    location: str | None = None
    description: str | None = None
    patient_name: str | None = None

    @property
    def uid(self) -> str:
        return f"{self.key}/{self.ref}@sidflows"


def calendar_feed(events: list[CalendarEvent], *, name: str, timezone: str, staff: bool) -> bytes:
    """The events as one iCalendar feed (bytes, CRLF lines).

    ``timezone``: the unit's IANA zone (timed events are in it, with its VTIMEZONE).
    ``staff``: a staff feed; then each summary names the child by ref only.
    """
    zone = ZoneInfo(timezone)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("name", name)
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", timezone)
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    seen: set[str] = set()
    for ev in events:
        if ev.uid in seen:
            raise ValueError(f"events: {ev.uid} given twice (one VEVENT per item)")
        seen.add(ev.uid)
        if ev.sequence < 0:
            raise ValueError(f"events: {ev.uid}: sequence must not be negative")
        if ev.changed.tzinfo is None:
            raise ValueError(f"events: {ev.uid}: changed must be an aware datetime")
        vevent = Event()
        vevent.add("uid", ev.uid)
        vevent.add("dtstamp", ev.changed.astimezone(UTC))
        vevent.add("last-modified", ev.changed.astimezone(UTC))
        vevent.add("sequence", ev.sequence)
        who = ev.ref if staff or not ev.patient_name else f"{ev.patient_name} ({ev.ref})"
        vevent.add("summary", f"{who}: {ev.summary}")
        if isinstance(ev.start, datetime):
            if ev.start.tzinfo is not None:
                raise ValueError(f"events: {ev.uid}: start is local time (naive) in {timezone}")
            start = ev.start.replace(tzinfo=zone)
            vevent.add("dtstart", start)
            vevent.add("dtend", start + timedelta(minutes=ev.minutes or 60))
        else:
            vevent.add("dtstart", ev.start)
            vevent.add("dtend", ev.start + timedelta(days=1))
            vevent.add("transp", "TRANSPARENT")
        vevent.add("status", "CANCELLED" if ev.cancelled else "CONFIRMED")
        if ev.location:
            vevent.add("location", ev.location)
        if ev.description:
            vevent.add("description", ev.description)
        cal.add_component(vevent)
    # The unit's VTIMEZONE always, covering the feed's years (all-day items too).
    days = [e.start.date() if isinstance(e.start, datetime) else e.start for e in events]
    first = min(days, default=date(2000, 1, 1)).replace(month=1, day=1)
    last = max(days, default=first).replace(month=12, day=31)
    cal.add_component(Timezone.from_tzinfo(zone, first_date=first, last_date=last))
    return bytes(cal.to_ical())
