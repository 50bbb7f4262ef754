"""The conjugate (PCV) doses a child still needs before PPSV23 (docs/clinical-reference.md §4.13).

ACIP (pneumococcal vaccination of children, catch-up and medical-indication tables), for a
child at increased risk:

- 12-23 months: unvaccinated, or 1 dose before 12 months: 2 doses; 2 or 3 doses before 12
  months, or 1 dose at 12 months or later: 1 dose; 2 doses from 12 months, or 1 from 12
  months after 2 or more before: complete;
- 24-71 months: fewer than 3 doses: 2 doses; 3 doses (any schedule): 1 dose; 4 or more:
  complete (Nuorti, MMWR Recomm Rep 2010;59(RR-11); Kobayashi, MMWR 2022;71:1174);
- 6-18 years: no conjugate dose documented: 1 dose (the format does not give the valency:
  a documented dose is read as PCV13 or later, and the decision says to check it);

each dose at least 8 weeks after the previous conjugate dose, and PPSV23 at least 8 weeks
after the last (IDSA 2013; ACIP). Under 12 months the routine infant series stands. Only for a child
with a risk condition (:mod:`.risk`); any other child has the routine catch-up (§4.16).
"""

from __future__ import annotations

from datetime import date

from sidflows.calendar import add_months, age_in_months


def pcv_needed(birth: date, on: date, given: list[date]) -> tuple[int | None, str]:
    """(conjugate doses still to give before PPSV23, why) for a child at increased risk.

    None under 12 months: the routine infant series (primary doses and the booster from
    12 months), as CDSi forecasts it over the doses that count, is the caller's to plan;
    a count of doses cannot say it (ACIP: 3 primary doses and a booster, or the catch-up
    by the age at the first dose)."""
    age = age_in_months(birth, on)
    n = len(given)
    from_12 = sum(1 for d in given if d >= add_months(birth, 12))
    if age < 12:
        return None, "under 12 months: the routine infant series (CDSi: ACIP's ages and intervals)"
    if age < 24:
        if from_12 >= 2 or (from_12 == 1 and n >= 3):
            return 0, "12-23 months: series complete"
        if from_12 == 1 or n >= 2:
            return 1, f"12-23 months with {n} conjugate dose(s): 1 dose (ACIP catch-up)"
        return 2, f"12-23 months with {n} conjugate dose(s): 2 doses 8 weeks apart (ACIP catch-up)"
    if age < 72:
        if n < 3:
            return 2, (
                f"24-71 months, immunocompromised, {n} conjugate dose(s) (< 3): 2 doses 8 weeks "
                "apart before PPSV23 (ACIP)"
            )
        if n == 3:
            return 1, (
                "24-71 months, immunocompromised, 3 conjugate doses (any schedule): 1 dose "
                ">= 8 weeks after the last, before PPSV23 (ACIP)"
            )
        return 0, (
            f"24-71 months, immunocompromised, {n} conjugate doses: conjugate series complete "
            "(PPSV23 is not needed if the series was completed with PCV20: the referral gives "
            "no valency, check it)"
        )
    if n == 0:
        return 1, (
            "6-18 years, immunocompromised, no conjugate dose documented: 1 dose before "
            "PPSV23 (ACIP)"
        )
    return 0, (
        "6-18 years with a conjugate dose documented (read as PCV13, PCV15 or PCV20: the "
        "referral gives no valency, check it)"
    )
