"""What coordinators read in the Prefect UI: the plan, what is coming, the census.

Built from plan documents and store counts only: refs, never identity.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from sidflows import service

_KIND_LABEL = {
    "ig_session": "IG session",
    "ig_trough": "trough IgG",
    "vaccine_dose": "vaccine",
    "prophylaxis": "prophylaxis",
    "reassessment": "labs",
    "plan_review": "plan review",
}


def artifact_key(prefix: str, ref: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    safe = "".join(c if c.isalnum() else "-" for c in ref.lower())
    return f"{prefix}-{safe}"


def item_summary(item: dict[str, Any]) -> str:
    kind = item["kind"]
    if kind == "ig_session":
        where = {"day_unit": "day unit", "supervised": "supervised", "home": "home"}[
            item["setting"]
        ]
        return f"{item['route'].upper()} {item['dose_g']:g} g ({where})"
    if kind == "vaccine_dose":
        return f"{item['vaccine']} dose {item['dose_number']}" + (" (live)" if item["live"] else "")
    if kind == "prophylaxis":
        return f"{item['drug']}: {item['regimen']}; review {item['review']}"
    if kind == "reassessment":
        return ", ".join(item["panel"])
    if kind == "ig_trough":
        return f"target >= {item['target_g_l']:g} g/L"
    return str(item.get("reason", ""))


def plan_markdown(document: dict[str, Any]) -> str:
    ref = document["patient_ref"]
    grading = document["grading"]
    lines = [
        f"# Care plan {ref} v{document.get('plan_version', '?')} "
        f"({document.get('plan_status', 'proposed')})",
        "",
        f"Protocol {document['protocol_version']}, as of {document['as_of']}, horizon to "
        f"{document['horizon_end']}. Immunosuppression: **{grading['level']}**"
        f"{' (transient)' if grading['transient'] else ''}.",
        "",
        "## Decisions",
        "",
        "| topic | decision | rationale | source |",
        "| --- | --- | --- | --- |",
    ]
    for d in document["decisions"]:
        lines.append(f"| {d['topic']} | {d['decision']} | {d['rationale']} | {d['source']} |")
    lines += [
        "",
        "## Items",
        "",
        "| due | what | details | status | public funding |",
        "| --- | --- | --- | --- | --- |",
    ]
    held = {h["key"]: h for h in document.get("held", [])}
    for item in document["items"]:
        status = item.get("status", "proposed")
        if item["key"] in held:
            status = f"**held** ({status})"
        lines.append(
            f"| {item['due']} | {_KIND_LABEL[item['kind']]} | {item_summary(item)} | "
            f"{status} | {'yes' if item['publicly_funded'] else 'no'} |"
        )
    lines += held_markdown(list(held.values()))
    if document["deferred"]:
        lines += [
            "",
            "## Deferred live vaccines",
            "",
            "| vaccine | until | reasons |",
            "| --- | --- | --- |",
        ]
        for d in document["deferred"]:
            lines.append(
                f"| {d['vaccine']} | {d['until'] or 'while a cause lasts'} | "
                f"{'; '.join(d['reasons'])} |"
            )
    funding = document.get("funding", {})
    if funding.get("consent_required"):
        lines += [
            "",
            "Family consent to the cost: "
            f"{'recorded' if funding.get('consent_recorded') else '**needed**'}.",
        ]
    return "\n".join(lines)


def held_markdown(held: list[dict[str, Any]]) -> list[str]:
    """The items held while a re-plan waits, and why (docs/clinical-reference.md §4.8)."""
    if not held:
        return []
    waits = sorted({h["held_for"] for h in held if h.get("held_for") is not None})
    found = [
        "",
        f"## Held while plan {', '.join(f'v{v}' for v in waits) or 'a re-plan'} waits",
        "",
        "Not to be given until the clinician answers the proposal: approving a plan "
        "without them cancels them, rejecting it releases them.",
        "",
        "| due | item | status | reason |",
        "| --- | --- | --- | --- |",
    ]
    for h in held:
        found.append(f"| {h['due']} | {h['key']} | {h['status']} | {h['reason']} |")
    return found


def publish_plan(document: dict[str, Any]) -> None:
    ref = document["patient_ref"]
    if "held" not in document:
        document = {**document, "held": service.held(ref)}
    create_markdown_artifact(
        key=artifact_key("plan", ref),
        markdown=plan_markdown(document),
        description=f"Current care plan of {ref}",
    )
    held = {h["key"] for h in document["held"]}
    upcoming = [
        {
            "due": i["due"],
            "what": _KIND_LABEL[i["kind"]],
            "details": item_summary(i),
            "status": "held" if i["key"] in held else i.get("status", "proposed"),
        }
        for i in document["items"]
        if i.get("status", "proposed") in ("proposed", "planned", "scheduled", "due")
    ][:20]
    create_table_artifact(
        key=artifact_key("upcoming", ref), table=upcoming, description=f"Upcoming items of {ref}"
    )


def publish_census(day: dt.date, census: dict[str, Any]) -> None:
    lines = [f"# Unit census {day.isoformat()}", "", "| | count |", "| --- | --- |"]
    for label, value in census.items():
        lines.append(f"| {label} | {value} |")
    create_markdown_artifact(
        key="unit-census",
        markdown="\n".join(lines),
        description=f"Children and items on {day.isoformat()}",
    )
