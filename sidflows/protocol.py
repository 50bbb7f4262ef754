"""The protocol: config/protocol.toml parsed once into validated, frozen objects.

Every table of the protocol (``[grading]``, ``[immunoglobulin.iv]``, ...) may carry a
``sources`` table mapping its parameters to the citation each value comes from
(docs/clinical-reference.md); :meth:`Protocol.source` reads them by dotted path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sidflows.config import load_config
from sidflows.documents import field_path
from sidflows.errors import ConfigError
from sidflows.referral import BloodProductKind, TreatmentClass, VaccineCode

Positive = Annotated[float, Field(gt=0)]
Months = Annotated[int, Field(ge=0, le=240)]
Level = Literal["high", "low"]
DiagnosisCategory = Literal["oncology", "hsct", "immune_mediated", "other"]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _citation(value: str) -> str:
    if not value.strip() or any(c in value for c in "\r\n\u2028\u2029"):
        raise ValueError("a citation must be one line of text, not blank")
    return value


Citation = Annotated[str, AfterValidator(_citation)]
# Fields that are not clinical parameters: they are never cited.
_NOT_PARAMETERS = frozenset({"sources", "version"})
_UNKNOWN_SOURCE = "unknown_source"
_SOURCE_OF_TABLE = "source_of_table"


class _Section(_Frozen):
    """A table of the protocol: its parameters and, in ``sources``, where each comes from.

    ``sources`` maps a parameter of this table (a field name; an array of tables or a
    table of values such as ``cd4`` or ``products`` is cited once, by its own name) to
    its citation. A key that names no parameter of the table is refused; a table of
    its own (``[immunoglobulin.iv]``) is cited in its own ``sources``.
    """

    sources: Mapping[str, Citation] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sources_name_parameters(self) -> Self:
        tables, parameters = _tables(type(self)), _parameters(type(self))
        for key in self.sources:
            if key in tables:
                raise PydanticCustomError(
                    _SOURCE_OF_TABLE,
                    "{key}: a table: cite its parameters in its own sources",
                    {"key": key},
                )
            if key not in parameters:
                raise PydanticCustomError(
                    _UNKNOWN_SOURCE, "{key}: not a parameter of this table", {"key": key}
                )
        return self


@cache
def _tables(model: type[_Section]) -> frozenset[str]:
    """The fields of a table that are tables of their own (cited in their own sources)."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, _Section)
    )


@cache
def _parameters(model: type[_Section]) -> frozenset[str]:
    """The fields of a table that are parameters: what its ``sources`` may cite."""
    return frozenset(model.model_fields) - _tables(model) - _NOT_PARAMETERS


def _table_name(names: Sequence[str]) -> str:
    return f"[{'.'.join(names)}]" if names else "the top level"


class Cd4Band(_Frozen):
    below_age_years: int
    severe_below_per_ul: float
    severe_below_percent: float
    moderate_below_per_ul: float
    # CDC 2014 stage 2 by percentage (docs/clinical-reference.md §2.3); None: not graded.
    moderate_below_percent: float | None = None


class Cd19LowerLimit(_Frozen):
    below_age_months: int
    per_ul: Positive


class IggLowerLimit(_Frozen):
    below_age_months: int
    g_l: Positive


