"""FHIR out: the shown plan document as a Bundle that validates with fhir.resources."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir_bundles import REFERRALS, example_names

from sidflows.calendar import load_calendar
from sidflows.fhir.outbound import full_url, plan_bundle, stream_of
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import validate_referral
from sidflows.store.views import stream_of as store_stream_of


def _shown(name: str, *, version: int, status: str) -> dict[str, Any]:
    referral = validate_referral(json.loads((REFERRALS / f"{name}.json").read_text()))
    doc = plan_document(
        propose_plan(
            referral, today=date(2026, 11, 24), protocol=load_protocol(), calendar=load_calendar()
        )
    )
    states = ["done", "scheduled", "planned", "cancelled"]
    for i, item in enumerate(doc["items"]):
        item["status"] = "proposed" if status == "proposed" else states[min(i, 2)]
    if status != "proposed":
        first_iv = next(i for i in doc["items"] if i["kind"] == "ig_session" or True)
        if first_iv["kind"] == "ig_session":
            first_iv["booking"] = {"day": first_iv["due"], "chair": 2}
            first_iv["status"] = "scheduled"
    doc.update(
        plan_version=version,
        plan_status=status,
        approved_by=None if status == "proposed" else "Dr Ana Puig",
        patient_state="active",
    )
    return doc


def _types(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return out


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


@pytest.mark.parametrize("name", example_names())
@pytest.mark.parametrize("status", ["proposed", "active", "superseded", "closed"])
def test_exported_bundles_validate(name: str, status: str) -> None:
    shown = _shown(name, version=1, status=status)
    bundle = plan_bundle(shown, previous_version=None)
    Bundle.model_validate(bundle)
    types = _types(bundle)
    (careplan,) = types["CarePlan"]
    assert (
        careplan["status"]
        == {
            "proposed": "draft",
            "active": "active",
            "superseded": "revoked",
            "closed": "completed",
        }[status]
    )
    assert "replaces" not in careplan
    # every in-bundle reference resolves to an entry
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert set(_references(bundle)) <= urls
    # one activity per item stream
    assert len(careplan["activity"]) == len({stream_of(i) for i in shown["items"]})
    assert len(careplan["note"]) == len(shown["decisions"]) + 1
    open_items = [i for i in shown["items"] if i["status"] not in {"done", "missed", "cancelled"}]
    assert len(types["Task"]) == len(open_items)
    # the Patient by ref only
    (patient,) = types["Patient"]
    assert patient["identifier"] == [{"system": "urn:sidflows:ref", "value": shown["patient_ref"]}]
    assert "name" not in patient
    if any(i["kind"] == "ig_session" for i in shown["items"]):
        assert any(
            m["medicationCodeableConcept"]["coding"][0]["code"] in {"J06BA01", "J06BA02"}
            for m in types["MedicationRequest"]
        )
    if status != "proposed" and any(i.get("booking") for i in shown["items"]):
        (appointment,) = types["Appointment"]
        assert appointment["status"] == "booked"
    if shown["deferred"]:
        (imr,) = types["ImmunizationRecommendation"]
        deferred = [
            r
            for r in imr["recommendation"]
            if r["forecastStatus"]["coding"][0]["code"] == "contraindicated"
        ]
        assert [r["vaccineCode"][0]["text"] for r in deferred] == [
            d["vaccine"] for d in shown["deferred"]
        ]
        assert all(r["forecastReason"] for r in deferred)


def test_v2_replaces_v1_and_ids_are_stable() -> None:
    v1 = plan_bundle(
        _shown("all-after-maintenance", version=1, status="superseded"), previous_version=None
    )
    v2_shown = _shown("all-after-maintenance", version=2, status="active")
    v2 = plan_bundle(v2_shown, previous_version=1)
    (cp1,), (cp2,) = _types(v1)["CarePlan"], _types(v2)["CarePlan"]
    assert cp1["id"] == "careplan-EX-0001-v1"
    assert cp2["id"] == "careplan-EX-0001-v2"
    cp1_url = next(e["fullUrl"] for e in v1["entry"] if e["resource"] is cp1)
    assert cp2["replaces"][0]["reference"] == cp1_url == full_url("CarePlan", cp1["id"])
    assert cp2["replaces"][0]["identifier"]["value"] == "EX-0001/v1"
    assert plan_bundle(v2_shown, previous_version=1) == v2  # stable: same input, same bundle


def test_identity_only_when_given() -> None:
    shown = _shown("all-after-maintenance", version=1, status="active")
    plain = json.dumps(plan_bundle(shown, previous_version=None))
    assert "Example Child One" not in plain
    assert "EX-MRN-1" not in plain
    with_identity = plan_bundle(
        shown, previous_version=None, identity={"name": "Example Child One", "mrn": "EX-MRN-1"}
    )
    (patient,) = _types(with_identity)["Patient"]
    assert patient["name"] == [{"text": "Example Child One"}]
    assert patient["identifier"][1]["value"] == "EX-MRN-1"


def test_ref_with_underscore_gets_a_valid_id() -> None:
    shown = _shown("lupus-on-rituximab", version=3, status="active")
    shown["patient_ref"] = "A_" + "9" * 38
    bundle = plan_bundle(shown, previous_version=2)
    Bundle.model_validate(bundle)
    assert all(len(e["resource"]["id"]) <= 64 for e in bundle["entry"])


def test_stream_of_matches_the_store() -> None:
    for item in _shown("all-after-maintenance", version=1, status="active")["items"]:
        assert stream_of(item) == store_stream_of(item)
