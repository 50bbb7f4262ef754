"""Boosters after chemotherapy: inactivated, pneumococcal, live (docs/clinical-reference.md §4)."""

from __future__ import annotations

from datetime import timedelta

from sidflows.calendar import add_months
from sidflows.rules.model import Block, Decision, Deferral, VaccineDose
from sidflows.rules.vaccination.blocks import holding, inactivated_blocks, is_live
from sidflows.rules.vaccination.cdsi_history import CDSI_SRC
from sidflows.rules.vaccination.pneumococcal import pcv_needed
from sidflows.rules.vaccination.routine import forecast_doses
from sidflows.rules.vaccination.series import (
    Schedule,
    Series,
    given_doses,
    schedule_series,
    tetanus_code,
)
from sidflows.rules.vaccination.sources import CHEMO_SRC, IDSA

INFLUENZA = ("IIV", "LAIV")


def boost_after_chemotherapy(schedule: Schedule) -> None:
    """Doses given during chemotherapy do not count; boosters once it has ended."""
    ctx, plan = schedule.ctx, schedule.plan
    referral, facts, protocol, start = ctx.referral, ctx.facts, ctx.protocol, ctx.start
    v = protocol.vaccination
    base = tuple(inactivated_blocks(ctx))
    valid_from = facts.chemotherapy_end
    during = [
        x
        for x in referral.vaccinations
        if any(
            ctx.facts.is_chemotherapy(t) and t.start <= x.date <= (t.end or ctx.today)
            for t in referral.treatments
        )
    ]
    # Influenza doses count by season whatever the chemotherapy (§4.5); live doses are a
    # vaccine error of their own (IDSA 2013 rec. 72: no live vaccine during chemotherapy).
    inactivated = [x for x in during if not is_live(x.vaccine) and x.vaccine not in INFLUENZA]
    live_given = [x for x in during if is_live(x.vaccine)]
    if inactivated:
        plan.decisions.append(
            Decision(
                "vaccination",
                f"{len(inactivated)} dose(s) given during chemotherapy not counted",
                "inactivated doses given during chemotherapy do not count as valid unless a "
                "protective titre is shown: "
                + ", ".join(f"{x.vaccine} {x.date}" for x in inactivated)
                + " (influenza doses count by season, §4.5)",
                IDSA,
            )
        )
    if live_given:
        plan.decisions.append(
            Decision(
                "vaccination",
                "live vaccine given during chemotherapy: not counted, check the child",
                ", ".join(f"{x.vaccine} {x.date}" for x in live_given)
                + ": a live vaccine is contraindicated during chemotherapy; the dose is not "
                "valid; watch for vaccine-strain disease (rotavirus: gastroenteritis and "
                "prolonged shedding, ward infection control) and report the vaccine error",
                f"{IDSA}; docs/clinical-reference.md §4.1",
            )
        )
    if valid_from is None:
        # Every phase not yet ended, those recorded to start later too (maintenance after
        # an intensification): the planned end is the last of them, if each has one.
        ongoing = [
            t
            for t in referral.treatments
            if facts.is_chemotherapy(t) and (t.end is None or t.end >= ctx.today)
        ]
        planned = (
            max(t.end for t in ongoing if t.end is not None)
            if ongoing and all(t.end is not None for t in ongoing)
            else None
        )
        months = (
            v.after_chemotherapy_inactivated_months_anti_cd20
            if facts.had_anti_cd20
            else v.after_chemotherapy_inactivated_months
        )
        when = (
            f"chemotherapy is planned to end on {planned}: if it does, inactivated boosters "
            f"from {add_months(planned, months)} and live from "
            f"{add_months(planned, v.after_chemotherapy_live_months)}; the first plan made "
            "after the end (a treatment change, or the plan review) books them, as a planned "
            "end may move"
            if planned is not None
            else "chemotherapy is ongoing"
        )
        plan.decisions.append(
            Decision(
                "vaccination",
                "boosters after the end of chemotherapy",
                f"inactivated boosters {v.after_chemotherapy_inactivated_months} months after the "
                f"end ({v.after_chemotherapy_inactivated_months_anti_cd20} with anti-CD20), live "
                f"at {v.after_chemotherapy_live_months}: {when}",
                ctx.cite(
                    "vaccination.after_chemotherapy_inactivated_months",
                    "vaccination.after_chemotherapy_inactivated_months_anti_cd20",
                    "vaccination.after_chemotherapy_live_months",
                ),
            )
        )
        for code in v.after_chemotherapy_live:
            reasons = tuple(
                f"{b.reason} ({b.source})" for b in holding(schedule.live_blocks, start, None)
            )
            plan.deferred.append(Deferral(code, None, reasons))
        return
    # §4.2: one booster of each after the end, on the protocol's dates, whatever CDSi's
    # status of the series (complete, aged out, next routine dose years ahead); CDSi's
    # minimum ages still bound it and its evaluation still counts the doses given.
    rule = f"one booster of each after the end of chemotherapy on {valid_from} (§4.2)"
    pcv_doses: list[VaccineDose] = []
    pcv_complete = True
    infant_series = False
    during_days = {x.date for x in during}
    for code in v.after_chemotherapy_inactivated:
        vaccine = tetanus_code(ctx) if code in ("DTaP", "Tdap") else code
        given = given_doses(schedule, vaccine, valid_from, protocol_dates=True)
        doses, why = 1, ""
        extra: tuple[str, ...] = ()
        gap: timedelta | None = None
        if vaccine == "PCV":
            # §4.13: the ACIP catch-up before PPSV23 applies here too: the doses the child
            # still needs (counted over the documented doses that count: not those given
            # during chemotherapy), at least the one booster of §4.2.
            lifetime = [
                d
                for d in given_doses(schedule, "PCV", None, protocol_dates=True)
                if d not in during_days
            ]
            needed, why = pcv_needed(referral.patient.birth_date, start, lifetime)
            # Under 12 months the booster is the next dose of the routine infant series,
            # and the rest of that series follows it (CDSi's forecast, below).
            infant_series = needed is None
            doses = len(given) + 1 if needed is None else max(1, len(given) + needed)
            extra = ("vaccination.pcv_catch_up_interval_weeks",)
            gap = timedelta(weeks=v.pcv_catch_up_interval_weeks)
        scheduled = schedule_series(
            schedule,
            Series(
                vaccine,
                doses,
                start,
                base,
                "booster after chemotherapy: inactivated "
                f"{v.after_chemotherapy_inactivated_months} months after the end "
                f"({v.after_chemotherapy_inactivated_months_anti_cd20} after anti-CD20)"
                + (f"; conjugate before PPSV23: {why}" if why else ""),
                ctx.cite(
                    "vaccination.after_chemotherapy_inactivated_months",
                    "vaccination.after_chemotherapy_inactivated_months_anti_cd20",
                    *extra,
                ),
                given,
                gap_months=0 if gap is not None else 1,
                protocol_rule=rule,
                protocol_dates=True,
            ),
            min_gap=gap,
        )
        if vaccine == "PCV":
            pcv_complete = len(given) + len(scheduled) >= doses
            pcv_doses = scheduled
            if infant_series:
                pcv_doses = [*scheduled, *complete_the_series(schedule, vaccine, scheduled, base)]
        else:
            complete_the_series(schedule, vaccine, scheduled, base)
    # The unit's PCV-then-PPSV23 schedule (IDSA 2013) stands over CDSi's pneumococcal
    # dates: beyond the childhood series CDSi forecasts only its risk or 50+ series.
    pcv_given = given_doses(schedule, "PCV", valid_from, protocol_dates=True)
    pcv_dates = [*pcv_given, *(d.due for d in pcv_doses)]
    if pcv_dates and pcv_complete:
        schedule_series(
            schedule,
            Series(
                "PPSV23",
                1,
                max(start, pcv_dates[-1] + timedelta(weeks=v.ppsv23_after_pcv_weeks)),
                base,
                f"PPSV23 >= {v.ppsv23_after_pcv_weeks} weeks after the conjugate",
                ctx.cite("vaccination.ppsv23_after_pcv_weeks"),
                given_doses(schedule, "PPSV23", valid_from, protocol_dates=True),
                protocol_rule=rule,
                protocol_dates=True,
            ),
        )
    for code in v.after_chemotherapy_live:
        live = schedule_series(
            schedule,
            Series(
                code,
                1,
                start,
                schedule.live_blocks,
                f"live booster {v.after_chemotherapy_live_months} months after the end of "
                "chemotherapy, in remission (IDSA 2013 rec. 73: the clinician confirms it), "
                "off immunosuppression and clear of immunoglobulin",
                ctx.cite("vaccination.after_chemotherapy_live_months"),
                given_doses(schedule, code, valid_from),
                protocol_rule=rule,
            ),
        )
        complete_the_series(schedule, code, live, schedule.live_blocks)


