"""FHIR R4 out: the shown plan document (``show --json``) as a Bundle.

A ``collection`` Bundle, validated with ``fhir.resources`` (R4B models,
R4-compatible): the CarePlan, a Task per open item, an Appointment per booked
day-unit session, MedicationRequests for immunoglobulin and prophylaxis, an
ImmunizationRecommendation for the vaccines (with the deferrals and their
reasons), and the Patient by ref only (identity only when ``identity`` is given).
Ids are stable (``careplan-<ref>-v<version>``) and every ``fullUrl`` is the
``urn:uuid`` (UUID 5) of ``<type>/<id>``, so plan vN's CarePlan ``replaces`` the
same reference whichever export of v(N-1) a reader holds. Pure: no clock.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir.resources.R4B.bundle import Bundle

from sidflows.fhir import tables as t

__all__ = ["OPEN_STATUSES", "fhir_id", "full_url", "plan_bundle", "stream_of"]

_NAMESPACE = uuid.UUID("6f1e0c4e-6b43-5b39-9a57-5f1d3c0e2a10")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
OPEN_STATUSES = frozenset({"proposed", "planned", "scheduled", "due", "deferred"})
_CAREPLAN_STATUS = {
    "proposed": "draft",
    "active": "active",
    "superseded": "revoked",
    "closed": "completed",
}
_REQUEST_STATUS = {
    "proposed": "draft",
    "active": "active",
    "superseded": "cancelled",
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
_RECOMMENDATION_STATUS = "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
_DATE_CRITERIA = {
    "earliest": ("30981-5", "Earliest date to give"),
    "due": ("30980-7", "Date vaccine due"),
    "latest": ("59777-3", "Latest date to give immunization"),
}
_KIND_TEXT = {
    "ig_session": "immunoglobulin session",
    "ig_trough": "trough IgG",
    "vaccine_dose": "vaccine dose",
    "prophylaxis": "prophylaxis",
    "reassessment": "reassessment labs",
    "plan_review": "plan review",
}


def stream_of(item: dict[str, Any]) -> str:
    """The item's stream (as sidflows.store.views.stream_of, without the store)."""
    kind = str(item["kind"])
    if kind == "vaccine_dose":
        return f"vaccine_dose:{item['vaccine']}"
    if kind == "prophylaxis":
        return f"prophylaxis:{item['drug']}"
    return kind


def fhir_id(prefix: str, ref: str, *rest: str) -> str:
    """A stable FHIR id (``[A-Za-z0-9-.]{1,64}``): ``<prefix>-<ref>-<rest>`` when that
    fits (item keys lose ``_`` and ``:`` becomes ``-``), else ``<prefix>-`` and a
    digest of the parts (a ref holding ``_``, which FHIR ids cannot)."""
    tail = [re.sub(r"[^A-Za-z0-9.-]", "", p.replace(":", "-").replace(" ", "-")) for p in rest]
    candidate = "-".join([prefix, ref, *tail])
    if "_" not in ref and _FHIR_ID.fullmatch(candidate):
        return candidate
    digest = hashlib.sha256("\x1f".join([prefix, ref, *rest]).encode()).hexdigest()
    return f"{prefix}-{digest[: 63 - len(prefix)]}"


def full_url(resource_type: str, resource_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}/{resource_id}')}"


def _ref(resource_type: str, resource_id: str, display: str | None = None) -> dict[str, str]:
    ref = {"reference": full_url(resource_type, resource_id), "type": resource_type}
    if display:
        ref["display"] = display
    return ref


def _period(start: str | None, end: str | None) -> dict[str, str]:
    out = {}
    if start:
        out["start"] = start
    if end:
        out["end"] = end
    return out