class GradingRules(_Section):
    steroid_high_mg_day: Positive
    steroid_high_mg_per_kg_day: Positive
    steroid_weight_threshold_kg: Positive
    steroid_high_min_days: int
    steroid_unknown_dose_level: Level
    methotrexate_low_max_mg_per_kg_week: Positive
    azathioprine_low_max_mg_per_kg_day: Positive
    mercaptopurine_low_max_mg_per_kg_day: Positive
    high_classes: tuple[TreatmentClass, ...]
    unlisted_level: Level
    anti_cd20_depletion_months: Months
    hsct_high_months: Months
    # Classes whose effect (B-cell depletion) outlasts the treatment: graded by the counts
    # (docs/clinical-reference.md §2.6).
    b_cell_depleting_classes: tuple[TreatmentClass, ...] = ("anti_cd20", "car_t")
    # Other B-cell-depleting treatments, by drug name (or the drug of their ATC row),
    # whatever class the referral gives them (docs/clinical-reference.md §2.6).
    other_b_cell_depleting_drugs: tuple[str, ...] = ("blinatumomab", "inotuzumab")
    # B-cell aplasia when the lab reports no CD19 lower limit (Hill 2019: < 20 cells/uL).
    b_cell_aplasia_below_cd19_per_ul: Positive = 20.0
    # The CD19 lower limit by age when the lab reports none (docs/clinical-reference.md
    # §2.13): the unit's laboratory ranges; empty, the aplasia threshold above is used.
    cd19_lower_limit: tuple[Cd19LowerLimit, ...] = ()
    # BCMA-directed CAR-T (docs/clinical-reference.md §2.10): graded as CAR-T, named apart.
    bcma_car_t_drugs: tuple[str, ...] = ("ciltacabtagene", "idecabtagene", "Carvykti", "Abecma")
    # A CD19 below the lab's limit after another or unrecognised biologic is B-cell
    # depletion (docs/clinical-reference.md §2.10).
    low_cd19_after_other_biologic_depletes: bool = True
    # Biologics whose low CD19 is their known effect with vaccine responses kept (belimumab):
    # not read as depletion by the rule above (docs/clinical-reference.md §2.10).
    low_cd19_not_depletion_drugs: tuple[str, ...] = ("belimumab",)
    # A drug the tables do not know, ended less than this long ago: graded high and no live
    # vaccine until then, or until the clinician names it (docs/clinical-reference.md §8.2).
    unrecognised_drug_hold_months: Months = 6
    anc_severe_below_per_ul: Positive
    anc_profound_below_per_ul: Positive
    methotrexate_names: tuple[str, ...]
    azathioprine_names: tuple[str, ...]
    mercaptopurine_names: tuple[str, ...]
    cd4: tuple[Cd4Band, ...] = Field(min_length=1)
    # Drugs IDSA 2013 does not count as immunosuppressive at usual doses (hydroxychloroquine,
    # sulfasalazine) and non-immunosuppressive drugs a referral may list (isotretinoin): by
    # name (matched as words) or ATC code (prefix); graded at this level (§2.11).
    not_immunosuppressive_drugs: tuple[str, ...] = ()
    not_immunosuppressive_atc: tuple[str, ...] = ()
    not_immunosuppressive_level: Literal["none", "low"] = "none"
    # Methotrexate given as single-day courses (high-dose IV, intrathecal), by a word of the
    # drug's name as recorded: a daily dose is their real unit, not the weekly oral drug
    # in the wrong field (docs/clinical-reference.md §2.1).
    single_day_methotrexate_words: tuple[str, ...] = (
        "intrathecal", "IT", "high-dose", "high dose", "HD", "HDMTX", "IV", "intravenous",
        "intratecal", "altas dosis",
    )  # fmt: skip
    # mg of prednisone per mg of each corticosteroid, by name (docs/clinical-reference.md
    # §2.9): the IDSA 2013 threshold is read on the prednisone-equivalent dose.
    steroid_prednisone_mg_per_mg: dict[str, Positive] = Field(
        default_factory=lambda: {
            "prednisone": 1.0,
            "prednisolone": 1.0,
            "methylprednisolone": 1.25,
            "dexamethasone": 20 / 3,
            "hydrocortisone": 0.25,
        }
    )

    @model_validator(mode="after")
    def _bands_sorted(self) -> GradingRules:
        ages = [band.below_age_years for band in self.cd4]
        if ages != sorted(ages):
            raise ValueError("cd4 bands must be in increasing age order")
        return self


