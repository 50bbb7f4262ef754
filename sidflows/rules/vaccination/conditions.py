"""Which live-vaccine and booster rules apply: after HSCT, off immunosuppression by the
2-1-8 rule (docs/clinical-reference.md §4.6.1); the post-chemotherapy wait, an oncology
rule (§4.19)."""

from __future__ import annotations

from sidflows.calendar import add_months
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import counts_as_immunosuppressive
from sidflows.rules.model import Block, Decision
from sidflows.rules.vaccination.sources import ACR_EULAR, HSCT_SRC


def off_immunosuppression_after_hsct(ctx: PlanContext) -> list[Block]:
    """§4.6.1: after HSCT, MMR and varicella wait until the child has been off all systemic
    immunosuppression for the protocol's months (12: the "2-1-8 rule" of ECIL-7, EBMT and
    AGIHO; 0: IDSA 2013, none ongoing, which the treatment blocks already hold)."""
    protocol = ctx.protocol
    months = protocol.vaccination.hsct.live_months_off_immunosuppression
    if months == 0:
        return []
    taken = [
        t
        for t in ctx.referral.treatments
        if t.start <= ctx.today and counts_as_immunosuppressive(t, protocol)
    ]
    if not taken:
        return []
    ongoing = [t for t in taken if t.end is None]
    last = None if ongoing else max(t.end for t in taken if t.end is not None)
    what = (
        ", ".join(dict.fromkeys(t.drug for t in ongoing)) + " ongoing"
        if last is None
        else f"last systemic immunosuppression ended {last}"
    )
    return [
        Block(
            f"after HSCT: MMR and varicella not before {months} months off all systemic "
            f"immunosuppression ({what}; the 2-1-8 rule: 24 months after HSCT, {months} months "
            "off immunosuppression, 8 months after the last IVIG)",
            f"{ctx.cite('vaccination.hsct.live_months_off_immunosuppression')}; {HSCT_SRC}",
            None if last is None else add_months(last, months),
        )
    ]


def chemotherapy_wait_applies(ctx: PlanContext) -> bool:
    """§4.19: does the post-chemotherapy wait for inactivated boosters apply? Only to
    chemotherapy in the protocol's diagnosis categories (oncology, HSCT; an oncology rule):
    in immune-mediated disease inactivated vaccines are given during treatment."""
    return ctx.referral.diagnosis.category in (
        ctx.protocol.vaccination.chemotherapy_wait_categories
    ) and any(ctx.facts.is_chemotherapy(t) for t in ctx.referral.treatments)


def chemotherapy_without_wait(ctx: PlanContext) -> list[Decision]:
    """§4.19: a cytotoxic drug (cyclophosphamide for lupus) outside the oncology categories:
    the decision that says inactivated vaccines are not held for it."""
    chemo = [t for t in ctx.referral.treatments if ctx.facts.is_chemotherapy(t)]
    if not chemo or chemotherapy_wait_applies(ctx):
        return []
    drugs = ", ".join(dict.fromkeys(f"{t.drug} ({t.start} to {t.end or 'ongoing'})" for t in chemo))
    return [
        Decision(
            "vaccination",
            "inactivated vaccines during the cytotoxic treatment of an immune-mediated disease",
            f"{drugs} for {ctx.referral.diagnosis.label} (diagnosis category "
            f"{ctx.referral.diagnosis.category}): inactivated vaccines are given during "
            "immunosuppression (ACR 2022; EULAR 2019), not withheld until the end as after "
            "cancer chemotherapy (an oncology rule); live vaccines stay held",
            f"{ACR_EULAR}; {ctx.cite('vaccination.chemotherapy_wait_categories')}",
        )
    ]
