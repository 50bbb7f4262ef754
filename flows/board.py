"""The unit's board in the Prefect UI: the day's work per role, what is stuck, the chairs.

Three markdown artifacts under stable keys (the UI shows the newest of each beside its
history, under Artifacts): ``board-today``, ``board-stuck`` and ``board-chairs``.
They are the coordinator's worklist of ``sidflows worklist`` (the same document and
columns, docs/formats.md §10 and §14), published by the daily sweep and by the runs
that change it (a plan proposed or activated, an item recorded). Each ref links to
the child's plan artifact. Refs only: no name, record number or birth date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import ArtifactCollectionSort

from flows import runtime
from flows.artifacts import artifact_key
from sidflows.service.worklist import board as board_document
from sidflows.unit import Unit
from sidflows.worklist_view import STUCK, TODAY, Column, cell

KEYS = {"today": "board-today", "stuck": "board-stuck", "chairs": "board-chairs"}
ROWS = 100  # rows per list on the board; the worklist command gives the rest


def _escape(text: str) -> str:
    """A table cell's text: a pipe or a line break would end the cell or the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


Links = dict[str, str]  # ref -> the UI page of the child's newest plan artifact


def plan_url(ref: str, ui_url: str, latest: dict[str, Any]) -> str:
    """The newest plan artifact's page (its id, when known), else the key's history."""
    key = artifact_key("plan", ref)
    found = latest.get(key)
    base = ui_url.rstrip("/")
    return f"{base}/artifacts/artifact/{found}" if found else f"{base}/artifacts/key/{key}"


def refs_of(document: dict[str, Any]) -> list[str]:
    """Every ref the board lists (its rows link to their plans)."""
    found: set[str] = set()
    worklist = document["worklist"]
    for part in ("today", "stuck"):
        for listed in worklist[part].values():
            if listed is not None:
                found.update(r["ref"] for r in listed.get("items", []) if r.get("ref"))
    return sorted(found)


def latest_plan_artifacts(refs: list[str]) -> dict[str, Any]:
    """The newest plan artifact of each ref, in one call to Prefect: key -> artifact id."""
    if not refs:
        return {}
    keys = [artifact_key("plan", ref) for ref in refs]
    with get_client(sync_client=True) as client:
        # Every filter and the sort given: the sync client sends null for those left out,
        # and the server refuses null (Prefect 3.8).
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys)),
            flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(),
            sort=ArtifactCollectionSort.KEY_ASC,
            limit=len(keys),
        )
    return {a.key: a.latest_id for a in found}


def _table(rows: list[dict[str, Any]], columns: Any, links: Links) -> list[str]:
    cols: list[Column] = list(columns)
    lines = [
        "| " + " | ".join(name for name, _ in cols) + " |",
        "| " + " | ".join("---" for _ in cols) + " |",
    ]
    for row in rows:
        cells = [
            f"[{_escape(row['ref'])}]({links[row['ref']]})"
            if name == "ref" and row.get("ref") in links
            else _escape(cell(value, row))
            for name, value in cols
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _lists(part: dict[str, Any], titles: dict[str, Any], links: Links, nothing: str) -> list[str]:
    lines: list[str] = []
    empty: list[str] = []
    for name, (title, columns) in titles.items():
        listed = part.get(name)
        if listed is None:
            continue
        if listed["count"] == 0:
            empty.append(title)
            continue
        rows = listed["groups"] if name == "outbox" else listed["items"]
        shown = len(rows) if name != "outbox" else listed["count"]
        more = (
            f" ({shown:,} shown: `sidflows worklist` lists them all)"
            if shown < listed["count"]
            else ""
        )
        lines += ["", f"## {title}: {listed['count']:,}{more}", ""]
        lines += _table(rows, columns, links)
    if empty:
        lines += ["", f"{nothing}: " + "; ".join(empty) + "."]
    return lines


def today_markdown(document: dict[str, Any], links: Links) -> str:
    day = document["date"]
    lines = [f"# The unit's work on {day}", "", "Each ref opens the child's plan."]
    lines += _lists(document["worklist"]["today"], TODAY, links, "Nothing today for")
    return "\n".join(lines)


def stuck_markdown(document: dict[str, Any], links: Links) -> str:
    day = document["date"]
    lines = [f"# What is stuck on {day}", "", "Each ref opens the child's plan."]
    lines += _lists(document["worklist"]["stuck"], STUCK, links, "Nothing stuck")
    return "\n".join(lines)


def chairs_markdown(document: dict[str, Any]) -> str:
    chairs = document["chairs"]
    lines = [
        f"# Day-unit chairs, four weeks from {document['date']}",
        "",
        "| day | booked | capacity | free | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in chairs:
        day = dt.date.fromisoformat(d["date"])
        booked, capacity = d["booked"], d["capacity"]
        free = capacity - booked
        if d.get("closed"):
            note = "**closed day with bookings: move them**"
        elif free <= 0:
            note = "**full**"
        else:
            note = "█" * booked + "░" * free
        lines.append(
            f"| {day.strftime('%a')} {d['date']} | {booked} | {capacity} | {max(free, 0)} | "
            f"{note} |"
        )
    return "\n".join(lines)


def publish(document: dict[str, Any], *, links: Links) -> None:
    day = document["date"]
    create_markdown_artifact(
        key=KEYS["today"],
        markdown=today_markdown(document, links),
        description=f"The unit's work on {day}, per role",
    )
    create_markdown_artifact(
        key=KEYS["stuck"],
        markdown=stuck_markdown(document, links),
        description=f"What is stuck on {day}",
    )
    create_markdown_artifact(
        key=KEYS["chairs"],
        markdown=chairs_markdown(document),
        description=f"Day-unit chairs booked, four weeks from {day}",
    )


def board_now(unit: Unit, day: dt.date | None = None) -> dict[str, Any]:
    return board_document(unit=unit, on=day, limit=ROWS)


@task(name="unit-board", cache_policy=NO_CACHE)
def publish_board(day: dt.date | None = None) -> dict[str, int]:
    """Publish the board of ``day`` (default: today in the unit); the lists' counts."""
    unit = runtime.unit()
    document = board_now(unit, day)
    refs = refs_of(document)
    latest = latest_plan_artifacts(refs)
    publish(document, links={ref: plan_url(ref, unit.ui_url, latest) for ref in refs})
    worklist = document["worklist"]
    return {
        **{f"today_{k}": v["count"] for k, v in worklist["today"].items() if v is not None},
        **{f"stuck_{k}": v["count"] for k, v in worklist["stuck"].items() if v is not None},
    }


def refresh_board(day: dt.date | None = None) -> dict[str, int] | None:
    """Publish the board again (the sweep; a run that changed what it shows). The board
    is a view: a failure here is logged and never fails the run that changed the record."""
    try:
        return publish_board(day)
    except Exception as problem:
        get_run_logger().warning("the unit's board was not published: %s", problem)
        return None
