"""The ``$immds-forecast`` request (:mod:`sidflows.cdsi.immds`): a FHIR R4 Parameters
resource validated with ``fhir.resources`` (R4B models) and turned into the engine's
inputs, or refused with :class:`ImmdsError` naming the offending parameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.parameters import Parameters
from pydantic import ValidationError

from sidflows.cdsi.data import load, norm_cvx
from sidflows.cdsi.types import AdministeredDose, Gender, Patient, PatientObservation

CVX_SYSTEM = "http://hl7.org/fhir/sid/cvx"
MVX_SYSTEM = "http://hl7.org/fhir/sid/mvx"
CDSI_SYSTEM = "https://www.cdc.gov/vaccines/programs/iis/cdsi.html"


_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


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