class RouteDosing(_Section):
    g_per_kg: Positive
    interval_days: Annotated[int, Field(ge=1, le=90)]
    window_days_early: Annotated[int, Field(ge=0, le=30)]
    min_g_per_kg: Positive
    max_g_per_kg: Positive
    propose_loading: bool
    loading_g_per_kg: Positive
    vial_sizes_g: tuple[Positive, ...] = Field(min_length=1)
    concentration_g_l: Positive
    rate_steps_ml_kg_h: tuple[Positive, ...] = ()
    rate_step_minutes: int = 30
    observe_minutes: int = 0
    observe_first_minutes: int = 0
    long_gap_days: int = 56
    supervised_sessions: int = 0
    # Estimated rise of the trough IgG (g/L) for 0.1 g/kg more every 4 weeks: the size of
    # a dose step proposed from a low trough (docs/clinical-reference.md §3.11).
    trough_rise_g_l_per_0_1_g_kg_month: Positive = 0.73

    @model_validator(mode="after")
    def _dose_in_range(self) -> RouteDosing:
        if not self.min_g_per_kg <= self.g_per_kg <= self.max_g_per_kg:
            raise ValueError("g_per_kg must lie between min_g_per_kg and max_g_per_kg")
        return self


class Immunoglobulin(_Section):
    start_below_g_l_with_infections: Positive
    start_below_g_l_any: Positive
    antibody_failure_fold_rise: Positive
    infection_lookback_months: Months
    recurrent_min_infections: int
    default_route: Literal["iv", "sc"]
    on_replacement_within_intervals: int
    steady_state_months: Months
    trough_every_months: Annotated[int, Field(ge=1, le=12)]
    trough_target_g_l: Positive
    trough_target_car_t_g_l: Positive
    # After CD19 CAR-T (docs/clinical-reference.md §3.6).
    car_t_start_at_or_below_g_l: Positive = 4.0
    car_t_start_below_g_l_with_infections: Positive = 6.0
    car_t_aplasia_indicates: bool = True
    # Diagnosis groups whose low IgG is a loss (nephrotic syndrome: urinary, §3.1): the rule
    # on a low IgG with infections does not start IG there; a clinician decides.
    protein_losing_groups: tuple[str, ...] = ("nephrotic_syndrome",)
    # A trough is drawn on the infusion day before the dose, or up to this many days before.
    trough_window_days: Annotated[int, Field(ge=0, le=14)] = 0
    # SC every this many days or more often: levels are near-steady, so an IgG drawn at any
    # time on SC is a trough-equivalent (§3.10). 0: SC levels are read as IV troughs.
    sc_steady_max_interval_days: Annotated[int, Field(ge=0, le=14)] = 7
    # Home SC logs may reach the record late: added to the on-replacement window for SC.
    home_log_lag_days: Annotated[int, Field(ge=0, le=90)] = 0
    # An IV course (consecutive days summed) of at least this many g/kg is immunomodulatory
    # (Kawasaki, ITP), not replacement (docs/clinical-reference.md §3.1).
    immunomodulatory_iv_min_g_per_kg: Positive = 1.0
    # An IgG drawn within this many months after the end of an immunomodulatory course
    # measures the infused IgG, not the child's own: flagged, not used (§3.1).
    immunomodulatory_washout_months: Annotated[int, Field(ge=0, le=12)] = 3
    trial_off_recheck_months: Months
    trial_off_season_start: MonthDay
    trial_off_season_end: MonthDay
    iv: RouteDosing
    sc: RouteDosing

    def route(self, route: str) -> RouteDosing:
        return self.iv if route == "iv" else self.sc


class IvigRow(_Frozen):
    up_to_g_per_kg: Positive
    months: Months


class AntibodyInterval(_Section):
    ivig_rows: tuple[IvigRow, ...] = Field(min_length=1)
    products: dict[BloodProductKind, Months]

    def ivig_months(self, g_per_kg: float) -> int:
        """ACIP table: doses between rows take the next higher row."""
        for row in self.ivig_rows:
            if g_per_kg <= row.up_to_g_per_kg + 1e-9:
                return row.months
        return self.ivig_rows[-1].months


