"""FHIR Bundles in: each example referral as a Bundle gives the same referral (and
plan) as its JSON twin; mangled Bundles are refused naming the entry."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fhir_bundles import (
    ATC,
    BUNDLES,
    DIAGNOSIS_CODES,
    DRUG_ATC,
    REFERRALS,
    example_names,
    referral_to_bundle,
)

from sidflows.calendar import load_calendar
from sidflows.errors import InvalidInput
from sidflows.fhir import tables
from sidflows.fhir.inbound import (
    derive_ref,
    lab_result_from_bundle,
    referral_from_bundle,
    treatment_change_from_bundle,
)
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import validate_referral

SECRET = b"test secret of the unit, 32 byte"
TODAY = date(2026, 11, 24)
NAMES = example_names()


def _twin(name: str) -> dict[str, Any]:
    """The JSON example as a record would code it: the Bundle's ICD-10/SNOMED and ATC codes."""
    doc: dict[str, Any] = json.loads((REFERRALS / f"{name}.json").read_text())
    diagnosis = doc["diagnosis"]
    if "code" not in diagnosis:
        diagnosis["system"], diagnosis["code"] = DIAGNOSIS_CODES[diagnosis["label"]]
    for treatment in doc["treatments"]:
        if "code" not in treatment:
            treatment["code"], treatment["system"] = DRUG_ATC[treatment["drug"]], ATC
    return doc


def _bundle(name: str) -> dict[str, Any]:
    return json.loads((BUNDLES / f"{name}.bundle.json").read_text())


def test_example_bundles_are_the_builder_output() -> None:
    assert NAMES, "no example referrals"
    for name in NAMES:
        assert _bundle(name) == referral_to_bundle(_twin(name)), (
            f"examples/fhir/{name}.bundle.json is stale: python tests/fhir/fhir_bundles.py"
        )


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_same_referral_and_plan(name: str) -> None:
    doc = referral_from_bundle(_bundle(name), ref_secret=SECRET)
    mapped, twin = validate_referral(doc), validate_referral(_twin(name))
    assert mapped == twin
    protocol, calendar = load_protocol(), load_calendar()
    plans = [
        plan_document(propose_plan(r, today=TODAY, protocol=protocol, calendar=calendar))
        for r in (mapped, twin)
    ]
    assert plans[0] == plans[1]


@pytest.mark.parametrize("kind", ["transaction", "document"])
def test_other_bundle_types(kind: str) -> None:
    bundle = _bundle(NAMES[0])
    bundle["type"] = kind
    if kind == "transaction":
        for e in bundle["entry"]:
            e["request"] = {"method": "POST", "url": e["resource"]["resourceType"]}
    assert validate_referral(referral_from_bundle(bundle, ref_secret=SECRET)) == validate_referral(
        _twin(NAMES[0])
    )


def test_ref_derived_from_record_number_by_keyed_hash() -> None:
    twin = _twin("all-after-maintenance")
    bundle = referral_to_bundle(twin, with_ref=False)
    doc = referral_from_bundle(bundle, ref_secret=SECRET)
    ref = doc["patient"]["ref"]
    assert ref.startswith("SF-")
    assert len(ref) == 13
    assert ref == derive_ref("urn:oid:2.16.724.4.9.99", "EX-MRN-1", ref_secret=SECRET)
    # the same child always gets the same ref; the name plays no part; the key does
    renamed = copy.deepcopy(bundle)
    renamed["entry"][0]["resource"]["name"] = [{"text": "Someone Else"}]
    assert referral_from_bundle(renamed, ref_secret=SECRET)["patient"]["ref"] == ref
    assert (
        referral_from_bundle(bundle, ref_secret=b"another unit secret!!")["patient"]["ref"] != ref
    )
    assert doc["identity"] == {"name": "Example Child One", "mrn": "EX-MRN-1"}
    with pytest.raises(ValueError, match="ref_secret"):
        referral_from_bundle(bundle, ref_secret=b"short")


