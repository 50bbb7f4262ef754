"""Antimicrobial prophylaxis: Pneumocystis and antibody deficiency.

The section is docs/clinical-reference.md §5.
"""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.calendar import add_months
from sidflows.rules import pjp_age
from sidflows.rules.asplenia import ASPLENIA_SOURCE, ASPLENIA_UNTIL, ASPLENIA_WHY, asplenia
from sidflows.rules.complement import meningococcal_cover
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import classes_of, counts_as_immunosuppressive, drug_is
from sidflows.rules.facts import name_matches
from sidflows.rules.grading import cd4_findings, stale_severe_cd4
from sidflows.rules.interactions import qt_words
from sidflows.rules.model import Decision, ProphylaxisItem
from sidflows.rules.oncology_scope import scope_decisions
from sidflows.rules.pjp_age import minimum_age_date, steroid_words, too_young
from sidflows.rules.steroids import pjp_steroid_cover

ECIL5 = "ECIL-5 (Maertens, JAC 2016;71:2397)"
_GROUP_NAMES = {
    "acute_lymphoblastic_leukaemia": "acute lymphoblastic leukaemia",
    "lymphoblastic_lymphoma": "lymphoblastic lymphoma (treated as ALL)",
}


def _pjp_indications(ctx: PlanContext) -> list[tuple[str, date | None]]:
    """(indication, review date or None while ongoing) for each PJP indication that holds."""
    referral, facts, protocol = ctx.referral, ctx.facts, ctx.protocol
    p = protocol.prophylaxis.pjp
    today = ctx.today
    found: list[tuple[str, date | None]] = []
    chemo_review = None
    if facts.chemotherapy_end is not None:
        chemo_review = add_months(facts.chemotherapy_end, p.after_chemotherapy_review_months)
    at_risk_chemo = facts.chemotherapy_ongoing or (
        chemo_review is not None and chemo_review > today
    )
    if _is_all(ctx) and at_risk_chemo:
        read = "; ".join(facts.chemotherapy_readings)
        found.append(
            (
                f"{_diagnosis_name(ctx)}: whole period at risk"
                + (f" ({read})" if read else "")
                + "; after non-transplant "
                f"chemotherapy review {p.after_chemotherapy_review_months} months after the end",
                None if facts.chemotherapy_ongoing else chemo_review,
            )
        )
    car_t = _car_t_indication(ctx)
    if car_t is not None:
        found.append(car_t)
    if referral.hsct is not None and referral.hsct.type == "allogeneic":
        suppressive = [
            t
            for t in referral.treatments
            if not facts.is_chemotherapy(t) and counts_as_immunosuppressive(t, protocol)
        ]
        ends = [t.end for t in suppressive]
        # Open-ended immunosuppression, running or planned: the risk has no end date yet
        # (a planned one with no end also left ``ends`` without a date to take the max of).
        ongoing = any(t.end is None for t in suppressive)
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
            drug_is(t, p.indicating_drugs, protocol)
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
        # §5.9: dose x duration of the course prescribed; covered past its end (§5.1).
        if (cover := pjp_steroid_cover(t, today, facts.weight_kg, protocol)) is not None:
            found.append((f"{t.drug}: {cover[0]}", cover[1]))
    for severity, shown in cd4_findings(facts, protocol):
        if severity == "severe":
            found.append((f"{shown}: below the severe threshold for age", None))
    if (stale := stale_severe_cd4(facts, protocol)) is not None:
        found.append((stale, None))  # a stale result lifts no prophylaxis (§6.6)
    return found


