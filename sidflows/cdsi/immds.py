"""FHIR ``$immds-forecast`` over the CDSi engine (HL7 Immunization Decision Support
Forecast IG), built and validated with ``fhir.resources`` (R4B models, FHIR R4-compatible).

``python -m sidflows.cdsi.immds FILE`` (FILE or ``-``): one FHIR R4 ``Parameters``
resource (JSON), or NDJSON with one ``Parameters`` per line, answered line by line in the
same order. Input parameters: ``assessmentDate`` (valueDate), ``patient`` (Patient with
birthDate, gender), ``immunization`` (0..*: CVX in ``vaccineCode.coding``, MVX optional,
``occurrenceDateTime``, ``id``) and ``condition`` (0..*: the CDSi observation code in
``code.coding``, ``onsetDateTime`` when dated). Output: a ``Parameters`` with one
``evaluation`` (ImmunizationEvaluation) per dose and antigen and one ``recommendation``
(ImmunizationRecommendation) with an entry per vaccine group.

Bad input: exit 2 and one line on stderr naming the parameter's path
(``parameter[3].resource.occurrenceDateTime: ...``; ``line 3: ...`` in NDJSON). See
``docs/cdsi.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fhir.resources.R4B.parameters import Parameters
from pydantic import ValidationError

from sidflows.cdsi.data import load, norm_cvx
from sidflows.cdsi.engine import assess
from sidflows.cdsi.types import (
    AdministeredDose,
    Assessment,
    Gender,
    Patient,
    PatientObservation,
    VaccineGroupForecast,
)

__all__ = [
    "CDSI_SYSTEM",
    "CVX_SYSTEM",
    "DOSE_STATUS_SYSTEM",
    "LOINC_SYSTEM",
    "MVX_SYSTEM",
    "RECOMMENDATION_STATUS_SYSTEM",
    "ImmdsError",
    "Request",
    "forecast_parameters",
    "main",
    "parse_request",
]

CVX_SYSTEM = "http://hl7.org/fhir/sid/cvx"
MVX_SYSTEM = "http://hl7.org/fhir/sid/mvx"
CDSI_SYSTEM = "https://www.cdc.gov/vaccines/programs/iis/cdsi.html"
LOINC_SYSTEM = "http://loinc.org"
DOSE_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/immunization-evaluation-dose-status"
RECOMMENDATION_STATUS_SYSTEM = (
    "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
)
_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

AUTHORITY = {"display": "CDC CDSi logic specification 4.6, supporting data 4.64 (sidflows)"}

_DATE_CRITERIA = (
    ("30981-5", "Earliest date to give"),
    ("30980-7", "Date vaccine due"),
    ("59778-1", "Date when overdue for immunization"),
    ("59777-3", "Latest date to give immunization"),
)
_GENDERS: dict[str, Gender] = {"female": "F", "male": "M"}
_SKIPPED_IMMUNIZATION = {"not-done", "entered-in-error"}
_SKIPPED_CONDITION = {"refuted", "entered-in-error"}


class ImmdsError(ValueError):
    """A refused request: ``path`` names the offending element (FHIRPath-like)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    """A ``$immds-forecast`` request as the engine's inputs."""

    assessment_date: date
    patient: Patient
    patient_reference: dict[str, str]
    doses: tuple[AdministeredDose, ...]
    observations: tuple[PatientObservation, ...]


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "Parameters"


