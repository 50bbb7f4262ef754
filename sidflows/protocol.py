"""The protocol: config/protocol.toml parsed once into validated, frozen objects."""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sidflows.errors import ConfigError
from sidflows.referral import BloodProduct, TreatmentClass, VaccineCode, field_path

Positive = Annotated[float, Field(gt=0)]
Months = Annotated[int, Field(ge=0, le=240)]
Level = Literal["high", "low"]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cd4Band(_Frozen):
    below_age_years: int
    severe_below_per_ul: float
    severe_below_percent: float
    moderate_below_per_ul: float


class IggLowerLimit(_Frozen):
    below_age_months: int
    g_l: Positive


class Grading(_Frozen):
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
    anc_severe_below_per_ul: Positive
    anc_profound_below_per_ul: Positive
    methotrexate_names: tuple[str, ...]
    azathioprine_names: tuple[str, ...]
    mercaptopurine_names: tuple[str, ...]
    cd4: tuple[Cd4Band, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _bands_sorted(self) -> Grading:
        ages = [band.below_age_years for band in self.cd4]
        if ages != sorted(ages):
            raise ValueError("cd4 bands must be in increasing age order")
        return self


class RouteDosing(_Frozen):
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

    @model_validator(mode="after")
    def _dose_in_range(self) -> RouteDosing:
        if not self.min_g_per_kg <= self.g_per_kg <= self.max_g_per_kg:
            raise ValueError("g_per_kg must lie between min_g_per_kg and max_g_per_kg")
        return self


class Immunoglobulin(_Frozen):
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


class AntibodyInterval(_Frozen):
    ivig_rows: tuple[IvigRow, ...] = Field(min_length=1)
    products: dict[BloodProduct, Months]

    def ivig_months(self, g_per_kg: float) -> int:
        """ACIP table: doses between rows take the next higher row."""
        for row in self.ivig_rows:
            if g_per_kg <= row.up_to_g_per_kg + 1e-9:
                return row.months
        return self.ivig_rows[-1].months


class HsctVaccination(_Frozen):
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


class Vaccination(_Frozen):
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
    hsct: HsctVaccination
    antibody_interval: AntibodyInterval


class Pjp(_Frozen):
    drug: str
    tmp_mg_per_kg_day: Positive
    tmp_max_mg_day: Positive
    doses_per_day: int
    days_per_week: Annotated[int, Field(ge=1, le=7)]
    all_diagnosis_words: tuple[str, ...]
    indicating_drugs: tuple[str, ...]
    steroid_weeks: int
    steroid_high_dose_mg_day: Positive
    steroid_high_dose_weeks: int
    after_hsct_min_months: Months
    after_immunosuppression_months: Months
    after_chemotherapy_review_months: Months


class Antibacterial(_Frozen):
    drug: str
    mg_per_kg: Positive
    regimen: str
    alternatives: str


class Prophylaxis(_Frozen):
    pjp: Pjp
    antibacterial: Antibacterial


class Reassessment(_Frozen):
    after_anti_cd20_every_months: Annotated[int, Field(ge=1)]
    after_anti_cd20_panel: tuple[str, ...]
    after_chemotherapy_months: tuple[int, ...]
    after_chemotherapy_panel: tuple[str, ...]
    default_every_months: Annotated[int, Field(ge=1)]
    default_panel: tuple[str, ...]
    titre_panel_words: dict[str, str]


class Review(_Frozen):
    every_months: Annotated[int, Field(ge=1, le=12)]
    off_ig_months_for_recovery: Months


ItemKind = Literal[
    "ig_session", "ig_trough", "vaccine_dose", "prophylaxis", "reassessment", "plan_review"
]


class Funding(_Frozen):
    publicly_funded: dict[ItemKind, bool]


class Protocol(_Frozen):
    """Every parameter the rules use, with the version each plan records."""

    version: Annotated[str, Field(min_length=1)]
    grading: Grading
    igg_lower_limit: tuple[IggLowerLimit, ...] = Field(min_length=1)
    immunoglobulin: Immunoglobulin
    vaccination: Vaccination
    prophylaxis: Prophylaxis
    reassessment: Reassessment
    review: Review
    funding: Funding


def _config_dir() -> Path:
    """config/ beside the source tree, or the copy a wheel install carries."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_config", here.parent / "config"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("no config/ directory found: set SIDFLOWS_CONFIG_DIR")


def config_path(name: str, env_override: str | None = None) -> Path:
    """The file a unit configured (environment), else the shipped default."""

    explicit = os.environ.get(env_override) if env_override else None
    if explicit:
        return Path(explicit)
    base = os.environ.get("SIDFLOWS_CONFIG_DIR")
    return (Path(base) if base else _config_dir()) / name


def read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def parse_protocol(data: dict[str, object], *, origin: str = "protocol") -> Protocol:
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise ConfigError(
            f"{origin}: {field_path(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        ) from None


@cache
def _load(path: Path) -> Protocol:
    return parse_protocol(read_toml(path), origin=str(path))


def load_protocol(path: Path | None = None) -> Protocol:
    """The unit's protocol: SIDFLOWS_PROTOCOL, else config/protocol.toml. Parsed once."""
    return _load((path or config_path("protocol.toml", "SIDFLOWS_PROTOCOL")).resolve())
