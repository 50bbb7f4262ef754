"""Meningococcal vaccines on a complement inhibitor (docs/clinical-reference.md §5.7).

ACIP (Mbaeyi, MMWR Recomm Rep 2020;69(RR-9)), for a child given or about to be given
eculizumab, ravulizumab, crovalimab, pegcetacoplan or iptacopan: MenACWY 2 doses at least
8 weeks apart (from 2 years; under 2 the infant schedules by product and age), a booster
every 5 years while the risk remains; MenB from 10 years (MenB-4C 2 doses at least a month
apart), a booster 1 year after the series and then every 2-3 years; ideally the first doses
at least 2 weeks before the first dose of the inhibitor. Hib and pneumococcal status is
checked (complement deficiency: both indicated). Where the protocol cannot plan a dose
(under the ages above) the clinician decides, with the dates.

ACIP gives anatomical or functional asplenia (the referral's ``risk_conditions``, §5.12) the
same MenACWY and MenB series and boosters (MMWR 2020;69(RR-9), Table 5): planned here
alike, with no inhibitor start to time them against. After HSCT the MenACWY of §4.15 stays
(its timing from the transplant); MenB is planned here.
"""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.calendar import add_months, add_years
from sidflows.rules.asplenia import asplenia
from sidflows.rules.complement import complement_treatments
from sidflows.rules.model import Block, Decision, VaccineDose
from sidflows.rules.vaccination.blocks import inactivated_blocks
from sidflows.rules.vaccination.series import Schedule, Series, given_doses, schedule_series

RULE = "meningococcal vaccination on a complement inhibitor (ACIP MMWR 2020;69(RR-9), §5.7)"
RULE_ASPLENIA = "meningococcal vaccination in asplenia (ACIP MMWR 2020;69(RR-9) Table 5, §5.12)"
ACIP_ASPLENIA = (
    "ACIP (Mbaeyi, MMWR Recomm Rep 2020;69(RR-9), Table 5: anatomic or functional asplenia, "
    "the same MenACWY and MenB series and boosters as complement deficiency), "
    "docs/clinical-reference.md §5.12"
)


