"""Immunoglobulin replacement: indication, route, dose, rhythm, troughs (REFERENCE.md §3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from math import ceil
from typing import Literal

from sidflows.calendar import UnitCalendar, add_months
from sidflows.protocol import Protocol, RouteDosing
from sidflows.referral import Referral
from sidflows.rules.facts import Facts
from sidflows.rules.model import Decision, IgSession, IgTrough

EMA = "EMA core SmPC, human normal immunoglobulin (IV and SC), secondary immunodeficiency"
AAAAI = "AAAAI work group 2022 (Otani, JACI 149:1525)"
ASBMT = "ASBMT; Australian IG criteria"
TRIAL_OFF = "Immunotherapy 2021;13:1491 (seasonal trial off IG); recheck interval: unit policy"

Status = Literal["start", "continue", "trial_off", "not_indicated", "no_data"]

_UNIT = 0.1  # grams: resolution of the vial arithmetic


@dataclass(frozen=True, slots=True)
class IgDecision:
    status: Status
    route: Literal["iv", "sc"]
    dose_g: float
    dose_g_per_kg: float
    trough_target_g_l: float
    decisions: tuple[Decision, ...]
    loading_dose_g: float | None = None

    @property
    def gives_ig(self) -> bool:
        return self.status in ("start", "continue")


@cache
def _achievable(vials: tuple[float, ...], max_units: int) -> frozenset[int]:
    """Every total (in 0.1 g units) that whole vials can make, up to ``max_units``."""
    sizes = sorted({round(v / _UNIT) for v in vials})
    reach = [False] * (max_units + 1)
    reach[0] = True
    for total in range(1, max_units + 1):
        reach[total] = any(total >= s and reach[total - s] for s in sizes)
    return frozenset(i for i in range(1, max_units + 1) if reach[i])


def round_to_vials(
    target_g: float, low_g: float, high_g: float, vials: tuple[float, ...]
) -> tuple[float, bool]:
    """The whole-vial total nearest ``target_g`` within [low_g, high_g].

    Ties go to the lower total. Returns (grams, exact) where exact is False when
    no whole-vial total fits the range and the exact dose (a partial vial) is
    kept instead.
    """
    high_units = int(high_g / _UNIT + 1e-9)
    low_units = ceil(low_g / _UNIT - 1e-9)
    target_units = target_g / _UNIT
    made = _achievable(tuple(vials), max(high_units, 1))
    candidates = [u for u in made if low_units <= u <= high_units]
    if not candidates:
        # A partial vial, measured to 0.1 g, still inside [low_g, high_g]: plain
        # rounding of a target on the lower bound (SC 0.1 g/kg) would underdose.
        steps = range(max(low_units, 1), high_units + 1)
        if not steps:
            return round(target_g, 1), False
        best = min(steps, key=lambda u: (abs(u - target_units), u))
        return round(best * _UNIT, 1), False
    best = min(candidates, key=lambda u: (abs(u - target_units), u))
    return round(best * _UNIT, 1), True


def _route(referral: Referral, facts: Facts, protocol: Protocol) -> tuple[Literal["iv", "sc"], str]:
    if referral.preferences is not None and referral.preferences.ig_route is not None:
        return referral.preferences.ig_route, "the family's preference"
    if facts.on_ig_replacement and facts.last_ig_dose is not None:
        return facts.last_ig_dose.route, "the route already in use"
    return protocol.immunoglobulin.default_route, "the protocol default (day unit)"


def dose_for(
    dosing: RouteDosing, weight_kg: float, g_per_kg: float, *, ceiling_g_per_kg: float | None = None
) -> tuple[float, str]:
    """Grams for a g/kg dose, rounded to whole vials within [min, ceiling] g/kg.

    The ceiling is the route's maximum, except for a loading dose, whose own
    g/kg is its ceiling (it is larger than the maintenance maximum on purpose).
    """
    target = g_per_kg * weight_kg
    ceiling = dosing.max_g_per_kg if ceiling_g_per_kg is None else ceiling_g_per_kg
    grams, exact = round_to_vials(
        target,
        dosing.min_g_per_kg * weight_kg,
        ceiling * weight_kg,
        dosing.vial_sizes_g,
    )
    note = (
        f"{g_per_kg:g} g/kg x {weight_kg:g} kg = {target:.2f} g, rounded to whole vials "
        f"({', '.join(f'{v:g}' for v in dosing.vial_sizes_g)} g): {grams:g} g"
        if exact
        else f"{g_per_kg:g} g/kg x {weight_kg:g} kg = {grams:g} g: no whole-vial total fits "
        f"{dosing.min_g_per_kg:g}-{dosing.max_g_per_kg:g} g/kg, pharmacy to draw a partial vial"
    )
    return grams, note


def trough_target(referral: Referral, protocol: Protocol) -> tuple[float, str]:
    ig = protocol.immunoglobulin
    if any(t.drug_class == "car_t" for t in referral.treatments):
        return ig.trough_target_car_t_g_l, "B-cell aplasia after CD19 CAR-T (CHOP)"
    return ig.trough_target_g_l, ">= 5-6 g/L (SmPC), ideally 7 (Ontario): the cautious target"


def _cause_ended(facts: Facts, protocol: Protocol) -> bool:
    if facts.active or facts.planned or facts.chemotherapy_ongoing or facts.anti_cd20_ongoing:
        return False
    if facts.anti_cd20_last is not None:
        recovered_from = add_months(
            facts.anti_cd20_last, protocol.grading.anti_cd20_depletion_months
        )
        if facts.today < recovered_from:
            return False
    return True


def b_cells_recovered(facts: Facts) -> bool | None:
    """CD19 at or above the laboratory's lower limit; None when it cannot be told."""
    lab = facts.latest_cd19
    if lab is None or lab.cd19_per_ul is None or lab.cd19_lower_limit_per_ul is None:
        return None
    return lab.cd19_per_ul >= lab.cd19_lower_limit_per_ul