class HsctVaccination(_Section):
    pcv_start_months: Months
    pcv_doses: int
    pcv_dose_interval_months: Months
    ppsv23_from_months: Months
    pcv4_after_first_months: Months
    influenza_from_months: Months
    influenza_first_season_doses: int
    inactivated_start_months: Months
    inactivated: tuple[VaccineCode, ...]
    inactivated_doses: int
    inactivated_dose_interval_months: Months
    live_from_months: Months
    live: tuple[VaccineCode, ...]
    live_doses: int
    titres_after_series_weeks: int
    # HPV and MenACWY after HSCT (IDSA 2013 table 4, rec. 80 and 84; §4.15).
    hpv_start_months: Months = 6
    menacwy_start_months: Months = 6
    menacwy_from_age_years: Annotated[int, Field(ge=2, le=18)] = 11
    menacwy_doses: Annotated[int, Field(ge=1, le=3)] = 2
    menacwy_booster_age_years: Annotated[int, Field(ge=11, le=18)] = 16
    # MMR, varicella after HSCT: months off all systemic immunosuppression (§4.6.1): 12, the
    # "2-1-8 rule" (ECIL-7, EBMT, AGIHO; cautious); 0, IDSA 2013 rec. 86-87 (none ongoing).
    live_months_off_immunosuppression: Months = 12
    # Diphtheria-tetanus-pertussis after HSCT at any age (§4.6.2): DTaP x3 (IDSA 2013 table 4,
    # its first option from 7 years; ECIL-7/ESCMID: full-dose D and aP), or Tdap then Td.
    tetanus_series: Literal["DTaP", "Tdap_then_Td"] = "DTaP"


