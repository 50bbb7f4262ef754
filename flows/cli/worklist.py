"""``sidflows worklist [--date D] [--role R] [--limit N] [--json]``: the day, and what is stuck.

Reads the store only (sidflows/service/worklist.py), never Prefect: as light as
``propose`` plus the store. Text is a few ``rich`` tables, one per list; ``--json``
the document of docs/formats.md §10. Refs only, never identity.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
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
from sidflows.worklist_view import STUCK, TODAY, Column, cell

# Wide enough that a table is not wrapped when the output goes to a file or a pipe.
PIPE_WIDTH = 200


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


def _table(listed: dict[str, Any], rows: str, columns: Sequence[Column]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, _ in columns:
        table.add_column(name)
    for row in listed[rows]:
        # Text, not markup: a key or an error holding [brackets] prints as it is.
        table.add_row(*(Text(cell(value, row)) for _, value in columns))
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
