"""How the plan's vaccines are given where the child's condition asks for care
(docs/clinical-reference.md §4.7): intramuscular vaccines on platelet transfusions, and
visits of many injections."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sidflows.calendar import add_months
from sidflows.rules.model import Decision, VaccineDose
from sidflows.rules.vaccination.series import Schedule

# The vaccines of the format that are not injected: oral rotavirus, intranasal influenza.
NOT_INJECTED = frozenset({"ROTA", "LAIV"})

ACIP_BLEEDING = (
    "ACIP General Best Practice Guidelines (vaccine administration, persons with bleeding "
    "disorders: intramuscular vaccines shortly after the replacement therapy, a 23-gauge or "
    "finer needle, firm pressure for at least 2 minutes without rubbing)"
)


def platelet_advice(schedule: Schedule) -> None:
    """A child on platelet transfusions (one within the protocol's result window, §6.6)
    given intramuscular vaccines by the plan: the administration ACIP gives for bleeding
    disorders, said once (§4.7)."""
    ctx, plan = schedule.ctx, schedule.plan
    window = ctx.protocol.reassessment.result_valid_months
    recent = [
        b.date
        for b in ctx.referral.blood_products
        if b.product == "platelets" and add_months(b.date, window) >= ctx.today
    ]
    doses = [i for i in plan.items if getattr(i, "vaccine", "") and not getattr(i, "live", False)]
    if not recent or not doses:
        return
    plan.decisions.append(
        Decision(
            "vaccination",
            "on platelet transfusions: intramuscular vaccines shortly after a transfusion",
            f"platelets transfused (last on {max(recent)}): the plan's inactivated vaccines "
            "are intramuscular: give them shortly after a platelet transfusion, with a fine "
            "needle (23 gauge or finer) and firm pressure on the site for at least 2 minutes, "
            "without rubbing; the family is told a haematoma may form",
            f"{ACIP_BLEEDING}; {ctx.cite('reassessment.result_valid_months')}",
        )
    )


def visit_burden(schedule: Schedule) -> None:
    """Days of the plan with more injections than the protocol's flag (§4.7), said once to
    the clinician with the ways ACIP gives to lighten a visit. The doses keep their days:
    ACIP gives every vaccine due at one visit, and the earliest day is the earliest
    protection; splitting or choosing a combination product is the clinician's."""
    ctx, plan = schedule.ctx, schedule.plan
    limit = ctx.protocol.vaccination.injections_per_visit_flag
    if not limit:
        return
    per_day: dict[date, list[str]] = defaultdict(list)
    for item in plan.items:
        if isinstance(item, VaccineDose) and item.vaccine not in NOT_INJECTED:
            per_day[item.due].append(item.vaccine)
    heavy = sorted((day, names) for day, names in per_day.items() if len(names) > limit)
    if not heavy:
        return
    said = "; ".join(f"{day}: {len(names)} ({', '.join(sorted(names))})" for day, names in heavy)
    plan.decisions.append(
        Decision(
            "vaccination",
            f"{len(heavy)} visit(s) with more than {limit} injections: combination vaccines, "
            "or the visit split, is the clinician's choice",
            f"{said}. Every vaccine due may be given at one visit (ACIP sets no limit), and "
            "the plan keeps each dose on its earliest day; to lighten a visit, a combination "
            "product licensed for the child's age replaces several injections (under 7 "
            "years DTaP-IPV-Hib-HepB or DTaP-IPV; older, Tdap-IPV where licensed), and the "
            "inactivated vaccines may move a week or two later (any interval between them); "
            "live injected vaccines (MMR, varicella) stay together on one day, or 4 weeks "
            "apart. A dose moved is recorded on its day, and the series follows from it",
            ctx.cite("vaccination.injections_per_visit_flag"),
        )
    )
