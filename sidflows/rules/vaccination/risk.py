"""Which children get the unit's reinforcement, and which the routine catch-up only (§4.16).

The reinforcement beyond the routine schedule (the conjugate catch-up of the risk tables
and PPSV23, §4.4 and §4.13; HPV in 3 doses, §4.15) is for a child with an ACIP
immunocompromising or other risk condition: a transplant, a malignancy treated with
chemotherapy, an immunosuppressive treatment (or a grading of low or high level), an
antibody deficiency (IG replacement, an IgG below the limit, B-cell depletion), a
complement inhibitor (complement deficiency), asplenia (the referral's ``risk_conditions``,
§5.12) or nephrotic syndrome. A child whose only
treatment is immunomodulatory IVIG (Kawasaki disease, ITP: §3.1) has none of them: the
routine catch-up of missing doses only (ACIP: PPSV23 only for children 2-18 years with a
risk condition, Kobayashi MMWR 2022;71:1174).
"""

from __future__ import annotations

from sidflows.rules.asplenia import asplenia
from sidflows.rules.complement import complement_treatments
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import counts_as_immunosuppressive
from sidflows.rules.model import Grading

ACIP_RISK = (
    "ACIP pneumococcal recommendations for children (Nuorti, MMWR Recomm Rep 2010;59(RR-11); "
    "Kobayashi, MMWR 2022;71:1174: PPSV23 only for children 2-18 years with a risk condition)"
)


def risk_conditions(ctx: PlanContext, grading: Grading) -> tuple[str, ...]:
    """The child's ACIP risk conditions (empty: not immunocompromised, routine catch-up only)."""
    referral, facts, protocol = ctx.referral, ctx.facts, ctx.protocol
    found: list[str] = []
    if referral.hsct is not None:
        found.append(f"HSCT on {referral.hsct.date}")
    chemo = [t.drug for t in referral.treatments if facts.is_chemotherapy(t)]
    if chemo:
        found.append("chemotherapy (" + ", ".join(dict.fromkeys(chemo)) + ")")
    drugs = [
        t.drug
        for t in referral.treatments
        if not facts.is_chemotherapy(t)
        and t.start <= ctx.horizon_end
        and counts_as_immunosuppressive(t, protocol)
    ]
    if drugs:
        found.append("immunosuppressive treatment (" + ", ".join(dict.fromkeys(drugs)) + ")")
    if grading.level != "none":
        found.append(f"graded {grading.level}-level immunosuppression")
    if facts.on_ig_replacement:
        found.append("on IG replacement (antibody deficiency)")
    if facts.igg_low:
        found.append("IgG below the limit for age")
    if facts.b_cell_depletion is not None:
        found.append(facts.b_cell_depletion.reason)
    complement = complement_treatments(ctx)
    if complement:
        found.append(
            "complement inhibitor ("
            + ", ".join(dict.fromkeys(t.drug for t in complement))
            + "): complement deficiency"
        )
    if asplenia(ctx):
        found.append("anatomical or functional asplenia")
    if facts.diagnosis_group == "nephrotic_syndrome":
        found.append("nephrotic syndrome")
    return tuple(found)
