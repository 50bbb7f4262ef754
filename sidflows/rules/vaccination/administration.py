"""How the plan's vaccines are given where the child's condition asks for care
(docs/clinical-reference.md §4.7): intramuscular vaccines on platelet transfusions."""

from __future__ import annotations

from sidflows.calendar import add_months
from sidflows.rules.model import Decision
from sidflows.rules.vaccination.series import Schedule

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