def test_units_converted() -> None:
    bundle = _bundle("all-after-maintenance")
    obs = {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    obs["29463-7"]["valueQuantity"] = {"value": 59.525, "system": tables.UCUM, "code": "[lb_av]"}
    obs["2465-3"]["valueQuantity"] = {"value": 3.6, "system": tables.UCUM, "code": "g/L"}
    obs["2465-3"]["referenceRange"] = [{"low": {"value": 540, "code": "mg/dL"}}]
    obs["24467-3"]["valueQuantity"] = {"value": 420, "system": tables.UCUM, "code": "{cells}/uL"}
    doc = referral_from_bundle(bundle, ref_secret=SECRET)
    assert doc["patient"]["weight_kg"] == pytest.approx(27.0, abs=0.001)
    assert doc["labs"][0]["igg_g_l"] == 3.6
    assert doc["labs"][0]["igg_lower_limit_g_l"] == 5.4
    assert doc["labs"][0]["cd4_per_ul"] == 420


def test_gvhd_and_allogeneic_transplant() -> None:
    twin = _twin("after-autologous-transplant")
    twin["hsct"] = {"date": "2026-05-10", "type": "allogeneic", "active_gvhd": True}
    doc = referral_from_bundle(referral_to_bundle(twin), ref_secret=SECRET)
    assert doc["hsct"] == twin["hsct"]
    assert doc["diagnosis"]["category"] == "hsct"


def test_treatment_change_and_lab_result_bundles() -> None:
    change = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": "2027-01-10T09:00:00+01:00",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "status": "completed",
                    "medicationCodeableConcept": {
                        "coding": [{"system": tables.ATC, "code": "L01FA01"}],
                        "text": "rituximab",
                    },
                    "subject": {"reference": "Patient/elsewhere"},
                    "effectivePeriod": {"start": "2026-08-01", "end": "2027-01-05"},
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [{"system": tables.ATC, "code": "H02AB06"}],
                        "text": "prednisolone",
                    },
                    "subject": {"reference": "Patient/elsewhere"},
                    "dosageInstruction": [
                        {
                            "timing": {
                                "repeat": {
                                    "boundsPeriod": {"start": "2027-01-10"},
                                    "frequency": 2,
                                    "period": 1,
                                    "periodUnit": "d",
                                }
                            },
                            "doseAndRate": [{"doseQuantity": {"value": 0.5, "code": "mg/kg"}}],
                        }
                    ],
                }
            },
        ],
    }
    assert treatment_change_from_bundle(change) == {
        "date": "2027-01-10",
        "treatments": [
            {
                "drug": "rituximab",
                "class": "anti_cd20",
                "code": "L01FA01",
                "system": ATC,
                "start": "2026-08-01",
                "end": "2027-01-05",
            },
            {
                "drug": "prednisolone",
                "class": "corticosteroid",
                "code": "H02AB06",
                "system": ATC,
                "start": "2027-01-10",
                "dose_mg_per_kg_day": 1,
            },
        ],
    }
    labs = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": tables.LOINC, "code": code}]},
                    "effectiveDateTime": "2027-03-01",
                    "valueQuantity": {"value": value, "system": tables.UCUM, "code": unit},
                    **({"referenceRange": [{"low": low}]} if low else {}),
                }
            }
            for code, value, unit, low in (
                ("2465-3", 620, "mg/dL", {"value": 5.4, "code": "g/L"}),
                ("8116-6", 0.14, "10*9/L", {"value": 100, "code": "/uL"}),
            )
        ],
    }
    assert lab_result_from_bundle(labs) == {
        "labs": [
            {
                "date": "2027-03-01",
                "igg_g_l": 6.2,
                "igg_lower_limit_g_l": 5.4,
                "cd19_per_ul": 140,
                "cd19_lower_limit_per_ul": 100,
            }
        ]
    }


# --------------------------------------------------------------------------- refusals


def _entry_of(bundle: dict[str, Any], kind: str, code: str | None = None) -> int:
    for i, e in enumerate(bundle["entry"]):
        r = e["resource"]
        if r["resourceType"] != kind:
            continue
        concept = r.get("code") or r.get("vaccineCode") or r.get("medicationCodeableConcept")
        if code is None or any(c.get("code") == code for c in concept.get("coding", [])):
            return i
    raise AssertionError(f"no {kind} {code}")


def _res(b: dict[str, Any], kind: str, code: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = b["entry"][_entry_of(b, kind, code)]["resource"]
    return resource


Mangle = Callable[[dict[str, Any]], None]


def _set(kind: str, code: str | None, key: str, value: Any) -> Mangle:
    def mangle(b: dict[str, Any]) -> None:
        _res(b, kind, code)[key] = value

    return mangle


def _drop(kind: str, code: str | None, key: str) -> Mangle:
    def mangle(b: dict[str, Any]) -> None:
        del _res(b, kind, code)[key]

    return mangle


def _remove(kind: str) -> Mangle:
    def mangle(b: dict[str, Any]) -> None:
        b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != kind]

    return mangle


