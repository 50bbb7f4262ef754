"""The CDSi supporting data as frozen objects (antigen and schedule supporting data 4.64).

Field names follow the XML elements (see ``data/AntigenSupportingData.xsd`` and
``data/ScheduleSupportingData.xsd``); empty elements are ``None`` or empty tuples.
CVX codes are normalised without leading zeros (``"08"`` -> ``"8"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sidflows.cdsi.dates import Duration

__all__ = [
    "AgeRule",
    "AllowableInterval",
    "Antigen",
    "AntigenContraindication",
    "ConditionalSkip",
    "CvxAssociation",
    "Immunity",
    "Indication",
    "Interval",
    "LiveVirusConflict",
    "Observation",
    "Series",
    "SeriesDose",
    "SkipCondition",
    "SkipSet",
    "SupportingData",
    "VaccineContraindication",
    "VaccineGroup",
    "VaccineRule",
]


def in_effect(effective: date | None, cessation: date | None, on: date) -> bool:
    """Section 3.3: a dated supporting-data element applies from its effective date
    up to and including its cessation date."""
    if effective is not None and on < effective:
        return False
    return not (cessation is not None and on > cessation)


@dataclass(frozen=True, slots=True)
class AgeRule:
    abs_min_age: Duration | None
    min_age: Duration | None
    earliest_rec_age: Duration | None
    latest_rec_age: Duration | None
    max_age: Duration | None
    effective_date: date | None = None
    cessation_date: date | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    """A preferable interval (Table 6-17): from the previous dose, a target dose, the most
    recent of some vaccine types, or a relevant observation."""

    from_previous: bool
    from_target_dose: int | None
    from_most_recent: frozenset[str]
    from_relevant_obs: str | None
    abs_min_int: Duration | None
    min_int: Duration | None
    earliest_rec_int: Duration | None
    latest_rec_int: Duration | None
    priority_override: bool = False
    effective_date: date | None = None
    cessation_date: date | None = None


@dataclass(frozen=True, slots=True)
class AllowableInterval:
    from_previous: bool
    from_target_dose: int | None
    abs_min_int: Duration | None
    effective_date: date | None = None
    cessation_date: date | None = None


@dataclass(frozen=True, slots=True)
class VaccineRule:
    """A preferable or allowable vaccine of a series dose."""

    vaccine_type: str
    cvx: str
    begin_age: Duration | None
    end_age: Duration | None
    trade_name: str | None = None
    mvx: str | None = None
    volume: str | None = None
    forecast_vaccine_type: bool = False


@dataclass(frozen=True, slots=True)
class SkipCondition:
    condition_id: str
    condition_type: str
    """Lower-cased: 'age', 'interval', 'completed series', 'vaccine count by age',
    'vaccine count by date', 'vaccine count by date and age'."""
    start_date: date | None
    end_date: date | None
    begin_age: Duration | None
    end_age: Duration | None
    interval: Duration | None
    dose_count: int | None
    dose_type: str | None
    """'valid' or 'total'."""
    dose_count_logic: str | None
    """'greater than', 'equal to' or 'less than'."""
    vaccine_types: frozenset[str]
    series_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SkipSet:
    set_id: str
    description: str
    effective_date: date | None
    cessation_date: date | None
    condition_logic: str
    """'AND' or 'OR' (a single condition reads the same either way)."""
    conditions: tuple[SkipCondition, ...]


@dataclass(frozen=True, slots=True)
class ConditionalSkip:
    context: str
    """'Evaluation', 'Forecast' or 'Both'."""
    set_logic: str
    sets: tuple[SkipSet, ...]

    def applies_to(self, context: str) -> bool:
        return self.context in {"Both", context}


@dataclass(frozen=True, slots=True)
class SeriesDose:
    dose_number: int
    ages: tuple[AgeRule, ...]
    intervals: tuple[Interval, ...]
    allowable_intervals: tuple[AllowableInterval, ...]
    preferable_vaccines: tuple[VaccineRule, ...]
    allowable_vaccines: tuple[VaccineRule, ...]
    inadvertent_vaccines: frozenset[str]
    conditional_skips: tuple[ConditionalSkip, ...]
    recurring: bool
    seasonal_start: date | None
    seasonal_end: date | None

    def age_on(self, on: date) -> AgeRule | None:
        """The age rule in effect on a date (section 3.3), or None if none is."""
        for rule in self.ages:
            if in_effect(rule.effective_date, rule.cessation_date, on):
                return rule
        return None


@dataclass(frozen=True, slots=True)
class Indication:
    observation_code: str
    description: str
    begin_age: Duration | None
    end_age: Duration | None


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    antigen: str
    target_disease: str
    vaccine_group: str
    series_type: str
    """'Standard', 'Risk' or 'Evaluation Only'."""
    equivalent_series_groups: tuple[str, ...]
    required_genders: frozenset[str]
    default_series: bool
    product_path: bool
    series_group_name: str
    series_group: str
    series_priority: str
    series_preference: int
    min_age_to_start: Duration | None
    max_age_to_start: Duration | None
    indications: tuple[Indication, ...]
    doses: tuple[SeriesDose, ...]
    admin_guidance: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AntigenContraindication:
    observation_code: str
    text: str
    begin_age: Duration | None
    end_age: Duration | None


@dataclass(frozen=True, slots=True)
class VaccineContraindication:
    observation_code: str
    text: str
    cvx: frozenset[str]
    ages: tuple[tuple[str, Duration | None, Duration | None], ...]
    """(cvx, begin age, end age) per contraindicated vaccine."""


@dataclass(frozen=True, slots=True)
class Immunity:
    guideline_codes: frozenset[str]
    immunity_birth_date: date | None
    birth_country: str | None
    exclusion_codes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Antigen:
    name: str
    immunity: Immunity
    antigen_contraindications: tuple[AntigenContraindication, ...]
    vaccine_contraindications: tuple[VaccineContraindication, ...]
    series: tuple[Series, ...]


@dataclass(frozen=True, slots=True)
class LiveVirusConflict:
    previous_cvx: str
    current_cvx: str
    begin_interval: Duration
    min_end_interval: Duration
    end_interval: Duration


@dataclass(frozen=True, slots=True)
class VaccineGroup:
    name: str
    antigens: tuple[str, ...]
    administer_full_vaccine_group: bool


@dataclass(frozen=True, slots=True)
class CvxAssociation:
    antigen: str
    begin_age: Duration | None
    end_age: Duration | None


@dataclass(frozen=True, slots=True)
class Observation:
    code: str
    title: str
    indication_text: str
    contraindication_text: str


@dataclass(frozen=True, slots=True)
class SupportingData:
    antigens: dict[str, Antigen]
    live_virus_conflicts: dict[str, tuple[LiveVirusConflict, ...]]
    """Keyed by the current (impacted) CVX."""
    vaccine_groups: dict[str, VaccineGroup]
    cvx_map: dict[str, tuple[CvxAssociation, ...]]
    cvx_descriptions: dict[str, str]
    observations: dict[str, Observation]
    antigen_to_group: dict[str, str] = field(default_factory=dict)
