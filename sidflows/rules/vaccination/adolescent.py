"""HPV for immunocompromised children, and HPV and MenACWY after HSCT (§4.15).

- HPV, a child with a risk condition (:mod:`.risk`): 3 doses at 0, 1-2 and 6 months from
  9 years, whatever the age at the first dose (ACIP, Meites MMWR 2016;65:1405:
  immunocompromised persons 9-26 years get 3 doses); after HSCT the series restarts 6-12
  months after the transplant (IDSA 2013 table 4, rec. 84; ECIL-7). Any other child has
  CDSi's routine series (§4.16).
- MenACWY after HSCT: 2 doses 8 weeks apart from 6-12 months after the transplant for
  11-18 years, a booster at 16-18 years when the series was given before 16 (IDSA 2013
  table 4, rec. 80). A younger child: the routine dose at 11-12 once of age. Outside HSCT,
  the routine MenACWY (11-12 years, booster at 16: ACIP) is CDSi's (§4.16), and on a
  complement inhibitor §5.7 plans it.

Both inactivated: the inactivated blocks hold them (§4.2, §4.3, §4.10), no live block.
"""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.calendar import add_months, add_years
from sidflows.rules.complement import complement_treatments
from sidflows.rules.model import Decision
from sidflows.rules.vaccination.blocks import inactivated_blocks
from sidflows.rules.vaccination.series import Schedule, Series, given_doses, schedule_series

ACIP_HPV = (
    "ACIP (Meites, MMWR 2016;65:1405: 3 doses at 0, 1-2 and 6 months for immunocompromised "
    "persons 9-26 years; minimum intervals 4 weeks, 12 weeks and 5 months)"
)
IDSA_HSCT_ADOLESCENT = "IDSA 2013 table 4 (rec. 80: MenACWY; rec. 84: HPV); ECIL-7"
HPV_DOSE3_AFTER_DOSE2 = timedelta(weeks=12)  # ACIP minimum interval, dose 2 to dose 3


def plan_hpv(schedule: Schedule) -> None:
    """HPV in 3 doses for a child with a risk condition, restarted after HSCT."""
    ctx = schedule.ctx
    if not schedule.risk:
        return  # the routine series (CDSi, §4.16)
    referral, protocol, start = ctx.referral, ctx.protocol, ctx.start
    if ctx.facts.chemotherapy_ongoing:
        return  # no dose counts during chemotherapy: the boosters after it (§4.2)
    schedule.handled.add("HPV")
    v = protocol.vaccination
    hsct = referral.hsct
    from_age = add_years(referral.patient.birth_date, v.hpv_from_age_years)
    earliest = max(start, from_age)
    since: date | None = None
    paths = [
        "vaccination.hpv_from_age_years",
        "vaccination.hpv_doses_immunocompromised",
        "vaccination.hpv_dose2_after_months",
        "vaccination.hpv_dose3_after_first_months",
    ]
    why = "; ".join(schedule.risk)
    rule = "HPV in 3 doses for an immunocompromised child (ACIP 2016, §4.15)"
    if hsct is not None:
        since = hsct.date
        earliest = max(earliest, add_months(hsct.date, v.hsct.hpv_start_months))
        paths.append("vaccination.hsct.hpv_start_months")
        why = (
            f"revaccination after HSCT on {hsct.date}: from {v.hsct.hpv_start_months} months "
            f"after it (doses before it do not count)"
        )
        rule = f"HPV restarted after HSCT on {hsct.date} (IDSA 2013 table 4, §4.15)"
    if earliest > ctx.horizon_end:
        return
    source = f"{ctx.cite(*paths)}; {ACIP_HPV}" + (
        f"; {IDSA_HSCT_ADOLESCENT}" if hsct is not None else ""
    )
    base = tuple(inactivated_blocks(ctx))
    given = given_doses(schedule, "HPV", since, protocol_dates=True)
    doses = v.hpv_doses_immunocompromised
    first_two = min(2, doses)
    planned = schedule_series(
        schedule,
        Series(
            "HPV",
            first_two,
            earliest,
            base,
            f"HPV, {doses} doses from {v.hpv_from_age_years} years ({why}): dose 2 "
            f"{v.hpv_dose2_after_months} month(s) after dose 1",
            source,
            given[:first_two],
            v.hpv_dose2_after_months,
            protocol_rule=rule,
            protocol_dates=True,
        ),
    )
    dates = [*given[:first_two], *(d.due for d in planned)]
    if doses < 3 or len(dates) < 2 or len(given) >= 3:
        return
    third = max(
        start,
        add_months(dates[0], v.hpv_dose3_after_first_months),
        dates[1] + HPV_DOSE3_AFTER_DOSE2,
    )
    schedule_series(
        schedule,
        Series(
            "HPV",
            1,
            third,
            base,
            f"HPV dose 3, {v.hpv_dose3_after_first_months} months after dose 1 ({dates[0]}) "
            "and >= 12 weeks after dose 2: immunocompromised children get 3 doses whatever "
            "the age at the first",
            source,
            number_from=3,
            protocol_rule=rule,
            protocol_dates=True,
        ),
    )


