"""A moderately low CD4 alone and the live vaccines (docs/clinical-reference.md §2.3, §4.3).

The CD4 bands are HIV staging (CDC 2014), used as a flag; IDSA 2013 and ACIP give MMR and
varicella in HIV without severe immunosuppression: a CD4 of at least 15 % (and 200/uL from
6 years) for 6 months. A moderate grade alone holds no live vaccine, and says why; below
15 % (the staging's moderate band reaches 14 % from 6 years) it holds them.
"""

from __future__ import annotations

from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import counts_as_immunosuppressive
from sidflows.rules.grading import cd4_findings
from sidflows.rules.model import Block, Grading


def acip_cd4_block(ctx: PlanContext, grading: Grading) -> Block | None:
    """The live-vaccine block of a fresh CD4 percentage below ACIP's 15 % in a child not
    graded high (the high grade has its own block), or None."""
    percent = ctx.facts.latest_cd4_percent
    if (
        grading.level == "high"
        or percent is None
        or percent.cd4_percent is None
        or percent.cd4_percent >= ACIP_CD4_PERCENT
    ):
        return None
    return Block(
        f"CD4 {percent.cd4_percent:g} % on {percent.date}: below the {ACIP_CD4_PERCENT:g} % "
        "ACIP and IDSA 2013 ask for MMR and varicella",
        ACIP_CD4_SRC,
        None,
    )


ACIP_CD4_PERCENT = 15.0
ACIP_CD4_SRC = (
    "ACIP MMR (McLean, MMWR Recomm Rep 2013;62(RR-4)) and varicella (Marin, MMWR Recomm Rep "
    "2007;56(RR-4)); IDSA 2013: in HIV, MMR and varicella with CD4 >= 15 % (and >= 200/uL "
    "from 6 years) for >= 6 months"
)


def moderate_cd4_note(ctx: PlanContext) -> str:
    """Why a moderately low CD4 alone (graded low, §2.3) holds no live vaccine, for the
    rationale of a live dose ("" when it does not apply): the CD4 bands are HIV staging,
    and IDSA 2013 and ACIP give MMR and varicella in HIV without severe immunosuppression."""
    treated = any(counts_as_immunosuppressive(t, ctx.protocol) for t in ctx.facts.active)
    findings = cd4_findings(ctx.facts, ctx.protocol)
    moderate = [shown for level, shown in findings if level != "severe"]
    percent = ctx.facts.latest_cd4_percent
    below = percent is not None and (percent.cd4_percent or 0) < ACIP_CD4_PERCENT
    if not moderate or treated or below or ctx.facts.chemotherapy_end is not None:
        return ""
    return (
        f"; a moderately low CD4 alone ({'; '.join(moderate)}, graded low, no "
        "immunosuppressive treatment) does not hold them: IDSA 2013 and ACIP give MMR and "
        "varicella in HIV without severe immunosuppression (CD4 >= 15 %, and >= 200/uL from "
        "6 years, for >= 6 months: the clinician confirms it), the staging the flag comes "
        "from; the contraindication under low-level immunosuppression is for "
        "immunosuppressive treatment"
    )
