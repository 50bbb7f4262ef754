"""The referral document (docs/formats.md): what is refused, naming the field, and what passes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from sidflows.errors import InvalidInput
from sidflows.referral import ReferralDocument, parse_referral, validate_referral

EXAMPLES = sorted((Path(__file__).parents[1] / "examples" / "referrals").glob("*.json"))

VALID: dict[str, Any] = {
    "patient": {"ref": "P-0001", "birth_date": "2017-03-14", "sex": "female", "weight_kg": 24.5},
    "identity": {"name": "Synthetic Child", "mrn": "SYN-1"},
    "received": "2026-11-20",
    "referrer": {"service": "oncology", "clinician": "Dr Example"},
    "reason": "low IgG and infections",
    "diagnosis": {"category": "oncology", "label": "acute lymphoblastic leukaemia"},
    "treatments": [
        {
            "drug": "ALL maintenance",
            "class": "chemotherapy",
            "start": "2024-06-01",
            "end": "2026-10-15",
        },
        {
            "drug": "prednisone",
            "class": "corticosteroid",
            "start": "2026-09-01",
            "end": None,
            "dose_mg_day": 10,
        },
    ],
    "labs": [
        {
            "date": "2026-11-10",
            "igg_g_l": 3.1,
            "iga_g_l": 0.2,
            "igm_g_l": 0.3,
            "igg_lower_limit_g_l": 5.0,
            "cd4_per_ul": 300,
            "cd19_per_ul": 4,
            "anc_per_ul": 1500,
        }
    ],
    "infections": [{"date": "2026-07-12", "kind": "pneumonia", "serious": True}],
    "immunoglobulin_doses": [{"date": "2026-11-01", "g_per_kg": 0.4, "route": "iv"}],
    "vaccinations": [{"vaccine": "MMR", "date": "2018-05-01"}],
    "preferences": {"ig_route": "iv"},
    "consent": {"cost_accepted": True},
}


def _mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    change(doc)
    return doc


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets a dotted path (``treatments.1.end``) to ``value``."""

    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]

    return change


