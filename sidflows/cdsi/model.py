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
    undated: bool = field(init=False, repr=False, compare=False)
    """No set has an effective or cessation date (every set is in effect on any day)."""

    def __post_init__(self) -> None:
        undated = all(s.effective_date is None and s.cessation_date is None for s in self.sets)
        object.__setattr__(self, "undated", undated)

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
    # Derived once from the fields above (not compared, not shown): what the evaluation
    # and the forecast would otherwise recompute for every patient.
    usable_cvx: frozenset[str] = field(init=False, repr=False, compare=False)
    """CVX codes of the preferable and allowable vaccines."""
    preferable_cvx: frozenset[str] = field(init=False, repr=False, compare=False)
    evaluation_skips: tuple[ConditionalSkip, ...] = field(init=False, repr=False, compare=False)
    """The conditional skips whose context is Evaluation or Both."""
    forecast_skips: tuple[ConditionalSkip, ...] = field(init=False, repr=False, compare=False)
    """The conditional skips whose context is Forecast or Both."""
    undated_intervals: bool = field(init=False, repr=False, compare=False)
    """No preferable interval has an effective or cessation date."""
    undated_allowable_intervals: bool = field(init=False, repr=False, compare=False)
    only_age: AgeRule | None = field(init=False, repr=False, compare=False)
    """The single age rule when it is in effect on every day (else None)."""
    forecast_vaccines: tuple[VaccineRule, ...] = field(init=False, repr=False, compare=False)
    """The preferable vaccines flagged as forecast vaccine types, in order."""

    def __post_init__(self) -> None:
        preferable = frozenset(v.cvx for v in self.preferable_vaccines)
        allowable = frozenset(v.cvx for v in self.allowable_vaccines)
        only = None
        if len(self.ages) == 1:
            rule = self.ages[0]
            if rule.effective_date is None and rule.cessation_date is None:
                only = rule
        derived = {
            "usable_cvx": preferable | allowable,
            "preferable_cvx": preferable,
            "evaluation_skips": tuple(
                s for s in self.conditional_skips if s.applies_to("Evaluation")
            ),
            "forecast_skips": tuple(s for s in self.conditional_skips if s.applies_to("Forecast")),
            "undated_intervals": all(
                iv.effective_date is None and iv.cessation_date is None for iv in self.intervals
            ),
            "undated_allowable_intervals": all(
                iv.effective_date is None and iv.cessation_date is None
                for iv in self.allowable_intervals
            ),
            "only_age": only,
            "forecast_vaccines": tuple(
                v for v in self.preferable_vaccines if v.forecast_vaccine_type
            ),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def age_on(self, on: date) -> AgeRule | None:
        """The age rule in effect on a date (section 3.3), or None if none is."""
        only = self.only_age
        if only is not None:
            return only
        for rule in self.ages:
            if in_effect(rule.effective_date, rule.cessation_date, on):
                return rule
        return None

    def intervals_on(self, on: date) -> tuple[Interval, ...]:
        """The preferable intervals in effect on a date (section 3.3)."""
        if self.undated_intervals:
            return self.intervals
        return tuple(
            iv for iv in self.intervals if in_effect(iv.effective_date, iv.cessation_date, on)
        )

    def allowable_intervals_on(self, on: date) -> tuple[AllowableInterval, ...]:
        """The allowable intervals in effect on a date (section 3.3)."""
        if self.undated_allowable_intervals:
            return self.allowable_intervals
        return tuple(
            iv
            for iv in self.allowable_intervals
            if in_effect(iv.effective_date, iv.cessation_date, on)
        )


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
    indication_codes: frozenset[str] = field(init=False, repr=False, compare=False)
    """The observation codes of the indications (derived, not compared)."""

    def __post_init__(self) -> None:
        codes = frozenset(i.observation_code for i in self.indications)
        object.__setattr__(self, "indication_codes", codes)


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
    contraindication_codes: frozenset[str] = field(init=False, repr=False, compare=False)
    """Observation codes of every antigen and vaccine contraindication: a patient with
    none of them has no contraindication of this antigen."""
    order_free: bool = field(init=False, repr=False, compare=False)
    """No series of a series group that a 'completed series' skip condition names has
    such a condition itself: every series evaluates and forecasts the same whatever the
    order the series are run in (the engine may then run only the series it needs)."""

    def __post_init__(self) -> None:
        codes = frozenset(c.observation_code for c in self.antigen_contraindications) | {
            c.observation_code for c in self.vaccine_contraindications
        }
        named: set[str] = set()
        naming: set[str] = set()
        for series in self.series:
            for dose in series.doses:
                for skip in dose.conditional_skips:
                    for skip_set in skip.sets:
                        for condition in skip_set.conditions:
                            if condition.condition_type == "completed series":
                                named.update(condition.series_groups)
                                naming.add(series.series_group)
        object.__setattr__(self, "contraindication_codes", codes)
        object.__setattr__(self, "order_free", not (named & naming))


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
    group_cvx: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    """Per vaccine group: the CVX codes associated with any of its antigens."""
    _conflicts_by_target: dict[int, tuple[SeriesDose, dict[str, tuple[Duration, ...]]]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def forecast_conflicts(self, target: SeriesDose) -> dict[str, tuple[Duration, ...]]:
        """CALCDTCONFLICT-3's table for a target dose: previous CVX -> the conflict end
        intervals of the live virus conflicts that impact its preferable vaccines
        (made once per target dose; the target is kept with it)."""
        hit = self._conflicts_by_target.get(id(target))
        if hit is not None and hit[0] is target:
            return hit[1]
        table: dict[str, list[Duration]] = {}
        for cvx in target.preferable_cvx:
            for conflict in self.live_virus_conflicts.get(cvx, ()):
                table.setdefault(conflict.previous_cvx, []).append(conflict.end_interval)
        frozen = {k: tuple(v) for k, v in table.items()}
        self._conflicts_by_target[id(target)] = (target, frozen)
        return frozen

    def __post_init__(self) -> None:
        group_cvx = {
            name: frozenset(
                cvx
                for cvx, assocs in self.cvx_map.items()
                if any(x.antigen in group.antigens for x in assocs)
            )
            for name, group in self.vaccine_groups.items()
        }
        object.__setattr__(self, "group_cvx", group_cvx)
