"""Corticosteroid doses as prednisone equivalents (docs/clinical-reference.md §2.9).

The IDSA 2013 high-dose threshold (>= 20 mg/day, or >= 2 mg/kg/day under 10 kg, of
prednisone or equivalent, for >= 14 days) is read on the prednisone-equivalent dose:
the referred dose of the named corticosteroid times its potency in the protocol's table
(``grading.steroid_prednisone_mg_per_mg``: prednisone 5 mg = prednisolone 5 mg =
methylprednisolone 4 mg = dexamethasone 0.75 mg = hydrocortisone 20 mg). The conversion
is named in the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sidflows.calendar import add_months
from sidflows.codes import load_codes, words_match
from sidflows.protocol import Protocol
from sidflows.referral import TreatmentEntry
from sidflows.rules.drugs import drug_names
from sidflows.rules.facts import course_days


@dataclass(frozen=True, slots=True)
class Equivalence:
    """How a corticosteroid's dose reads as prednisone.

    ``factor`` mg of prednisone per mg of the drug; None: a corticosteroid the protocol
    names but has no equivalence for (its dose cannot be graded). ``drug`` the name
    matched ("" when none: the dose is read as prednisone-equivalent, the format's unit).
    """

    factor: float | None
    drug: str


def equivalence(t: TreatmentEntry, protocol: Protocol) -> Equivalence:
    table = protocol.grading.steroid_prednisone_mg_per_mg
    names = tuple(table)
    for name in drug_names(t, protocol):
        found = words_match(name, names)
        if found is not None:
            return Equivalence(table[found], found)
    for name in drug_names(t, protocol):
        known = words_match(name, load_codes().drug_names.get("corticosteroid", ()))
        if known is not None:
            return Equivalence(None, known)
    return Equivalence(1.0, "")


def conversion_note(t: TreatmentEntry, protocol: Protocol, weight_kg: float) -> str:
    """The conversion made, named for the reason ("" when the dose is already prednisone)."""
    eq = equivalence(t, protocol)
    if eq.factor is None:
        return (
            f"{eq.drug}: no prednisone equivalence in the protocol "
            "(grading.steroid_prednisone_mg_per_mg): the dose cannot be graded"
        )
    if eq.factor == 1.0:
        return ""
    per_day = _raw_mg_day(t, weight_kg)
    if per_day is None:
        return ""
    return (
        f"{eq.drug} {per_day:g} mg/day x {eq.factor:g} = {per_day * eq.factor:.1f} mg/day "
        f"prednisone-equivalent ({protocol.source('grading.steroid_prednisone_mg_per_mg')})"
    )


def _raw_mg_day(t: TreatmentEntry, weight_kg: float) -> float | None:
    """The daily dose in mg/day; an entry giving more than one dose field is read at the
    highest of them (cautious, §6.7: the conflict is the clinician's to resolve)."""
    given = [
        dose
        for dose in (
            t.dose_mg_day,
            None if t.dose_mg_per_kg_day is None else t.dose_mg_per_kg_day * weight_kg,
            None if t.dose_mg_per_kg_week is None else t.dose_mg_per_kg_week * weight_kg / 7,
        )
        if dose is not None
    ]
    return max(given) if given else None


def steroid_mg_day(t: TreatmentEntry, weight_kg: float, protocol: Protocol) -> float | None:
    """The daily prednisone-equivalent dose in mg/day, from whichever dose field the
    referral gave (weekly: / 7). None: no dose, or no equivalence for the drug."""
    raw = _raw_mg_day(t, weight_kg)
    factor = equivalence(t, protocol).factor
    return None if raw is None or factor is None else raw * factor


def steroid_mg_per_kg_day(t: TreatmentEntry, weight_kg: float, protocol: Protocol) -> float | None:
    """The daily prednisone-equivalent dose in mg/kg/day (weekly: / 7)."""
    per_day = steroid_mg_day(t, weight_kg, protocol)
    return None if per_day is None else per_day / weight_kg


def is_high_dose_steroid(t: TreatmentEntry, weight_kg: float, protocol: Protocol) -> bool | None:
    """IDSA 2013: >= 20 mg/day (>= 10 kg) or >= 2 mg/kg/day (< 10 kg) of prednisone or
    equivalent. None: no dose given, or no equivalence for the drug."""
    g = protocol.grading
    if weight_kg < g.steroid_weight_threshold_kg:
        per_kg = steroid_mg_per_kg_day(t, weight_kg, protocol)
        return None if per_kg is None else per_kg >= g.steroid_high_mg_per_kg_day
    per_day = steroid_mg_day(t, weight_kg, protocol)
    return None if per_day is None else per_day >= g.steroid_high_mg_day


def pjp_steroid_indication(
    t: TreatmentEntry, weight_kg: float, protocol: Protocol, days: int
) -> str | None:
    """Why a corticosteroid course of ``days`` so far indicates Pneumocystis prophylaxis
    (docs/clinical-reference.md §5.9), or None.

    Dose x duration (the default): the grading's high dose (IDSA 2013: >= 20 mg/day, or
    >= 2 mg/kg/day under 10 kg, prednisone-equivalent) for >= ``steroid_weeks`` weeks; a
    dose not given (or a drug without equivalence) is read as high, cautious. Low-dose and
    alternate-day courses do not qualify alone. ``duration_only`` (the alternative): any
    dose for more than ``steroid_weeks`` weeks.
    """
    p = protocol.prophylaxis.pjp
    weeks = p.steroid_weeks
    if p.steroid_rule == "duration_only":
        if days > weeks * 7:
            return f"> {weeks} weeks of corticosteroids (any dose: the protocol's alternative)"
        return None
    if days < weeks * 7:
        return None
    high = is_high_dose_steroid(t, weight_kg, protocol)
    g = protocol.grading
    threshold = (
        f">= {g.steroid_high_mg_per_kg_day:g} mg/kg/day (under "
        f"{g.steroid_weight_threshold_kg:g} kg)"
        if weight_kg < g.steroid_weight_threshold_kg
        else f">= {g.steroid_high_mg_day:g} mg/day"
    )
    if high is None:
        return (
            f"corticosteroids for >= {weeks} weeks, dose not given or without a prednisone "
            f"equivalence: read as high dose ({threshold}, cautious): check the dose"
        )
    if not high:
        return None
    mg_day = steroid_mg_day(t, weight_kg, protocol) or 0.0
    dose = (
        f"{mg_day / weight_kg:.1f} mg/kg/day"
        if weight_kg < g.steroid_weight_threshold_kg
        else f"{mg_day:.1f} mg/day"
    )
    note = conversion_note(t, protocol, weight_kg)
    return (
        f"high-dose corticosteroids ({dose} prednisone-equivalent, {threshold}) for >= "
        f"{weeks} weeks" + (f" ({note})" if note else "")
    )


def pjp_steroid_cover(
    t: TreatmentEntry, today: date, weight_kg: float, protocol: Protocol
) -> tuple[str, date | None] | None:
    """The Pneumocystis indication of a corticosteroid course that has started (§5.1, §5.9):
    (why, the end of the cover; None while the course has no end), or None.

    The course counts as prescribed, not as lived so far: one planned for 4 weeks or more
    at a high dose, or given with no end, is covered from the plan's start, not from its
    28th day. The cover outlasts the course: ECIL-5's period at risk runs at least
    ``after_steroid_months`` after the immunosuppression stops (unit policy), so a course that
    has ended is still covered until then.
    """
    p = protocol.prophylaxis.pjp
    if t.drug_class != "corticosteroid" or t.start > today:
        return None
    until = None if t.end is None else add_months(t.end, p.after_steroid_months)
    if until is not None and until <= today:
        return None
    lasted = course_days(t, today)
    prescribed = course_days(t, t.end) if t.end is not None else None
    if prescribed is not None:
        days = prescribed
    elif is_high_dose_steroid(t, weight_kg, protocol) is not None:
        # Open-ended with its dose given: as long as the rule asks (cautious; no end to read).
        days = max(lasted, p.steroid_weeks * 7 + 1)
    else:
        days = lasted  # no dose: as lived so far (the dose is checked first)
    why = pjp_steroid_indication(t, weight_kg, protocol, days)
    if why is None:
        return None
    notes = []
    if lasted < p.steroid_weeks * 7:
        notes.append(
            f"a course of {prescribed} days prescribed, to {t.end}"
            if prescribed is not None
            else "a course with no end given"
        )
    if t.end is not None:
        notes.append(
            f"{'ended' if t.end < today else 'ends'} {t.end}: covered to {until}, "
            f"{p.after_steroid_months} months after the last dose (unit policy on ECIL-5's "
            "period at risk)"
        )
    return why + (f" ({'; '.join(notes)})" if notes else ""), until