# docs/formats.md "Bad input that must be refused with exit 2 and a message naming the field".
# (id, document (dict, or raw text), expected field path, fragment of the message)
BAD_INPUTS: list[tuple[str, dict[str, Any] | str | bytes, str, str]] = [
    ("malformed JSON: truncated", json.dumps(VALID)[:-1], "document", "malformed JSON"),
    ("malformed JSON: empty", "", "document", "malformed JSON"),
    ("malformed JSON: trailing comma", '{"received": "2026-11-20",}', "document", "malformed JSON"),
    ("malformed JSON: not UTF-8", b'{"a": "\xff"}', "document", "not UTF-8"),
    ("NaN, named where it is", '{"labs": [{"igg_g_l": NaN}]}', "labs[0].igg_g_l", "not a number"),
    ("not an object: a list", "[]", "document", "must be a JSON object"),
    (
        "duplicate key",
        '{"received": "2026-11-20", "received": "2026-11-21"}',
        "received",
        "duplicate key",
    ),
    (
        "missing required field: patient.weight_kg",
        _mutated(_drop("patient.weight_kg")),
        "patient.weight_kg",
        "required field missing",
    ),
    (
        "missing required field: received",
        _mutated(_drop("received")),
        "received",
        "required field missing",
    ),
    (
        "missing required field: treatments",
        _mutated(_drop("treatments")),
        "treatments",
        "required field missing",
    ),
    (
        "missing required field: treatments[0].class",
        _mutated(_drop("treatments.0.class")),
        "treatments[0].class",
        "required field missing",
    ),
    (
        "missing required field: infections[0].serious",
        _mutated(_drop("infections.0.serious")),
        "infections[0].serious",
        "required field missing",
    ),
    (
        "missing hsct when category is hsct",
        _mutated(_set("diagnosis.category", "hsct")),
        "hsct",
        "required when diagnosis.category is hsct",
    ),
    ("unknown field at the top", _mutated(_set("weight", 24.5)), "weight", "unknown field"),
    (
        "unknown field in patient (typo)",
        _mutated(_set("patient.birthdate", "2017-03-14")),
        "patient.birthdate",
        "unknown field",
    ),
    (
        "unknown field in a treatment",
        _mutated(_set("treatments.1.dose_mg", 10)),
        "treatments[1].dose_mg",
        "unknown field",
    ),
    (
        "wrong type: weight as a string",
        _mutated(_set("patient.weight_kg", "24.5")),
        "patient.weight_kg",
        "must be a valid number",
    ),
    (
        "wrong type: weight as a boolean",
        _mutated(_set("patient.weight_kg", True)),
        "patient.weight_kg",
        "must be a valid number",
    ),
    (
        "wrong type: serious as a string",
        _mutated(_set("infections.0.serious", "yes")),
        "infections[0].serious",
        "must be a valid boolean",
    ),
    (
        "wrong type: labs as an object",
        _mutated(_set("labs", {"igg_g_l": 3.1})),
        "labs",
        "must be a list",
    ),
    (
        "wrong type: date as a number",
        _mutated(_set("received", 20261120)),
        "received",
        "not a date",
    ),
    (
        "wrong type: sex not in the list",
        _mutated(_set("patient.sex", "f")),
        "patient.sex",
        "must be",
    ),
    (
        "impossible date: 30 February",
        _mutated(_set("treatments.0.start", "2026-02-30")),
        "treatments[0].start",
        "impossible date",
    ),
    (
        "impossible date: month 13",
        _mutated(_set("labs.0.date", "2026-13-01")),
        "labs[0].date",
        "impossible date",
    ),
    (
        "impossible date: 29 February of a common year",
        _mutated(_set("received", "2026-02-29")),
        "received",
        "impossible date",
    ),
    (
        "not an ISO date: 2026/11/20",
        _mutated(_set("received", "2026/11/20")),
        "received",
        "not a date",
    ),
    (
        "not an ISO date: with a time",
        _mutated(_set("received", "2026-11-20T10:00:00")),
        "received",
        "not a date",
    ),
    (
        "birth date in the future",
        _mutated(_set("patient.birth_date", "2026-11-21")),
        "patient.birth_date",
        "in the future",
    ),
    (
        "birth date exactly 18 years before received",
        _mutated(_set("patient.birth_date", "2008-11-20")),
        "patient.birth_date",
        "18 years or more",
    ),
    (
        "birth date over 18 years before received",
        _mutated(_set("patient.birth_date", "2001-01-01")),
        "patient.birth_date",
        "not a child",
    ),
    (
        "end before start",
        _mutated(_set("treatments.1.end", "2026-08-31")),
        "treatments[1].end",
        "before start",
    ),
    (
        "treatment start before birth",
        _mutated(_set("treatments.0.start", "2017-03-13")),
        "treatments[0].start",
        "before birth_date",
    ),
    (
        "lab after received",
        _mutated(_set("labs.0.date", "2026-11-21")),
        "labs[0].date",
        "after received",
    ),
    (
        "vaccination before birth",
        _mutated(_set("vaccinations.0.date", "2016-01-01")),
        "vaccinations[0].date",
        "before birth_date",
    ),
    (
        "HSCT after received",
        _mutated(_set("hsct", {"date": "2026-12-01", "type": "autologous"})),
        "hsct.date",
        "after received",
    ),
    (
        "weight below 0.5 kg",
        _mutated(_set("patient.weight_kg", 0.49)),
        "patient.weight_kg",
        "greater than or equal to 0.5",
    ),
    (
        "weight above 150 kg",
        _mutated(_set("patient.weight_kg", 150.1)),
        "patient.weight_kg",
        "less than or equal to 150",
    ),
    (
        "weight negative",
        _mutated(_set("patient.weight_kg", -3)),
        "patient.weight_kg",
        "greater than or equal to 0.5",
    ),
    (
        "IgG negative",
        _mutated(_set("labs.0.igg_g_l", -0.1)),
        "labs[0].igg_g_l",
        "greater than or equal to 0",
    ),
    (
        "IgG above 40 g/L",
        _mutated(_set("labs.0.igg_g_l", 40.1)),
        "labs[0].igg_g_l",
        "less than or equal to 40",
    ),
    (
        "CD4 negative",
        _mutated(_set("labs.0.cd4_per_ul", -1)),
        "labs[0].cd4_per_ul",
        "greater than or equal to 0",
    ),
    (
        "ANC beyond limits",
        _mutated(_set("labs.0.anc_per_ul", 100001)),
        "labs[0].anc_per_ul",
        "less than or equal to",
    ),
    (
        "lab with no result",
        _mutated(_set("labs.0", {"date": "2026-11-10"})),
        "labs[0]",
        "no result given",
    ),
    (
        "IG dose of 0 g/kg",
        _mutated(_set("immunoglobulin_doses.0.g_per_kg", 0)),
        "immunoglobulin_doses[0].g_per_kg",
        "greater than 0",
    ),
    (
        "IG dose above 2.5 g/kg",
        _mutated(_set("immunoglobulin_doses.0.g_per_kg", 3.0)),
        "immunoglobulin_doses[0].g_per_kg",
        "less than or equal to 2.5",
    ),
    (
        "steroid dose negative",
        _mutated(_set("treatments.1.dose_mg_day", -10)),
        "treatments[1].dose_mg_day",
        "greater than 0",
    ),
    (
        "steroid dose of 0 (a stopped drug has an end, an unknown dose no field)",
        _mutated(_set("treatments.1.dose_mg_day", 0)),
        "treatments[1].dose_mg_day",
        "greater than 0",
    ),
    (
        "unknown vaccine code",
        _mutated(_set("vaccinations.0.vaccine", "MMR-II")),
        "vaccinations[0].vaccine",
        "must be 'MMR'",
    ),
    (
        "vaccine code in the wrong case",
        _mutated(_set("vaccinations.0.vaccine", "mmr")),
        "vaccinations[0].vaccine",
        "must be",
    ),
    (
        "unknown treatment class",
        _mutated(_set("treatments.1.class", "steroid")),
        "treatments[1].class",
        "must be 'chemotherapy'",
    ),
    (
        "unknown IG route",
        _mutated(_set("preferences.ig_route", "oral")),
        "preferences.ig_route",
        "must be 'iv' or 'sc'",
    ),
    (
        "unknown blood product",
        _mutated(_set("blood_products", [{"date": "2026-11-01", "product": "albumin"}])),
        "blood_products[0].product",
        "must be",
    ),
]


