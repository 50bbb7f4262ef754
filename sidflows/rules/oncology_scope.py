"""Antibacterial and antifungal prophylaxis of oncology: outside this plan, and said so
(docs/clinical-reference.md §5.10).

A child treated for acute myeloid leukaemia, or profoundly neutropenic on chemotherapy, may
need levofloxacin (Lehrnbecher, Clin Infect Dis 2020;71:226) and mould-active antifungal
prophylaxis (Lehrnbecher, J Clin Oncol 2020;38:3205). The unit's plan does not prescribe
them: it says so, a decision for the clinician, instead of staying silent.
"""

from __future__ import annotations

from sidflows.calendar import add_months
from sidflows.rules.context import PlanContext
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
