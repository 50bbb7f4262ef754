"""The other outbound resources: the Patient (by ref), the immunoglobulin and
prophylaxis MedicationRequests, the ImmunizationRecommendation (doses due and
deferrals) and the Appointment of a booked day-unit session. Pure: no clock."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sidflows.fhir import tables as t
from sidflows.fhir.outbound_ids import period_of, reference_to

_RECOMMENDATION_STATUS = "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
_DATE_CRITERIA = {
    "earliest": ("30981-5", "Earliest date to give"),
    "due": ("30980-7", "Date vaccine due"),
    "latest": ("59777-3", "Latest date to give immunization"),
}


def patient_resource(pid: str, ref: str, identity: dict[str, Any] | None) -> dict[str, Any]:
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


def ig_request(
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
        "basedOn": [reference_to("CarePlan", careplan_id)],
        "dosageInstruction": dosages,
    }
    if decision is not None:
        request["reasonCode"] = [{"text": decision["rationale"]}]
    return request


def prophylaxis_request(
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
        "basedOn": [reference_to("CarePlan", careplan_id)],
        "reasonCode": [{"text": str(item["indication"])}],
        "dosageInstruction": [
            {
                "text": str(item["regimen"]),
                "timing": {"repeat": {"boundsPeriod": period_of(item["due"], item.get("review"))}},
            }
        ],
    }


def _vaccine_code(vaccine: str) -> dict[str, Any]:
    return {"coding": [{"system": t.CVX, "code": t.VACCINE_CVX[vaccine]}], "text": vaccine}


def recommendation_resource(
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


def appointment_resource(
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
