"""The worklist's lists as columns: the terminal's tables (``sidflows worklist``) and the
unit's board in Prefect (flows/board.py) show the same columns of the same document
(docs/formats.md §10). Each column: a title and how a row's cell is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def cell(value: Callable[[dict[str, Any]], Any], row: dict[str, Any]) -> str:
    """A row's cell as text (nothing for a missing value)."""
    found = value(row)
    return "" if found is None else str(found)


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
    "replaced_runs": (
        "Runs replaced after ending without recording their item (last 7 days)",
        (
            ("ref", lambda i: i["ref"]),
            ("plan", lambda i: f"v{i['plan_version']}" if i["plan_version"] else ""),
            ("item", lambda i: i["key"]),
            ("replaced", lambda i: i["replacements"]),
            ("last", lambda i: i["last"]),
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