def _car_t_indication(ctx: PlanContext) -> tuple[str, date | None] | None:
    """§5.3: after CAR-T (any diagnosis), at least ``after_car_t_min_months`` after the
    infusion and until a fresh CD4 count after it is at or above the threshold."""
    p = ctx.protocol.prophylaxis.pjp
    car_t = [
        t
        for t in ctx.referral.treatments
        if t.start <= ctx.today and "car_t" in classes_of(t, ctx.protocol)
    ]
    if not car_t:
        return None
    last = max(car_t, key=lambda t: t.end or t.start)
    infusion = last.end or last.start
    minimum = add_months(infusion, p.after_car_t_min_months)
    cd4 = ctx.facts.latest_cd4_count
    recovered = (
        cd4 is not None
        and cd4.cd4_per_ul is not None
        and cd4.date > infusion
        and cd4.cd4_per_ul >= p.after_car_t_until_cd4_per_ul
    )
    why = (
        f"{last.drug} (CAR-T, {infusion}): >= {p.after_car_t_min_months} months after the "
        f"infusion ({minimum}) and until CD4 >= {p.after_car_t_until_cd4_per_ul:g}/uL"
    )
    if recovered:
        if ctx.today >= minimum:
            return None
        return f"{why} (CD4 {cd4.cd4_per_ul:g}/uL on {cd4.date})", minimum  # type: ignore[union-attr]
    return f"{why}: no fresh CD4 count at or above it since the infusion", None


def _indication_paths(indications: list[tuple[str, date | None]]) -> tuple[str, ...]:
    """The protocol parameters of the indications that hold (their sources are cited)."""
    paths: list[str] = []
    for why, _ in indications:
        if "(CAR-T," in why:
            paths += [
                "prophylaxis.pjp.after_car_t_min_months",
                "prophylaxis.pjp.after_car_t_until_cd4_per_ul",
            ]
        if "lymphoblastic lymphoma" in why:
            paths.append("prophylaxis.pjp.indicating_diagnosis_groups")
        if "corticosteroids" in why:
            paths += ["prophylaxis.pjp.steroid_weeks", "prophylaxis.pjp.steroid_rule"]
        if "period at risk)" in why:
            paths.append("prophylaxis.pjp.after_steroid_months")
    return tuple(paths)


def _is_all(ctx: PlanContext) -> bool:
    """ALL, or lymphoblastic lymphoma treated as ALL (§5.1, §5.3): by group or words."""
    p = ctx.protocol.prophylaxis.pjp
    return ctx.facts.diagnosis_group in p.indicating_diagnosis_groups or name_matches(
        ctx.referral.diagnosis.label, p.all_diagnosis_words
    )


def _diagnosis_name(ctx: PlanContext) -> str:
    group = ctx.facts.diagnosis_group
    if group is not None and group in _GROUP_NAMES:
        return _GROUP_NAMES[group]
    return "acute lymphoblastic leukaemia"


def _unrecognised_oncology(ctx: PlanContext) -> bool:
    d = ctx.referral.diagnosis
    return d.category == "oncology" and ctx.facts.diagnosis_group is None


