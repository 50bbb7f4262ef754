"""Working records shared by the evaluation, forecast and selection steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    _ages: dict[int, tuple[Duration, date]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    """The patient's age dates computed so far in this assessment, by the duration's
    identity (the duration is kept with its date, so its identity is not reused)."""

    def age_date(self, age: Duration | None, default: date | None = None) -> date | None:
        if age is None:
            return default
        return self.at_age(age)

    def at_age(self, age: Duration) -> date:
        """The date the patient reaches ``age`` (computed once per assessment)."""
        hit = self._ages.get(id(age))
        if hit is not None:
            return hit[1]  # the entry holds ``age``: no other object has its identity
        when = add_duration(self.patient.birth_date, age)
        self._ages[id(age)] = (age, when)
        return when

    def age_bound(self, age: Duration | None, low: bool) -> date:
        """:func:`age_date` of the patient's birth date (an empty age is the spec's
        assumed 01/01/1900 as a lower bound, 12/31/2999 as an upper one)."""
        if age is None:
            return MIN_DATE if low else MAX_DATE
        hit = self._ages.get(id(age))
        if hit is not None:
            return hit[1]
        return self.at_age(age)


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
        return self.target_status.count("Satisfied")

    def first_valid(self) -> Record | None:
        for record, ev in zip(self.records, self.evals, strict=True):
            if ev.status == "Valid":
                return record
        return None
