"""Clinical facts derived once from a referral on a given day, shared by every rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.calendar import add_months, age_in_months
from sidflows.codes import (
    diagnosis_group,
    group_for_label,
    words_match,
)
from sidflows.protocol import Protocol
from sidflows.referral import (
    ImmunoglobulinDose,
    LabEntry,
    ReferralDocument,
    TreatmentEntry,
)
from sidflows.rules.bcells import BCellDepletion, b_cell_depletion, cd19_predates
from sidflows.rules.coded import dose_conflicts, drug_recognition, unrecognised_codes
from sidflows.rules.drugs import (
    anti_cd20_read,
    chemotherapy_reading,
    classes_of,
    complement_inhibitor,
    counts_as_immunosuppressive,
    is_anti_cd20,
    not_immunosuppressive,
)
from sidflows.rules.igrecord import IgCourse, find_troughs, interval_in_use, replacement_record

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


# The diagnosis groups of config/codes.toml that are cancers (§8.1).
ONCOLOGY_GROUPS = frozenset(
    {
        "acute_lymphoblastic_leukaemia",
        "lymphoblastic_lymphoma",
        "acute_myeloid_leukaemia",
        "lymphoma",
        "solid_tumour",
    }
)


def name_matches(name: str, words: tuple[str, ...]) -> bool:
    """Does a drug name or label mention any of ``words``?

    Acronyms written in capitals (``ALL``) must appear as a capitalised word;
    other words match case-insensitively, as whole words; accents are ignored.
    """
    return words_match(name, words) is not None


def dose_per_kg_day(t: TreatmentEntry, weight_kg: float) -> tuple[float | None, str]:
    """(mg/kg/day, the conversion made, "" if none) of a daily drug. An entry giving both
    daily fields is read at the higher (cautious, §6.7)."""
    if t.dose_mg_per_kg_day is not None and t.dose_mg_day is not None:
        per_kg = t.dose_mg_day / weight_kg
        if per_kg > t.dose_mg_per_kg_day:
            return per_kg, (
                f"{t.dose_mg_day:g} mg/day / {weight_kg:g} kg = {per_kg:.2f} mg/kg/day, the "
                f"higher of the entry's two doses (cautious)"
            )
        return t.dose_mg_per_kg_day, ""
    if t.dose_mg_per_kg_day is not None:
        return t.dose_mg_per_kg_day, ""
    if t.dose_mg_day is not None:
        v = t.dose_mg_day / weight_kg
        return v, f"{t.dose_mg_day:g} mg/day / {weight_kg:g} kg = {v:.2f} mg/kg/day"
    if t.dose_mg_per_kg_week is not None:
        v = t.dose_mg_per_kg_week / 7
        return v, (
            f"a weekly dose of a daily drug: {t.dose_mg_per_kg_week:g} mg/kg/week / 7 = "
            f"{v:.2f} mg/kg/day (converted; check the dose)"
        )
    return None, ""


def dose_per_kg_week(t: TreatmentEntry, weight_kg: float) -> tuple[float | None, str]:
    """(mg/kg/week, the conversion made, "" if none) of a weekly drug (methotrexate)."""
    if t.dose_mg_per_kg_week is not None:
        return t.dose_mg_per_kg_week, ""
    if t.dose_mg_per_kg_day is not None:
        v = t.dose_mg_per_kg_day * 7
        return v, (
            f"a weekly drug given as a daily dose: {t.dose_mg_per_kg_day:g} mg/kg/day x 7 = "
            f"{v:g} mg/kg/week (converted; check the dose)"
        )
    if t.dose_mg_day is not None:
        v = t.dose_mg_day * 7 / weight_kg
        return v, (
            f"a weekly drug given as a daily dose: {t.dose_mg_day:g} mg/day x 7 / "
            f"{weight_kg:g} kg = {v:.2f} mg/kg/week (converted; check the dose)"
        )
    return None, ""


def course_days(t: TreatmentEntry, today: date) -> int:
    """Days the course has lasted so far (or in all, once it has ended)."""
    last = min(t.end, today) if t.end is not None else today
    return max(0, (last - t.start).days + 1)


@dataclass(frozen=True, slots=True)
class ConfoundedIgg:
    """An IgG drawn after an immunomodulatory course, before its washout ends (§3.9)."""

    lab: LabEntry
    course: IgCourse
    until: date


@dataclass(frozen=True, slots=True)
class Facts:
    today: date
    age_months: int
    weight_kg: float
    latest_igg: LabEntry | None
    latest_cd4: LabEntry | None
    latest_cd19: LabEntry | None
    latest_anc: LabEntry | None
    latest_fold_rise: LabEntry | None
    igg_lower_limit_g_l: float
    igg_lower_limit_source: str
    recent_infections: int
    recent_serious: int
    recurrent_infections: bool
    active: tuple[TreatmentEntry, ...]
    planned: tuple[TreatmentEntry, ...]
    chemotherapy_end: date | None
    """The end of the chemotherapy the post-chemotherapy rules count from (§4.2, §6.2):
    not chemotherapy that ended by the day of an HSCT (``before_hsct_chemotherapy``)."""
    chemotherapy_ongoing: bool
    before_hsct_chemotherapy: tuple[TreatmentEntry, ...]
    """Chemotherapy that ended by the day of the HSCT (its conditioning): the transplant's
    rules stand for it."""
    anti_cd20_last: date | None
    anti_cd20_ongoing: bool
    had_anti_cd20: bool
    last_ig_dose: ImmunoglobulinDose | None
    on_ig_replacement: bool
    hsct_months: int | None
    latest_cd4_count: LabEntry | None = None
    latest_cd4_percent: LabEntry | None = None
    # The newest CD4 count and percentage when older than the protocol's window (§6.6):
    # not used to grade, but a severe one keeps Pneumocystis prophylaxis (§5.1).
    stale_cd4: tuple[LabEntry, ...] = ()
    stale: tuple[str, ...] = ()
    stale_panel: tuple[str, ...] = ()
    b_cell_depletion: BCellDepletion | None = None
    # A B-cell-depleting or other biologic started after the newest CD19 count (§2.13).
    cd19_predates: str | None = None
    after_car_t: bool = False
    # Replacement courses only; immunomodulatory courses (§3.1) apart.
    ig_courses: tuple[IgCourse, ...] = ()
    ig_immunomodulatory_courses: tuple[IgCourse, ...] = ()
    ig_interval_in_use_days: int | None = None
    latest_trough: LabEntry | None = None
    igg_on_ig_not_trough: LabEntry | None = None
    diagnosis_group: str | None = None
    diagnosis_group_source: str | None = None
    unrecognised_drugs: tuple[str, ...] = ()
    class_mismatches: tuple[str, ...] = ()
    # Anti-CD20 read in a treatment referred under another class (a regimen, §2.7, §8.3).
    anti_cd20_readings: tuple[str, ...] = ()
    # Entries of one drug that overlap with a weekly and a daily dose (§6.7).
    dose_conflicts: tuple[str, ...] = ()
    # IgG results drawn within the washout of an immunomodulatory course (§3.9): not used.
    confounded_igg: tuple[ConfoundedIgg, ...] = ()
    # Every treatment read as chemotherapy, whatever the referral's class (§2.8), and how
    # each was read when the referral gives another class.
    chemotherapy_treatments: tuple[TreatmentEntry, ...] = ()
    chemotherapy_readings: tuple[str, ...] = ()
    # Active drugs the protocol does not count as immunosuppressive (§2.11), as recognised.
    not_immunosuppressive: tuple[str, ...] = ()
    # Active complement inhibitors graded "none" (§2.12), as "drug (how recognised)".
    complement_inhibitors: tuple[str, ...] = ()
    # Well-formed codes the code tables do not know (§8.4): (what, the field), each flagged.
    unrecognised_codes: tuple[tuple[str, str], ...] = ()
    # The child's birth date: a result's age bands are those of the age on its date (§2.3).
    birth_date: date | None = None

    def is_chemotherapy(self, t: TreatmentEntry) -> bool:
        """Is this treatment chemotherapy: referred so, coded ATC L01, or an antimetabolite of
        an oncology diagnosis (ALL maintenance) (§2.8)."""
        return any(t is c for c in self.chemotherapy_treatments) or t.drug_class == "chemotherapy"

    @property
    def age_years(self) -> int:
        return self.age_months // 12

    def age_years_on(self, day: date) -> int:
        """The child's age in whole years on ``day`` (a test's date); today's without a birth
        date."""
        if self.birth_date is None:
            return self.age_years
        return age_in_months(self.birth_date, day) // 12

    @property
    def igg_low(self) -> bool:
        return self.latest_igg is not None and (
            self.latest_igg.igg_g_l is not None
            and self.latest_igg.igg_g_l < self.igg_lower_limit_g_l
        )


def _latest(labs: tuple[LabEntry, ...], attr: str) -> LabEntry | None:
    found = [lab for lab in labs if getattr(lab, attr) is not None]
    return max(found, key=lambda lab: lab.date) if found else None


# The measures whose newest result the rules use, by field: (name shown, panel entry).
MEASURES = {
    "igg_g_l": ("IgG", "IgG"),
    "cd4_per_ul": ("CD4 count", "CD4"),
    "cd4_percent": ("CD4 %", "CD4"),
    "cd19_per_ul": ("CD19 count", "CD19"),
    "anc_per_ul": ("ANC", "ANC"),
    "pneumococcal_fold_rise": ("pneumococcal fold rise", "pneumococcal titres"),
}


def _fresh(lab: LabEntry | None, valid_from: date) -> LabEntry | None:
    return lab if lab is not None and lab.date >= valid_from else None


def _diagnosis(referral: ReferralDocument) -> tuple[str | None, str | None]:
    d = referral.diagnosis
    if d.code is not None:
        found = diagnosis_group(d.code, d.system)
        if found is not None:
            return found.value, found.source
    found = group_for_label(d.label)
    return (found.value, found.source) if found is not None else (None, None)


def _confounded(
    labs: tuple[LabEntry, ...], modulatory: tuple[IgCourse, ...], protocol: Protocol
) -> tuple[ConfoundedIgg, ...]:
    """IgG results drawn from an immunomodulatory course's start to its washout's end."""
    months = protocol.immunoglobulin.immunomodulatory_washout_months
    found = []
    for lab in labs:
        if lab.igg_g_l is None:
            continue
        for course in modulatory:
            until = add_months(course.end, months)
            if course.start <= lab.date < until:
                found.append(ConfoundedIgg(lab, course, until))
                break
    return tuple(found)


def _igg_lower_limit(
    latest: LabEntry | None, age_months: int, protocol: Protocol
) -> tuple[float, str]:
    if latest is not None and latest.igg_lower_limit_g_l is not None:
        return latest.igg_lower_limit_g_l, "laboratory report"
    for row in protocol.igg_lower_limit:
        if age_months < row.below_age_months:
            return row.g_l, "protocol age table (PRU Handbook)"
    return protocol.igg_lower_limit[-1].g_l, "protocol age table (PRU Handbook)"


def derive_facts(referral: ReferralDocument, *, today: date, protocol: Protocol) -> Facts:
    """Everything the rules need to know about the child on ``today``."""
    age = age_in_months(referral.patient.birth_date, today)
    weight = referral.patient.weight_kg
    valid_from = add_months(today, -protocol.reassessment.result_valid_months)
    given = [d for d in referral.immunoglobulin_doses if d.date <= today]
    # An immunomodulatory course (1-2 g/kg, §3.1) is not replacement: the replacement facts
    # read the other courses only (its antibody interval is the vaccination rules', §4.7).
    courses, modulatory, doses = replacement_record(given, protocol)
    # An IgG drawn in an immunomodulatory course's washout is the infused IgG (§3.9).
    confounded = _confounded(referral.labs, modulatory, protocol)
    own = tuple(lab for lab in referral.labs if not any(c.lab is lab for c in confounded))
    newest = {attr: _latest(referral.labs, attr) for attr in MEASURES}
    newest["igg_g_l"] = _latest(own, "igg_g_l")
    stale_rows = [
        (MEASURES[attr], lab)
        for attr, lab in newest.items()
        if lab is not None and lab.date < valid_from
    ]
    stale = tuple(f"{name} of {lab.date}" for (name, _), lab in stale_rows)
    stale_panel = tuple(dict.fromkeys(panel for (_, panel), _ in stale_rows))
    latest_igg = _fresh(newest["igg_g_l"], valid_from)
    limit, limit_source = _igg_lower_limit(latest_igg, age, protocol)
    lookback = add_months(today, -protocol.immunoglobulin.infection_lookback_months)
    recent = [i for i in referral.infections if lookback <= i.date <= today]

    # A drug the protocol does not count as immunosuppressive (§2.11) is neither active nor
    # planned immunosuppression: it is named in the grading instead.
    counted = [t for t in referral.treatments if counts_as_immunosuppressive(t, protocol)]
    active = tuple(t for t in counted if t.active_on(today))
    planned = tuple(t for t in counted if t.start > today)
    not_suppressive = tuple(
        dict.fromkeys(
            f"{t.drug} ({why})"
            for t in referral.treatments
            if t.active_on(today)
            and not counts_as_immunosuppressive(t, protocol)
            and (why := not_immunosuppressive(t, protocol) or "")
        )
    )
    complement = tuple(
        dict.fromkeys(
            f"{t.drug} ({why})"
            for t in referral.treatments
            if t.active_on(today)
            and not counts_as_immunosuppressive(t, protocol)
            and (why := complement_inhibitor(t, protocol) or "")
        )
    )
    group, group_source = _diagnosis(referral)
    # After HSCT an uncoded antimetabolite is GVHD immunosuppression, not maintenance.
    oncology = referral.hsct is None and (
        referral.diagnosis.category == "oncology" or group in ONCOLOGY_GROUPS
    )
    readings = [
        (t, chemotherapy_reading(t, protocol, oncology=oncology)) for t in referral.treatments
    ]
    chemo_all = tuple(t for t, why in readings if why is not None)
    # Chemotherapy that ended by the day of an HSCT (its conditioning, or treatment before
    # it) is superseded by the transplant: the revaccination and reassessment after HSCT
    # (§4.6, §6.3) count from the transplant, not from the end of that chemotherapy.
    hsct_day = referral.hsct.date if referral.hsct is not None else None
    conditioning = tuple(
        t for t in chemo_all if hsct_day is not None and t.end is not None and t.end <= hsct_day
    )
    chemo = [t for t in chemo_all if t.start <= today and t not in conditioning]
    chemo_ongoing = any(t.end is None or t.end >= today for t in chemo)
    chemo_end = None if chemo_ongoing or not chemo else max(t.end for t in chemo if t.end)
    # Any anti-CD20, alone or in a regimen, whatever the referral's class (§2.7).
    anti_cd20 = [t for t in referral.treatments if is_anti_cd20(t, protocol)]
    cd20 = [t for t in anti_cd20 if t.start <= today]
    cd20_ongoing = any(t.end is None or t.end >= today for t in cd20)
    cd20_last = max((t.end or t.start) for t in cd20) if cd20 else None

    last_dose = max(doses, key=lambda d: d.date) if doses else None
    on_ig = False
    ig = protocol.immunoglobulin
    if last_dose is not None:
        route = ig.route(last_dose.route)
        within = route.interval_days * ig.on_replacement_within_intervals
        if last_dose.route == "sc":
            within += ig.home_log_lag_days  # home logs reach the record late
        on_ig = today - last_dose.date <= timedelta(days=within)
    interval = interval_in_use(courses, protocol)
    on_ig_igg = [
        lab
        for lab in referral.labs
        if lab.igg_g_l is not None
        and lab.date >= valid_from
        and courses
        and lab.date >= courses[0].start
    ]
    trough, not_trough = (
        find_troughs(
            on_ig_igg, courses, interval, ig.trough_window_days, ig.sc_steady_max_interval_days
        )
        if on_ig
        else (None, None)
    )
    unknown, mismatch = drug_recognition(referral, protocol)
    cd4_count = _fresh(newest["cd4_per_ul"], valid_from)
    cd4_percent = _fresh(newest["cd4_percent"], valid_from)
    hsct_months = age_in_months(referral.hsct.date, today) if referral.hsct is not None else None
    return Facts(
        today=today,
        age_months=age,
        birth_date=referral.patient.birth_date,
        weight_kg=weight,
        latest_igg=latest_igg,
        latest_cd4=cd4_count or cd4_percent,
        latest_cd19=_fresh(newest["cd19_per_ul"], valid_from),
        latest_anc=_fresh(newest["anc_per_ul"], valid_from),
        latest_fold_rise=_fresh(newest["pneumococcal_fold_rise"], valid_from),
        igg_lower_limit_g_l=limit,
        igg_lower_limit_source=limit_source,
        recent_infections=len(recent),
        recent_serious=sum(1 for i in recent if i.serious),
        recurrent_infections=len(recent) >= protocol.immunoglobulin.recurrent_min_infections,
        active=active,
        planned=planned,
        chemotherapy_end=chemo_end,
        chemotherapy_ongoing=chemo_ongoing,
        before_hsct_chemotherapy=conditioning,
        anti_cd20_last=cd20_last,
        anti_cd20_ongoing=cd20_ongoing,
        had_anti_cd20=bool(anti_cd20),
        last_ig_dose=last_dose,
        on_ig_replacement=on_ig,
        hsct_months=hsct_months,
        latest_cd4_count=cd4_count,
        latest_cd4_percent=cd4_percent,
        stale_cd4=tuple(
            lab
            for attr in ("cd4_per_ul", "cd4_percent")
            if (lab := newest[attr]) is not None and lab.date < valid_from
        ),
        stale=stale,
        stale_panel=stale_panel,
        b_cell_depletion=b_cell_depletion(referral, today, protocol, valid_from),
        cd19_predates=cd19_predates(referral, today, protocol),
        after_car_t=any(
            t.start <= today and "car_t" in classes_of(t, protocol) for t in referral.treatments
        ),
        ig_courses=courses,
        ig_immunomodulatory_courses=modulatory,
        ig_interval_in_use_days=interval,
        latest_trough=trough,
        igg_on_ig_not_trough=not_trough,
        diagnosis_group=group,
        diagnosis_group_source=group_source,
        unrecognised_drugs=unknown,
        class_mismatches=mismatch,
        anti_cd20_readings=tuple(
            dict.fromkeys(r for t in anti_cd20 if (r := anti_cd20_read(t, protocol)))
        ),
        dose_conflicts=dose_conflicts(referral, protocol),
        confounded_igg=confounded,
        chemotherapy_treatments=chemo_all,
        chemotherapy_readings=tuple(dict.fromkeys(why for _, why in readings if why)),
        not_immunosuppressive=not_suppressive,
        complement_inhibitors=complement,
        unrecognised_codes=unrecognised_codes(referral),
    )