def plan_meningococcal(schedule: Schedule) -> None:
    """MenACWY and MenB series and boosters, Hib and pneumococcal status (§5.7)."""
    treatments = complement_treatments(schedule.ctx)
    spleen = asplenia(schedule.ctx)
    if not treatments and not spleen:
        return
    ctx = schedule.ctx
    # After HSCT without an inhibitor, §4.15 has planned MenACWY from the transplant.
    acwy_elsewhere = not treatments and "MenACWY" in schedule.handled
    schedule.handled.update(("MenACWY", "MenB"))
    m = ctx.protocol.prophylaxis.meningococcal
    decisions = schedule.plan.decisions
    base = tuple(inactivated_blocks(ctx))
    names = [t.drug for t in treatments] + (["asplenia"] if spleen else [])
    drugs = ", ".join(names)
    kind = " and ".join(
        k for k, on in (("complement inhibitor", treatments), ("asplenia", spleen)) if on
    )
    remains = ", ".join(
        (
            *((f"on {', '.join(t.drug for t in treatments)}",) if treatments else ()),
            *(("the spleen does not work",) if spleen else ()),
        )
    )
    rule = RULE if treatments else RULE_ASPLENIA
    extra = f"; {ACIP_ASPLENIA}" if spleen else ""
    first_start = min(t.start for t in treatments) if treatments else None
    target = (
        first_start - timedelta(days=m.vaccinate_before_days) if first_start is not None else None
    )
    ideally = f"; first dose ideally by {target}" if target is not None else ""
    first_doses: list[date] = []
    # After HSCT a dose counts from the transplant, and the series starts with the other
    # inactivated vaccines (§4.6): the asplenia series is not the transplant's to skip.
    hsct = ctx.referral.hsct
    since = hsct.date if hsct is not None else None
    floor = ctx.start
    after = ""
    if hsct is not None:
        months = ctx.protocol.vaccination.hsct.inactivated_start_months
        floor = max(floor, add_months(hsct.date, months))
        after = (
            f"; after HSCT on {hsct.date}: from {months} months after it, doses before it "
            "do not count (§4.6)"
        )
    # MenACWY
    acwy_src = (
        ctx.cite(
            "prophylaxis.meningococcal.menacwy_doses",
            "prophylaxis.meningococcal.menacwy_interval_weeks",
            "prophylaxis.meningococcal.menacwy_booster_years",
        )
        + extra
    )
    if acwy_elsewhere:
        decisions.append(
            Decision(
                "vaccination",
                "MenACWY as after HSCT (§4.15); asplenia: booster every "
                f"{m.menacwy_booster_years} years after the series",
                f"{drugs}: ACIP gives asplenia {m.menacwy_doses} doses >= "
                f"{m.menacwy_interval_weeks} weeks apart and a booster every "
                f"{m.menacwy_booster_years} years while the risk remains; the series after "
                "HSCT is timed from the transplant: clinician to check it meets both",
                acwy_src,
            )
        )
    elif ctx.facts.age_months >= m.menacwy_min_age_months:
        before_7 = (m.menacwy_booster_before_7_years, add_years(ctx.referral.patient.birth_date, 7))
        given = given_doses(schedule, "MenACWY", since, protocol_dates=True)
        done = _series_and_booster(
            schedule,
            "MenACWY",
            doses=m.menacwy_doses,
            gap=timedelta(weeks=m.menacwy_interval_weeks),
            given=given,
            blocks=base,
            rationale=(
                f"{drugs}: MenACWY {m.menacwy_doses} doses >= {m.menacwy_interval_weeks} "
                f"weeks apart ({kind}){after}"
            ),
            source=acwy_src,
            earliest=floor,
            booster_years=m.menacwy_booster_years,
            later_booster_years=m.menacwy_booster_years,
            first_doses=first_doses,
            rule=rule,
            early=before_7,
        )
        if done is not None:
            last = done[0]
            years = first_booster_years(
                before_7, m.menacwy_booster_years, last, done[1] == m.menacwy_doses
            )
            first = years != m.menacwy_booster_years
            decisions.append(
                Decision(
                    "vaccination",
                    f"MenACWY booster due {add_years(last, years)}",
                    (
                        f"the series completed before 7 years: the first booster {years} "
                        f"years after it, then every {m.menacwy_booster_years} years"
                        if first
                        else f"every {m.menacwy_booster_years} years"
                    )
                    + f" while {remains} (the risk remains with it); last dose {last}",
                    acwy_src,
                )
            )
    else:
        decisions.append(
            Decision(
                "vaccination",
                f"MenACWY under 2 years: clinician to prescribe the infant schedule from "
                f"{ctx.start}",
                f"{drugs} at {ctx.facts.age_months} months of age: the ACIP 2-dose series is "
                f"from {m.menacwy_min_age_months} months; under it the infant schedules depend "
                "on the product and the age at the first dose (MenACWY-CRM from 2 months)"
                f"{ideally}",
                ctx.cite("prophylaxis.meningococcal.menacwy_min_age_months") + extra,
            )
        )
    # MenB
    menb_src = (
        ctx.cite(
            "prophylaxis.meningococcal.menb_doses",
            "prophylaxis.meningococcal.menb_interval_weeks",
            "prophylaxis.meningococcal.menb_booster_after_series_years",
            "prophylaxis.meningococcal.menb_booster_every_years",
        )
        + extra
    )
    if ctx.facts.age_years >= m.menb_min_age_years:
        given = given_doses(schedule, "MenB", since, protocol_dates=True)
        done = _series_and_booster(
            schedule,
            "MenB",
            doses=m.menb_doses,
            gap=timedelta(weeks=m.menb_interval_weeks),
            given=given,
            blocks=base,
            rationale=(
                f"{drugs}: MenB {m.menb_doses} doses >= {m.menb_interval_weeks} weeks apart "
                "(MenB-4C; MenB-FHbp is 3 doses at 0, 1-2 and 6 months: the same product "
                f"throughout){after}"
            ),
            source=menb_src,
            earliest=floor,
            booster_years=m.menb_booster_after_series_years,
            later_booster_years=m.menb_booster_every_years,
            first_doses=first_doses,
            rule=rule,
        )
        if done is not None:
            last, total = done
            years = (
                m.menb_booster_after_series_years
                if total == m.menb_doses
                else m.menb_booster_every_years
            )
            decisions.append(
                Decision(
                    "vaccination",
                    f"MenB booster due {add_years(last, years)}",
                    f"{m.menb_booster_after_series_years} year after the series, then every "
                    f"{m.menb_booster_every_years} years (2-3) while {remains}; last dose {last}",
                    menb_src,
                )
            )
    else:
        decisions.append(
            Decision(
                "vaccination",
                f"MenB under {m.menb_min_age_years} years: clinician decision from {ctx.start}",
                f"{drugs} at {ctx.facts.age_years} years of age: ACIP recommends MenB from "
                f"{m.menb_min_age_years} years (younger: off label in the US; MenB-4C is "
                "licensed from 2 months in the EU and UK, by age schedule)"
                + (
                    f"; MenB recorded: {', '.join(str(d) for d in menb_given)} (the series "
                    "by the product's age schedule, the same product: complete it)"
                    if (menb_given := [e.when for e in schedule.cdsi.entries_of("MenB")])
                    else f"{ideally}"
                ),
                ctx.cite("prophylaxis.meningococcal.menb_min_age_years") + extra,
            )
        )
    # Timing against the inhibitor's first dose.
    if first_start is not None and target is not None and first_start > ctx.today:
        early = min(first_doses) if first_doses else None
        met = early is not None and early <= target
        decisions.append(
            Decision(
                "vaccination",
                f"meningococcal vaccines by {target}, >= {m.vaccinate_before_days} days before "
                f"the complement inhibitor starts on {first_start}",
                (
                    f"first dose planned {early}: in time"
                    if met
                    else (f"first dose planned {early}" if early else "no dose planned")
                    + ": the inhibitor would start < 2 weeks after vaccination: antibiotic "
                    "cover from its first dose (labels), or delay it if the disease allows: "
                    "clinician decision"
                ),
                ctx.cite("prophylaxis.meningococcal.vaccinate_before_days"),
            )
        )
    # What the record documents (same-day duplicates once), and where CDSi counts fewer
    # toward the series it now selects (infant PCV doses before a risk series from 6 years).
    shown = []
    for code in ("Hib", "PCV", "PPSV23"):
        documented = len(schedule.cdsi.entries_of(code))
        counted = len(given_doses(schedule, code, None))
        shown.append(
            f"{code} {documented}"
            + (
                f" ({counted} counted by CDSi toward its current series)"
                if counted < documented
                else ""
            )
        )
    decisions.append(
        Decision(
            "vaccination",
            f"check Hib and pneumococcal status ({kind})",
            f"documented: {', '.join(shown)} dose(s); "
            "complement deficiency (inhibitor use included) and asplenia make Hib and "
            "pneumococcal vaccines indicated (ACIP general best practice): complete any "
            "missing doses; the pneumococcal rules of §4.3, §4.4 and §4.13 plan them where "
            "they apply",
            ctx.cite("prophylaxis.meningococcal.grading_level") + extra,
        )
    )


