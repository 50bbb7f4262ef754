"""``sidflows calendar ROLE|REF [--from D] [--to D] [--output FILE] [--identity]``.

An iCalendar feed (sidflows/service/calendars.py): the day unit's chair
bookings (``day-unit``), the home-care nurses' visits (``home-care``), or one
child's appointments for the family (a ref). Reads the store only, never
Prefect: as light as ``propose`` plus the store. A staff feed names children by
ref only; a child's feed carries the name only with ``--identity``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.io import EXIT_OK, day, out
from sidflows.errors import InvalidInput
from sidflows.service.calendars import child_feed, staff_feed, staff_role, write_atomically
from sidflows.store import db
from sidflows.unit import Unit


def calendar(args: argparse.Namespace) -> int:
    # Options first: a bad one is refused (exit 2, naming it) before the store is touched.
    start = day(args.start, "--from")
    end = day(args.end, "--to")
    role = staff_role(args.who)
    if role is not None and args.identity:
        raise InvalidInput("--identity", "a staff feed names children by ref only")
    db.upgrade()
    unit = Unit()
    if role is not None:
        feed = staff_feed(role, unit=unit, start=start, end=end)
    else:
        feed = child_feed(args.who, unit=unit, start=start, end=end, identity=args.identity)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(feed)
        return EXIT_OK
    path = Path(args.output)
    write_atomically(path, feed)
    out(f"{args.who}: {feed.count(b'BEGIN:VEVENT')} events written to {path}")
    return EXIT_OK