def _second_patient(b: dict[str, Any]) -> None:
    other = copy.deepcopy(b["entry"][0])
    other["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-999999999999"
    other["resource"]["id"] = "00000000-0000-4000-8000-999999999999"
    b["entry"].append(other)


def _wrong_type(b: dict[str, Any]) -> None:
    b["entry"].append({"resource": {"resourceType": "Encounter", "status": "finished"}})


def _code(kind: str, code: str, new: str) -> Mangle:
    def mangle(b: dict[str, Any]) -> None:
        r = _res(b, kind, code)
        concept = r.get("code") or r.get("vaccineCode") or r.get("medicationCodeableConcept")
        concept["coding"][0]["code"] = new

    return mangle


def _unit(code: str, unit: str) -> Mangle:
    def mangle(b: dict[str, Any]) -> None:
        _res(b, "Observation", code)["valueQuantity"]["code"] = unit

    return mangle


def _dangling(b: dict[str, Any]) -> None:
    _res(b, "Observation", "2465-3")["subject"] = {"reference": "Patient/nobody"}


def _dangling_requester(b: dict[str, Any]) -> None:
    _res(b, "ServiceRequest")["requester"] = {"reference": "PractitionerRole/none"}


def _igg_too_high(b: dict[str, Any]) -> None:
    _res(b, "Observation", "2465-3")["valueQuantity"]["value"] = 9000  # 90 g/L


def _subject_not_patient(b: dict[str, Any]) -> None:
    role = b["entry"][_entry_of(b, "PractitionerRole")]["fullUrl"]
    _res(b, "Observation", "2465-3")["subject"] = {"reference": role}


MANGLED: list[tuple[str, Mangle, str, str]] = [
    ("wrong resource type", _wrong_type, r"entry\[\d+\]\.resource\.resourceType", "Encounter"),
    ("no patient", _remove("Patient"), r"entry", "no Patient"),
    ("two patients", _second_patient, r"entry\[\d+\]\.resource", "second Patient"),
    ("no referral", _remove("ServiceRequest"), r"entry", "no ServiceRequest"),
    (
        "unknown LOINC",
        _code("Observation", "2465-3", "2472-4"),
        r"entry\[\d+\]\.resource\.code\.coding\[0\]\.code",
        "LOINC '2472-4' not in the lab table",
    ),
    (
        "unknown ATC",
        _code("MedicationStatement", "L01BB02", "A10BA02"),
        r"entry\[\d+\]\.resource\.medicationCodeableConcept\.coding\[0\]\.code",
        "A10BA02",
    ),
    (
        "unknown CVX",
        _code("Immunization", "03", "999"),
        r"entry\[\d+\]\.resource\.vaccineCode\.coding\[0\]\.code",
        "CVX '999'",
    ),
    (
        "unknown ICD-10",
        _code("Condition", "C91.0", "J45"),
        r"entry\[\d+\]\.resource\.code\.coding\[0\]\.code",
        "ICD-10 'J45'",
    ),
    (
        "unknown SNOMED infection",
        _code("Condition", "233604007", "22298006"),
        r"entry\[\d+\]\.resource\.code\.coding\[0\]\.code",
        "SNOMED CT '22298006'",
    ),
    (
        "bad unit",
        _unit("2465-3", "[fur_us]"),
        r"entry\[\d+\]\.resource\.valueQuantity\.code",
        "unit [fur_us] not convertible to g/L",
    ),
    (
        "bad cell unit",
        _unit("24467-3", "mg/dL"),
        r"entry\[\d+\]\.resource\.valueQuantity\.code",
        "not convertible to cells/uL",
    ),
    (
        "bad weight unit",
        _unit("29463-7", "[stone_av]"),
        r"entry\[\d+\]\.resource\.valueQuantity\.code",
        "not convertible to kg",
    ),
    (
        "missing lab date",
        _drop("Observation", "2465-3", "effectiveDateTime"),
        r"entry\[\d+\]\.resource\.effectiveDateTime",
        "missing",
    ),
    (
        "partial birth date",
        _set("Patient", None, "birthDate", "2016-10"),
        r"entry\[0\]\.resource\.birthDate",
        "full date",
    ),
    (
        "missing received",
        _drop("ServiceRequest", None, "authoredOn"),
        r"entry\[\d+\]\.resource\.authoredOn",
        "missing",
    ),
    (
        "missing onset",
        _drop("Condition", "233604007", "onsetDateTime"),
        r"entry\[\d+\]\.resource\.onsetDateTime",
        "full date",
    ),
    (
        "missing vaccination date",
        _drop("Immunization", "03", "occurrenceDateTime"),
        r"entry\[\d+\]\.resource\.occurrenceDateTime",
        "missing",
    ),
    (
        "missing treatment start",
        _set("MedicationStatement", "L01BB02", "effectivePeriod", {}),
        r"entry\[\d+\]\.resource\.effectivePeriod\.start",
        "full date",
    ),
    (
        "reference to nothing",
        _dangling,
        r"entry\[\d+\]\.resource\.subject\.reference",
        "refers to nothing",
    ),
    (
        "requester to nothing",
        _dangling_requester,
        r"entry\[\d+\]\.resource\.requester\.reference",
        "refers to nothing",
    ),
    (
        "subject not the patient",
        _subject_not_patient,
        r"entry\[\d+\]\.resource\.subject\.reference",
        "not the bundle's Patient",
    ),
    (
        "no weight",
        lambda b: b["entry"].pop(_entry_of(b, "Observation", "29463-7")),
        r"entry",
        "no body weight",
    ),
    (
        "invalid FHIR",
        _set("Observation", "2465-3", "status", 7),
        r"entry\[\d+\]\.resource\.status",
        "",
    ),
    (
        "value out of the format's range",
        _igg_too_high,
        r"entry\[\d+\]\.resource\.valueQuantity",
        "labs[0].igg_g_l",
    ),
]


@pytest.mark.parametrize(
    ("mangle", "field", "message"),
    [pytest.param(m, f, msg, id=name) for name, m, f, msg in MANGLED],
)
def test_mangled_bundles_are_refused_naming_the_entry(
    mangle: Mangle, field: str, message: str
) -> None:
    bundle = _bundle("all-after-maintenance")
    mangle(bundle)
    with pytest.raises(InvalidInput) as caught:
        referral_from_bundle(bundle, ref_secret=SECRET)
    import re

    assert re.fullmatch(field, caught.value.field), str(caught.value)
    assert message in caught.value.message, str(caught.value)
    assert "\n" not in str(caught.value)


def test_not_a_bundle() -> None:
    with pytest.raises(InvalidInput, match=r"^resourceType: expected 'Bundle'"):
        referral_from_bundle({"resourceType": "Patient"}, ref_secret=SECRET)
    with pytest.raises(InvalidInput, match=r"^type: "):
        referral_from_bundle({"resourceType": "Bundle", "type": "searchset"}, ref_secret=SECRET)


# --------------------------------------------------------------------------- tables


def test_loinc_codes_have_valid_check_digits() -> None:
    def check(number: str) -> int:
        total = 0
        for i, digit in enumerate(int(c) for c in reversed(number)):
            doubled = digit * 2 if i % 2 == 0 else digit
            total += doubled - 9 if doubled > 9 else doubled
        return (10 - total % 10) % 10

    for code in tables.LOINC_ROWS:
        number, digit = code.split("-")
        assert check(number) == int(digit), code


def test_cvx_rows_are_in_the_cdsi_supporting_data() -> None:
    from sidflows.cdsi.data import load

    data = load()
    for cvx in tables.CVX_VACCINES:
        if cvx not in tables.CDSI_MISSING_CVX:
            assert cvx in data.cvx_descriptions or cvx in data.cvx_map, cvx
    assert set(tables.VACCINE_CVX.values()) <= set(tables.CVX_VACCINES)
    for vaccine, cvx in tables.VACCINE_CVX.items():
        assert tables.CVX_VACCINES[cvx][0] == (vaccine,)


def test_atc_classes() -> None:
    """The unit's code table answers first (the one the rules read); this table fills gaps."""
    assert tables.treatment_class("L01FA01") == ("anti_cd20", "WHO ATC index L01FA01 rituximab")
    assert tables.treatment_class("L01XL")[0] == "car_t"  # type: ignore[index]
    assert tables.treatment_class("L01BB02")[0] == "chemotherapy"  # type: ignore[index]
    assert tables.treatment_class("L01EJ01")[0] == "jak_inhibitor"  # type: ignore[index]
    assert tables.treatment_class("L04AD02")[0] == "calcineurin_inhibitor"  # type: ignore[index]
    assert tables.treatment_class("A10BA02") is None
