"""Inactivated influenza every season of the horizon (docs/clinical-reference.md §4)."""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.calendar import add_months, add_years
from sidflows.protocol import Protocol
from sidflows.referral import TreatmentEntry
from sidflows.rules.drugs import drug_is, is_anti_cd20
from sidflows.rules.model import Block, Decision, VaccineDose
from sidflows.rules.vaccination.blocks import influenza_blocks, undated_intensive_chemotherapy
from sidflows.rules.vaccination.series import Schedule, Series, schedule_series

ACIP_FLU = (
    "ACIP influenza recommendations (Grohskopf et al., MMWR): 6 months-8 years without 2 "
    "doses before 1 July of the season, 2 doses >= 4 weeks apart"
)
ACIP_TWO_DOSES_BELOW_YEARS = 9
ACIP_TWO_DOSES_WEEKS = 4


def season_bounds(year: int, protocol: Protocol) -> tuple[date, date]:
    """First and last day of the influenza season that begins in ``year``."""
    v = protocol.vaccination
    sm, sd = (int(x) for x in v.influenza_season_start.split("-"))
    em, ed = (int(x) for x in v.influenza_season_end.split("-"))
    begin = date(year, sm, sd)
    end = date(year + (1 if (em, ed) < (sm, sd) else 0), em, ed)
    return begin, end


def acip_two_doses(birth: date, first_day: date, before_july: int) -> bool:
    """ACIP: 6 months to 8 years, fewer than 2 doses before 1 July of the season: 2 doses."""
    return add_years(birth, ACIP_TWO_DOSES_BELOW_YEARS) > first_day and before_july < 2


def plan_influenza(schedule: Schedule) -> None:
    """One dose a season; two, 4 weeks apart, in the first season for a child of 6 months to
    8 years who has not had two before (ACIP) and in the first season after HSCT (§4.6)."""
    ctx, plan = schedule.ctx, schedule.plan
    referral, protocol, start, horizon_end = ctx.referral, ctx.protocol, ctx.start, ctx.horizon_end
    blocks = influenza_blocks(ctx)
    _on_anti_cd20(schedule)
    # The doses CDSi counts (since the transplant after HSCT; same-day duplicates once).
    counted = list(schedule.cdsi.counted("IIV"))
    # Two doses in the first season after HSCT (none given since the transplant).
    hsct_first = referral.hsct is not None and not counted
    birth = referral.patient.birth_date
    undated = undated_intensive_chemotherapy(ctx)
    for year in range(start.year - 1, horizon_end.year + 1):
        begin, end = season_bounds(year, protocol)
        if end < start or begin > horizon_end:
            continue
        given = tuple(d for d in counted if begin <= d <= end)
        july = date(begin.year, 7, 1)
        before_july = sum(1 for d in counted if d < july)
        acip = acip_two_doses(birth, max(start, begin), before_july)
        doses = 2 if acip else 1
        why = f"{doses} dose(s) this season" + (
            f": under 9 years with {before_july} dose(s) before 1 July {july.year} (ACIP: 2 "
            "doses >= 4 weeks apart)"
            if acip
            else ""
        )
        source = ctx.cite(
            "vaccination.influenza_min_age_months",
            "vaccination.influenza_season_start",
            "vaccination.influenza_season_end",
        )
        if acip:
            source = f"{source}; {ACIP_FLU}"
        if undated:
            _held_by_intensive_phase(schedule, undated, begin, end, why, source)
            return
        if hsct_first:
            hsct_doses = protocol.vaccination.hsct.influenza_first_season_doses
            if hsct_doses > doses:
                doses = hsct_doses
                why = f"{doses} doses in the first season after HSCT (protocol, §4.6)"
            source = f"{source}; {ctx.cite('vaccination.hsct.influenza_first_season_doses')}"
            hsct_first = False
        window = (
            Block("outside the influenza season", "unit policy (campaign dates)", begin),
            Block(
                "outside the influenza season",
                "unit policy (campaign dates)",
                None,
                end + timedelta(days=1),
            ),
        )
        series = Series(
            "IIV",
            doses,
            max(start, begin),
            (*blocks, *window),
            f"inactivated influenza every season from 6 months of age (season {begin.year}-"
            f"{end.year}): {why}",
            source,
            given,
            gap_months=0,
            # CDSi's influenza dates are those of the supporting data's season (4.64:
            # 2025-26); the unit's campaign dates and the ACIP doses above stand.
            protocol_rule="the unit's influenza campaign dates and doses per season (§4.5)",
            protocol_dates=True,
        )
        before = len(plan.items)
        schedule_series(schedule, series, min_gap=timedelta(weeks=ACIP_TWO_DOSES_WEEKS))
        counted += [plan.items[i].due for i in range(before, len(plan.items))]
        for i in range(before, len(plan.items)):
            item = plan.items[i]
            plan.items[i] = VaccineDose(
                key=f"vaccine_dose:IIV:{begin.year}:{item.dose_number}",
                due=item.due,
                vaccine="IIV",
                live=False,
                dose_number=item.dose_number,
                earliest=item.earliest,
                latest=min(item.latest, end) if item.latest else end,
            )
    _on_methotrexate(schedule)


