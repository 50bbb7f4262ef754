"""FHIR ``$immds-forecast`` (sidflows.cdsi.immds): CDC's workbook cases sent as an outside
registry would, the NDJSON batch order, and mangled requests refused naming the path."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.parameters import Parameters

from sidflows.cdsi.conformance import DEFAULT_WORKBOOKS, Case, read_workbook
from sidflows.cdsi.data import load, norm_cvx
from sidflows.cdsi.immds import (
    CDSI_SYSTEM,
    CVX_SYSTEM,
    DOSE_STATUS_SYSTEM,
    LOINC_SYSTEM,
    MVX_SYSTEM,
    ImmdsError,
    forecast_parameters,
    main,
)

from .test_conformance import KNOWN_FAILURES

HEALTHY, UNDERLYING = DEFAULT_WORKBOOKS
_GENDER = {"F": "female", "M": "male", "U": "unknown"}
_EARLIEST, _RECOMMENDED, _PAST_DUE = "30981-5", "30980-7", "59778-1"


def _request(case: Case) -> dict[str, Any]:
    """A case as a registry would send it: Patient, Immunizations, CDSi Conditions."""
    params: list[dict[str, Any]] = [
        {"name": "assessmentDate", "valueDate": case.assessment_date.isoformat()},
        {
            "name": "patient",
            "resource": {
                "resourceType": "Patient",
                "id": "patient",
                "birthDate": case.patient.birth_date.isoformat(),
                "gender": _GENDER[case.patient.gender],
            },
        },
    ]
    for expected in case.doses:
        dose = expected.dose
        coding = [{"system": CVX_SYSTEM, "code": dose.cvx}]
        if dose.mvx:
            coding.append({"system": MVX_SYSTEM, "code": dose.mvx})
        params.append(
            {
                "name": "immunization",
                "resource": {
                    "resourceType": "Immunization",
                    "id": f"dose-{dose.dose_id}",
                    "status": "completed",
                    "patient": {"reference": "Patient/patient"},
                    "vaccineCode": {"coding": coding},
                    "occurrenceDateTime": dose.date_administered.isoformat(),
                },
            }
        )
    for obs in case.observations:
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/patient"},
            "code": {"coding": [{"system": CDSI_SYSTEM, "code": obs.code}]},
        }
        if obs.observed_on is not None:
            condition["onsetDateTime"] = obs.observed_on.isoformat()
        params.append({"name": "condition", "resource": condition})
    return {"resourceType": "Parameters", "parameter": params}


def _combine(statuses: list[str]) -> str:
    for status in ("Not Valid", "Valid", "Sub standard"):
        if status in statuses:
            return status
    return "Extraneous"


def _differences(case: Case, response: dict[str, Any]) -> list[str]:
    """What differs between the workbook's expectations and the FHIR response."""
    data = load()
    evaluations: dict[str, dict[str, list[str]]] = {}  # dose id -> group -> statuses
    recommendation: dict[str, Any] = {}
    for p in response["parameter"]:
        res = p["resource"]
        if p["name"] == "evaluation":
            assert res["doseStatus"]["coding"][0]["system"] == DOSE_STATUS_SYSTEM
            dose_id = res["immunizationEvent"]["reference"].removeprefix("Immunization/dose-")
            group = data.antigen_to_group[res["targetDisease"]["text"]]
            evaluations.setdefault(dose_id, {}).setdefault(group, []).append(
                res["doseStatus"]["text"]
            )
        else:
            recommendation = res
    diffs: list[str] = []
    for expected in case.doses:
        if expected.status is None:
            continue
        by_group = evaluations.get(expected.dose.dose_id, {})
        if case.vaccine_group in by_group:
            got = _combine(by_group[case.vaccine_group])
        else:
            own = [
                data.antigen_to_group.get(a.antigen)
                for a in data.cvx_map.get(norm_cvx(expected.dose.cvx), ())
            ]
            groups = [g for g in own if g in by_group]
            got = _combine(by_group[groups[0]]) if groups else "-"
        if got.lower() != expected.status.lower():
            diffs.append(f"dose {expected.dose.dose_id}: expected {expected.status}, got {got}")
    entry = next(
        (
            e
            for e in recommendation["recommendation"]
            if e["targetDisease"]["text"] == case.vaccine_group
        ),
        None,
    )
    status = entry["forecastStatus"]["text"] if entry else "-"
    if status.lower() != case.series_status.lower():
        diffs.append(f"series status: expected {case.series_status}, got {status}")
    dates: dict[str, date] = {}
    for criterion in (entry or {}).get("dateCriterion", []):
        coding = criterion["code"]["coding"][0]
        assert coding["system"] == LOINC_SYSTEM
        dates[coding["code"]] = date.fromisoformat(criterion["value"])
    for label, want, code in (
        ("earliest", case.earliest, _EARLIEST),
        ("recommended", case.recommended, _RECOMMENDED),
        ("past due", case.past_due, _PAST_DUE),
    ):
        if dates.get(code) != want:
            diffs.append(f"{label}: expected {want}, got {dates.get(code)}")
    return diffs