class VaccinationRules(_Section):
    # Infection kinds read as varicella or herpes zoster: evidence of immunity to confirm
    # (docs/clinical-reference.md §4.20; matched as words, accents folded).
    varicella_infection_words: tuple[str, ...] = (
        "varicella", "chickenpox", "chicken pox", "zoster", "shingles", "varicela", "VZV",
    )  # fmt: skip
    # Salicylates, by name (words) or ATC code: the varicella doses' precaution (Reye
    # syndrome) and inactivated influenza only (docs/clinical-reference.md §4.14).
    salicylate_drugs: tuple[str, ...] = (
        "aspirin", "acetylsalicylic acid", "acido acetilsalicilico", "salicylate",
    )  # fmt: skip
    salicylate_atc: tuple[str, ...] = ("B01AC06", "N02BA01")
    live_before_immunosuppression_days: int
    inactivated_before_immunosuppression_days: int
    influenza_min_age_months: Months
    influenza_season_start: MonthDay
    influenza_season_end: MonthDay
    intensive_chemotherapy_words: tuple[str, ...]
    after_chemotherapy_inactivated_months: Months
    after_chemotherapy_inactivated_months_anti_cd20: Months
    after_chemotherapy_live_months: Months
    after_chemotherapy_inactivated: tuple[VaccineCode, ...]
    after_chemotherapy_live: tuple[VaccineCode, ...]
    tdap_from_age_years: int
    after_anti_cd20_months: Months
    before_next_anti_cd20_days: int
    after_high_dose_steroid_live_months: Months
    immune_mediated_inactivated: tuple[VaccineCode, ...]
    immune_mediated_live: tuple[VaccineCode, ...]
    live_series_doses: int
    ppsv23_after_pcv_weeks: int
    ppsv23_repeat_years: int
    live_min_age_months: Months
    min_dose_interval_days: int
    anti_hbs_protective_miu_ml: Positive
    # Inactivated vaccines (not influenza) wait while B cells are depleted (§4.10).
    defer_inactivated_in_b_cell_depletion: bool = True
    # A live vaccine after a B-cell-depleting treatment waits for a fresh CD19 count that
    # shows recovery (docs/clinical-reference.md §4.12).
    # ACIP: conjugate catch-up doses 8 weeks apart before PPSV23 (clinical-reference §4.13).
    pcv_catch_up_interval_weeks: int = 8
    live_requires_cd19_recovery: bool = True
    # Varicella (VAR, MMRV) dose 2 by age at dose 1 (ACIP, §4.14): under this age the
    # interval is varicella_interval_under_months; from it, varicella_interval_from_days.
    varicella_interval_age_years: Annotated[int, Field(ge=1, le=18)] = 13
    varicella_interval_under_months: Annotated[int, Field(ge=1, le=12)] = 3
    varicella_interval_from_days: Annotated[int, Field(ge=28, le=365)] = 28
    # Vaccine titres wait for the IG interval after the last IG dose (§6.8).
    defer_titres_on_ig: bool = True
    # Td / Tdap (§4.11): Tdap once from tdap_from_age_years, then this product.
    tetanus_after_tdap: Literal["Td", "Tdap"] = "Td"
    # Influenza on anti-CD20 (§4.5): given on schedule (ACR 2022) or skipped (IDSA 2013).
    influenza_on_anti_cd20: Literal["on_schedule", "skip"] = "on_schedule"
    # Methotrexate (not as chemotherapy) held this many weeks after each influenza dose if
    # disease activity allows, said to the clinician (ACR 2022, §4.5); 0: nothing said.
    influenza_methotrexate_hold_weeks: Annotated[int, Field(ge=0, le=4)] = 2
    # A visit with more injections than this is said to the clinician, with the ways to
    # lighten it (§4.7); 0: nothing said. ACIP sets no limit.
    injections_per_visit_flag: Annotated[int, Field(ge=0, le=20)] = 5
    # HPV for immunocompromised children (ACIP 2016, §4.15): 3 doses from this age.
    hpv_from_age_years: Annotated[int, Field(ge=9, le=26)] = 9
    hpv_doses_immunocompromised: Annotated[int, Field(ge=2, le=3)] = 3
    hpv_dose2_after_months: Annotated[int, Field(ge=1, le=2)] = 1
    hpv_dose3_after_first_months: Annotated[int, Field(ge=5, le=12)] = 6
    # The routine catch-up from CDSi's forecast, for every child in scope (§4.16).
    routine_catch_up: tuple[VaccineCode, ...] = (
        "DTaP", "IPV", "Hib", "HepB", "HepA", "PCV", "MenACWY", "HPV",
    )  # fmt: skip
    # Rotavirus (ACIP 2009; SCID, MMWR 2010;59:687; §4.17): dose 1 from 6 weeks to 14 weeks
    # 6 days (104 days), the last dose by 8 months 0 days.
    rotavirus_first_dose_min_weeks: Annotated[int, Field(ge=6, le=12)] = 6
    rotavirus_first_dose_max_days: Annotated[int, Field(ge=60, le=120)] = 104
    rotavirus_last_dose_max_months: Annotated[int, Field(ge=6, le=12)] = 8
    # Infants exposed in utero to a biologic (Australian Immunisation Handbook 2025, §4.17):
    # no live vaccine before this age; rotavirus allowed unless the exposure was anti-CD20.
    in_utero_biologic_live_months: Annotated[int, Field(ge=0, le=12)] = 6
    # Varicella without evidence of immunity in an immunocompromised child (§4.20).
    varicella_exposure_advice: bool = True
    varizig_within_days: Annotated[int, Field(ge=1, le=30)] = 10
    ig_covers_varicella_exposure_weeks: Annotated[int, Field(ge=0, le=8)] = 3
    measles_exposure_igiv_g_per_kg: Annotated[float, Field(gt=0, le=2)] = 0.4
    measles_exposure_within_days: Annotated[int, Field(ge=1, le=30)] = 6
    in_utero_exposure_words: tuple[str, ...] = (
        "in utero", "born to mother", "mother on", "maternal", "during pregnancy",
    )  # fmt: skip
    # Live vaccines on low-dose or alternate-day corticosteroids (§4.18): "block" (IDSA 2013
    # table 6, cautious) or "allow" (ACIP general best practice: not a contraindication).
    live_on_low_dose_steroids: Literal["block", "allow"] = "block"
    # The post-chemotherapy wait for inactivated boosters (§4.19): an oncology rule, for these
    # diagnosis categories; in immune-mediated disease vaccines are given during treatment.
    chemotherapy_wait_categories: tuple[DiagnosisCategory, ...] = ("oncology", "hsct", "other")
    hsct: HsctVaccination
    antibody_interval: AntibodyInterval


