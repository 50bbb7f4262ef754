"""CDC CDSi (Clinical Decision Support for Immunization) engine.

Follows CDC's "Logic Specification for ACIP Recommendations" v4.6 driven by the CDSi
supporting data 4.64 shipped in ``sidflows/cdsi/data/``. Pure functions: no clock, no
database, no environment. Entry point: :func:`assess`. See ``docs/cdsi.md``.
"""

from sidflows.cdsi.engine import assess
from sidflows.cdsi.types import (
    AdministeredDose,
    AntigenEvaluation,
    Assessment,
    DoseResult,
    Patient,
    PatientObservation,
    SeriesForecast,
    VaccineGroupForecast,
)

__all__ = [
    "AdministeredDose",
    "AntigenEvaluation",
    "Assessment",
    "DoseResult",
    "Patient",
    "PatientObservation",
    "SeriesForecast",
    "VaccineGroupForecast",
    "assess",
]
