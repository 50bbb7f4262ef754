"""The ``$immds-forecast`` response (:mod:`sidflows.cdsi.immds`): the engine's
assessment as a Parameters with an ImmunizationEvaluation per dose and antigen and one
ImmunizationRecommendation, validated with ``fhir.resources`` before it is returned."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B.parameters import Parameters

from sidflows.cdsi.data import load
from sidflows.cdsi.engine import assess
from sidflows.cdsi.immds_request import CVX_SYSTEM, Request, parse_request
from sidflows.cdsi.types import Assessment, VaccineGroupForecast

LOINC_SYSTEM = "http://loinc.org"
DOSE_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/immunization-evaluation-dose-status"
RECOMMENDATION_STATUS_SYSTEM = (
    "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
)


AUTHORITY = {"display": "CDC CDSi logic specification 4.6, supporting data 4.64 (sidflows)"}

_DATE_CRITERIA = (
    ("30981-5", "Earliest date to give"),
    ("30980-7", "Date vaccine due"),
    ("59778-1", "Date when overdue for immunization"),
    ("59777-3", "Latest date to give immunization"),
)


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
