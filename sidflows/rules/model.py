"""What the rules return: frozen decisions, plan items and deferrals, each explained."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Literal

Topic = Literal[
    "grading", "immunoglobulin", "prophylaxis", "vaccination", "reassessment", "funding"
]
Level = Literal["high", "low", "none"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One thing the rules decided, why, and on whose authority."""

    topic: Topic
    decision: str
    rationale: str
    source: str


@dataclass(frozen=True, slots=True)
class Grading:
    """The grading of one day. ``markers`` are the reasons graded high from laboratory
    markers alone (a severe CD4, severe neutropenia): no other rule gives them a block of
    their own, so the live-vaccine blocks read them from here (§4.3)."""

    level: Level
    # None: no immunosuppressive cause recorded, neither can be said (§2.14).
    transient: bool | None
    reasons: tuple[str, ...]
    markers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    """A cause that keeps a vaccine from being given between two dates.

    ``start`` None means "since before today"; ``until`` None means "while the
    cause is ongoing" (no date can be given yet).
    """

    reason: str
    source: str
    until: date | None
    start: date | None = None
    # Lifted by a result, not by a date (a CD19 that shows recovery, §4.12, §2.10): no
    # dose in this plan; a deferral is dated by the other blocks ("not before").
    awaits_result: bool = False

    def holds_on(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (
            self.until is None or day < self.until
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """Scheduled work of a plan. ``key`` is stable across plan versions."""

    key: str
    due: date
    hospital: bool = True

    kind: ClassVar[str] = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IgSession(Item):
    route: Literal["iv", "sc"]
    dose_g: float
    dose_g_per_kg: float
    earliest: date
    latest: date
    setting: Literal["day_unit", "supervised", "home"]
    session_minutes: int | None = None
    loading: bool = False
    kind: ClassVar[str] = "ig_session"


@dataclass(frozen=True, slots=True, kw_only=True)
class IgTrough(Item):
    target_g_l: float
    kind: ClassVar[str] = "ig_trough"


@dataclass(frozen=True, slots=True, kw_only=True)
class VaccineDose(Item):
    vaccine: str
    live: bool
    dose_number: int
    earliest: date
    latest: date | None = None
    kind: ClassVar[str] = "vaccine_dose"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProphylaxisItem(Item):
    drug: str
    regimen: str
    review: date
    indication: str
    kind: ClassVar[str] = "prophylaxis"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReassessmentItem(Item):
    panel: tuple[str, ...]
    reason: str
    kind: ClassVar[str] = "reassessment"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanReviewItem(Item):
    reason: str
    kind: ClassVar[str] = "plan_review"


@dataclass(frozen=True, slots=True)
class Deferral:
    """A live vaccine that cannot be given inside the horizon, and why."""

    vaccine: str
    until: date | None
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    patient_ref: str
    protocol_version: str
    as_of: date
    horizon_end: date
    grading: Grading
    decisions: tuple[Decision, ...]
    items: tuple[Item, ...]
    deferred: tuple[Deferral, ...]
    publicly_funded: dict[str, bool]
    consent_recorded: bool


IgStatus = Literal["start", "continue", "trial_off", "not_indicated", "no_data"]


@dataclass(frozen=True, slots=True)
class IgDecision:
    status: IgStatus
    route: Literal["iv", "sc"]
    dose_g: float
    dose_g_per_kg: float
    trough_target_g_l: float
    decisions: tuple[Decision, ...]
    loading_dose_g: float | None = None
    interval_days: int | None = None
    # A trial off outside the season: sessions go on until this day (§3.7).
    sessions_until: date | None = None
    # Labs the decision asks for before replacement is decided (§3.4, §3.11): (panel, why),
    # booked at the first reassessment.
    asks: tuple[tuple[str, ...], str] | None = None

    @property
    def gives_ig(self) -> bool:
        return self.status in ("start", "continue") or self.sessions_until is not None