class AgeDoseBand(_Frozen):
    """A dose for the ages below ``below_age_months`` (bands in increasing age order)."""

    below_age_months: Annotated[int, Field(ge=1, le=240)]
    mg_per_kg_day: Positive | None = None
    mg_per_dose: Positive | None = None


# A drug's name as a plan item's key carries it ("prophylaxis:<drug>", the store keeps
# item keys and streams to 80 and 60 characters).
DrugName = Annotated[str, Field(min_length=1, max_length=40)]


class Pjp(_Section):
    drug: DrugName
    # TMP by body-surface area (§5.1), BSA from weight alone (Costeff 1966).
    tmp_mg_per_m2_day: Positive
    tmp_max_mg_day: Positive
    # Each dose rounded to this many mg of TMP (never above the day's maximum).
    tmp_dose_round_mg: Positive = 5.0
    doses_per_day: int
    days_per_week: Annotated[int, Field(ge=1, le=7)]
    all_diagnosis_words: tuple[str, ...]
    # Diagnosis groups (config/codes.toml) that indicate Pneumocystis prophylaxis.
    indicating_diagnosis_groups: tuple[str, ...] = ("acute_lymphoblastic_leukaemia",)
    indicating_drugs: tuple[str, ...]
    # Corticosteroids (§5.9): "dose_and_duration", a high dose (the grading's IDSA threshold,
    # §2.9) for >= steroid_weeks; "duration_only", any dose for > steroid_weeks (the
    # ECIL-5 abstract's wording, the alternative).
    steroid_weeks: int
    steroid_rule: Literal["dose_and_duration", "duration_only"] = "dose_and_duration"
    # No co-trimoxazole before this age (§5.8: kernicterus in the neonatal period).
    min_age_weeks: Annotated[int, Field(ge=0, le=26)] = 6
    after_hsct_min_months: Months
    after_immunosuppression_months: Months
    # A corticosteroid's cover past its last dose (§5.9): unit policy on ECIL-5's period.
    after_steroid_months: Annotated[int, Field(ge=0, le=12)] = 3
    after_chemotherapy_review_months: Months
    # After CAR-T (§5.1): at least this many months after the infusion and until a fresh
    # CD4 count at or above the threshold.
    after_car_t_min_months: Months = 6
    after_car_t_until_cd4_per_ul: Positive = 200.0
    # Atovaquone, the alternative (§5.5): mg/kg/day by age band, at most a day.
    atovaquone_bands: tuple[AgeDoseBand, ...] = ()
    atovaquone_max_mg_day: Positive = 1500.0


class Encapsulated(_Section):
    """Antibiotic prophylaxis against encapsulated bacteria in chronic GVHD (§5.6)."""

    drug: DrugName = "phenoxymethylpenicillin"
    doses_by_age: tuple[AgeDoseBand, ...] = ()
    doses_per_day: Annotated[int, Field(ge=1, le=4)] = 2
    alternatives: str = ""


class Meningococcal(_Section):
    """Complement inhibitors: meningococcal vaccination and antibiotic cover (§5.7)."""

    # Recognised by name (matched as words) or by ATC code (a prefix).
    drugs: tuple[str, ...] = ()
    atc: tuple[str, ...] = ()
    # The level a complement inhibitor is graded (§2.12): "none" (the sources: a specific
    # susceptibility to Neisseria, not general immunosuppression) or "low".
    grading_level: Literal["none", "low"] = "none"
    menacwy_doses: Annotated[int, Field(ge=1, le=4)] = 2
    menacwy_interval_weeks: Annotated[int, Field(ge=1)] = 8
    menacwy_min_age_months: Annotated[int, Field(ge=0)] = 24
    menacwy_booster_years: Annotated[int, Field(ge=1)] = 5
    # The first booster after a series completed before 7 years (ACIP 2020).
    menacwy_booster_before_7_years: Annotated[int, Field(ge=1)] = 3
    menb_doses: Annotated[int, Field(ge=1, le=4)] = 2
    menb_interval_weeks: Annotated[int, Field(ge=1)] = 4
    menb_min_age_years: Annotated[int, Field(ge=0)] = 10
    menb_booster_after_series_years: Annotated[int, Field(ge=1)] = 1
    menb_booster_every_years: Annotated[int, Field(ge=1)] = 2
    vaccinate_before_days: Annotated[int, Field(ge=0)] = 14
    # "treatment": for as long as the inhibitor is given (UK practice, cautious);
    # "two_weeks_after_vaccination": the US labels' alternative.
    antibiotic_until: Literal["treatment", "two_weeks_after_vaccination"] = "treatment"


