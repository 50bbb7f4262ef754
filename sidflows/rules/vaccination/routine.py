"""The routine catch-up of missing doses, from CDSi's forecast, for every child (§4.16).

For each inactivated vaccine of ``vaccination.routine_catch_up`` whose vaccine group no
rule of the unit has planned in this plan (:attr:`.Schedule.handled`), the doses CDSi
forecasts (ACIP's routine and catch-up schedule: ages, intervals, the 2-dose HPV series
before 15 years, MenACWY at 11-12 with a booster at 16) go on the calendar: each on the
first hospital working day from CDSi's recommended date (not before its earliest, nor the
plan's first day) that no inactivated block holds, the next dose forecast by the engine
as if the planned ones had been given. After HSCT not before the protocol's start of the
inactivated series (§4.6); during chemotherapy nothing (doses do not count, §4.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sidflows.calendar import add_months
from sidflows.rules.model import Block, Decision, VaccineDose
from sidflows.rules.vaccination.blocks import first_free_day, holding, inactivated_blocks, is_live
from sidflows.rules.vaccination.cdsi_history import CDSI_SRC
from sidflows.rules.vaccination.cvx import code_table
from sidflows.rules.vaccination.series import Schedule, dose_vaccine

MAX_DOSES = 6  # a safety bound on one vaccine's catch-up in one horizon


def plan_routine_catch_up(schedule: Schedule) -> None:
    """The missing routine doses of every vaccine no rule of the unit plans (§4.16)."""
    ctx = schedule.ctx
    if ctx.facts.chemotherapy_ongoing:
        return
    cdsi = schedule.cdsi
    handled = {cdsi.group_of(v) for v in schedule.handled}
    base = tuple(inactivated_blocks(ctx))
    floor = ctx.start
    hsct = ctx.referral.hsct
    if hsct is not None:
        floor = max(
            floor, add_months(hsct.date, ctx.protocol.vaccination.hsct.inactivated_start_months)
        )
    for code in ctx.protocol.vaccination.routine_catch_up:
        group = cdsi.group_of(code)
        if is_live(code) or group is None or group in handled:
            continue
        handled.add(group)
        _catch_up(schedule, code, group, base, floor)


@dataclass
class Forecast:
    """The doses CDSi forecasts one after another, as the plan puts them on the calendar."""

    doses: list[VaccineDose]
    held: list[Block]
    first_target: date | None
    complete: bool = False
    """The planned doses complete the series (CDSi forecasts no further dose)."""


def forecast_doses(
    schedule: Schedule,
    code: str,
    group: str,
    blocks: tuple[Block, ...],
    floor: date,
    *,
    after: VaccineDose | None = None,
) -> Forecast:
    """Each dose CDSi forecasts, on the first hospital working day from its recommended
    date (not before its earliest, ``floor``, nor the day after ``after``) that no block
    holds; the next forecast as if the planned ones had been given. ``after``: a dose
    the plan already gives (the booster after chemotherapy), counted as given first."""
    ctx, cdsi, plan = schedule.ctx, schedule.cdsi, schedule.plan
    planned: list[tuple[str, date]] = []
    if after is None:
        fc = cdsi.group_forecast(group)
    else:
        given = code_table().lookup(after.vaccine)
        if given is None:
            return Forecast([], [], None)
        planned.append((given.cvx, after.due))
        fc = cdsi.forecast_after(group, tuple(planned), after.due)
    live = is_live(code)
    doses: list[VaccineDose] = []
    held: list[Block] = []
    first_target: date | None = None
    while fc is not None and fc.status == "Not Complete" and fc.earliest is not None:
        target = max(floor, fc.earliest, fc.recommended or fc.earliest)
        previous = doses[-1].due if doses else (after.due if after is not None else None)
        if previous is not None:
            target = max(target, previous + timedelta(days=1))
        first_target = first_target or target
        if target > ctx.horizon_end or len(doses) >= MAX_DOSES:
            break
        free = first_free_day(blocks, target)
        due = None
        while free is not None:
            due = ctx.calendar.next_working_day(free)
            again = first_free_day(blocks, due)
            if again == due:
                break
            free = again
        if free is None or due is None or due > ctx.horizon_end:
            if not doses:
                held = holding(blocks, target, free)
            break
        vaccine = dose_vaccine(ctx, code, due, (*plan.items, *doses))
        found = code_table().lookup(vaccine)
        if found is None:
            break
        later = [b.start for b in blocks if b.start is not None and b.start > due]
        if after is not None:
            number = after.dose_number + len(doses) + 1  # numbered on from the booster
        else:
            number = fc.forecast_dose_number or len(doses) + 1
            if doses:  # CDSi may forecast the same dose again: keys stay unique, numbers rise
                number = max(number, doses[-1].dose_number + 1)
        doses.append(
            VaccineDose(
                key=f"vaccine_dose:{vaccine}:{number}",
                due=due,
                vaccine=vaccine,
                live=live,
                dose_number=number,
                earliest=free,
                latest=min(later) - timedelta(days=1) if later else None,
            )
        )
        # The engine's recommended product where it names one (an "unspecified" CVX does
        # not meet the conditional skips that count a product, PCV15/PCV20 for one).
        planned.append((fc.vaccines[0] if fc.vaccines else found.cvx, due))
        fc = cdsi.forecast_after(group, tuple(planned), due)
    complete = bool(doses) and (fc is None or fc.status != "Not Complete")
    return Forecast(doses, held, first_target, complete)


def _catch_up(
    schedule: Schedule, code: str, group: str, blocks: tuple[Block, ...], floor: date
) -> None:
    ctx, cdsi, plan = schedule.ctx, schedule.cdsi, schedule.plan
    fc = cdsi.group_forecast(group)
    if fc is None or fc.status != "Not Complete" or fc.earliest is None:
        return
    described = cdsi.describe(code)
    found = forecast_doses(schedule, code, group, blocks, floor)
    doses, held, first_target = found.doses, found.held, found.first_target
    if first_target is None or (first_target > ctx.horizon_end and not doses):
        return  # the next routine dose is beyond the horizon: the next plan gives it
    plan.items.extend(doses)
    what = (
        f"{code}: routine catch-up, {len(doses)} dose(s) in the horizon"
        if doses
        else f"{code}: routine catch-up, no dose possible in the horizon"
    )
    parts = [
        "the missing doses of the routine schedule (ACIP, as CDSi forecasts them: ages and "
        "intervals), planned for every child in scope",
        described,
    ]
    if doses:
        parts.append("doses on " + ", ".join(f"{d.due} ({d.vaccine})" for d in doses))
    sources = [ctx.cite("vaccination.routine_catch_up"), CDSI_SRC]
    if held:
        parts.append("held back by: " + "; ".join(f"{b.reason} ({b.source})" for b in held))
        sources += [b.source for b in held]
    plan.decisions.append(
        Decision("vaccination", what, "; ".join(parts), "; ".join(dict.fromkeys(sources)))
    )
    compromised = [r for r in schedule.risk if not r.startswith(NOT_COMPROMISED)]
    if code == "HepB" and found.complete and compromised:
        _anti_hbs_after(schedule, doses[-1].due, compromised)


# Risk conditions that are not immunocompromise (ACIP 2018 tests the immunocompromised).
NOT_COMPROMISED = (
    "anatomical or functional asplenia",
    "nephrotic syndrome",
    "complement inhibitor",
    "IgG below the limit for age",
)


def _anti_hbs_after(schedule: Schedule, last: date, compromised: list[str]) -> None:
    """An immunocompromised child completing hepatitis B: anti-HBs after the series (ACIP:
    1-2 months after the last dose; < 10 mIU/mL: the series again, §4.4)."""
    ctx = schedule.ctx
    v = ctx.protocol.vaccination
    word = ctx.protocol.reassessment.titre_panel_words.get("HepB", "anti-HBs")
    schedule.plan.titres.append((last, word))
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            "hepatitis B: check anti-HBs after the series",
            f"the series completes on {last} in an immunocompromised child "
            f"({'; '.join(compromised)}): anti-HBs {v.hsct.titres_after_series_weeks} weeks "
            f"after the last dose (ACIP: 1-2 months); below "
            f"{v.anti_hbs_protective_miu_ml:g} mIU/mL, the series again",
            f"{ACIP_HEPB_TESTING}; {ctx.cite('vaccination.anti_hbs_protective_miu_ml')}",
        )
    )


ACIP_HEPB_TESTING = (
    "ACIP hepatitis B (Schillie S, et al. MMWR Recomm Rep 2018;67(RR-1)): post-vaccination "
    "testing of immunocompromised persons 1-2 months after the last dose"
)