def plan_prophylaxis(
    ctx: PlanContext, *, first_review: date, ig_indicated: bool
) -> tuple[list[ProphylaxisItem], list[Decision]]:
    """Co-trimoxazole for Pneumocystis, azithromycin for antibody deficiency with infections."""
    facts, protocol, calendar = ctx.facts, ctx.protocol, ctx.calendar
    items: list[ProphylaxisItem] = []
    decisions: list[Decision] = []
    p = protocol.prophylaxis.pjp
    due = calendar.next_working_day(ctx.start)
    indications = _pjp_indications(ctx)
    if indications:
        per_dose, basis = tmp_dose(facts.weight_kg, ctx)
        regimen = (
            f"TMP {per_dose:g} mg {p.doses_per_day} times a day on {p.days_per_week} "
            f"consecutive days a week ({basis})"
        )
        ends = [review for _, review in indications]
        # §5.8: no co-trimoxazole before the minimum age; from the day the child reaches it.
        old_enough = minimum_age_date(ctx)
        start = due if old_enough <= due else calendar.next_working_day(old_enough)
        review = first_review if None in ends else max(e for e in ends if e is not None)
        lapses = None not in ends and review < start
        review = calendar.next_working_day(max(review, start + timedelta(days=1)))
        reasons = "; ".join(why for why, _ in indications)
        if start > due:
            decisions.append(
                too_young(ctx, old_enough, indications, atovaquone_dose(ctx), lapses=lapses)
            )
        if not lapses:
            items.append(
                ProphylaxisItem(
                    key=f"prophylaxis:{p.drug}",
                    due=start,
                    drug=p.drug,
                    regimen=regimen,
                    review=review,
                    indication="Pneumocystis",
                )
            )
            decisions.append(
                Decision(
                    "prophylaxis",
                    f"{p.drug} for Pneumocystis"
                    + (f" from {start} ({p.min_age_weeks} weeks of age)" if start > due else "")
                    + f", review {review}",
                    f"{reasons}; TMP {per_dose:g} mg a dose ({basis}); {p.days_per_week} days "
                    "a week is the cautious end of 2-3 (once weekly "
                    "may suffice); alternatives: dapsone 2 mg/kg daily or 4 mg/kg weekly, IV "
                    f"pentamidine 4 mg/kg every 2-4 weeks, {atovaquone_dose(ctx)}",
                    ctx.cite(
                        "prophylaxis.pjp.drug",
                        "prophylaxis.pjp.tmp_mg_per_m2_day",
                        "prophylaxis.pjp.tmp_max_mg_day",
                        "prophylaxis.pjp.days_per_week",
                        *_indication_paths(indications),
                        "prophylaxis.pjp.atovaquone_bands",
                        "prophylaxis.pjp.atovaquone_max_mg_day",
                    ),
                )
            )
    else:
        decisions.append(
            Decision(
                "prophylaxis",
                "no Pneumocystis prophylaxis",
                "none of ALL or lymphoblastic lymphoma, allogeneic HSCT, CAR-T, alemtuzumab, "
                f"fludarabine, {steroid_words(ctx)} or CD4 below the severe threshold "
                "applies now"
                + (
                    f"; {_diagnosis_name(ctx)} is recognised but no chemotherapy is "
                    "ongoing or within its review period: the period at risk after other "
                    "treatment (relapse) has no source in the protocol: clinician decision"
                    if _is_all(ctx)
                    else ""
                ),
                ECIL5
                if not _is_all(ctx)
                else ctx.cite("prophylaxis.pjp.indicating_diagnosis_groups"),
            )
        )
    decisions.extend(scope_decisions(ctx))
    if _unrecognised_oncology(ctx):
        decisions.append(
            Decision(
                "prophylaxis",
                "diagnosis not recognised: check the Pneumocystis indications",
                f"oncology diagnosis {ctx.referral.diagnosis.label!r} is neither coded (ICD-10, "
                "SNOMED CT) nor one of the protocol's label variants: whether it is acute "
                "lymphoblastic leukaemia (an ECIL-5 indication) is the clinician's decision; "
                "the other indications are checked as usual",
                ctx.cite("prophylaxis.pjp.indicating_diagnosis_groups"),
            )
        )
    encapsulated = _encapsulated(ctx, due=due, first_review=first_review)
    if encapsulated is not None:
        items.append(encapsulated[0])
        decisions.append(encapsulated[1])
    meningococcal = meningococcal_cover(
        ctx, due=due, first_review=first_review, penicillin_planned=encapsulated is not None
    )
    if meningococcal is not None:
        items.extend(meningococcal[0])
        decisions.append(meningococcal[1])
    a = protocol.prophylaxis.antibacterial
    antibody_deficiency = facts.igg_low or (
        facts.latest_fold_rise is not None
        and facts.latest_fold_rise.pneumococcal_fold_rise is not None
        and facts.latest_fold_rise.pneumococcal_fold_rise
        < protocol.immunoglobulin.antibody_failure_fold_rise
    )
    if facts.recurrent_infections and (antibody_deficiency or ig_indicated):
        # Never above the protocol's maximum a dose, whatever the weight (§5.4).
        by_weight = a.mg_per_kg * facts.weight_kg
        capped = by_weight > a.max_mg_per_dose
        mg = round(min(by_weight, a.max_mg_per_dose))
        basis = f"{a.mg_per_kg:g} mg/kg" + (
            f", capped at the maximum {a.max_mg_per_dose:g} mg a dose" if capped else ""
        )
        review = calendar.next_working_day(max(first_review, due + timedelta(days=1)))
        items.append(
            ProphylaxisItem(
                key=f"prophylaxis:{a.drug}",
                due=due,
                drug=a.drug,
                regimen=f"{mg} mg {a.regimen} ({basis})",
                review=review,
                indication="antibody deficiency with recurrent infections",
            )
        )
        qt_what, qt_why, qt_src = qt_words(ctx, a.drug)
        decisions.append(
            Decision(
                "prophylaxis",
                f"{a.drug} {a.mg_per_kg:g} mg/kg {a.regimen}, review at plan review{qt_what}",
                f"{qt_why}antibody deficiency with {facts.recent_infections} infections in "
                f"{protocol.immunoglobulin.infection_lookback_months} months; {mg} mg a dose "
                f"({basis}; at most {a.max_mg_per_dose:g} mg a dose); no guideline for "
                "stopping: review at every plan review; alternatives: "
                + pjp_age.alternatives_for_age(ctx, a.alternatives, due),
                ctx.cite(
                    "prophylaxis.antibacterial.mg_per_kg",
                    "prophylaxis.antibacterial.max_mg_per_dose",
                    *pjp_age.alternatives_cited(ctx, due),
                )
                + qt_src,
            )
        )
    return items, decisions