def decide_immunoglobulin(referral: Referral, facts: Facts, protocol: Protocol) -> IgDecision:
    """Whether to start, continue or trial off IG replacement, and at what dose."""
    ig = protocol.immunoglobulin
    route, route_why = _route(referral, facts, protocol)
    dosing = ig.route(route)
    grams, dose_note = dose_for(dosing, facts.weight_kg, dosing.g_per_kg)
    target, target_why = trough_target(referral, protocol)
    per_kg = round(grams / facts.weight_kg, 2)
    igg = facts.latest_igg.igg_g_l if facts.latest_igg is not None else None
    infections = (
        f"{facts.recent_infections} infection(s) in {ig.infection_lookback_months} months "
        f"({facts.recent_serious} serious)"
    )

    def outcome(status: Status, decision: str, rationale: str, source: str) -> IgDecision:
        decisions = [Decision("immunoglobulin", decision, rationale, source)]
        loading = None
        if status in ("start", "continue"):
            decisions.append(
                Decision(
                    "immunoglobulin",
                    f"{route.upper()} {grams:g} g ({per_kg:g} g/kg) "
                    f"every {dosing.interval_days} days",
                    f"route: {route_why}; dose: {dose_note}",
                    EMA if route == "iv" else "EU SmPC, subcutaneous IG",
                )
            )
            decisions.append(
                Decision(
                    "immunoglobulin",
                    f"trough IgG every {ig.trough_every_months} months, target >= {target:g} g/L",
                    f"{target_why}; at least every 3-6 months, no consensus: the cautious 3; "
                    f"steady state takes 3-6 months",
                    "EMA SmPC; Ontario IVIG guidelines; CHOP (CAR-T)",
                )
            )
            if status == "start" and dosing.propose_loading:
                loading, note = dose_for(
                    dosing,
                    facts.weight_kg,
                    dosing.loading_g_per_kg,
                    ceiling_g_per_kg=dosing.loading_g_per_kg,
                )
                decisions.append(
                    Decision(
                        "immunoglobulin",
                        f"loading dose {loading:g} g at the first session",
                        note,
                        EMA,
                    )
                )
            elif status == "start":
                decisions.append(
                    Decision(
                        "immunoglobulin",
                        "no loading dose proposed",
                        f"a loading dose is allowed ({'0.4-0.8' if route == 'iv' else '0.2-0.5'} "
                        "g/kg once) but not proposed by the protocol: clinician's choice",
                        EMA,
                    )
                )
        return IgDecision(status, route, grams, per_kg, target, tuple(decisions), loading)

    if facts.on_ig_replacement and facts.last_ig_dose is not None:
        last = facts.last_ig_dose
        recovered = b_cells_recovered(facts)
        if _cause_ended(facts, protocol) and recovered:
            return outcome(
                "trial_off",
                f"propose a trial off IG, IgG recheck {ig.trial_off_recheck_months} months "
                "after stopping",
                f"the cause has ended and B cells have recovered (CD19 "
                f"{facts.latest_cd19.cd19_per_ul:g}/uL >= lab limit); a seasonal trial off "  # type: ignore[union-attr]
                f"({ig.trial_off_season_start} to {ig.trial_off_season_end}) was studied in "
                "mild secondary immunodeficiency; no guideline rule for stopping",
                TRIAL_OFF,
            )
        why = f"on IG replacement (last dose {last.date}, {last.g_per_kg:g} g/kg {last.route})"
        if recovered is None and _cause_ended(facts, protocol):
            why += "; the cause has ended but B-cell recovery is not shown (CD19 with lab limit)"
        trough = facts.latest_igg
        if igg is not None and trough is not None and trough.date > last.date and igg < target:
            why += (
                f"; trough IgG {igg:g} g/L on {trough.date} below target {target:g}: "
                "review the dose"
            )
        return outcome("continue", "continue IG replacement", why, EMA)

    if igg is None:
        return outcome(
            "no_data",
            "no IG decision: no IgG result",
            "IgG, IgA, IgM and a CD19 count are needed before deciding on replacement",
            EMA,
        )
    fold = facts.latest_fold_rise.pneumococcal_fold_rise if facts.latest_fold_rise else None
    if igg < ig.start_below_g_l_any:
        return outcome(
            "start",
            "start IG replacement",
            f"IgG {igg:g} g/L < {ig.start_below_g_l_any:g} g/L: indicated whatever the "
            f"infections ({infections})",
            AAAAI,
        )
    severe_or_recurrent = facts.recent_serious > 0 or facts.recurrent_infections
    if igg < ig.start_below_g_l_with_infections and severe_or_recurrent:
        return outcome(
            "start",
            "start IG replacement",
            f"IgG {igg:g} g/L < {ig.start_below_g_l_with_infections:g} g/L with severe or "
            f"recurrent infections ({infections})",
            EMA,
        )
    if fold is not None and fold < ig.antibody_failure_fold_rise and facts.recurrent_infections:
        return outcome(
            "start",
            "start IG replacement",
            f"specific antibody failure (pneumococcal rise {fold:g}-fold < "
            f"{ig.antibody_failure_fold_rise:g}) with recurrent infections ({infections})",
            EMA,
        )
    if igg < facts.igg_lower_limit_g_l:
        return outcome(
            "not_indicated",
            "IG replacement not indicated now",
            f"IgG {igg:g} g/L is below the lower limit {facts.igg_lower_limit_g_l:g} g/L "
            f"({facts.igg_lower_limit_source}) but without severe or recurrent infections "
            f"({infections}): recheck at reassessment",
            ASBMT,
        )
    return outcome(
        "not_indicated",
        "IG replacement not indicated",
        f"IgG {igg:g} g/L is within range (lower limit {facts.igg_lower_limit_g_l:g} g/L, "
        f"{facts.igg_lower_limit_source}); {infections}",
        EMA,
    )


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
    ig: IgDecision,
    facts: Facts,
    protocol: Protocol,
    calendar: UnitCalendar,
    *,
    start: date,
    horizon_end: date,
) -> tuple[list[IgSession | IgTrough], list[Decision]]:
    """The sessions and trough checks of the horizon, on the unit's calendar."""
    if not ig.gives_ig:
        return [], []
    dosing = protocol.immunoglobulin.route(ig.route)
    interval = timedelta(days=dosing.interval_days)
    last = facts.last_ig_dose
    continuing = ig.status == "continue" and last is not None
    nominal = max(start, last.date + interval) if continuing and last is not None else start
    new_to_home = ig.route == "sc" and not (continuing and last is not None and last.route == "sc")
    supervised_left = dosing.supervised_sessions if new_to_home else 0
    first_ever = not continuing
    long_gap = continuing and last is not None and (nominal - last.date).days > dosing.long_gap_days
    items: list[IgSession | IgTrough] = []
    decisions: list[Decision] = []
    n = 0
    while nominal <= horizon_end:
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
                earliest=max(start, nominal - timedelta(days=dosing.window_days_early)),
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
                "EU SmPC, subcutaneous IG",
            )
        )
    items.extend(_troughs(ig, facts, protocol, calendar, items, start, horizon_end, continuing))
    return items, decisions


def _troughs(
    ig: IgDecision,
    facts: Facts,
    protocol: Protocol,
    calendar: UnitCalendar,
    sessions: list[IgSession | IgTrough],
    start: date,
    horizon_end: date,
    continuing: bool,
) -> list[IgTrough]:
    cfg = protocol.immunoglobulin
    if continuing:
        last_check = facts.latest_igg.date if facts.latest_igg is not None else None
        first = add_months(last_check, cfg.trough_every_months) if last_check else start
    else:
        first = add_months(start, cfg.steady_state_months)
    first = max(first, start)
    troughs: list[IgTrough] = []
    wanted = first
    iv_days = sorted(s.due for s in sessions if isinstance(s, IgSession) and s.route == "iv")
    while wanted <= horizon_end:
        # Drawn before an IV infusion: the first session on or after the date.
        due = next((d for d in iv_days if d >= wanted), None) if iv_days else None
        if due is None:
            due = calendar.next_working_day(wanted)
        if due > horizon_end:
            break
        troughs.append(IgTrough(key=f"ig_trough:{due}", due=due, target_g_l=ig.trough_target_g_l))
        wanted = add_months(wanted, cfg.trough_every_months)
    return troughs