def complete_the_series(
    schedule: Schedule, code: str, booster: list[VaccineDose], blocks: tuple[Block, ...]
) -> list[VaccineDose]:
    """§4.2: the booster after chemotherapy is the next dose of a series the child had not
    completed before it (a course started in infancy): the doses CDSi still forecasts
    after the booster follow it, at ACIP's ages and intervals, as IDSA 2013 rec. 73 has
    it ("according to the CDC schedule routinely indicated") and AIEOP's "booster or
    vaccination" (Cesaro 2014); an interrupted series is continued, not restarted (ACIP
    general best practice). A series complete with the booster gets nothing more."""
    if not booster:
        return []
    group = schedule.cdsi.group_of(code)
    if group is None:
        return []
    more = forecast_doses(schedule, code, group, blocks, booster[-1].due, after=booster[-1])
    if not more.doses:
        return []
    ctx = schedule.ctx
    schedule.plan.items.extend(more.doses)
    doses = ", ".join(f"{d.due} ({d.vaccine})" for d in more.doses)
    if ctx.facts.chemotherapy_end is not None:
        what = f"{code}: the series completed after the booster, {len(more.doses)} more dose(s)"
        why = (
            "the series was not complete before chemotherapy: after the booster on "
            f"{booster[-1].due} the child still needs the doses of the routine schedule "
            f"(continued, not restarted); doses on {doses} (CDSi's forecast over the doses "
            "that count: none given during chemotherapy, §4.1)"
        )
        sources = [CHEMO_SRC, ctx.cite("vaccination.after_chemotherapy_inactivated_months")]
    else:  # no chemotherapy (an infant on immunosuppressants): the routine infant series
        what = f"{code}: the routine series continued, {len(more.doses)} more dose(s)"
        why = (
            f"after the dose on {booster[-1].due} the child still needs the doses of the "
            f"routine schedule (continued, not restarted); doses on {doses} (CDSi's "
            "forecast: ACIP's ages and intervals)"
        )
        sources = []
    sources += ["ACIP general best practice (an interrupted series is not restarted)", CDSI_SRC]
    schedule.plan.decisions.append(
        Decision("vaccination", what, why, "; ".join(dict.fromkeys(sources)))
    )
    return list(more.doses)
