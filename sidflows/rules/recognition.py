"""What the plan could not read in the record: unknown drugs, coded classes, stale results.

Each becomes a decision for the clinician instead of a silent default
(docs/clinical-reference.md §6.6 and §8).
"""

from __future__ import annotations

from sidflows.rules.context import PlanContext
from sidflows.rules.model import Decision

CODES = "config/codes.toml (WHO ATC index; unit policy names), docs/clinical-reference.md §8.2"


def record_checks(ctx: PlanContext) -> list[Decision]:
    """Drugs the protocol does not know, ATC classes that disagree, stale results."""
    facts = ctx.facts
    found: list[Decision] = []
    for drug in facts.unrecognised_drugs:
        found.append(
            Decision(
                "grading",
                f"drug not recognised: {drug}",
                "neither an ATC code nor a drug name the protocol knows: graded by the class "
                "the referral gives; check the grading, the Pneumocystis indications "
                "(alemtuzumab, fludarabine) and the live-vaccine blocks",
                CODES,
            )
        )
    for mismatch in facts.class_mismatches:
        found.append(
            Decision(
                "grading",
                "treatment class differs from its ATC code: check it",
                f"{mismatch}; graded as the referral says",
                CODES,
            )
        )
    if facts.stale:
        months = ctx.protocol.reassessment.result_valid_months
        found.append(
            Decision(
                "reassessment",
                f"stale results: {', '.join(facts.stale)}",
                f"older than {months} months: not used to grade, to decide on IG or to lift a "
                "restriction; repeated at the first reassessment",
                ctx.cite("reassessment.result_valid_months"),
            )
        )
    return found
