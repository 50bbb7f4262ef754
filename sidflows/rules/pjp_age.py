"""Co-trimoxazole's minimum age (docs/clinical-reference.md §5.8) and the words of the
steroid indication (§5.9), for :mod:`sidflows.rules.prophylaxis`."""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.rules.context import PlanContext
from sidflows.rules.model import Decision


def minimum_age_date(ctx: PlanContext) -> date:
    """The day the child reaches the protocol's minimum age for co-trimoxazole (§5.8)."""
    weeks = ctx.protocol.prophylaxis.pjp.min_age_weeks
    return ctx.referral.patient.birth_date + timedelta(weeks=weeks)


def alternatives_for_age(ctx: PlanContext, alternatives: str, on: date) -> str:
    """The protocol's alternatives (``"; "``-separated) without co-trimoxazole for a child
    below its minimum age on ``on`` (§5.8), saying so: a text that offers it to a
    neonate offers what the protocol forbids."""
    old_enough = minimum_age_date(ctx)
    if old_enough <= on:
        return alternatives
    kept = [a for a in alternatives.split("; ") if not a.lower().startswith("co-trimoxazole")]
    weeks = ctx.protocol.prophylaxis.pjp.min_age_weeks
    said = f"not co-trimoxazole before {weeks} weeks of age ({old_enough})"
    return "; ".join([*kept, said])


def alternatives_cited(ctx: PlanContext, on: date) -> tuple[str, ...]:
    """The protocol parameters :func:`alternatives_for_age` read on ``on``."""
    below = minimum_age_date(ctx) > on
    return ("prophylaxis.antibacterial.alternatives",) + (
        ("prophylaxis.pjp.min_age_weeks",) if below else ()
    )


def too_young(
    ctx: PlanContext,
    old_enough: date,
    indications: list[tuple[str, date | None]],
    atovaquone: str,
    *,
    lapses: bool,
) -> Decision:
    """§5.8: below the minimum age, no co-trimoxazole: the clinician chooses the cover until
    the date, from the alternatives the protocol has (atovaquone by age, IV pentamidine)."""
    p = ctx.protocol.prophylaxis.pjp
    reasons = "; ".join(why for why, _ in indications)
    then = (
        "the indication ends before that date: no co-trimoxazole is planned"
        if lapses
        else "co-trimoxazole is planned from that date"
    )
    return Decision(
        "prophylaxis",
        f"Pneumocystis prophylaxis until {old_enough}: clinician decision "
        f"(no {p.drug} before {p.min_age_weeks} weeks of age)",
        f"{reasons}; the child reaches {p.min_age_weeks} weeks of age on {old_enough}: no "
        "sulfonamide before (it displaces bilirubin from albumin: kernicterus); "
        f"{then}; until then the clinician chooses: {atovaquone} (the AAP Red "
        "Book's band starts at 1 month: under 1 month the dose is the clinician's), or IV "
        "pentamidine 4 mg/kg every 2-4 weeks",
        ctx.cite(
            "prophylaxis.pjp.min_age_weeks",
            "prophylaxis.pjp.atovaquone_bands",
            "prophylaxis.pjp.atovaquone_max_mg_day",
        ),
    )


def steroid_words(ctx: PlanContext) -> str:
    """The steroid indication in words, as the protocol configures it (§5.9)."""
    p = ctx.protocol.prophylaxis.pjp
    if p.steroid_rule == "duration_only":
        return f"> {p.steroid_weeks} weeks of corticosteroids"
    return f"high-dose corticosteroids for >= {p.steroid_weeks} weeks"


def costeff_bsa(weight_kg: float) -> float:
    """Body-surface area (m2) from weight alone: (4W + 7) / (W + 90) (Costeff, Arch Dis
    Child 1966;41:681), the referral giving no height (§5.1)."""
    return (4 * weight_kg + 7) / (weight_kg + 90)
