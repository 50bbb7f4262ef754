"""The outbound CarePlan (an activity per stream, the plan it replaces) and a Task per
open item. Pure."""

from __future__ import annotations

from typing import Any

from sidflows.fhir.outbound_ids import OPEN_STATUSES, fhir_id, period_of, reference_to, stream_of

_CAREPLAN_STATUS = {
    "proposed": "draft",
    "active": "active",
    "superseded": "revoked",
    "closed": "completed",
}


_TASK_STATUS = {
    "proposed": "draft",
    "planned": "requested",
    "scheduled": "accepted",
    "due": "ready",
    "deferred": "on-hold",
}
_ACTIVITY_STATUS = {
    "proposed": "not-started",
    "planned": "not-started",
    "scheduled": "scheduled",
    "due": "in-progress",
    "deferred": "on-hold",
    "done": "completed",
    "missed": "stopped",
    "cancelled": "cancelled",
}


_KIND_TEXT = {
    "ig_session": "immunoglobulin session",
    "ig_trough": "trough IgG",
    "vaccine_dose": "vaccine dose",
    "prophylaxis": "prophylaxis",
    "reassessment": "reassessment labs",
    "plan_review": "plan review",
}


def careplan_resource(
    cid: str,
    shown: dict[str, Any],
    items: list[dict[str, Any]],
    subject: dict[str, str],
    plan_status: str,
    previous_version: int | None,
    med_ids: dict[str, tuple[str, str]],
    ref: str,
) -> dict[str, Any]:
    version = int(shown.get("plan_version") or 1)
    notes = [
        {"text": f"grading: {shown['grading']['level']}: " + "; ".join(shown["grading"]["reasons"])}
    ]
    notes += [
        {"text": f"{d['topic']}: {d['decision']}. {d['rationale']} (source: {d['source']})"}
        for d in shown.get("decisions", [])
    ]
    streams: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        streams.setdefault(stream_of(item), []).append(item)
    activities: list[dict[str, Any]] = []
    for stream, rows in streams.items():
        if stream in med_ids:
            kind, rid = med_ids[stream]
            activities.append({"reference": reference_to(kind, rid, stream)})
            continue
        open_rows = [r for r in rows if r["status"] in OPEN_STATUSES]
        status = _ACTIVITY_STATUS[(open_rows or rows)[0]["status"]]
        activities.append(
            {
                "detail": {
                    "kind": "Task",
                    "code": {"text": stream},
                    "status": status,
                    "scheduledPeriod": period_of(rows[0]["due"], rows[-1]["due"]),
                    "description": f"{_KIND_TEXT[rows[0]['kind']]}: {len(rows)} in the plan",
                }
            }
        )
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": cid,
        "identifier": [{"system": "urn:sidflows:plan", "value": f"{ref}/v{version}"}],
        "status": _CAREPLAN_STATUS[plan_status],
        "intent": "plan",
        "title": f"immunology care plan v{version}",
        "subject": subject,
        "period": period_of(shown["as_of"], shown["horizon_end"]),
        "activity": activities,
        "note": notes,
    }
    if previous_version is not None:
        prev_id = fhir_id("careplan", ref, f"v{previous_version}")
        careplan["replaces"] = [
            {
                **reference_to("CarePlan", prev_id, f"plan v{previous_version}"),
                "identifier": {
                    "system": "urn:sidflows:plan",
                    "value": f"{ref}/v{previous_version}",
                },
            }
        ]
    if shown.get("approved_by"):
        careplan["author"] = {"display": str(shown["approved_by"])}
    return careplan


def task_resource(
    tid: str,
    item: dict[str, Any],
    subject: dict[str, str],
    careplan_id: str,
    focus: tuple[str, str],
) -> dict[str, Any]:
    ref = subject  # the Patient, by ref only
    return {
        "resourceType": "Task",
        "id": tid,
        "identifier": [{"system": "urn:sidflows:item", "value": str(item["key"])}],
        "basedOn": [reference_to("CarePlan", careplan_id)],
        "status": _TASK_STATUS[str(item["status"])],
        "intent": "plan",
        "code": {"text": str(item["kind"])},
        "description": f"{_KIND_TEXT[str(item['kind'])]} {item['key']}",
        "focus": reference_to(*focus),
        "for": ref,
        "executionPeriod": period_of(
            str(item.get("earliest") or item["due"]), str(item.get("latest") or item["due"])
        ),
    }