def plan_bundle(
    shown: dict[str, Any],
    *,
    previous_version: int | None,
    identity: dict[str, Any] | None = None,
    timezone: str = "Europe/Madrid",
    day_unit_opens: time = time(8, 0),
) -> dict[str, Any]:
    """The shown plan document (``show_document``) as a FHIR R4 collection Bundle.

    ``previous_version``: the version this plan replaces (its CarePlan is
    ``replaces``). ``identity`` ({name, mrn}) is added to the Patient only when
    given. A booked IV session's Appointment starts at ``day_unit_opens`` on its
    day in ``timezone`` (the booking holds a day and a chair, not a time).
    A plan document of ``propose`` (no version, no states) is taken as proposed v1.
    """
    ref = str(shown["patient_ref"])
    version = int(shown.get("plan_version") or 1)
    plan_status = str(shown.get("plan_status") or "proposed")
    request_status = _REQUEST_STATUS[plan_status]
    patient_id = fhir_id("patient", ref)
    careplan_id = fhir_id("careplan", ref, f"v{version}")
    subject = _ref("Patient", patient_id)
    resources: list[dict[str, Any]] = [_patient(patient_id, ref, identity)]
    items = [dict(i, status=i.get("status") or "proposed") for i in shown["items"]]

    med_ids: dict[str, tuple[str, str]] = {}  # stream -> (type, id) of its request
    ig = [i for i in items if i["kind"] == "ig_session"]
    if ig:
        mid = fhir_id("medreq", ref, f"v{version}", "ig")
        resources.append(_ig_request(mid, ig, subject, careplan_id, request_status, shown))
        med_ids["ig_session"] = ("MedicationRequest", mid)
    for item in items:
        if item["kind"] == "prophylaxis":
            mid = fhir_id("medreq", ref, f"v{version}", str(item["drug"]))
            resources.append(_prophylaxis(mid, item, subject, careplan_id, request_status))
            med_ids[stream_of(item)] = ("MedicationRequest", mid)
    vaccines = [i for i in items if i["kind"] == "vaccine_dose" and i["status"] in OPEN_STATUSES]
    imr_id = fhir_id("immrec", ref, f"v{version}")
    if vaccines or shown.get("deferred"):
        resources.append(
            _recommendation(imr_id, vaccines, shown.get("deferred", []), subject, shown)
        )
    tasks: dict[str, list[str]] = {}
    for item in items:
        if item["status"] not in OPEN_STATUSES:
            continue
        tid = fhir_id("task", ref, f"v{version}", str(item["key"]))
        focus = med_ids.get(stream_of(item))
        if item["kind"] == "vaccine_dose":
            focus = ("ImmunizationRecommendation", imr_id)
        resources.append(_task(tid, item, subject, careplan_id, focus or ("CarePlan", careplan_id)))
        tasks.setdefault(stream_of(item), []).append(tid)
        booking = item.get("booking")
        if booking:
            aid = fhir_id("appt", ref, f"v{version}", str(item["key"]))
            resources.append(_appointment(aid, item, booking, subject, timezone, day_unit_opens))
    careplan = _careplan(
        careplan_id, shown, items, subject, plan_status, previous_version, med_ids, ref
    )
    resources.insert(1, careplan)
    bundle = {
        "resourceType": "Bundle",
        "id": fhir_id("plan", ref, f"v{version}"),
        "type": "collection",
        "entry": [
            {"fullUrl": full_url(r["resourceType"], r["id"]), "resource": r} for r in resources
        ],
    }
    Bundle.model_validate(bundle)  # what goes out is valid R4 (R4B models)
    return bundle


def _patient(pid: str, ref: str, identity: dict[str, Any] | None) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": t.REF_SYSTEM, "value": ref}],
    }
    if identity:
        if identity.get("mrn"):
            patient["identifier"].append(
                {
                    "type": {"coding": [{"system": t.V2_0203, "code": "MR"}]},
                    "value": str(identity["mrn"]),
                }
            )
        if identity.get("name"):
            patient["name"] = [{"text": str(identity["name"])}]
    return patient


def _careplan(
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
            activities.append({"reference": _ref(kind, rid, stream)})
            continue
        open_rows = [r for r in rows if r["status"] in OPEN_STATUSES]
        status = _ACTIVITY_STATUS[(open_rows or rows)[0]["status"]]
        activities.append(
            {
                "detail": {
                    "kind": "Task",
                    "code": {"text": stream},
                    "status": status,
                    "scheduledPeriod": _period(rows[0]["due"], rows[-1]["due"]),
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
        "period": _period(shown["as_of"], shown["horizon_end"]),
        "activity": activities,
        "note": notes,
    }
    if previous_version is not None:
        prev_id = fhir_id("careplan", ref, f"v{previous_version}")
        careplan["replaces"] = [
            {
                **_ref("CarePlan", prev_id, f"plan v{previous_version}"),
                "identifier": {
                    "system": "urn:sidflows:plan",
                    "value": f"{ref}/v{previous_version}",
                },
            }
        ]
    if shown.get("approved_by"):
        careplan["author"] = {"display": str(shown["approved_by"])}
    return careplan


def _ig_request(
    mid: str,
    sessions: list[dict[str, Any]],
    subject: dict[str, str],
    careplan_id: str,
    status: str,
    shown: dict[str, Any],
) -> dict[str, Any]:
    route = str(sessions[0]["route"])
    atc = t.IG_IV if route == "iv" else t.IG_SC
    dosages: list[dict[str, Any]] = []
    seen: set[tuple[str, float, bool]] = set()
    for s in sessions:
        key = (str(s["route"]), float(s["dose_g"]), bool(s.get("loading")))
        if key in seen:
            continue
        seen.add(key)
        code, display = t.ROUTE_CODES[key[0]]
        dosages.append(
            {
                "sequence": len(dosages) + 1,
                "text": f"{key[0].upper()} {key[1]:g} g ({s['dose_g_per_kg']} g/kg)"
                + (" loading dose" if key[2] else "")
                + f", setting {s['setting']}",
                "route": {"coding": [{"system": t.SNOMED, "code": code, "display": display}]},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": key[1],
                            "unit": "g",
                            "system": t.UCUM,
                            "code": "g",
                        }
                    }
                ],
            }
        )
    decision = next((d for d in shown.get("decisions", []) if d["topic"] == "immunoglobulin"), None)
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "proposal" if status == "draft" else "plan",
        "medicationCodeableConcept": {
            "coding": [{"system": t.ATC, "code": atc}],
            "text": "human normal immunoglobulin",
        },
        "subject": subject,
        "basedOn": [_ref("CarePlan", careplan_id)],
        "dosageInstruction": dosages,
    }
    if decision is not None:
        request["reasonCode"] = [{"text": decision["rationale"]}]
    return request