@pytest.fixture(scope="module")
def cases() -> dict[str, list[Case]]:
    return {path.name: read_workbook(path) for path in DEFAULT_WORKBOOKS}


@pytest.fixture(scope="module")
def round_trip(cases: dict[str, list[Case]]) -> dict[str, dict[str, list[str]]]:
    """Every case of both workbooks through ``$immds-forecast`` (all vaccine groups,
    response validated by ``fhir.resources`` inside ``forecast_parameters``)."""
    return {
        name: {case.case_id: _differences(case, forecast_parameters(_request(case))) for case in cs}
        for name, cs in cases.items()
    }


def test_healthy_workbook_through_immds(round_trip: dict[str, dict[str, list[str]]]) -> None:
    results = round_trip[HEALTHY.name]
    assert len(results) == 1013
    assert {cid: d for cid, d in results.items() if d} == {}


def test_underlying_workbook_through_immds(round_trip: dict[str, dict[str, list[str]]]) -> None:
    """The same cases fail as in the direct conformance run (test_conformance)."""
    results = round_trip[UNDERLYING.name]
    assert len(results) == 337
    failing = {cid for cid, d in results.items() if d}
    assert failing == set(KNOWN_FAILURES)
    assert 100.0 * (337 - len(failing)) / 337 >= 94.0


_SAMPLE = ("2013-0001", "2013-0002", "2016-UC-0092", "2022-UC-0001", "2024-UC-0012")


def test_sample_outputs_parse_back(cases: dict[str, list[Case]]) -> None:
    """A few cases: each response parses back with fhir.resources, and carries the
    evaluation and recommendation elements of the IG."""
    by_id = {c.case_id: c for cs in cases.values() for c in cs}
    for case_id in _SAMPLE:
        case = by_id[case_id]
        response = forecast_parameters(_request(case))
        model = Parameters.model_validate(response)
        names = [p.name for p in model.parameter or []]
        assert names.count("recommendation") == 1
        assert names.count("evaluation") >= len(case.doses) > 0 or not case.doses
        rec = next(p.resource for p in model.parameter or [] if p.name == "recommendation")
        assert rec is not None
        assert rec.get_resource_type() == "ImmunizationRecommendation"
        assert _differences(case, response) == [], case_id


def _base() -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "assessmentDate", "valueDate": "2025-11-10"},
            {
                "name": "patient",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "birthDate": "2024-11-14",
                    "gender": "female",
                },
            },
            {
                "name": "immunization",
                "resource": {
                    "resourceType": "Immunization",
                    "id": "imm1",
                    "status": "completed",
                    "patient": {"reference": "Patient/p1"},
                    "vaccineCode": {
                        "coding": [
                            {"system": CVX_SYSTEM, "code": "48"},
                            {"system": MVX_SYSTEM, "code": "PMC"},
                        ]
                    },
                    "occurrenceDateTime": "2025-01-14",
                },
            },
            {
                "name": "condition",
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "Patient/p1"},
                    "code": {"coding": [{"system": CDSI_SYSTEM, "code": "003"}]},
                },
            },
        ],
    }


def test_one_request_shape() -> None:
    response = forecast_parameters(_base())
    Parameters.model_validate(response)
    evaluations = [p["resource"] for p in response["parameter"] if p["name"] == "evaluation"]
    hib = next(e for e in evaluations if e["targetDisease"]["text"] == "Hib")
    assert hib["immunizationEvent"] == {"reference": "Immunization/imm1"}
    assert hib["doseStatus"]["coding"][0]["code"] == "valid"
    assert hib["doseStatus"]["text"] == "Valid"
    assert hib["status"] == "completed"
    assert hib["date"] == "2025-11-10"
    assert hib["patient"] == {"reference": "Patient/p1"}
    rec = response["parameter"][-1]["resource"]
    groups = [e["targetDisease"]["text"] for e in rec["recommendation"]]
    assert len(groups) == len(set(groups))
    assert {"Hib", "DTaP/Tdap/Td", "MMR"} <= set(groups)
    hib_rec = next(e for e in rec["recommendation"] if e["targetDisease"]["text"] == "Hib")
    assert hib_rec["forecastStatus"]["text"] == "Not Complete"
    assert hib_rec["forecastStatus"]["coding"][0]["code"] in {"due", "overdue"}
    codes = [c["code"]["coding"][0]["code"] for c in hib_rec["dateCriterion"]]
    assert codes[:2] == [_EARLIEST, _RECOMMENDED]


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str) -> Any:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code = main(["-"])
    out, err = capsys.readouterr()
    return code, out, err


