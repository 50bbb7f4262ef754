"""A child already on immunoglobulin: the dose in use, the trough, the cause, the trial off.

The sections are docs/clinical-reference.md §3.5 to §3.8. A child on IG stays on IG
until the plan decides otherwise: only a trial off, when the cause has ended and the B
cells have recovered, in the protocol's season, stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sidflows.calendar import add_months
from sidflows.protocol import RouteDosing
from sidflows.rules.context import PlanContext
from sidflows.rules.igrecord import on_steady_sc


@dataclass(frozen=True, slots=True)
class DoseInUse:
    g_per_kg: float
    interval_days: int
    note: str


def dose_in_use(ctx: PlanContext, route: str) -> DoseInUse:
    """The newest course's g/kg and the interval in use, kept within the route's range (§3.8)."""
    facts = ctx.facts
    dosing = ctx.protocol.immunoglobulin.route(route)
    course = facts.ig_courses[-1]
    used = ctx.protocol.immunoglobulin.route(course.route)
    interval = facts.ig_interval_in_use_days or used.interval_days
    g_per_kg = course.g_per_kg
    what = f"{course.g_per_kg:g} g/kg {course.route.upper()} on {course.start}" + (
        f" ({course.doses} days)" if course.doses > 1 else ""
    )
    notes = [f"the dose in use: {what}, every {interval} days"]
    if course.route != route:
        # A route change keeps the monthly total (EMA core SmPC SCIg: 0.4-0.8 g/kg a month).
        g_per_kg = g_per_kg / interval * dosing.interval_days
        notes.append(
            f"{course.route.upper()} to {route.upper()}: the same total per day, "
            f"{g_per_kg:.2f} g/kg every {dosing.interval_days} days"
        )
        interval = dosing.interval_days
    low, high = dosing.min_g_per_kg, dosing.max_g_per_kg
    if g_per_kg > high + 1e-9:
        notes.append(f"above the protocol's maximum {high:g} g/kg: {high:g} g/kg")
        g_per_kg = high
    elif g_per_kg < low - 1e-9:
        notes.append(f"below the protocol's minimum {low:g} g/kg: {low:g} g/kg")
        g_per_kg = low
    shortest = dosing.interval_days - dosing.window_days_early
    if not shortest <= interval <= dosing.interval_days:
        interval = dosing.interval_days
    return DoseInUse(round(g_per_kg, 4), interval, "; ".join(notes))


@dataclass(frozen=True, slots=True)
class TroughProposal:
    g_per_kg: float
    interval_days: int
    decision: str
    rationale: str
    paths: tuple[str, ...]


_FOUR_WEEKS = 28  # days: the dose-trough slopes are per 0.1 g/kg every 3-4 weeks (a month)


def _per_four_weeks(g_per_kg: float, interval_days: int) -> float:
    return g_per_kg * _FOUR_WEEKS / interval_days


def trough_proposal(
    ctx: PlanContext, dosing: RouteDosing, route: str, use: DoseInUse, target: float
) -> TroughProposal | None:
    """A trough below the indication's target (§3.11): the smallest change that reaches
    it by the published dose-trough slope, within the route's maximum and shortest
    interval: a shorter interval, else a higher dose, else both."""
    trough = ctx.facts.latest_trough
    if trough is None or trough.igg_g_l is None or trough.igg_g_l >= target:
        return None
    igg = trough.igg_g_l
    rise = dosing.trough_rise_g_l_per_0_1_g_kg_month
    now = _per_four_weeks(use.g_per_kg, use.interval_days)
    needed = now + 0.1 * (target - igg) / rise
    why = (
        f"trough IgG {igg:g} g/L on {trough.date} below the target {target:g} g/L: "
        "review the dose (an early plan review is booked); "
        f"estimated need {needed:.2f} g/kg every 4 weeks instead of {now:.2f} "
        f"({rise:g} g/L of trough for each 0.1 g/kg more every 4 weeks, a published "
        "regression: an estimate, not a prediction for this child)"
    )
    steady = steady_sc_note(ctx)
    if steady:
        why += f"; {steady}"
    shortest = dosing.interval_days - dosing.window_days_early
    top = dosing.max_g_per_kg
    paths = (
        f"immunoglobulin.{route}.trough_rise_g_l_per_0_1_g_kg_month",
        f"immunoglobulin.{route}.max_g_per_kg",
        f"immunoglobulin.{route}.window_days_early",
    )

    def expected(g_per_kg: float, interval: int) -> float:
        return igg + (_per_four_weeks(g_per_kg, interval) - now) / 0.1 * rise

    def proposal(g_per_kg: float, interval: int, what: str, how: str) -> TroughProposal:
        short = expected(g_per_kg, interval) < target - 0.05
        tail = (
            f"; expected trough about {expected(g_per_kg, interval):.1f} g/L, still below "
            f"the target at the protocol's maximum ({top:g} g/kg, every {shortest} days at "
            "the shortest): clinician decision (a dose beyond the protocol, adherence, "
            "protein loss, product, route)"
            if short
            else f"; expected trough about {expected(g_per_kg, interval):.1f} g/L"
        )
        return TroughProposal(
            round(g_per_kg, 4), interval, f"proposed: {what}", f"{why}; {how}{tail}", paths
        )

    if use.interval_days <= shortest and use.g_per_kg >= top - 1e-9:
        return TroughProposal(
            use.g_per_kg,
            use.interval_days,
            "trough below target at the protocol's maximum dose and shortest interval",
            f"{why}; {use.g_per_kg:g} g/kg every {use.interval_days} days is the protocol's "
            "maximum: clinician decision (adherence, protein loss, product, route)",
            paths,
        )
    if use.interval_days > shortest and _per_four_weeks(use.g_per_kg, shortest) >= needed:
        return proposal(
            use.g_per_kg,
            shortest,
            f"every {shortest} days instead of {use.interval_days}, same dose",
            f"the shortest interval of the route's range ({shortest}-{dosing.interval_days} "
            "days) gives the estimated need at the same dose",
        )
    at_interval = needed * use.interval_days / _FOUR_WEEKS
    if use.g_per_kg < top - 1e-9 and at_interval <= top + 1e-9:
        return proposal(
            max(at_interval, use.g_per_kg),
            use.interval_days,
            f"{at_interval:.2f} g/kg instead of {use.g_per_kg:g} g/kg, every "
            f"{use.interval_days} days",
            "a higher dose at the interval in use gives the estimated need, within the "
            f"protocol's maximum {top:g} g/kg",
        )
    at_shortest = min(top, max(needed * shortest / _FOUR_WEEKS, use.g_per_kg))
    if shortest < use.interval_days and at_shortest <= use.g_per_kg + 1e-9:
        what = f"every {shortest} days instead of {use.interval_days}, at the maximum dose"
        how = (
            f"already at the protocol's maximum {top:g} g/kg: the shortest interval of the "
            f"route's range ({shortest}-{dosing.interval_days} days)"
        )
    elif shortest < use.interval_days:
        what = (
            f"{at_shortest:.2f} g/kg every {shortest} days instead of {use.g_per_kg:g} g/kg "
            f"every {use.interval_days}"
        )
        how = (
            "far below the target: a shorter interval alone or a higher dose alone does not "
            "give the estimated need; both, within the protocol's maximum "
            f"{top:g} g/kg and the shortest interval {shortest} days"
        )
    else:
        what = f"{at_shortest:.2f} g/kg instead of {use.g_per_kg:g} g/kg"
        how = (
            f"already every {use.interval_days} days, the shortest of the route's range: a "
            f"higher dose, within the protocol's maximum {top:g} g/kg"
        )
    return proposal(at_shortest, min(shortest, use.interval_days), what, how)


def steady_sc_note(ctx: PlanContext) -> str:
    """The rationale's words when the trough is an SC level read as a trough-equivalent."""
    facts, ig = ctx.facts, ctx.protocol.immunoglobulin
    trough = facts.latest_trough
    if trough is None or not on_steady_sc(
        trough, facts.ig_courses, facts.ig_interval_in_use_days, ig.sc_steady_max_interval_days
    ):
        return ""
    return (
        f"IgG of {trough.date} drawn on SC every {facts.ig_interval_in_use_days} days: levels "
        "are near-steady on weekly or more frequent SC, so any time point counts as a "
        "trough-equivalent (SCIG labels; AAAAI)"
    )


