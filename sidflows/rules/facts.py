"""Clinical facts derived once from a referral on a given day, shared by every rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.calendar import add_months, age_in_months
from sidflows.protocol import Protocol
from sidflows.referral import ImmunoglobulinDose, Lab, Referral, Treatment

IMMUNOSUPPRESSIVE = frozenset(
    {
        "chemotherapy",
        "anti_cd20",
        "corticosteroid",
        "antimetabolite",
        "anti_tnf",
        "jak_inhibitor",
        "calcineurin_inhibitor",
        "car_t",
        "other_biologic",
    }
)


def name_matches(name: str, words: tuple[str, ...]) -> bool:
    """Does a drug name or label mention any of ``words``?

    Acronyms written in capitals (``ALL``) must appear as a capitalised word;
    other words match case-insensitively, as whole words.
    """
    lowered = name.lower()
    for word in words:
        if word.isupper():
            if re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", name):
                return True
        elif re.search(rf"(?<![a-z0-9]){re.escape(word.lower())}(?![a-z0-9])", lowered):
            return True
    return False


def steroid_mg_day(t: Treatment, weight_kg: float) -> float | None:
    if t.dose_mg_day is not None:
        return t.dose_mg_day
    if t.dose_mg_per_kg_day is not None:
        return t.dose_mg_per_kg_day * weight_kg
    return None


def steroid_mg_per_kg_day(t: Treatment, weight_kg: float) -> float | None:
    if t.dose_mg_per_kg_day is not None:
        return t.dose_mg_per_kg_day
    if t.dose_mg_day is not None:
        return t.dose_mg_day / weight_kg
    return None


def is_high_dose_steroid(t: Treatment, weight_kg: float, protocol: Protocol) -> bool | None:
    """IDSA 2013: >= 20 mg/day (>= 10 kg) or >= 2 mg/kg/day (< 10 kg). None: no dose given."""
    g = protocol.grading
    if weight_kg < g.steroid_weight_threshold_kg:
        per_kg = steroid_mg_per_kg_day(t, weight_kg)
        return None if per_kg is None else per_kg >= g.steroid_high_mg_per_kg_day
    per_day = steroid_mg_day(t, weight_kg)
    return None if per_day is None else per_day >= g.steroid_high_mg_day


def course_days(t: Treatment, today: date) -> int:
    """Days the course has lasted so far (or in all, once it has ended)."""
    last = min(t.end, today) if t.end is not None else today
    return max(0, (last - t.start).days + 1)


@dataclass(frozen=True, slots=True)
class Facts:
    today: date
    age_months: int
    weight_kg: float
    latest_igg: Lab | None
    latest_cd4: Lab | None
    latest_cd19: Lab | None
    latest_anc: Lab | None
    latest_fold_rise: Lab | None
    igg_lower_limit_g_l: float
    igg_lower_limit_source: str
    recent_infections: int
    recent_serious: int
    recurrent_infections: bool
    active: tuple[Treatment, ...]
    planned: tuple[Treatment, ...]
    chemotherapy_end: date | None
    chemotherapy_ongoing: bool
    anti_cd20_last: date | None
    anti_cd20_ongoing: bool
    had_anti_cd20: bool
    last_ig_dose: ImmunoglobulinDose | None
    on_ig_replacement: bool
    hsct_months: int | None

    @property
    def age_years(self) -> int:
        return self.age_months // 12

    @property
    def igg_low(self) -> bool:
        return self.latest_igg is not None and (
            self.latest_igg.igg_g_l is not None
            and self.latest_igg.igg_g_l < self.igg_lower_limit_g_l
        )


def _latest(labs: tuple[Lab, ...], attr: str) -> Lab | None:
    found = [lab for lab in labs if getattr(lab, attr) is not None]
    return max(found, key=lambda lab: lab.date) if found else None


def _igg_lower_limit(latest: Lab | None, age_months: int, protocol: Protocol) -> tuple[float, str]:
    if latest is not None and latest.igg_lower_limit_g_l is not None:
        return latest.igg_lower_limit_g_l, "laboratory report"
    for row in protocol.igg_lower_limit:
        if age_months < row.below_age_months:
            return row.g_l, "protocol age table (PRU Handbook)"
    return protocol.igg_lower_limit[-1].g_l, "protocol age table (PRU Handbook)"


def derive_facts(referral: Referral, *, today: date, protocol: Protocol) -> Facts:
    """Everything the rules need to know about the child on ``today``."""
    age = age_in_months(referral.patient.birth_date, today)
    weight = referral.patient.weight_kg
    latest_igg = _latest(referral.labs, "igg_g_l")
    limit, limit_source = _igg_lower_limit(latest_igg, age, protocol)
    lookback = add_months(today, -protocol.immunoglobulin.infection_lookback_months)
    recent = [i for i in referral.infections if lookback <= i.date <= today]

    active = tuple(t for t in referral.treatments if t.active_on(today))
    planned = tuple(t for t in referral.treatments if t.start > today)
    chemo = [t for t in referral.treatments if t.drug_class == "chemotherapy" and t.start <= today]
    chemo_ongoing = any(t.end is None or t.end >= today for t in chemo)
    chemo_end = None if chemo_ongoing or not chemo else max(t.end for t in chemo if t.end)
    cd20 = [t for t in referral.treatments if t.drug_class == "anti_cd20" and t.start <= today]
    cd20_ongoing = any(t.end is None or t.end >= today for t in cd20)
    cd20_last = max((t.end or t.start) for t in cd20) if cd20 else None

    doses = [d for d in referral.immunoglobulin_doses if d.date <= today]
    last_dose = max(doses, key=lambda d: d.date) if doses else None
    on_ig = False
    if last_dose is not None:
        route = protocol.immunoglobulin.route(last_dose.route)
        within = route.interval_days * protocol.immunoglobulin.on_replacement_within_intervals
        on_ig = today - last_dose.date <= timedelta(days=within)
    hsct_months = age_in_months(referral.hsct.date, today) if referral.hsct is not None else None
    return Facts(
        today=today,
        age_months=age,
        weight_kg=weight,
        latest_igg=latest_igg,
        latest_cd4=_latest(referral.labs, "cd4_per_ul") or _latest(referral.labs, "cd4_percent"),
        latest_cd19=_latest(referral.labs, "cd19_per_ul"),
        latest_anc=_latest(referral.labs, "anc_per_ul"),
        latest_fold_rise=_latest(referral.labs, "pneumococcal_fold_rise"),
        igg_lower_limit_g_l=limit,
        igg_lower_limit_source=limit_source,
        recent_infections=len(recent),
        recent_serious=sum(1 for i in recent if i.serious),
        recurrent_infections=len(recent) >= protocol.immunoglobulin.recurrent_min_infections,
        active=active,
        planned=planned,
        chemotherapy_end=chemo_end,
        chemotherapy_ongoing=chemo_ongoing,
        anti_cd20_last=cd20_last,
        anti_cd20_ongoing=cd20_ongoing,
        had_anti_cd20=bool(cd20) or any(t.drug_class == "anti_cd20" for t in planned),
        last_ig_dose=last_dose,
        on_ig_replacement=on_ig,
        hsct_months=hsct_months,
    )