def test_ndjson_batch_in_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    requests = []
    for k, born in enumerate(("2024-11-14", "1950-03-01", "2010-06-30")):
        r = _base()
        r["parameter"][1]["resource"]["birthDate"] = born
        r["parameter"][1]["resource"]["id"] = f"p{k}"
        requests.append(json.dumps(r))
    text = "\n".join(requests) + "\n\n"
    code, out, err = _cli(capsys, monkeypatch, text)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3
    for k, line in enumerate(lines):
        response = json.loads(line)
        Parameters.model_validate(response)
        assert response["parameter"][-1]["resource"]["patient"] == {"reference": f"Patient/p{k}"}
    # The same batch from a file.
    path = tmp_path / "batch.ndjson"
    path.write_text(text, encoding="utf-8")
    assert main([str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_single_pretty_printed_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _cli(capsys, monkeypatch, json.dumps(_base(), indent=2))
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 1
    Parameters.model_validate(json.loads(out))


Mangle = Callable[[dict[str, Any]], None]


def _p(i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: r["parameter"][i]


def _imm(r: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = r["parameter"][2]["resource"]
    return res


_MANGLED: list[tuple[str, Mangle, str]] = [
    (
        "no assessmentDate",
        lambda r: r["parameter"].pop(0),
        "parameter.where(name='assessmentDate')",
    ),
    ("assessmentDate without value", lambda r: _p(0)(r).pop("valueDate"), "parameter[0].valueDate"),
    (
        "bad assessmentDate",
        lambda r: _p(0)(r).update(valueDate="2025-13-01"),
        "parameter[0].valueDate",
    ),
    ("no patient", lambda r: r["parameter"].pop(1), "parameter.where(name='patient')"),
    (
        "patient without birthDate",
        lambda r: _p(1)(r)["resource"].pop("birthDate"),
        "parameter[1].resource.birthDate",
    ),
    (
        "born after the assessment",
        lambda r: _p(1)(r)["resource"].update(birthDate="2026-01-01"),
        "parameter[1].resource.birthDate",
    ),
    (
        "immunization without CVX",
        lambda r: _imm(r)["vaccineCode"]["coding"].pop(0),
        "parameter[2].resource.vaccineCode.coding",
    ),
    (
        "unknown CVX",
        lambda r: _imm(r)["vaccineCode"]["coding"][0].update(code="9999"),
        "parameter[2].resource.vaccineCode.coding[0].code",
    ),
    (
        "immunization without date",
        lambda r: _imm(r).pop("occurrenceDateTime"),
        "parameter[2].resource.occurrenceDateTime",
    ),
    (
        "immunization with a year only",
        lambda r: _imm(r).update(occurrenceDateTime="2025"),
        "parameter[2].resource.occurrenceDateTime",
    ),
    (
        "immunization with an unparsable date",
        lambda r: _imm(r).update(occurrenceDateTime="14/01/2025"),
        "parameter[2].resource.occurrenceDateTime",
    ),
    ("immunization without id", lambda r: _imm(r).pop("id"), "parameter[2].resource.id"),
    (
        "unknown observation code",
        lambda r: _p(3)(r)["resource"]["code"]["coding"][0].update(code="999"),
        "parameter[3].resource.code.coding[0].code",
    ),
    (
        "condition without a CDSi coding",
        lambda r: _p(3)(r)["resource"]["code"]["coding"][0].update(system="http://snomed.info/sct"),
        "parameter[3].resource.code.coding",
    ),
    (
        "not a FHIR resource type",
        lambda r: _imm(r).update(resourceType="Vaccination"),
        "parameter[2].resource.resourceType",
    ),
    ("not a Parameters", lambda r: r.update(resourceType="Bundle"), "resourceType"),
]


@pytest.mark.parametrize(
    ("mangle", "path"), [(m, p) for _, m, p in _MANGLED], ids=[n for n, _, _ in _MANGLED]
)
def test_mangled_request_refused(
    mangle: Mangle,
    path: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = copy.deepcopy(_base())
    mangle(request)
    with pytest.raises(ImmdsError) as info:
        forecast_parameters(request)
    assert info.value.path == path
    code, out, err = _cli(capsys, monkeypatch, json.dumps(request))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"{path}: "), err
    assert "Traceback" not in err


def test_ndjson_line_errors_are_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = json.dumps(_base())
    code, out, err = _cli(capsys, monkeypatch, f"{good}\n{good}\n{{not json\n")
    assert (code, out) == (2, "")
    assert err.startswith("line 3: malformed JSON")
    assert err.count("\n") == 1
    bad = _base()
    _imm(bad).pop("occurrenceDateTime")
    code, out, err = _cli(capsys, monkeypatch, f"{good}\n{json.dumps(bad)}\n")
    assert (code, out) == (2, "")
    assert err.startswith("line 2: parameter[2].resource.occurrenceDateTime: ")


def test_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot read" in err
