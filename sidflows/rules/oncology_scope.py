"""Antibacterial and antifungal prophylaxis of oncology: outside this plan, and said so
(docs/clinical-reference.md §5.10).

A child treated for acute myeloid leukaemia, or profoundly neutropenic on chemotherapy, may
need levofloxacin (Lehrnbecher, Clin Infect Dis 2020;71:226) and mould-active antifungal
prophylaxis (Lehrnbecher, J Clin Oncol 2020;38:3205). The unit's plan does not prescribe
them: it says so, a decision for the clinician, instead of staying silent.
"""

from __future__ import annotations

from sidflows.calendar import add_months
from sidflows.referral import TreatmentEntry
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import classes_of, counts_as_immunosuppressive
from sidflows.rules.model import Decision


def _why(ctx: PlanContext) -> list[str]:
    facts, scope = ctx.facts, ctx.protocol.prophylaxis.outside_scope
    chemo_recent = facts.chemotherapy_ongoing or (
        facts.chemotherapy_end is not None
        and add_months(
            facts.chemotherapy_end, ctx.protocol.prophylaxis.pjp.after_chemotherapy_review_months
        )
        > ctx.today
    )
    found: list[str] = []
    group = facts.diagnosis_group
    # AML referred before any treatment is recorded (no chemotherapy, no transplant).
    never_treated = (
        facts.chemotherapy_end is None
        and not facts.chemotherapy_ongoing
        and ctx.referral.hsct is None
    )
    if group in scope.diagnosis_groups and (chemo_recent or never_treated):
        found.append(f"{ctx.referral.diagnosis.label} ({group})")
    anc = facts.latest_anc
    if (
        anc is not None
        and anc.anc_per_ul is not None
        and anc.anc_per_ul < scope.anc_below_per_ul
        and facts.chemotherapy_ongoing
    ):
        found.append(
            f"ANC {anc.anc_per_ul:g}/uL on {anc.date} (below {scope.anc_below_per_ul:g}/uL) "
            "on chemotherapy"
        )
    return found


def outside_scope_decision(ctx: PlanContext) -> Decision | None:
    """§5.10: for AML, or an ANC below the threshold on chemotherapy, the decision that
    antibacterial (levofloxacin) and antifungal prophylaxis follow the oncology protocol and
    are not covered by this plan. None when neither holds."""
    why = _why(ctx)
    if not why:
        return None
    return Decision(
        "prophylaxis",
        "levofloxacin and antifungal prophylaxis per the oncology protocol: not covered by "
        "this plan",
        f"{'; '.join(why)}: antibacterial prophylaxis (levofloxacin) is considered in AML and "
        "relapsed ALL on intensive chemotherapy expected to give an ANC below 500/uL for 7 "
        "days or more (the record does not say relapse: the clinician checks), and "
        "mould-active antifungal prophylaxis is recommended in AML; both belong to the "
        "oncology team's protocol, which this plan does not replace: clinician to confirm "
        "they are prescribed",
        ctx.cite(
            "prophylaxis.outside_scope.diagnosis_groups",
            "prophylaxis.outside_scope.anc_below_per_ul",
        ),
    )


