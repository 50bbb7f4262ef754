"""Antimicrobial prophylaxis: Pneumocystis and antibody deficiency (REFERENCE.md §5)."""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.calendar import UnitCalendar, add_months
from sidflows.protocol import Protocol
from sidflows.referral import Referral
from sidflows.rules.facts import Facts, course_days, name_matches, steroid_mg_day
from sidflows.rules.grading import cd4_band, cd4_severity
from sidflows.rules.model import Decision, ProphylaxisItem

ECIL5 = "ECIL-5 (Maertens, JAC 2016;71:2397)"
AAAAI_2015 = "AAAAI/ACAAI PID practice parameter 2015, table 5"


def _pjp_indications(
    referral: Referral, facts: Facts, protocol: Protocol
) -> list[tuple[str, date | None]]:
    """(indication, review date or None while ongoing) for each PJP indication that holds."""
    p = protocol.prophylaxis.pjp
    today = facts.today
    found: list[tuple[str, date | None]] = []
    chemo_review = None
    if facts.chemotherapy_end is not None:
        chemo_review = add_months(facts.chemotherapy_end, p.after_chemotherapy_review_months)
    at_risk_chemo = facts.chemotherapy_ongoing or (
        chemo_review is not None and chemo_review > today
    )
    if name_matches(referral.diagnosis.label, p.all_diagnosis_words) and at_risk_chemo:
        found.append(
            (
                "acute lymphoblastic leukaemia: whole period at risk; after non-transplant "
                f"chemotherapy review {p.after_chemotherapy_review_months} months after the end",
                None if facts.chemotherapy_ongoing else chemo_review,
            )
        )
    if referral.hsct is not None and referral.hsct.type == "allogeneic":
        ends = [t.end for t in referral.treatments if t.drug_class != "chemotherapy"]
        # Open-ended immunosuppression, running or planned: the risk has no end date yet
        # (a planned one with no end also left ``ends`` without a date to take the max of).
        ongoing = any(t.end is None for t in referral.treatments if t.drug_class != "chemotherapy")
        review: date | None = add_months(referral.hsct.date, p.after_hsct_min_months)
        if ongoing:
            review = None
        elif ends:
            last = max(e for e in ends if e is not None)
            review = max(review, add_months(last, p.after_immunosuppression_months))  # type: ignore[type-var]
        if review is None or review > today:
            found.append(
                (
                    f"allogeneic HSCT: >= {p.after_hsct_min_months} months and >= "
                    f"{p.after_immunosuppression_months} months after immunosuppression stops",
                    review,
                )
            )
    for t in referral.treatments:
        if (
            name_matches(t.drug, p.indicating_drugs)
            and (t.end is None or add_months(t.end, p.after_chemotherapy_review_months) > today)
            and t.start <= today
        ):
            found.append(
                (
                    f"{t.drug}: whole period at risk",
                    None
                    if t.end is None
                    else add_months(t.end, p.after_chemotherapy_review_months),
                )
            )
        if t.drug_class == "corticosteroid" and t.active_on(today):
            days = course_days(t, today)
            mg_day = steroid_mg_day(t, facts.weight_kg)
            long_course = days > p.steroid_weeks * 7
            high_course = (
                mg_day is not None
                and mg_day >= p.steroid_high_dose_mg_day
                and days >= p.steroid_high_dose_weeks * 7
            )
            if long_course or high_course:
                why = (
                    f"> {p.steroid_weeks} weeks of corticosteroids"
                    if long_course
                    else f">= {p.steroid_high_dose_mg_day:g} mg/day for "
                    f">= {p.steroid_high_dose_weeks} weeks"
                )
                found.append((f"{t.drug}: {why}", t.end))
    cd4 = facts.latest_cd4
    if cd4 is not None:
        band = cd4_band(facts.age_years, protocol)
        if cd4_severity(cd4.cd4_per_ul, cd4.cd4_percent, band) == "severe":
            found.append((f"CD4 below the severe threshold for age on {cd4.date}", None))
    return found


def plan_prophylaxis(
    referral: Referral,
    facts: Facts,
    protocol: Protocol,
    calendar: UnitCalendar,
    *,
    start: date,
    first_review: date,
    ig_indicated: bool,
) -> tuple[list[ProphylaxisItem], list[Decision]]:
    """Co-trimoxazole for Pneumocystis, azithromycin for antibody deficiency with infections."""
    items: list[ProphylaxisItem] = []
    decisions: list[Decision] = []
    p = protocol.prophylaxis.pjp
    due = calendar.next_working_day(start)
    indications = _pjp_indications(referral, facts, protocol)
    if indications:
        daily = min(p.tmp_mg_per_kg_day * facts.weight_kg, p.tmp_max_mg_day)
        per_dose = round(daily / p.doses_per_day)
        regimen = (
            f"TMP {per_dose} mg {p.doses_per_day} times a day on {p.days_per_week} consecutive "
            f"days a week ({p.tmp_mg_per_kg_day:g} mg/kg/day TMP, max {p.tmp_max_mg_day:g} mg/day)"
        )
        ends = [review for _, review in indications]
        review = first_review if None in ends else max(e for e in ends if e is not None)
        review = calendar.next_working_day(max(review, due + timedelta(days=1)))
        reasons = "; ".join(why for why, _ in indications)
        items.append(
            ProphylaxisItem(
                key=f"prophylaxis:{p.drug}",
                due=due,
                drug=p.drug,
                regimen=regimen,
                review=review,
                indication="Pneumocystis",
            )
        )
        decisions.append(
            Decision(
                "prophylaxis",
                f"{p.drug} for Pneumocystis, review {review}",
                f"{reasons}; {p.days_per_week} days a week is the cautious end of 2-3 (once weekly "
                "may suffice); alternatives: dapsone 2 mg/kg daily or 4 mg/kg weekly, IV "
                "pentamidine 4 mg/kg every 2-4 weeks, atovaquone",
                ECIL5,
            )
        )
    else:
        decisions.append(
            Decision(
                "prophylaxis",
                "no Pneumocystis prophylaxis",
                "none of ALL, allogeneic HSCT, alemtuzumab, fludarabine, > 4 weeks of "
                "corticosteroids or CD4 below the severe threshold applies now",
                ECIL5,
            )
        )
    a = protocol.prophylaxis.antibacterial
    antibody_deficiency = facts.igg_low or (
        facts.latest_fold_rise is not None
        and facts.latest_fold_rise.pneumococcal_fold_rise is not None
        and facts.latest_fold_rise.pneumococcal_fold_rise
        < protocol.immunoglobulin.antibody_failure_fold_rise
    )
    if facts.recurrent_infections and (antibody_deficiency or ig_indicated):
        mg = round(a.mg_per_kg * facts.weight_kg)
        review = calendar.next_working_day(max(first_review, due + timedelta(days=1)))
        items.append(
            ProphylaxisItem(
                key=f"prophylaxis:{a.drug}",
                due=due,
                drug=a.drug,
                regimen=f"{mg} mg {a.regimen} ({a.mg_per_kg:g} mg/kg)",
                review=review,
                indication="antibody deficiency with recurrent infections",
            )
        )
        decisions.append(
            Decision(
                "prophylaxis",
                f"{a.drug} {a.mg_per_kg:g} mg/kg {a.regimen}, review at plan review",
                f"antibody deficiency with {facts.recent_infections} infections in "
                f"{protocol.immunoglobulin.infection_lookback_months} months; no guideline for "
                f"stopping: review at every plan review; alternatives: {a.alternatives}",
                AAAAI_2015,
            )
        )
    return items, decisions