def _held_by_intensive_phase(
    schedule: Schedule,
    phases: list[TreatmentEntry],
    begin: date,
    end: date,
    doses: str,
    source: str,
) -> None:
    """An intensive phase with no end date holds influenza vaccine with no day to plan it
    (§4.5): one decision, naming the phase and what lifts the hold, in place of a season
    after season of "no dose possible"."""
    named = "; ".join(f"{t.drug} (since {t.start}, no end date)" for t in phases)
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            "IIV: held while the intensive phase of chemotherapy continues (no end date recorded)",
            f"{named}: no influenza vaccine during intensive chemotherapy (induction, "
            "consolidation); it is given once the intensive phase ends (maintenance does not "
            f"hold it). Season {begin.year}-{end.year}, to {end}: {doses}. The record gives "
            "no end date, so no dose is planned: ask the oncology team when the phase ends "
            "and record it (a treatment change re-plans, and the season's doses follow); the "
            "household is vaccinated meanwhile",
            f"{schedule.ctx.cite('vaccination.intensive_chemotherapy_words')}; {source}",
        )
    )


ACR_FLU = (
    "ACR 2022 (Bass, Arthritis Care Res 2023;75:449): influenza vaccine on schedule on "
    "rituximab, rituximab continued, its next dose delayed >= 2 weeks after the vaccine if "
    "disease activity allows"
)


def _on_anti_cd20(schedule: Schedule) -> None:
    """On anti-CD20, influenza on schedule (default, ACR 2022): say so, with the timing of
    the next infusion; or skipped during it (IDSA 2013, the alternative: a block)."""
    ctx = schedule.ctx
    protocol = ctx.protocol
    cd20 = [
        t
        for t in ctx.referral.treatments
        if is_anti_cd20(t, protocol)
        and (
            t.end is None
            or add_months(t.end, protocol.grading.anti_cd20_depletion_months) >= ctx.start
        )
    ]
    if not cd20 or protocol.vaccination.influenza_on_anti_cd20 != "on_schedule":
        return
    drugs = ", ".join(dict.fromkeys(t.drug for t in cd20))
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            f"influenza vaccine on schedule on {drugs} (not deferred)",
            "the child is otherwise unprotected through the season: give it on the "
            "campaign's dates; the antibody response may be blunted by B-cell depletion "
            "(better the later after the last dose); delay the next anti-CD20 dose >= 2 "
            "weeks after the vaccine if disease activity allows (clinician decision); "
            "IDSA 2013's alternative (no influenza vaccine during anti-B-cell antibodies) "
            'is the protocol\'s "skip"',
            f"{ctx.cite('vaccination.influenza_on_anti_cd20')}; {ACR_FLU}",
        )
    )


def _on_methotrexate(schedule: Schedule) -> None:
    """On methotrexate for an immune-mediated disease (not as chemotherapy), each influenza
    dose planned comes with ACR 2022's advice: hold it for 2 weeks after the dose if disease
    activity allows (§4.5), a decision for the clinician; nothing when the protocol's hold
    is 0 or no dose is planned."""
    ctx = schedule.ctx
    weeks = ctx.protocol.vaccination.influenza_methotrexate_hold_weeks
    doses = sorted(
        i.due for i in schedule.plan.items if isinstance(i, VaccineDose) and i.vaccine == "IIV"
    )
    if not weeks or not doses:
        return
    names = ctx.protocol.grading.methotrexate_names
    mtx = [
        t
        for t in ctx.referral.treatments
        if drug_is(t, names, ctx.protocol) and not ctx.facts.is_chemotherapy(t)
    ]
    # The doses given while on methotrexate (the hold follows those only), and its entries.
    on = {d: [t for t in mtx if t.active_on(d)] for d in doses}
    held = [d for d in doses if on[d]]
    if not held:
        return
    drugs = ", ".join(dict.fromkeys(t.drug for d in held for t in on[d]))
    shown = ", ".join(str(d) for d in held)
    schedule.plan.decisions.append(
        Decision(
            "vaccination",
            f"influenza vaccine on {drugs}: hold it {weeks} weeks after each dose if disease "
            "activity allows",
            f"the influenza doses of the plan ({shown}): a {weeks}-week pause of methotrexate "
            "after each improves the response (a randomised trial in adults); a clinician "
            "decision, by disease activity (continue it where a flare is the greater risk); "
            "the vaccine itself is not delayed",
            ctx.cite("vaccination.influenza_methotrexate_hold_weeks"),
        )
    )