def antiviral_scope_decision(ctx: PlanContext) -> Decision | None:
    """§5.10: within a year of CD19 CAR-T (or later while CD4 is below 200/uL), of an
    allogeneic HSCT or of an autologous one, HSV/VZV antiviral prophylaxis is the treating
    team's: the plan says it does not cover it. None otherwise."""
    facts, scope = ctx.facts, ctx.protocol.prophylaxis.outside_scope
    referral, today = ctx.referral, ctx.today
    why: list[str] = []
    car_t = [t for t in referral.treatments if t.start <= today and "car_t" in _classes(ctx, t)]
    if car_t:
        given = max(t.start for t in car_t)
        until = add_months(given, scope.antiviral_after_months)
        cd4 = facts.latest_cd4_count
        low = (
            cd4 is not None
            and cd4.cd4_per_ul is not None
            and (cd4.cd4_per_ul < scope.antiviral_until_cd4_per_ul)
        )
        if today < until or low or cd4 is None:
            shown = (
                f"CD4 {cd4.cd4_per_ul:g}/uL"
                if cd4 is not None and cd4.cd4_per_ul is not None
                else "no fresh CD4"
            )
            why.append(
                f"CAR-T on {given}: for at least {scope.antiviral_after_months} months (to "
                f"{until}) and until CD4 > {scope.antiviral_until_cd4_per_ul:g}/uL ({shown})"
            )
    hsct = referral.hsct
    if hsct is not None and hsct.type == "allogeneic":
        until = add_months(hsct.date, scope.antiviral_after_months)
        if today < until or hsct.active_gvhd:
            why.append(
                f"allogeneic HSCT on {hsct.date}: for {scope.antiviral_after_months} months (to "
                f"{until}), longer while GVHD or its immunosuppression continues"
            )
    if hsct is not None and hsct.type == "autologous":
        until = add_months(hsct.date, scope.antiviral_after_autologous_months)
        if today < until:
            why.append(
                f"autologous HSCT on {hsct.date}: VZV prophylaxis for "
                f"{scope.antiviral_after_autologous_months} months (to {until}) if the child is "
                "VZV-seropositive, HSV cover to engraftment"
            )
    if not why:
        return None
    return Decision(
        "prophylaxis",
        "HSV/VZV antiviral prophylaxis per the transplant or CAR-T protocol: not covered by "
        "this plan",
        f"{'; '.join(why)}: aciclovir or valaciclovir prophylaxis belongs to the treating "
        "team's protocol, which this plan does not replace: clinician to confirm it is "
        "prescribed",
        ctx.cite(
            "prophylaxis.outside_scope.antiviral_after_months",
            "prophylaxis.outside_scope.antiviral_until_cd4_per_ul",
            *(
                ("prophylaxis.outside_scope.antiviral_after_autologous_months",)
                if any(w.startswith("autologous HSCT") for w in why)
                else ()
            ),
        ),
    )


def antifungal_gvhd_decision(ctx: PlanContext) -> Decision | None:
    """§5.10: GVHD after an allogeneic HSCT, treated with systemic immunosuppression, calls
    for mould-active antifungal prophylaxis (Lehrnbecher, J Clin Oncol 2020;38:3205); the
    plan says it is the transplant team's. None otherwise."""
    hsct = ctx.referral.hsct
    if (
        not ctx.protocol.prophylaxis.outside_scope.antifungal_in_gvhd
        or hsct is None
        or hsct.type != "allogeneic"
        or not hsct.active_gvhd
    ):
        return None
    treated = [
        t.drug
        for t in ctx.referral.treatments
        if t.active_on(ctx.today) and counts_as_immunosuppressive(t, ctx.protocol)
    ]
    on = (
        f"treated with {', '.join(dict.fromkeys(treated))}"
        if treated
        else "no systemic immunosuppression in the record: the clinician checks how it is treated"
    )
    return Decision(
        "prophylaxis",
        "mould-active antifungal prophylaxis per the transplant protocol: not covered by this plan",
        f"active GVHD after the allogeneic HSCT on {hsct.date} ({on}): systemic, "
        "mould-active antifungal prophylaxis is recommended while GVHD is treated with "
        "systemic immunosuppression (the agent by age is the guideline's and the team's); "
        "it belongs to "
        "the transplant team's protocol, which this plan does not replace: clinician to "
        "confirm it is prescribed",
        ctx.cite("prophylaxis.outside_scope.antifungal_in_gvhd"),
    )


def _classes(ctx: PlanContext, t: TreatmentEntry) -> frozenset[str]:
    return classes_of(t, ctx.protocol)


def scope_decisions(ctx: PlanContext) -> list[Decision]:
    """Every prophylaxis of §5.10 the plan does not cover, said so."""
    found = (
        outside_scope_decision(ctx),
        antiviral_scope_decision(ctx),
        antifungal_gvhd_decision(ctx),
    )
    return [d for d in found if d]