def _prophylaxis(
    mid: str,
    item: dict[str, Any],
    subject: dict[str, str],
    careplan_id: str,
    status: str,
) -> dict[str, Any]:
    drug = str(item["drug"])
    concept: dict[str, Any] = {"text": drug}
    if drug in t.PROPHYLAXIS_ATC:
        code, display = t.PROPHYLAXIS_ATC[drug]
        concept["coding"] = [{"system": t.ATC, "code": code, "display": display}]
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "proposal" if status == "draft" else "plan",
        "medicationCodeableConcept": concept,
        "subject": subject,
        "basedOn": [_ref("CarePlan", careplan_id)],
        "reasonCode": [{"text": str(item["indication"])}],
        "dosageInstruction": [
            {
                "text": str(item["regimen"]),
                "timing": {"repeat": {"boundsPeriod": _period(item["due"], item.get("review"))}},
            }
        ],
    }


def _vaccine_code(vaccine: str) -> dict[str, Any]:
    return {"coding": [{"system": t.CVX, "code": t.VACCINE_CVX[vaccine]}], "text": vaccine}


def _recommendation(
    rid: str,
    doses: list[dict[str, Any]],
    deferred: list[dict[str, Any]],
    subject: dict[str, str],
    shown: dict[str, Any],
) -> dict[str, Any]:
    recs: list[dict[str, Any]] = []
    for d in doses:
        criteria = []
        for name, field in (("earliest", "earliest"), ("due", "due"), ("latest", "latest")):
            if d.get(field):
                code, display = _DATE_CRITERIA[name]
                criteria.append(
                    {
                        "code": {"coding": [{"system": t.LOINC, "code": code, "display": display}]},
                        "value": f"{d[field]}T00:00:00Z",
                    }
                )
        recs.append(
            {
                "vaccineCode": [_vaccine_code(str(d["vaccine"]))],
                "forecastStatus": {"coding": [{"system": _RECOMMENDATION_STATUS, "code": "due"}]},
                "dateCriterion": criteria,
                "doseNumberPositiveInt": int(d["dose_number"]),
                "description": str(d["key"]),
            }
        )
    for d in deferred:
        rec: dict[str, Any] = {
            "vaccineCode": [_vaccine_code(str(d["vaccine"]))],
            "forecastStatus": {
                "coding": [{"system": _RECOMMENDATION_STATUS, "code": "contraindicated"}],
                "text": "deferred",
            },
            "forecastReason": [{"text": str(reason)} for reason in d["reasons"]],
            "description": f"deferred until {d['until']}" if d.get("until") else "deferred",
        }
        if d.get("until"):
            code, display = _DATE_CRITERIA["earliest"]
            rec["dateCriterion"] = [
                {
                    "code": {"coding": [{"system": t.LOINC, "code": code, "display": display}]},
                    "value": f"{d['until']}T00:00:00Z",
                }
            ]
        recs.append(rec)
    return {
        "resourceType": "ImmunizationRecommendation",
        "id": rid,
        "patient": subject,
        "date": f"{shown['as_of']}T00:00:00Z",
        "recommendation": recs,
    }


def _task(
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
        "basedOn": [_ref("CarePlan", careplan_id)],
        "status": _TASK_STATUS[str(item["status"])],
        "intent": "plan",
        "code": {"text": str(item["kind"])},
        "description": f"{_KIND_TEXT[str(item['kind'])]} {item['key']}",
        "focus": _ref(*focus),
        "for": ref,
        "executionPeriod": _period(
            str(item.get("earliest") or item["due"]), str(item.get("latest") or item["due"])
        ),
    }


def _appointment(
    aid: str,
    item: dict[str, Any],
    booking: dict[str, Any],
    subject: dict[str, str],
    timezone: str,
    opens: time,
) -> dict[str, Any]:
    day = datetime.fromisoformat(str(booking["day"])).date()
    start = datetime.combine(day, opens, tzinfo=ZoneInfo(timezone))
    end = start + timedelta(minutes=int(item.get("session_minutes") or 60))
    return {
        "resourceType": "Appointment",
        "id": aid,
        "identifier": [{"system": "urn:sidflows:item", "value": str(item["key"])}],
        "status": "booked",
        "description": f"IV immunoglobulin {item['dose_g']:g} g, day-unit chair {booking['chair']}",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "minutesDuration": int(item.get("session_minutes") or 60),
        "participant": [
            {"actor": subject, "status": "accepted"},
            {"actor": {"display": f"day-unit chair {booking['chair']}"}, "status": "accepted"},
        ],
    }
