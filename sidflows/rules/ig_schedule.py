"""IG sessions and trough checks on the unit's calendar (docs/clinical-reference.md §3)."""

from __future__ import annotations

from datetime import date, timedelta
from math import ceil
from typing import Literal

from sidflows.calendar import add_months
from sidflows.protocol import RouteDosing
from sidflows.rules.context import PlanContext
from sidflows.rules.model import Decision, IgDecision, IgSession, IgTrough

EMA = "EMA core SmPC, human normal immunoglobulin (IV and SC), secondary immunodeficiency"


def session_minutes(dosing: RouteDosing, dose_g: float, weight_kg: float, *, first: bool) -> int:
    """Infusion time at the escalating rates, plus observation after."""
    volume = dose_g / dosing.concentration_g_l * 1000.0
    minutes = 0.0
    steps = dosing.rate_steps_ml_kg_h
    for i, rate in enumerate(steps):
        per_minute = rate * weight_kg / 60.0
        span = float(dosing.rate_step_minutes) if i < len(steps) - 1 else volume / per_minute
        given = min(volume, per_minute * span)
        minutes += given / per_minute
        volume -= given
        if volume <= 1e-9:
            break
    observe = dosing.observe_first_minutes if first else dosing.observe_minutes
    return ceil(minutes) + observe


def ig_schedule(
    ctx: PlanContext, *, ig: IgDecision
) -> tuple[list[IgSession | IgTrough], list[Decision]]:
    """The sessions and trough checks of the horizon, on the unit's calendar."""
    if not ig.gives_ig:
        return [], []
    facts, protocol, calendar = ctx.facts, ctx.protocol, ctx.calendar
    start, horizon_end = ctx.start, ctx.horizon_end
    dosing = protocol.immunoglobulin.route(ig.route)
    interval = timedelta(days=ig.interval_days or dosing.interval_days)
    last = facts.last_ig_dose
    continuing = ig.status in ("continue", "trial_off") and last is not None
    # Counted from the newest IG dose of any kind: an immunomodulatory course after the
    # last replacement dose (§3.1) raises the IgG more, and is not followed sooner.
    newest = max((d.date for d in ctx.referral.immunoglobulin_doses), default=None)
    nominal = max(start, newest + interval) if continuing and newest is not None else start
    overdue = _overdue(ctx, ig, newest, interval) if continuing else []
    new_to_home = ig.route == "sc" and not (continuing and last is not None and last.route == "sc")
    supervised_left = dosing.supervised_sessions if new_to_home else 0
    first_ever = not continuing
    long_gap = continuing and last is not None and (nominal - last.date).days > dosing.long_gap_days
    items: list[IgSession | IgTrough] = []
    decisions: list[Decision] = [*overdue]
    n = 0
    stop = ig.sessions_until if ig.status == "trial_off" else None
    while nominal <= horizon_end and (stop is None or nominal < stop):
        n += 1
        setting: Literal["day_unit", "supervised", "home"]
        if ig.route == "iv":
            setting = "day_unit"
        elif supervised_left > 0:
            setting, supervised_left = "supervised", supervised_left - 1
        else:
            setting = "home"
        hospital = setting != "home"
        due = calendar.next_working_day(nominal) if hospital else nominal
        earliest = max(start, nominal - timedelta(days=dosing.window_days_early))
        if stop is not None and due >= stop:
            # A trial off: no session on or after the stop day (§3.7). A closed day before
            # it takes the last working day before instead, within the session's window.
            due = next(
                (
                    day
                    for day in (
                        stop - timedelta(days=k) for k in range(1, (stop - earliest).days + 1)
                    )
                    if calendar.is_working_day(day)
                ),
                stop,
            )
            if due >= stop:
                break
        if due > horizon_end:
            break
        grams = ig.loading_dose_g if (n == 1 and ig.loading_dose_g) else ig.dose_g
        first_session = n == 1 and (first_ever or long_gap)
        minutes = (
            session_minutes(dosing, grams, facts.weight_kg, first=first_session)
            if ig.route == "iv"
            else None
        )
        items.append(
            IgSession(
                key=f"ig_session:{due}",
                due=due,
                hospital=hospital,
                route=ig.route,
                dose_g=grams,
                dose_g_per_kg=round(grams / facts.weight_kg, 2),
                earliest=earliest,
                latest=due,
                setting=setting,
                session_minutes=minutes,
                loading=bool(n == 1 and ig.loading_dose_g),
            )
        )
        nominal += interval
    if ig.route == "iv" and items:
        longest = max(i.session_minutes or 0 for i in items if isinstance(i, IgSession))
        open_minutes = calendar.config.day_unit.open_minutes
        if longest > open_minutes:
            decisions.append(
                Decision(
                    "immunoglobulin",
                    f"a session needs {longest} min, longer than the day unit's {open_minutes} min",
                    "infusion at 0.5 mL/kg/h for 30 min rising to 6 mL/kg/h, then observation: "
                    "split the dose over two days or review the rate",
                    EMA,
                )
            )
    if new_to_home and dosing.supervised_sessions:
        decisions.append(
            Decision(
                "immunoglobulin",
                f"first {dosing.supervised_sessions} SC sessions supervised by the home-care nurse",
                "home route needs nurse training visits before the first home infusion",
                ctx.cite(f"immunoglobulin.{ig.route}.supervised_sessions"),
            )
        )
    # Sessions go on until a trial off's stop (§3.7): so do their troughs, before it.
    if ig.status != "trial_off" or stop is not None:
        items.extend(_troughs(ctx, ig, items, continuing=continuing, stop=stop))
    return items, decisions