@pytest.mark.parametrize(
    ("document", "field", "fragment"),
    [pytest.param(doc, f, m, id=case) for case, doc, f, m in BAD_INPUTS],
)
def test_bad_input_refused_naming_the_field(
    document: dict[str, Any] | str | bytes, field: str, fragment: str
) -> None:
    """Each bad input of docs/formats.md is refused with the field path and a clear message."""
    check = validate_referral if isinstance(document, dict) else parse_referral
    with pytest.raises(InvalidInput) as caught:
        check(document)  # type: ignore[operator]
    error = caught.value
    assert error.field == field, str(error)
    assert fragment in error.message, str(error)
    assert str(error) == f"{field}: {error.message}"
    assert "\n" not in str(error)
    assert "Traceback" not in str(error)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        pytest.param(json.dumps(VALID)[:-1], "document", id="malformed JSON"),
        pytest.param(
            json.dumps(_mutated(_set("treatments.1.end", "2026-08-31"))),
            "treatments[1].end",
            id="end before start",
        ),
        pytest.param(
            json.dumps(_mutated(_set("labs.0.igg_g_l", 41))), "labs[0].igg_g_l", id="IgG above 40"
        ),
    ],
)
def test_command_line_exit_2_with_one_line(
    document: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sidflows propose` turns a refusal into exit 2 and one stderr line naming the field."""
    from flows.cli import main

    path = tmp_path / "referral.json"
    path.write_text(document, encoding="utf-8")
    assert main(["propose", str(path), "--today", "2026-11-24"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("sidflows: invalid input: ")
    assert f"{field}: " in err


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    """The sample referrals in examples/referrals/ are valid referrals."""
    referral = parse_referral(path.read_bytes())
    assert isinstance(referral, ReferralDocument)
    assert referral.ref.startswith("EX-")


def test_three_examples() -> None:
    """There are exactly the documented sample referrals (the fourth one coded: §8)."""
    assert [p.name for p in EXAMPLES] == [
        "after-autologous-transplant.json",
        "all-after-maintenance.json",
        "b-all-after-car-t-coded.json",
        "lupus-on-rituximab.json",
    ]


def test_full_document_validates_into_immutable_objects() -> None:
    """The example document validates; lists become tuples and objects are frozen."""
    referral = validate_referral(copy.deepcopy(VALID))
    assert referral.patient.birth_date == date(2017, 3, 14)
    assert referral.treatments[1].drug_class == "corticosteroid"
    assert referral.treatments[1].end is None
    assert isinstance(referral.labs, tuple)
    with pytest.raises(ValueError, match="frozen"):
        referral.patient.weight_kg = 30.0  # type: ignore[misc]


def _newborn(doc: dict[str, Any]) -> None:
    doc["patient"]["birth_date"] = "2026-11-20"
    for name in ("treatments", "infections", "immunoglobulin_doses", "vaccinations"):
        doc[name] = []
    doc["labs"] = [{"date": "2026-11-20", "igg_g_l": 5.0}]


def _planned(doc: dict[str, Any]) -> None:
    doc["treatments"][0].update(start="2027-01-10", end=None)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set("patient.birth_date", "2008-11-21"), id="one day under 18 years"),
        pytest.param(_newborn, id="newborn referred the day of birth"),
        pytest.param(_set("patient.weight_kg", 0.5), id="weight 0.5 kg"),
        pytest.param(_set("patient.weight_kg", 150), id="weight 150 kg given as an integer"),
        pytest.param(_set("labs.0.igg_g_l", 40), id="IgG exactly 40 g/L"),
        pytest.param(_drop("identity"), id="optional identity omitted"),
        pytest.param(_set("consent", None), id="optional consent null"),
        pytest.param(_planned, id="treatment planned after received, open-ended"),
        pytest.param(_set("treatments.0.end", "2027-05-10"), id="planned end after received"),
        pytest.param(_set("treatments.0.end", "2024-06-01"), id="one-day course: end equals start"),
    ],
)
def test_boundary_inputs_accepted(change: Callable[[dict[str, Any]], None]) -> None:
    """Inputs on the edge of the limits are accepted."""
    validate_referral(_mutated(change))
