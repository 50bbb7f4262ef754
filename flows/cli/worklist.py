"""``sidflows worklist [--date D] [--role R] [--limit N] [--json]``: the day, and what is stuck.

Reads the store only (sidflows/service/worklist.py), never Prefect: as light as
``propose`` plus the store. Text is a few ``rich`` tables, one per list; ``--json``
the document of docs/formats.md §10. Refs only, never identity.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flows.cli.io import EXIT_OK, day, print_json
from sidflows.service.worklist import check_limit, check_role
from sidflows.service.worklist import worklist as build
from sidflows.store import db
from sidflows.unit import Unit

# Wide enough that a table is not wrapped when the output goes to a file or a pipe.
PIPE_WIDTH = 200

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def worklist(args: argparse.Namespace) -> int:
    # Options first: a bad one is refused (exit 2, naming it) before the store is touched.
    on = day(args.date, "--date")
    role = check_role(args.role, "--role")
    limit = check_limit(args.limit, "--limit")
    db.upgrade()
    document = build(unit=Unit(), on=on, role=role, limit=limit)
    if args.json:
        print_json(document)
        return EXIT_OK
    render(document, _console())
    return EXIT_OK


def _console() -> Console:
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console = Console(file=sys.stdout, highlight=False, width=PIPE_WIDTH)
    return console


def _yes(value: Any) -> str:
    return "yes" if value else ""


def _status(item: dict[str, Any]) -> str:
    """An item's state; a held one says so first: it must not go ahead."""
    return f"HELD ({item['status']})" if item.get("held") else str(item["status"])


def _grams(item: dict[str, Any]) -> str:
    return f"{item['product']} {item['dose_g']:g} g ({item['dose_g_per_kg']:g} g/kg)" + (
        ", loading" if item.get("loading") else ""
    )


TODAY: dict[str, tuple[str, Sequence[Column]]] = {
    "day_unit": (
        "Day unit",
        (
            ("chair", lambda i: i["chair"]),
            ("time", lambda i: f"{i['start']}-{i['end'] or '?'}"),
            ("ref", lambda i: i["ref"]),
            ("product and grams", _grams),
            ("first infusion", lambda i: _yes(i["first_infusion"])),
            ("status", _status),
        ),
    ),
    "home_care": (
        "Home care",
        (
            ("ref", lambda i: i["ref"]),
            ("visit", lambda i: "nurse visit (supervised SC)" if i["nurse_visit"] else "home SC"),
            ("product and grams", _grams),
            ("status", _status),
        ),
    ),
    "labs": (
        "Labs and troughs to draw",
        (
            ("ref", lambda i: i["ref"]),
            ("what", lambda i: i["what"]),
            (
                "tests",
                lambda i: (
                    f"IgG, target {i['target_g_l']:g} g/L"
                    if i["target_g_l"] is not None
                    else ", ".join(i["panel"])
                ),
            ),
            ("status", _status),
        ),
    ),
    "vaccines": (
        "Vaccines to give",
        (
            ("ref", lambda i: i["ref"]),
            ("vaccine", lambda i: i["vaccine"]),
            ("dose", lambda i: i["dose_number"]),
            ("live", lambda i: _yes(i["live"])),
            ("status", _status),
        ),
    ),
    "other": (
        "Prophylaxis and plan reviews",
        (("ref", lambda i: i["ref"]), ("what", lambda i: i["what"]), ("status", _status)),
    ),
}

STUCK: dict[str, tuple[str, Sequence[Column]]] = {
    "overdue": (
        "Overdue",
        (
            ("days late", lambda i: i["days_late"]),
            ("due", lambda i: i["due"]),
            ("ref", lambda i: i["ref"]),
            ("what", lambda i: i["what"]),
            ("key", lambda i: i["key"]),
            ("escalations", lambda i: i["escalations"]),
        ),
    ),
    "held": (
        "Held by a safety hold until a re-plan is answered",
        (
            ("due", lambda i: i["due"]),
            ("ref", lambda i: i["ref"]),
            ("what", lambda i: i["what"]),
            ("until v", lambda i: i["held_for"]),
            ("why", lambda i: i["held"]),
        ),
    ),
    "awaiting_approval": (
        "Plans waiting for a clinician",
        (
            ("days", lambda i: i["days_waiting"]),
            ("ref", lambda i: i["ref"]),
            ("plan", lambda i: f"v{i['plan_version']}" + (" (re-plan)" if i["replan"] else "")),
            ("reason", lambda i: i["reason"]),
            ("since", lambda i: i["since"]),
        ),
    ),
    "awaiting_consent": (
        "Plans waiting for the family's consent",
        (
            ("days", lambda i: i["days_waiting"]),
            ("ref", lambda i: i["ref"]),
            ("plan", lambda i: f"v{i['plan_version']}" + (" (re-plan)" if i["replan"] else "")),
            ("approved by", lambda i: i["approved_by"]),
            ("since", lambda i: i["since"]),
        ),
    ),
    "unfinished_activations": (
        "Approved plans not yet active (the sweep finishes them)",
        (
            ("ref", lambda i: i["ref"]),
            ("plan", lambda i: f"v{i['plan_version']}"),
            ("approved", lambda i: i["since"]),
        ),
    ),
    "pending_intents": (
        "Not yet carried out in Prefect",
        (
            ("ref", lambda i: i["ref"]),
            ("intent", lambda i: i["kind"]),
            ("attempts", lambda i: i["attempts"]),
            ("since", lambda i: i["since"]),
            ("last error", lambda i: i["last_error"] or ""),
        ),
    ),
    # Text shows the outbox by status, route and event; --json also lists the messages.
    "outbox": (
        "Messages failed or without a route",
        (
            ("status", lambda g: g["status"]),
            ("route", lambda g: g["route"]),
            ("event", lambda g: g["event"]),
            ("messages", lambda g: g["count"]),
            ("oldest", lambda g: g["oldest"]),
        ),
    ),
}


def _table(listed: dict[str, Any], rows: str, columns: Sequence[Column]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, _ in columns:
        table.add_column(name)
    for row in listed[rows]:
        # Text, not markup: a key or an error holding [brackets] prints as it is.
        table.add_row(*(Text("" if (v := value(row)) is None else str(v)) for _, value in columns))
    return table


def render(document: dict[str, Any], console: Console) -> None:
    """The document as text: a title line and a table for each list that holds anything,
    then one line naming the empty ones."""
    line = partial(console.print, soft_wrap=True)  # a line is never folded; tables fit
    line(Text(f"Worklist {document['date']} ({document['role']})", style="bold"))
    for part, titles in (("today", TODAY), ("stuck", STUCK)):
        line()
        line(Text("Today" if part == "today" else "Stuck", style="bold underline"))
        empty: list[str] = []
        for name, (title, columns) in titles.items():
            listed = document[part].get(name)
            if listed is None:
                continue  # not this role's
            count = listed["count"]
            if count == 0:
                empty.append(title[0].lower() + title[1:] if empty else title)
                continue
            # The outbox's groups are all there; the other lists hold at most --limit rows.
            rows = "groups" if name == "outbox" else "items"
            shown = len(listed[rows]) if rows == "items" else count
            more = f" ({shown:,} shown, --limit for more)" if shown < count else ""
            line(Text(f"{title}: {count:,}{more}", style="bold"))
            console.print(_table(listed, rows, columns))
        if empty:
            line(Text(f"{', '.join(empty)}: nothing"))
