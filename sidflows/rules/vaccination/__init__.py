"""Vaccination reinforcement: boosters, influenza, pneumococcal, live-vaccine blocks (§4).

The section is docs/clinical-reference.md §4. Every cause that keeps a vaccine
from being given is a :class:`Block` with the dates it holds between and its
source (:mod:`.blocks`). A dose is scheduled on the first hospital working day
that no block holds (:mod:`.series`); a live vaccine that no day of the horizon
frees is deferred, with every block that holds it back. Which doses are due
depends on the child's history: after HSCT (:mod:`.hsct`), after chemotherapy
(:mod:`.chemotherapy`) or under immunosuppression otherwise
(:mod:`.immune_mediated`), the reinforcement only for a child with a risk condition
(:mod:`.risk`); HPV and MenACWY (:mod:`.adolescent`); influenza every season
(:mod:`.influenza`); and for every child the routine catch-up of the missing doses
CDSi forecasts (:mod:`.routine`).
"""

from __future__ import annotations

from datetime import timedelta

from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import complement_inhibitor
from sidflows.rules.immunoglobulin import IgDecision
from sidflows.rules.model import Grading
from sidflows.rules.vaccination.administration import platelet_advice, visit_burden
from sidflows.rules.vaccination.adolescent import menacwy_after_hsct, plan_hpv
from sidflows.rules.vaccination.blocks import (
    first_free_day,
    holding,
    inactivated_blocks,
    influenza_blocks,
    is_live,
    live_vaccine_blocks,
)
from sidflows.rules.vaccination.cdsi_history import CdsiHistory, cdsi_history, groups_for
from sidflows.rules.vaccination.chemotherapy import boost_after_chemotherapy
from sidflows.rules.vaccination.conditions import (
    chemotherapy_wait_applies,
    chemotherapy_without_wait,
)
from sidflows.rules.vaccination.hsct import revaccinate_after_hsct
from sidflows.rules.vaccination.immune_mediated import anti_cd20_regimen, reinforce_immune_mediated
from sidflows.rules.vaccination.influenza import plan_influenza
from sidflows.rules.vaccination.meningococcal import plan_meningococcal
from sidflows.rules.vaccination.risk import risk_conditions
from sidflows.rules.vaccination.rotavirus import plan_rotavirus
from sidflows.rules.vaccination.routine import plan_routine_catch_up
from sidflows.rules.vaccination.series import Schedule, Series, VaccinationPlan
from sidflows.rules.vaccination.varicella import (
    exposures_and_household,
    salicylate_precaution,
    varicella_susceptibility,
)

__all__ = [
    "CdsiHistory",
    "Series",
    "VaccinationPlan",
    "first_free_day",
    "holding",
    "inactivated_blocks",
    "influenza_blocks",
    "is_live",
    "live_vaccine_blocks",
    "plan_vaccination",
    "vaccine_groups_needed",
]


def vaccine_groups_needed(ctx: PlanContext) -> set[str]:
    """The CDSi vaccine groups of the vaccines this child's plan may give (the engine
    forecasts only these: one call per plan, kept fast)."""
    v = ctx.protocol.vaccination
    referral = ctx.referral
    if referral.hsct is not None:
        h = v.hsct
        codes = ["PCV", "PPSV23", *h.inactivated, *h.live]
    elif chemotherapy_wait_applies(ctx):
        ended = ctx.facts.chemotherapy_end is not None
        codes = [*v.after_chemotherapy_inactivated, "PPSV23"] if ended else []
        codes += v.after_chemotherapy_live if ended else []
    else:
        codes = [*v.immune_mediated_inactivated, "PPSV23", *v.immune_mediated_live]
    if any(complement_inhibitor(t, ctx.protocol) is not None for t in ctx.referral.treatments):
        codes += ["MenACWY", "MenB", "Hib", "PCV", "PPSV23"]
    if not ctx.facts.chemotherapy_ongoing:
        codes += [*v.routine_catch_up, "HPV", "MenACWY"]
    return groups_for([*codes, "IIV"])


def plan_vaccination(ctx: PlanContext, *, ig: IgDecision, grading: Grading) -> VaccinationPlan:
    """Boosters, influenza and pneumococcal doses of the horizon, and deferred live vaccines.

    ``grading`` is the plan's grading of ``ctx.today`` (the live-vaccine blocks read it).
    """
    plan = VaccinationPlan()
    cdsi = cdsi_history(ctx, ig=ig, groups=vaccine_groups_needed(ctx))
    plan.decisions.extend(cdsi.decisions())
    schedule = Schedule(
        ctx=ctx,
        live_blocks=tuple(live_vaccine_blocks(ctx, ig=ig, grading=grading)),
        plan=plan,
        gap=timedelta(days=ctx.protocol.vaccination.min_dose_interval_days),
        cdsi=cdsi,
        risk=risk_conditions(ctx, grading),
    )
    if ctx.referral.hsct is not None:
        revaccinate_after_hsct(schedule)
        menacwy_after_hsct(schedule)
    elif chemotherapy_wait_applies(ctx):
        boost_after_chemotherapy(schedule)
    else:
        plan.decisions.extend(chemotherapy_without_wait(ctx))
        reinforce_immune_mediated(schedule)
        anti_cd20_regimen(schedule)
    plan_hpv(schedule)
    plan_influenza(schedule)
    plan_meningococcal(schedule)
    # Rotavirus and BCG, the live vaccines of infancy (§4.17).
    plan_rotavirus(schedule, grading)
    # Varicella without evidence of immunity: what protects the child meanwhile (§4.20).
    varicella_susceptibility(schedule, grading)
    exposures_and_household(schedule, grading)
    # Last: every vaccine group the rules above left (§4.16).
    plan_routine_catch_up(schedule)
    # Over the doses planned above: long-term aspirin and varicella vaccine (§4.14).
    salicylate_precaution(schedule)
    platelet_advice(schedule)
    visit_burden(schedule)
    return plan
