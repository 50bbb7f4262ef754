"""Working records shared by the evaluation, forecast and selection steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from sidflows.cdsi.dates import MAX_DATE, MIN_DATE, Duration, add_duration
from sidflows.cdsi.model import Series, SeriesDose, SupportingData
from sidflows.cdsi.types import AdministeredDose, EvaluationStatus, Patient

__all__ = [
    "Context",
    "DoseEval",
    "GroupComplete",
    "Record",
    "SeriesRun",
    "age_date",
]

GroupComplete = Callable[[str], bool]
"""Answers 'is a relevant patient series of this series group Complete?' (Table 6-7)."""


@dataclass(frozen=True, slots=True)
class Record:
    """An antigen administered record (section 4.2): one dose, seen for one antigen."""

    position: int
    """Order of the dose in the patient's whole history (by date, then input order)."""
    dose: AdministeredDose
    cvx: str
    when: date
    substandard: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    patient: Patient
    assessment_date: date
    observations: Mapping[str, date | None]
    history: tuple[Record, ...]
    data: SupportingData

    def age_date(self, age: Duration | None, default: date | None = None) -> date | None:
        if age is None:
            return default
        return add_duration(self.patient.birth_date, age)


def age_date(birth: date, age: Duration | None, low: bool) -> date:
    """An age as a date, with the spec's assumed 01/01/1900 or 12/31/2999 if empty."""
    if age is None:
        return MIN_DATE if low else MAX_DATE
    return add_duration(birth, age)


@dataclass(frozen=True, slots=True)
class DoseEval:
    """Evaluation of one antigen administered record against one target dose."""

    status: EvaluationStatus
    reasons: tuple[str, ...]
    target: int | None
    inadvertent: bool = False


@dataclass(frozen=True, slots=True)
class SeriesRun:
    """A relevant patient series after evaluation (chapter 6 over section 4.4)."""

    series: Series
    records: tuple[Record, ...]
    evals: tuple[DoseEval, ...]
    targets: tuple[SeriesDose, ...]
    target_status: tuple[str, ...]
    """'Satisfied', 'Skipped' or 'Not Satisfied' per target dose."""
    satisfied_by: Mapping[int, Record]
    next_target: int

    @property
    def valid_count(self) -> int:
        return sum(1 for s in self.target_status if s == "Satisfied")

    def first_valid(self) -> Record | None:
        for record, ev in zip(self.records, self.evals, strict=True):
            if ev.status == "Valid":
                return record
        return None
