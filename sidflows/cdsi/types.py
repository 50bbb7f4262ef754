"""Inputs and results of the CDSi engine (frozen dataclasses, no clock, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = [
    "AdministeredDose",
    "AntigenEvaluation",
    "Assessment",
    "DoseResult",
    "EvaluationStatus",
    "Gender",
    "Patient",
    "PatientObservation",
    "SeriesForecast",
    "SeriesStatus",
    "VaccineGroupForecast",
]

Gender = Literal["F", "M", "U"]
EvaluationStatus = Literal["Valid", "Not Valid", "Extraneous", "Sub standard"]
SeriesStatus = Literal[
    "Not Complete", "Complete", "Immune", "Aged Out", "Contraindicated", "Not Recommended"
]


@dataclass(frozen=True, slots=True)
class Patient:
    birth_date: date
    gender: Gender = "U"


@dataclass(frozen=True, slots=True)
class AdministeredDose:
    """One vaccine dose administered. ``dose_id`` is the caller's identifier."""

    dose_id: str
    cvx: str
    date_administered: date
    mvx: str | None = None
    lot_expiration: date | None = None
    """Table 6-3: a dose given after its lot expired is sub-standard."""
    dose_condition: bool = False
    """Table 6-3: a dose with a condition (recall, cold-chain break) is sub-standard."""


@dataclass(frozen=True, slots=True)
class PatientObservation:
    """A CDSi observation code (ScheduleSupportingData ``observations``), optionally dated."""

    code: str
    observed_on: date | None = None


@dataclass(frozen=True, slots=True)
class DoseResult:
    """How one administered dose evaluated for one antigen in the best patient series."""

    dose_id: str
    antigen: str
    series_name: str
    target_dose: int | None
    status: EvaluationStatus
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesForecast:
    """Chapter 7: the forecast of one relevant patient series."""

    antigen: str
    series_name: str
    series_type: str
    status: SeriesStatus
    forecast_dose_number: int | None
    earliest: date | None
    recommended: date | None
    past_due: date | None
    latest: date | None
    unadjusted_recommended: date | None
    unadjusted_past_due: date | None
    reasons: tuple[str, ...] = ()
    priority: bool = False
    vaccines: tuple[str, ...] = ()
    """FORECASTRECVAC-1: CVX codes of the recommended vaccines of the next dose."""


@dataclass(frozen=True, slots=True)
class AntigenEvaluation:
    """Chapter 8: the best patient series of an antigen and its evaluated doses."""

    antigen: str
    best_series: tuple[SeriesForecast, ...]
    doses: tuple[DoseResult, ...]


@dataclass(frozen=True, slots=True)
class VaccineGroupForecast:
    """Chapter 9: status and dates of a vaccine group (e.g. 'DTaP/Tdap/Td', 'MMR')."""

    vaccine_group: str
    status: SeriesStatus
    forecast_dose_number: int | None
    earliest: date | None
    recommended: date | None
    past_due: date | None
    latest: date | None
    reasons: tuple[str, ...]
    dose_statuses: tuple[tuple[str, EvaluationStatus, tuple[str, ...]], ...]
    """Per administered dose of the group's vaccines: (dose id, status, reasons)."""
    vaccines: tuple[str, ...] = ()
    """CVX codes of the vaccines the forecast recommends (FORECASTRECVAC-1)."""


@dataclass(frozen=True, slots=True)
class Assessment:
    """The engine's answer for one patient on one assessment date."""

    assessment_date: date
    antigens: dict[str, AntigenEvaluation]
    vaccine_groups: dict[str, VaccineGroupForecast]