def first_booster_years(
    early: tuple[int, date] | None, booster_years: int, last: date, complete: bool
) -> int:
    """The years from a primary series to its first booster: ``early`` (years, a day) when
    the series was ``complete`` before that day (MenACWY: 3 years under 7, ACIP 2020),
    otherwise ``booster_years``."""
    if early is not None and complete and last < early[1]:
        return early[0]
    return booster_years


def _series_and_booster(
    schedule: Schedule,
    vaccine: str,
    *,
    doses: int,
    gap: timedelta,
    given: tuple[date, ...],
    blocks: tuple[Block, ...],
    rationale: str,
    source: str,
    booster_years: int,
    later_booster_years: int,
    first_doses: list[date],
    rule: str = RULE,
    earliest: date | None = None,
    early: tuple[int, date] | None = None,
) -> tuple[date, int] | None:
    """The primary series (or, once complete, the booster when due in the horizon): the
    date of the last dose, given or planned, and the number of doses, once the series is
    complete (None if not). The first booster is ``booster_years`` after the series, the
    later ones ``later_booster_years`` apart; ``early`` (years, a day): the first booster
    that many years after a series completed before that day (MenACWY: 3 years under 7)."""
    ctx = schedule.ctx
    planned: list[VaccineDose] = []
    if len(given) < doses:
        planned = schedule_series(
            schedule,
            Series(
                vaccine,
                doses,
                earliest or ctx.start,
                blocks,
                rationale,
                source,
                given,
                gap_months=0,
                protocol_rule=rule,
                protocol_dates=True,
            ),
            min_gap=gap,
        )
        if planned:
            first_doses.append(planned[0].due)
        if len(given) + len(planned) < doses:
            return None
        return (planned[-1].due if planned else max(given)), len(given) + len(planned)
    last = max(given)
    booster_years = first_booster_years(early, booster_years, last, len(given) == doses)
    booster = add_years(last, booster_years if len(given) == doses else later_booster_years)
    if booster > ctx.horizon_end:
        return last, len(given)
    planned = schedule_series(
        schedule,
        Series(
            vaccine,
            1,
            max(ctx.start, booster),
            blocks,
            f"{rationale}: booster {booster_years} year(s) after the last dose ({last})",
            source,
            number_from=len(given) + 1,
            protocol_rule=rule,
            protocol_dates=True,
        ),
    )
    return (planned[-1].due, len(given) + 1) if planned else None