def _overdue(
    ctx: PlanContext, ig: IgDecision, newest: date | None, interval: timedelta
) -> list[Decision]:
    """The next session was due before the plan's first booking day: said, so the day unit
    gives it as soon as it can rather than at the booking lead (§3.2)."""
    if newest is None or newest + interval >= ctx.start:
        return []
    last = ctx.facts.last_ig_dose
    if ig.route != "iv" or last is None or last.route != "iv":
        return []  # a home SC log may be weeks behind (§3.8): not an overdue session
    was_due = newest + interval
    dosing = ctx.protocol.immunoglobulin.route(ig.route)
    return [
        Decision(
            "immunoglobulin",
            f"IG session overdue since {was_due}: give it as soon as possible",
            f"the last dose was on {newest}: at this plan's interval of {interval.days} days "
            f"the next was due on {was_due}, before the plan's first booking day "
            f"({ctx.start}): bring the session forward where the day unit can (a gap lowers "
            f"the trough, and a gap over {dosing.long_gap_days} days restarts at the "
            "first-infusion rate)",
            ctx.cite(
                f"immunoglobulin.{ig.route}.interval_days",
                f"immunoglobulin.{ig.route}.long_gap_days",
            ),
        )
    ]


def _troughs(
    ctx: PlanContext,
    ig: IgDecision,
    sessions: list[IgSession | IgTrough],
    *,
    continuing: bool,
    stop: date | None = None,
) -> list[IgTrough]:
    facts, calendar, start, horizon_end = ctx.facts, ctx.calendar, ctx.start, ctx.horizon_end
    cfg = ctx.protocol.immunoglobulin
    if continuing:
        last_check = facts.latest_igg.date if facts.latest_igg is not None else None
        first = add_months(last_check, cfg.trough_every_months) if last_check else start
    else:
        first = add_months(start, cfg.steady_state_months)
    first = max(first, start)
    troughs: list[IgTrough] = []
    wanted = first
    iv_days = sorted(s.due for s in sessions if isinstance(s, IgSession) and s.route == "iv")
    while wanted <= horizon_end and (stop is None or wanted < stop):
        # Drawn before an IV infusion: the first session on or after the date.
        due = next((d for d in iv_days if d >= wanted), None) if iv_days else None
        if due is None:
            due = calendar.next_working_day(wanted)
        if due > horizon_end:
            break
        troughs.append(IgTrough(key=f"ig_trough:{due}", due=due, target_g_l=ig.trough_target_g_l))
        wanted = add_months(wanted, cfg.trough_every_months)
    return troughs
