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

from datetime import time
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from sidflows.fhir.outbound_careplan import careplan_resource, task_resource
from sidflows.fhir.outbound_ids import OPEN_STATUSES, fhir_id, full_url, reference_to, stream_of
from sidflows.fhir.outbound_resources import (
    appointment_resource,
    ig_request,
    patient_resource,
    prophylaxis_request,
    recommendation_resource,
)

__all__ = ["OPEN_STATUSES", "fhir_id", "full_url", "plan_bundle", "stream_of"]


_REQUEST_STATUS = {
    "proposed": "draft",
    "active": "active",
    "superseded": "cancelled",
    "closed": "completed",
}


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
    subject = reference_to("Patient", patient_id)
    resources: list[dict[str, Any]] = [patient_resource(patient_id, ref, identity)]
    items = [dict(i, status=i.get("status") or "proposed") for i in shown["items"]]

    med_ids: dict[str, tuple[str, str]] = {}  # stream -> (type, id) of its request
    ig = [i for i in items if i["kind"] == "ig_session"]
    if ig:
        mid = fhir_id("medreq", ref, f"v{version}", "ig")
        resources.append(ig_request(mid, ig, subject, careplan_id, request_status, shown))
        med_ids["ig_session"] = ("MedicationRequest", mid)
    for item in items:
        if item["kind"] == "prophylaxis":
            mid = fhir_id("medreq", ref, f"v{version}", str(item["drug"]))
            resources.append(prophylaxis_request(mid, item, subject, careplan_id, request_status))
            med_ids[stream_of(item)] = ("MedicationRequest", mid)
    vaccines = [i for i in items if i["kind"] == "vaccine_dose" and i["status"] in OPEN_STATUSES]
    imr_id = fhir_id("immrec", ref, f"v{version}")
    if vaccines or shown.get("deferred"):
        resources.append(
            recommendation_resource(imr_id, vaccines, shown.get("deferred", []), subject, shown)
        )
    tasks: dict[str, list[str]] = {}
    for item in items:
        if item["status"] not in OPEN_STATUSES:
            continue
        tid = fhir_id("task", ref, f"v{version}", str(item["key"]))
        focus = med_ids.get(stream_of(item))
        if item["kind"] == "vaccine_dose":
            focus = ("ImmunizationRecommendation", imr_id)
        resources.append(
            task_resource(tid, item, subject, careplan_id, focus or ("CarePlan", careplan_id))
        )
        tasks.setdefault(stream_of(item), []).append(tid)
        booking = item.get("booking")
        if booking:
            aid = fhir_id("appt", ref, f"v{version}", str(item["key"]))
            resources.append(
                appointment_resource(aid, item, booking, subject, timezone, day_unit_opens)
            )
    careplan = careplan_resource(
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