class Antibacterial(_Section):
    drug: DrugName
    mg_per_kg: Positive
    # The most one dose may be, whatever the weight (§5.2).
    max_mg_per_dose: Positive
    regimen: str
    alternatives: str
    # Drugs the child may take that prolong the QT interval, by name (words): a macrolide
    # beside one asks for the QT (docs/clinical-reference.md §5.4).
    qt_prolonging_drugs: tuple[str, ...] = (
        "hydroxychloroquine", "hidroxicloroquina", "chloroquine", "cloroquina",
    )  # fmt: skip


class OutsideScope(_Section):
    """Antibacterial and antifungal prophylaxis the plan does not cover (§5.10): said so for
    these diagnosis groups and below this neutrophil count on chemotherapy."""

    diagnosis_groups: tuple[str, ...] = ("acute_myeloid_leukaemia",)
    anc_below_per_ul: Positive = 500.0
    # HSV/VZV antiviral prophylaxis after CD19 CAR-T and allogeneic HSCT (§5.10): said to
    # be the treating team's for this long after it, and after CAR-T while CD4 is low.
    antiviral_after_months: Months = 12
    antiviral_until_cd4_per_ul: Positive = 200.0
    # ... and after an autologous HSCT, VZV prophylaxis for this long (a seropositive child).
    antiviral_after_autologous_months: Months = 12
    # Mould-active antifungal prophylaxis while GVHD after an allogeneic HSCT is treated
    # (§5.10): said to be the transplant team's.
    antifungal_in_gvhd: bool = True


class Prophylaxis(_Section):
    pjp: Pjp
    antibacterial: Antibacterial
    outside_scope: OutsideScope = Field(default_factory=OutsideScope)
    encapsulated: Encapsulated = Field(default_factory=Encapsulated)
    meningococcal: Meningococcal = Field(default_factory=Meningococcal)


class Regimens(_Section):
    """Regimen acronyms and their component drugs (docs/clinical-reference.md §8.3)."""

    components: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # An unlisted name with the lymphoma convention's "R-" prefix or "-R" suffix is read
    # as containing rituximab (cautious) and flagged.
    r_affix_means_rituximab: bool = True


class Reassessment(_Section):
    after_anti_cd20_every_months: Annotated[int, Field(ge=1)]
    after_anti_cd20_panel: tuple[str, ...]
    after_chemotherapy_months: tuple[int, ...]
    after_chemotherapy_panel: tuple[str, ...]
    default_every_months: Annotated[int, Field(ge=1)]
    default_panel: tuple[str, ...]
    titre_panel_words: dict[str, str]

    # A result older than this is stale: flagged, repeated, never used silently (§6.6).
    result_valid_months: Annotated[int, Field(ge=1, le=24)] = 3

    @property
    def pneumococcal_titres(self) -> str:
        """The laboratory's name for pneumococcal serotype titres (§6.3)."""
        return self.titre_panel_words.get("PCV", "pneumococcal serotype titres")


class Review(_Section):
    every_months: Annotated[int, Field(ge=1, le=12)]
    off_ig_months_for_recovery: Months


ItemKind = Literal[
    "ig_session", "ig_trough", "vaccine_dose", "prophylaxis", "reassessment", "plan_review"
]


class Funding(_Section):
    publicly_funded: dict[ItemKind, bool]