def menacwy_after_hsct(schedule: Schedule) -> None:
    """MenACWY after HSCT: 2 doses from 6-12 months for 11-18 years, a booster at 16."""
    ctx, plan = schedule.ctx, schedule.plan
    referral, protocol, start = ctx.referral, ctx.protocol, ctx.start
    hsct = referral.hsct
    if hsct is None or complement_treatments(ctx):
        return  # a complement inhibitor: §5.7 plans MenACWY
    h = protocol.vaccination.hsct
    birth = referral.patient.birth_date
    interval = protocol.prophylaxis.meningococcal.menacwy_interval_weeks
    earliest = max(
        start,
        add_months(hsct.date, h.menacwy_start_months),
        add_years(birth, h.menacwy_from_age_years),
    )
    if earliest > ctx.horizon_end:
        return  # not this plan's: an asplenia series (§5.12) is not held back by it
    schedule.handled.add("MenACWY")
    source = (
        ctx.cite(
            "vaccination.hsct.menacwy_start_months",
            "vaccination.hsct.menacwy_from_age_years",
            "vaccination.hsct.menacwy_doses",
            "vaccination.hsct.menacwy_booster_age_years",
            "prophylaxis.meningococcal.menacwy_interval_weeks",
        )
        + f"; {IDSA_HSCT_ADOLESCENT}"
    )
    rule = f"MenACWY restarted after HSCT on {hsct.date} (IDSA 2013 table 4, rec. 80, §4.15)"
    base = tuple(inactivated_blocks(ctx))
    given = given_doses(schedule, "MenACWY", hsct.date, protocol_dates=True)
    planned = schedule_series(
        schedule,
        Series(
            "MenACWY",
            h.menacwy_doses,
            earliest,
            base,
            f"revaccination after HSCT: MenACWY {h.menacwy_doses} doses >= {interval} weeks "
            f"apart from {h.menacwy_start_months} months after it, {h.menacwy_from_age_years}"
            "-18 years",
            source,
            given[: h.menacwy_doses],
            gap_months=0,
            protocol_rule=rule,
            protocol_dates=True,
        ),
        min_gap=timedelta(weeks=interval),
    )
    dates = [*given, *(d.due for d in planned)]
    if len(dates) < h.menacwy_doses or len(given) > h.menacwy_doses:
        return
    last = dates[h.menacwy_doses - 1]
    sixteen = add_years(birth, h.menacwy_booster_age_years)
    if last >= sixteen:
        return  # a series from 16 years needs no booster
    booster = max(start, sixteen, last + timedelta(weeks=interval))
    if booster > ctx.horizon_end:
        plan.decisions.append(
            Decision(
                "vaccination",
                f"MenACWY booster at {h.menacwy_booster_age_years} years, from {booster}",
                f"the series after HSCT ends before {h.menacwy_booster_age_years} years "
                f"(last dose {last}): a booster at 16-18 years",
                source,
            )
        )
        return
    schedule_series(
        schedule,
        Series(
            "MenACWY",
            1,
            booster,
            base,
            f"MenACWY booster at {h.menacwy_booster_age_years} years: the series after HSCT "
            f"was given before it (last dose {last})",
            source,
            number_from=h.menacwy_doses + 1,
            protocol_rule=rule,
            protocol_dates=True,
        ),
    )
