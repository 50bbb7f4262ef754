"""Immunoglobulin replacement: indication, route, dose, rhythm, troughs.

The section is docs/clinical-reference.md §3. A decision that prints a protocol
threshold cites that parameter's source as the protocol records it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Literal

from sidflows.protocol import Protocol
from sidflows.rules.bcells import cd19_limit, cd19_recovered
from sidflows.rules.context import PlanContext
from sidflows.rules.facts import Facts
from sidflows.rules.ig_continuation import (
    cause_continues,
    dose_in_use,
    steady_sc_note,
    trial_off_stop,
    trough_proposal,
)
from sidflows.rules.ig_dose import dose_for, round_to_vials
from sidflows.rules.model import Decision, IgDecision, IgStatus

EMA = "EMA core SmPC, human normal immunoglobulin (IV and SC), secondary immunodeficiency"
ASBMT = "ASBMT; Australian IG criteria"


def _route(ctx: PlanContext) -> tuple[Literal["iv", "sc"], str]:
    referral, facts = ctx.referral, ctx.facts
    if referral.preferences is not None and referral.preferences.ig_route is not None:
        return referral.preferences.ig_route, "the family's preference"
    if facts.on_ig_replacement and facts.last_ig_dose is not None:
        return facts.last_ig_dose.route, "the route already in use"
    return ctx.protocol.immunoglobulin.default_route, "the protocol default (day unit)"


def _after_car_t(ctx: PlanContext) -> bool:
    """In B-cell aplasia after CD19 CAR-T: the CAR-T indication and target apply (§3.6)."""
    return ctx.facts.after_car_t and ctx.facts.b_cell_depletion is not None


def trough_target(ctx: PlanContext) -> tuple[float, str]:
    ig = ctx.protocol.immunoglobulin
    if _after_car_t(ctx):
        return ig.trough_target_car_t_g_l, "B-cell aplasia after CD19 CAR-T (CHOP)"
    return ig.trough_target_g_l, ">= 5-6 g/L (SmPC), ideally 7 (Ontario): the cautious target"


def b_cells_recovered(facts: Facts, protocol: Protocol) -> bool | None:
    """A fresh CD19 at or above its lower limit (the lab's; without one, §2.13) and no
    depletion; None when it cannot be told (no fresh count)."""
    judged = cd19_recovered(facts.latest_cd19, facts.age_months, protocol)
    if judged is None:
        return None
    return judged[0] and facts.b_cell_depletion is None


def recovery_limit(facts: Facts, protocol: Protocol) -> tuple[str, tuple[str, ...]]:
    """The CD19 and the limit it was judged against, for a rationale, with the limit's
    parameters (§2.13)."""
    lab = facts.latest_cd19
    if lab is None or lab.cd19_per_ul is None:
        return "no fresh CD19 count", ()
    limit = cd19_limit(lab, facts.age_months, protocol)
    words = f"CD19 {lab.cd19_per_ul:g}/uL on {lab.date} vs {limit.shown}"
    return words, limit.source_paths


def _immunomodulatory_notes(ctx: PlanContext) -> list[Decision]:
    """Each immunomodulatory IV course of the record, said not to be replacement (§3.1)."""
    threshold = ctx.protocol.immunoglobulin.immunomodulatory_iv_min_g_per_kg
    return [
        Decision(
            "immunoglobulin",
            f"IV course of {c.g_per_kg:g} g/kg ({c.start} to {c.end}, {c.doses} dose(s)) not "
            "counted as replacement",
            f"an immunomodulatory dose (>= {threshold:g} g/kg a course, consecutive days "
            "summed; replacement is 0.2-0.6 g/kg IV every 3-4 weeks): it does not make the "
            "child on IG replacement, and an IgG measured after it reflects the infused IG; its "
            "interval before MMR or varicella still applies",
            ctx.cite("immunoglobulin.immunomodulatory_iv_min_g_per_kg"),
        )
        for c in ctx.facts.ig_immunomodulatory_courses
    ]


def decide_immunoglobulin(ctx: PlanContext) -> IgDecision:
    """Whether to start, continue or trial off IG replacement, and at what dose."""
    facts, protocol = ctx.facts, ctx.protocol
    ig = protocol.immunoglobulin
    route, route_why = _route(ctx)
    dosing = ig.route(route)
    target, target_why = trough_target(ctx)
    on_ig = facts.on_ig_replacement and bool(facts.ig_courses)
    g_per_kg, interval, use_note = dosing.g_per_kg, dosing.interval_days, "the protocol dose"
    proposal = None
    if on_ig:
        use = dose_in_use(ctx, route)
        g_per_kg, interval, use_note = use.g_per_kg, use.interval_days, use.note
        proposal = trough_proposal(ctx, dosing, route, use, target)
        if proposal is not None:
            g_per_kg, interval = proposal.g_per_kg, proposal.interval_days
    grams, dose_note = dose_for(dosing, facts.weight_kg, g_per_kg)
    per_kg = round(grams / facts.weight_kg, 2)
    igg = facts.latest_igg.igg_g_l if facts.latest_igg is not None else None
    infections = (
        f"{facts.recent_infections} infection(s) in {ig.infection_lookback_months} months "
        f"({facts.recent_serious} serious)"
    )

    def outcome(
        status: IgStatus,
        decision: str,
        rationale: str,
        source: str,
        sessions_until: date | None = None,
        asks: tuple[tuple[str, ...], str] | None = None,
    ) -> IgDecision:
        decisions = [Decision("immunoglobulin", decision, rationale, source)]
        decisions += _immunomodulatory_notes(ctx)
        loading = None
        gives = status in ("start", "continue") or sessions_until is not None
        if gives:
            decisions.append(
                Decision(
                    "immunoglobulin",
                    f"{route.upper()} {grams:g} g ({per_kg:g} g/kg) every {interval} days"
                    + (f" until {sessions_until}" if sessions_until else ""),
                    f"route: {route_why}; dose: {use_note}; {dose_note}",
                    ctx.cite(
                        f"immunoglobulin.{route}.g_per_kg", f"immunoglobulin.{route}.max_g_per_kg"
                    ),
                )
            )
            if proposal is not None:
                decisions.append(
                    Decision(
                        "immunoglobulin",
                        proposal.decision,
                        proposal.rationale,
                        ctx.cite(
                            *proposal.paths,
                            _target_path(ctx),
                            *(
                                ["immunoglobulin.sc_steady_max_interval_days"]
                                if steady_sc_note(ctx)
                                else []
                            ),
                        ),
                    )
                )
            decisions.append(
                Decision(
                    "immunoglobulin",
                    f"trough IgG every {ig.trough_every_months} months, target >= {target:g} g/L",
                    f"{target_why}; drawn before the dose (on the infusion day, or up to "
                    f"{ig.trough_window_days} days before); at least every 3-6 months, no "
                    "consensus: the cautious 3; steady state takes 3-6 months",
                    ctx.cite(
                        _target_path(ctx),
                        "immunoglobulin.trough_window_days",
                        "immunoglobulin.trough_every_months",
                        "immunoglobulin.steady_state_months",
                    ),
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
                        ctx.cite(f"immunoglobulin.{route}.loading_g_per_kg"),
                    )
                )
            elif status == "start":
                decisions.append(
                    Decision(
                        "immunoglobulin",
                        "no loading dose proposed",
                        f"a loading dose is allowed ({'0.4-0.8' if route == 'iv' else '0.2-0.5'} "
                        "g/kg once) but not proposed by the protocol: clinician's choice",
                        ctx.cite(f"immunoglobulin.{route}.propose_loading"),
                    )
                )
        return IgDecision(
            status,
            route,
            grams,
            per_kg,
            target,
            tuple(decisions),
            loading,
            interval,
            sessions_until,
            asks,
        )

    if on_ig:
        course = facts.ig_courses[-1]
        continuing = cause_continues(ctx)
        recovered = b_cells_recovered(facts, protocol)
        if not continuing and recovered:
            stop = trial_off_stop(ctx)
            when = (
                "now (in the season)"
                if stop is None
                else f"from {stop}, the start of the season (sessions until then)"
            )
            return outcome(
                "trial_off",
                f"propose a trial off IG {when}, IgG recheck {ig.trial_off_recheck_months} "
                "months after stopping",
                "the cause has ended and B cells have recovered ("
                f"{recovery_limit(facts, protocol)[0]}); a seasonal trial off "
                f"({ig.trial_off_season_start} to {ig.trial_off_season_end}) was studied in "
                "mild secondary immunodeficiency; no guideline rule for stopping",
                ctx.cite(
                    "immunoglobulin.trial_off_season_start",
                    "immunoglobulin.trial_off_season_end",
                    "immunoglobulin.trial_off_recheck_months",
                    *recovery_limit(facts, protocol)[1],
                ),
                sessions_until=stop,
            )
        why = (
            f"on IG replacement (last course {course.start}, {course.g_per_kg:g} g/kg "
            f"{course.route}): continued until the plan proposes a trial off"
        )
        if continuing:
            why += f"; the cause continues: {'; '.join(continuing)}"
        elif recovered is None:
            why += "; the cause has ended but B-cell recovery is not shown (no fresh CD19)"
        else:
            why += f"; B cells not recovered: {recovery_limit(facts, protocol)[0]}"
        steady = steady_sc_note(ctx)
        if steady and facts.latest_trough is not None:
            why += f"; trough IgG {facts.latest_trough.igg_g_l:g} g/L: {steady}"
        odd = facts.igg_on_ig_not_trough
        if odd is not None and odd.igg_g_l is not None:
            why += (
                f"; IgG {odd.igg_g_l:g} g/L on {odd.date} was measured on IG and is not a "
                "trough (not drawn before a dose): not used for the dose or the indication"
            )
        return outcome(
            "continue",
            "continue IG replacement",
            why,
            ctx.cite(
                "immunoglobulin.on_replacement_within_intervals",
                "immunoglobulin.home_log_lag_days",
                *(["immunoglobulin.sc_steady_max_interval_days"] if steady else []),
            ),
        )

    if igg is None:
        stale = f" (stale: {', '.join(facts.stale)})" if facts.stale else ""
        confounded = "".join(
            f"; IgG of {c.lab.date} not used: confounded by the immunomodulatory IV course of "
            f"{c.course.start} until {c.until}"
            for c in facts.confounded_igg
        )
        return outcome(
            "no_data",
            "no IG decision: no recent IgG result",
            "IgG, IgA, IgM and a CD19 count are needed before deciding on replacement"
            + stale
            + confounded,
            ctx.cite(
                "reassessment.result_valid_months",
                "immunoglobulin.start_below_g_l_with_infections",
                *(["immunoglobulin.immunomodulatory_washout_months"] if confounded else []),
            ),
        )
    severe_or_recurrent = facts.recent_serious > 0 or facts.recurrent_infections
    if facts.after_car_t:
        return _car_t_indication(ctx, igg, severe_or_recurrent, infections, outcome)
    fold = facts.latest_fold_rise.pneumococcal_fold_rise if facts.latest_fold_rise else None
    titres = protocol.reassessment.pneumococcal_titres
    if igg < ig.start_below_g_l_any:
        return outcome(
            "start",
            "start IG replacement",
            f"IgG {igg:g} g/L < {ig.start_below_g_l_any:g} g/L: indicated whatever the "
            f"infections ({infections})",
            ctx.cite("immunoglobulin.start_below_g_l_any"),
        )
    if (
        igg < ig.start_below_g_l_with_infections
        and severe_or_recurrent
        and facts.diagnosis_group in ig.protein_losing_groups
        and b_cells_recovered(facts, protocol) is True
    ):
        return outcome(
            "not_indicated",
            "IG replacement not started by the rule: a low IgG in a protein-losing state, "
            "clinician decision",
            f"IgG {igg:g} g/L < {ig.start_below_g_l_with_infections:g} g/L with severe or "
            f"recurrent infections ({infections}), in "
            f"{ctx.referral.diagnosis.label} ({facts.diagnosis_group}) with B cells present "
            f"({recovery_limit(facts, protocol)[0]}): a urinary loss of IgG is likely, not a "
            "failed production; check proteinuria and albumin with the "
            "IgG, repeat it in remission and measure a specific antibody response before "
            f"replacement (a pneumococcal rise below {ig.antibody_failure_fold_rise:g}-fold "
            "with recurrent infections would indicate it): recheck at reassessment",
            ctx.cite(
                "immunoglobulin.protein_losing_groups",
                "immunoglobulin.start_below_g_l_with_infections",
            ),
            asks=(
                ("urine protein:creatinine ratio", "albumin", titres),
                "the IG decision asks for them: the urinary loss of IgG, and the baseline of a "
                "specific antibody response (drawn before any vaccine of the day)",
            ),
        )
    if igg < ig.start_below_g_l_with_infections and severe_or_recurrent:
        return outcome(
            "start",
            "start IG replacement",
            f"IgG {igg:g} g/L < {ig.start_below_g_l_with_infections:g} g/L with severe or "
            f"recurrent infections ({infections})",
            ctx.cite("immunoglobulin.start_below_g_l_with_infections"),
        )
    if fold is not None and fold < ig.antibody_failure_fold_rise and facts.recurrent_infections:
        return outcome(
            "start",
            "start IG replacement",
            f"specific antibody failure (pneumococcal rise {fold:g}-fold < "
            f"{ig.antibody_failure_fold_rise:g}) with recurrent infections ({infections})",
            ctx.cite("immunoglobulin.antibody_failure_fold_rise"),
        )
    if igg < facts.igg_lower_limit_g_l:
        below = (
            f"IgG {igg:g} g/L is below the lower limit {facts.igg_lower_limit_g_l:g} g/L "
            f"({facts.igg_lower_limit_source})"
        )
        if not severe_or_recurrent:
            why = f"{below} but without severe or recurrent infections ({infections})"
        else:  # the infections are there: what is missing is the level, or a failed response
            why = (
                f"{below} with severe or recurrent infections ({infections}), but not below "
                f"the {ig.start_below_g_l_with_infections:g} g/L the indication asks for"
            )
            if facts.recurrent_infections:
                why += (
                    "; no specific antibody response measured: a pneumococcal rise below "
                    f"{ig.antibody_failure_fold_rise:g}-fold would indicate it"
                    if fold is None
                    else f"; the pneumococcal response rose {fold:g}-fold"
                )
        why += ": recheck at reassessment"
        response = (
            "the IG decision asks for a specific antibody response: its baseline (drawn "
            "before any vaccine of the day)"
        )
        unmeasured = severe_or_recurrent and facts.recurrent_infections and fold is None
        return outcome(
            "not_indicated",
            "IG replacement not indicated",
            why,
            f"{ASBMT}; {ctx.cite('immunoglobulin.start_below_g_l_with_infections')}"
            + (
                f"; {ctx.cite('immunoglobulin.antibody_failure_fold_rise')}"
                if facts.recurrent_infections
                else ""
            ),
            asks=((titres,), response) if unmeasured else None,
        )
    return outcome(
        "not_indicated",
        "IG replacement not indicated",
        f"IgG {igg:g} g/L is within range (lower limit {facts.igg_lower_limit_g_l:g} g/L, "
        f"{facts.igg_lower_limit_source}); {infections}",
        ctx.cite("igg_lower_limit", "immunoglobulin.start_below_g_l_with_infections"),
    )


def _target_path(ctx: PlanContext) -> str:
    return (
        "immunoglobulin.trough_target_car_t_g_l"
        if _after_car_t(ctx)
        else "immunoglobulin.trough_target_g_l"
    )


def _car_t_indication(
    ctx: PlanContext,
    igg: float,
    severe_or_recurrent: bool,
    infections: str,
    outcome: Callable[[IgStatus, str, str, str], IgDecision],
) -> IgDecision:
    """After CD19 CAR-T: the protocol's own indication (§3.6), not the generic rule."""
    ig = ctx.protocol.immunoglobulin
    depletion = ctx.facts.b_cell_depletion
    if depletion is not None and ig.car_t_aplasia_indicates:
        return outcome(
            "start",
            "start IG replacement (B-cell aplasia after CAR-T)",
            f"{depletion.reason}; children in B-cell aplasia after CD19 CAR-T are kept on "
            f"replacement whatever the IgG (IgG {igg:g} g/L; {infections})",
            ctx.cite("immunoglobulin.car_t_aplasia_indicates", *depletion.source_paths),
        )
    if igg <= ig.car_t_start_at_or_below_g_l:
        return outcome(
            "start",
            "start IG replacement (after CAR-T)",
            f"IgG {igg:g} g/L <= {ig.car_t_start_at_or_below_g_l:g} g/L after CAR-T ({infections})",
            ctx.cite("immunoglobulin.car_t_start_at_or_below_g_l"),
        )
    if igg < ig.car_t_start_below_g_l_with_infections and severe_or_recurrent:
        return outcome(
            "start",
            "start IG replacement (after CAR-T)",
            f"IgG {igg:g} g/L < {ig.car_t_start_below_g_l_with_infections:g} g/L after CAR-T "
            f"with serious or recurrent infections ({infections})",
            ctx.cite("immunoglobulin.car_t_start_below_g_l_with_infections"),
        )
    return outcome(
        "not_indicated",
        "IG replacement not indicated now (after CAR-T)",
        f"IgG {igg:g} g/L after CAR-T, above {ig.car_t_start_at_or_below_g_l:g} g/L and not "
        f"below {ig.car_t_start_below_g_l_with_infections:g} g/L with serious or recurrent "
        f"infections ({infections}); B cells: "
        + ("recovered" if depletion is None else depletion.reason),
        ctx.cite(
            "immunoglobulin.car_t_start_at_or_below_g_l",
            "immunoglobulin.car_t_start_below_g_l_with_infections",
        ),
    )


__all__ = [
    "IgDecision",
    "b_cells_recovered",
    "decide_immunoglobulin",
    "dose_for",
    "round_to_vials",
    "trough_target",
]