def cause_continues(ctx: PlanContext) -> list[str]:
    """What still causes the deficiency today (empty: the cause has ended)."""
    facts, referral, g = ctx.facts, ctx.referral, ctx.protocol.grading
    found = [f"{t.drug} ({t.drug_class.replace('_', ' ')}) ongoing" for t in facts.active]
    found += [f"{t.drug} planned from {t.start}" for t in facts.planned]
    if facts.chemotherapy_ongoing and not facts.active:
        found.append("chemotherapy ongoing")
    if facts.b_cell_depletion is not None:
        found.append(facts.b_cell_depletion.reason)
    if referral.hsct is not None:
        if referral.hsct.active_gvhd:
            found.append("active GVHD")
        until = add_months(referral.hsct.date, g.hsct_high_months)
        if ctx.today < until:
            found.append(f"HSCT on {referral.hsct.date}: immune reconstitution until {until}")
    return found


def in_season(day: date, start: str, end: str) -> bool:
    md = day.strftime("%m-%d")
    return start <= md <= end if start <= end else (md >= start or md <= end)


def next_season_start(day: date, start: str) -> date:
    month, dom = (int(x) for x in start.split("-"))
    candidate = date(day.year, month, dom)
    return candidate if candidate >= day else date(day.year + 1, month, dom)


def trial_off_stop(ctx: PlanContext) -> date | None:
    """None: stop now (in the season); else the day the season starts (sessions until then)."""
    ig = ctx.protocol.immunoglobulin
    if in_season(ctx.start, ig.trial_off_season_start, ig.trial_off_season_end):
        return None
    return next_season_start(ctx.start, ig.trial_off_season_start)