def tmp_dose(weight_kg: float, ctx: PlanContext) -> tuple[float, str]:
    """(mg of TMP a dose, how it was computed) for Pneumocystis (§5.1): ECIL-5's
    mg/m2/day on the Costeff BSA, capped at the day's maximum, in ``doses_per_day`` doses,
    each rounded to the protocol's step (never above the cap)."""
    p = ctx.protocol.prophylaxis.pjp
    bsa = pjp_age.costeff_bsa(weight_kg)
    by_bsa = p.tmp_mg_per_m2_day * bsa
    daily = min(by_bsa, p.tmp_max_mg_day)
    step = p.tmp_dose_round_mg
    per_dose = round(daily / p.doses_per_day / step) * step
    cap = p.tmp_max_mg_day / p.doses_per_day
    if per_dose > cap:
        per_dose = (cap // step) * step
    per_dose = max(per_dose, step)
    capped = ", capped" if by_bsa > p.tmp_max_mg_day else ""
    basis = (
        f"{p.tmp_mg_per_m2_day:g} mg/m2/day TMP x BSA {bsa:.2f} m2 = {by_bsa:.0f} mg/day"
        f"{capped}, max {p.tmp_max_mg_day:g} mg/day; BSA from {weight_kg:g} kg by Costeff "
        f"(4W + 7) / (W + 90); each dose rounded to {step:g} mg"
    )
    return per_dose, basis


def atovaquone_dose(ctx: PlanContext) -> str:
    """The alternative's dose for this child (§5.5): mg/kg/day by age band, at most the day's
    maximum, once daily."""
    p = ctx.protocol.prophylaxis.pjp
    age = ctx.facts.age_months
    band = next((b for b in p.atovaquone_bands if age < b.below_age_months), None)
    if band is None and p.atovaquone_bands:
        band = p.atovaquone_bands[-1]
    if band is None or band.mg_per_kg_day is None:
        return "atovaquone (no dose in the protocol: clinician to dose)"
    by_weight = band.mg_per_kg_day * ctx.facts.weight_kg
    mg = round(min(by_weight, p.atovaquone_max_mg_day))
    capped = by_weight > p.atovaquone_max_mg_day
    return (
        f"atovaquone {mg} mg once daily ({band.mg_per_kg_day:g} mg/kg/day at {age} months of "
        f"age{', capped' if capped else ''}; at most {p.atovaquone_max_mg_day:g} mg/day; 30 "
        "mg/kg/day under 4 months and over 24 months, 45 mg/kg/day from 4 to 24 months)"
    )


def encapsulated_indication(ctx: PlanContext) -> str | None:
    """Chronic GVHD after allogeneic HSCT (§5.6): why prophylaxis against encapsulated
    bacteria is indicated, or None. The referral's ``active_gvhd`` does not say acute or
    chronic: active GVHD after an allogeneic HSCT is read as needing it (cautious)."""
    hsct = ctx.referral.hsct
    if hsct is None or hsct.type != "allogeneic" or not hsct.active_gvhd:
        return None
    return (
        f"active GVHD after allogeneic HSCT on {hsct.date} (the referral does not say acute "
        "or chronic: read as chronic GVHD, cautious): functional hyposplenism and poor "
        "responses to polysaccharide antigens"
    )


def _encapsulated(
    ctx: PlanContext, *, due: date, first_review: date
) -> tuple[ProphylaxisItem, Decision] | None:
    """Penicillin V (or the local choice) against pneumococcus while chronic GVHD is treated
    (Tomblyn 2009; ECIL; EBMT paediatric) or in asplenia (§5.12: BCSH 2011), dosed by age
    (BNF for Children)."""
    gvhd = encapsulated_indication(ctx)
    spleen = asplenia(ctx)
    if gvhd is None and not spleen:
        return None
    why = "; ".join(w for w in (gvhd, ASPLENIA_WHY if spleen else None) if w is not None)
    e = ctx.protocol.prophylaxis.encapsulated
    age = ctx.facts.age_months
    band = next((b for b in e.doses_by_age if age < b.below_age_months), None)
    if band is None and e.doses_by_age:
        band = e.doses_by_age[-1]
    dose = (
        f"{band.mg_per_dose:g} mg {e.doses_per_day} times a day"
        if band is not None and band.mg_per_dose is not None
        else "dose by the clinician (none in the protocol for this age)"
    )
    parts, lower = [], 0
    for b in e.doses_by_age:
        mg = "clinician" if b.mg_per_dose is None else f"{b.mg_per_dose:g} mg"
        if b is e.doses_by_age[-1] and lower:
            parts.append(f"from {lower // 12} years {mg}")
        elif lower:
            parts.append(f"{lower // 12}-{b.below_age_months // 12 - 1} years {mg}")
        else:
            parts.append(f"under {b.below_age_months // 12} years {mg}")
        lower = b.below_age_months
    bands = ", ".join(parts)
    review = ctx.calendar.next_working_day(max(first_review, due + timedelta(days=1)))
    item = ProphylaxisItem(
        key=f"prophylaxis:{e.drug}",
        due=due,
        drug=e.drug,
        regimen=f"{dose} (at {age} months of age)",
        review=review,
        indication=(
            "encapsulated bacteria (pneumococcus) in chronic GVHD"
            if not spleen
            else "encapsulated bacteria (pneumococcus) in asplenia"
            + (" and chronic GVHD" if gvhd is not None else "")
        ),
    )
    if not spleen:
        title = "for as long as chronic GVHD is treated"
        until = "stop only when chronic GVHD treatment and immunosuppression have ended"
    else:
        title = "in asplenia (lifelong while the spleen does not work)"
        until = ASPLENIA_UNTIL
    decision = Decision(
        "prophylaxis",
        f"{e.drug} {dose} against encapsulated bacteria, {title}",
        f"{why}; by age ({bands}, {e.doses_per_day} times a day); {until} (not at a date): "
        f"reviewed at every plan review, first {review}; alternatives: {e.alternatives}",
        ctx.cite(
            "prophylaxis.encapsulated.drug",
            "prophylaxis.encapsulated.doses_by_age",
            "prophylaxis.encapsulated.alternatives",
        )
        + (f"; {ASPLENIA_SOURCE}" if spleen else ""),
    )
    return item, decision