def _validate(resource: Any) -> Any:
    """The request (or response) as a ``fhir.resources`` R4B Parameters model."""
    if not isinstance(resource, dict):
        raise ImmdsError("Parameters", "expected a JSON object (a FHIR Parameters resource)")
    if resource.get("resourceType") != "Parameters":
        raise ImmdsError(
            "resourceType", f"expected 'Parameters', got {resource.get('resourceType')!r}"
        )
    try:
        return Parameters.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _loc(first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if "occurrenceDateTime" in message and not path.endswith("occurrenceDateTime"):
            path += ".occurrenceDateTime"
            message = "missing (a dated Immunization is needed)"
        raise ImmdsError(path, message) from None
    except (KeyError, TypeError, ValueError) as exc:
        # fhir.resources raises KeyError for an unknown resourceType inside a parameter.
        path = _resource_type_path(resource)
        raise ImmdsError(path, f"not a FHIR R4 resource ({exc})") from None


def _resource_type_path(resource: dict[str, Any]) -> str:
    params = resource.get("parameter")
    if isinstance(params, list):
        for i, p in enumerate(params):
            if isinstance(p, dict) and isinstance(p.get("resource"), dict):
                kind = p["resource"].get("resourceType")
                if kind not in {"Patient", "Immunization", "Condition"}:
                    return f"parameter[{i}].resource.resourceType"
    return "parameter"


def _as_date(value: Any, path: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise ImmdsError(path, f"a full date (YYYY-MM-DD) is needed, got {value!r}")


def _codes(concept: Any, system: str) -> list[tuple[int, str]]:
    codings = getattr(concept, "coding", None) or []
    return [
        (j, str(c.code).strip())
        for j, c in enumerate(codings)
        if c.system == system and c.code is not None and str(c.code).strip()
    ]


def parse_request(resource: Any) -> Request:
    """Validate a ``$immds-forecast`` Parameters resource and turn it into the engine's
    inputs; raises :class:`ImmdsError` naming the offending parameter."""
    params = _validate(resource)
    data = load()
    assessed: date | None = None
    patient: Patient | None = None
    patient_at = 0
    patient_ref: dict[str, str] = {"display": "the patient of the request"}
    doses: list[AdministeredDose] = []
    seen_ids: dict[str, int] = {}
    observations: list[PatientObservation] = []
    for i, p in enumerate(params.parameter or []):
        here = f"parameter[{i}]"
        res = p.resource
        if p.name == "assessmentDate":
            if assessed is not None:
                raise ImmdsError(here, "assessmentDate given twice")
            if p.valueDate is None:
                raise ImmdsError(f"{here}.valueDate", "missing (the assessment date)")
            assessed = _as_date(p.valueDate, f"{here}.valueDate")
        elif p.name == "patient":
            if patient is not None:
                raise ImmdsError(here, "patient given twice")
            if res is None or res.get_resource_type() != "Patient":
                raise ImmdsError(f"{here}.resource", "a Patient resource is needed")
            if res.birthDate is None:
                raise ImmdsError(f"{here}.resource.birthDate", "missing")
            birth = _as_date(res.birthDate, f"{here}.resource.birthDate")
            patient = Patient(birth, _GENDERS.get(str(res.gender or ""), "U"))
            patient_at = i
            if res.id:
                patient_ref = {"reference": f"Patient/{res.id}"}
        elif p.name == "immunization":
            if res is None or res.get_resource_type() != "Immunization":
                raise ImmdsError(f"{here}.resource", "an Immunization resource is needed")
            if res.status in _SKIPPED_IMMUNIZATION:
                continue
            if not res.id:
                raise ImmdsError(
                    f"{here}.resource.id", "missing (evaluations reference Immunization/<id>)"
                )
            if res.id in seen_ids:
                raise ImmdsError(
                    f"{here}.resource.id",
                    f"{res.id!r} already used by parameter[{seen_ids[res.id]}]",
                )
            seen_ids[res.id] = i
            cvx_codes = _codes(res.vaccineCode, CVX_SYSTEM)
            if not cvx_codes:
                raise ImmdsError(
                    f"{here}.resource.vaccineCode.coding", f"no CVX coding (system {CVX_SYSTEM})"
                )
            j, cvx = cvx_codes[0]
            if norm_cvx(cvx) not in data.cvx_descriptions and norm_cvx(cvx) not in data.cvx_map:
                raise ImmdsError(
                    f"{here}.resource.vaccineCode.coding[{j}].code",
                    f"unknown CVX {cvx!r} (not in the CDSi supporting data 4.64)",
                )
            if res.occurrenceDateTime is None:
                raise ImmdsError(
                    f"{here}.resource.occurrenceDateTime",
                    "missing (a dated Immunization is needed)",
                )
            given = _as_date(res.occurrenceDateTime, f"{here}.resource.occurrenceDateTime")
            mvx_codes = _codes(res.vaccineCode, MVX_SYSTEM) or _codes(res.manufacturer, MVX_SYSTEM)
            expires = res.expirationDate
            doses.append(
                AdministeredDose(
                    dose_id=res.id,
                    cvx=cvx,
                    date_administered=given,
                    mvx=mvx_codes[0][1] if mvx_codes else None,
                    lot_expiration=expires if isinstance(expires, date) else None,
                    dose_condition=res.isSubpotent is True,
                )
            )
        elif p.name == "condition":
            if res is None or res.get_resource_type() != "Condition":
                raise ImmdsError(f"{here}.resource", "a Condition resource is needed")
            status = _codes(res.verificationStatus, _VERIFICATION_SYSTEM)
            if any(code in _SKIPPED_CONDITION for _, code in status):
                continue
            codes = _codes(res.code, CDSI_SYSTEM)
            if not codes:
                raise ImmdsError(
                    f"{here}.resource.code.coding",
                    f"no CDSi observation coding (system {CDSI_SYSTEM})",
                )
            j, code = codes[0]
            key = code.zfill(3) if code.isdigit() else code
            if key not in data.observations:
                raise ImmdsError(
                    f"{here}.resource.code.coding[{j}].code",
                    f"unknown CDSi observation code {code!r}",
                )
            onset = res.onsetDateTime
            observed = (
                _as_date(onset, f"{here}.resource.onsetDateTime") if onset is not None else None
            )
            observations.append(PatientObservation(key, observed))
    if assessed is None:
        raise ImmdsError("parameter.where(name='assessmentDate')", "missing (valueDate)")
    if patient is None:
        raise ImmdsError("parameter.where(name='patient')", "missing (a Patient resource)")
    if patient.birth_date > assessed:
        raise ImmdsError(f"parameter[{patient_at}].resource.birthDate", "after the assessment date")
    return Request(assessed, patient, patient_ref, tuple(doses), tuple(observations))


def _evaluations(request: Request, result: Assessment) -> Iterator[dict[str, Any]]:
    stamp = request.assessment_date.isoformat()
    n = 0
    for antigen in result.antigens.values():
        for dose in antigen.doses:
            n += 1
            code = "valid" if dose.status == "Valid" else "notvalid"
            evaluation: dict[str, Any] = {
                "resourceType": "ImmunizationEvaluation",
                "id": f"evaluation-{n}",
                "status": "completed",
                "patient": request.patient_reference,
                "date": stamp,
                "authority": AUTHORITY,
                "targetDisease": {"text": antigen.antigen},
                "immunizationEvent": {"reference": f"Immunization/{dose.dose_id}"},
                "doseStatus": {
                    "coding": [
                        {
                            "system": DOSE_STATUS_SYSTEM,
                            "code": code,
                            "display": "Valid" if code == "valid" else "Not valid",
                        }
                    ],
                    "text": dose.status,
                },
                "series": dose.series_name,
            }
            if dose.reasons:
                evaluation["doseStatusReason"] = [{"text": r} for r in dose.reasons]
            if dose.target_dose is not None:
                evaluation["doseNumberPositiveInt"] = dose.target_dose
            yield evaluation


def _status_coding(request: Request, forecast: VaccineGroupForecast) -> dict[str, str] | None:
    if forecast.status == "Not Complete":
        overdue = forecast.past_due is not None and request.assessment_date > forecast.past_due
        return (
            {"code": "overdue", "display": "Overdue"}
            if overdue
            else {
                "code": "due",
                "display": "Due",
            }
        )
    code = {"Complete": "complete", "Immune": "immune", "Contraindicated": "contraindicated"}
    if forecast.status in code:
        value = code[forecast.status]
        return {"code": value, "display": value.capitalize()}
    return None


def _recommendation(request: Request, result: Assessment) -> dict[str, Any]:
    data = load()
    entries: list[dict[str, Any]] = []
    for forecast in result.vaccine_groups.values():
        status: dict[str, Any] = {"text": forecast.status}
        coding = _status_coding(request, forecast)
        if coding is not None:
            status["coding"] = [{"system": RECOMMENDATION_STATUS_SYSTEM, **coding}]
        entry: dict[str, Any] = {
            "targetDisease": {"text": forecast.vaccine_group},
            "forecastStatus": status,
        }
        if forecast.vaccines:
            entry["vaccineCode"] = [
                {
                    "coding": [
                        {
                            "system": CVX_SYSTEM,
                            "code": cvx,
                            **(
                                {"display": data.cvx_descriptions[cvx]}
                                if cvx in data.cvx_descriptions
                                else {}
                            ),
                        }
                    ]
                }
                for cvx in forecast.vaccines
            ]
        if forecast.reasons:
            entry["forecastReason"] = [{"text": r} for r in forecast.reasons]
        criteria = []
        values = (forecast.earliest, forecast.recommended, forecast.past_due, forecast.latest)
        for (loinc, display), value in zip(_DATE_CRITERIA, values, strict=True):
            if value is not None:
                criteria.append(
                    {
                        "code": {
                            "coding": [{"system": LOINC_SYSTEM, "code": loinc, "display": display}]
                        },
                        "value": value.isoformat(),
                    }
                )
        if criteria:
            entry["dateCriterion"] = criteria
        if forecast.forecast_dose_number is not None:
            entry["doseNumberPositiveInt"] = forecast.forecast_dose_number
        entries.append(entry)
    if not entries:
        entries.append(
            {"targetDisease": {"text": "none"}, "forecastStatus": {"text": "Not Recommended"}}
        )
    return {
        "resourceType": "ImmunizationRecommendation",
        "id": "recommendation",
        "patient": request.patient_reference,
        "date": request.assessment_date.isoformat(),
        "authority": AUTHORITY,
        "recommendation": entries,
    }


def forecast_parameters(resource: dict[str, Any]) -> dict[str, Any]:
    """Answer one ``$immds-forecast`` request (a FHIR R4 Parameters resource as JSON);
    the response is validated with ``fhir.resources`` before it is returned. Raises
    :class:`ImmdsError` for a request it refuses."""
    request = parse_request(resource)
    result = assess(request.patient, request.doses, request.assessment_date, request.observations)
    parameters: list[dict[str, Any]] = [
        {"name": "evaluation", "resource": e} for e in _evaluations(request, result)
    ]
    parameters.append({"name": "recommendation", "resource": _recommendation(request, result)})
    response = {"resourceType": "Parameters", "parameter": parameters}
    Parameters.model_validate(response)  # the response is a valid FHIR R4 Parameters
    return response


def _requests(text: str) -> Iterator[tuple[str | None, Any]]:
    """(label, parsed JSON) per request: one JSON document, or NDJSON line by line."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    else:
        yield None, whole
        return
    any_line = False
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        any_line = True
        try:
            yield f"line {n}", json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"malformed JSON ({exc.msg} at column {exc.colno})"
            raise ImmdsError(f"line {n}", message) from None
    if not any_line:
        raise ImmdsError("input", "empty (expected a FHIR Parameters resource or NDJSON)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidflows.cdsi.immds",
        description="FHIR $immds-forecast: Parameters (JSON or NDJSON) in, Parameters out.",
    )
    parser.add_argument("file", metavar="FILE", help="request file, or - for standard input")
    args = parser.parse_args(argv)
    try:
        source = sys.stdin if args.file == "-" else None
        text = source.read() if source else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.file}: cannot read ({exc})", file=sys.stderr)
        return 2
    answers: list[str] = []
    try:
        for label, resource in _requests(text):
            try:
                answers.append(json.dumps(forecast_parameters(resource), separators=(",", ":")))
            except ImmdsError as exc:
                if label is None:
                    raise
                raise ImmdsError(f"{label}: {exc.path}", exc.message) from None
    except ImmdsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback: one line, as for a refused request
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write("".join(a + "\n" for a in answers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