class Protocol(_Section):
    """Every parameter the rules use, with the version each plan records."""

    version: Annotated[str, Field(min_length=1, max_length=40)]  # each plan records it
    grading: GradingRules
    igg_lower_limit: tuple[IggLowerLimit, ...] = Field(min_length=1)
    immunoglobulin: Immunoglobulin
    vaccination: VaccinationRules
    prophylaxis: Prophylaxis
    reassessment: Reassessment
    review: Review
    funding: Funding
    regimens: Regimens = Field(default_factory=Regimens)

    def cite(self, *paths: str) -> str:
        """The citations of these parameters (dotted paths), distinct ones joined by "; ".

        Each is :meth:`source` exactly as the file gives it. A parameter the file
        gives no citation for is named as such (the decision still stands; the
        missing citation shows beside it).
        """
        found: list[str] = []
        for path in paths:
            try:
                citation = self.source(path)
            except KeyError:
                citation = f"protocol {self.version} records no source for {path}"
            if citation not in found:
                found.append(citation)
        return "; ".join(found)

    def source(self, path: str) -> str:
        """The citation the protocol records for a parameter, exactly as the file gives it.

        ``path`` is dotted, as in the file: ``"grading.steroid_high_mg_day"``,
        ``"immunoglobulin.iv.g_per_kg"``, ``"igg_lower_limit"``. An array of tables or a
        table of values is cited as a whole (``"grading.cd4"``,
        ``"vaccination.antibody_interval.products"``), and one entry or column of it
        answers with that citation (``"vaccination.antibody_interval.products.plasma"``,
        ``"grading.cd4.severe_below_per_ul"``).

        Raises KeyError, saying why, when the path names no parameter or when the
        parameter's table has no ``sources`` entry for it.
        """
        parts = path.split(".")
        table: _Section = self
        walked: list[str] = []
        for i, name in enumerate(parts):
            if name in _tables(type(table)):
                table = getattr(table, name)
                walked.append(name)
                continue
            if name not in _parameters(type(table)):
                raise KeyError(
                    f"{path!r}: not a parameter of {_table_name(walked)} of the protocol"
                )
            _check_within(getattr(table, name), parts[i + 1 :], path)
            citation = table.sources.get(name)
            if citation is None:
                raise KeyError(
                    f"{path!r}: protocol {self.version} records no source for it "
                    f"(no {name!r} in [{'.'.join((*walked, 'sources'))}])"
                )
            return citation
        raise KeyError(f"{path!r}: a table of the protocol, not a parameter")


def _check_within(value: Any, rest: Sequence[str], path: str) -> None:
    """What follows a parameter's name in a path: one key of a table, one column of an array."""
    if not rest:
        return
    if len(rest) == 1:
        if isinstance(value, Mapping) and rest[0] in value:
            return
        if (
            isinstance(value, tuple)
            and value
            and isinstance(value[0], BaseModel)
            and rest[0] in type(value[0]).model_fields
        ):
            return
    raise KeyError(f"{path!r}: {'.'.join(rest)!r} is not part of that parameter")


def _problem(error: Any) -> str:
    """One validation error as ``path: message``; a wrong ``sources`` key by its own path."""
    loc = tuple(error["loc"])
    if error["type"] in (_UNKNOWN_SOURCE, _SOURCE_OF_TABLE):
        key = error["ctx"]["key"]
        where = field_path((*loc, "sources", key))
        if error["type"] == _UNKNOWN_SOURCE:
            return f"{where}: not a parameter of {_table_name([field_path(loc)] if loc else [])}"
        own = field_path((*loc, key, "sources"))
        return f"{where}: {_table_name([field_path((*loc, key))])} is a table: cite it in [{own}]"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{field_path(loc)}: {message}" if loc else message


def parse_protocol(data: dict[str, object], *, origin: str = "protocol") -> Protocol:
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_problem(exc.errors(include_url=False)[0])}") from None


def load_protocol(path: Path | None = None) -> Protocol:
    """The unit's protocol: SIDFLOWS_PROTOCOL, else config/protocol.toml. Parsed once."""
    return load_config(parse_protocol, "protocol.toml", "SIDFLOWS_PROTOCOL", path)
