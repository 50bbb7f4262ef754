"""Complement inhibitors: antibiotic cover against meningococcus (docs/clinical-reference.md §5.7).

Eculizumab, ravulizumab, crovalimab (C5), pegcetacoplan (C3) and iptacopan (factor B) are
recognised by name or ATC code (:func:`sidflows.rules.drugs.complement_inhibitor`). Graded
as the sources do (§2.12): a specific susceptibility to Neisseria, not general
immunosuppression. The meningococcal vaccines are :mod:`sidflows.rules.vaccination.meningococcal`.
"""

from __future__ import annotations

from datetime import date, timedelta

from sidflows.referral import TreatmentEntry
from sidflows.rules.context import PlanContext
from sidflows.rules.drugs import complement_inhibitor
from sidflows.rules.model import Decision, ProphylaxisItem


def meningococcal_cover(
    ctx: PlanContext, *, due: date, first_review: date, penicillin_planned: bool
) -> tuple[list[ProphylaxisItem], Decision] | None:
    """Antibiotic prophylaxis against meningococcus while on a complement inhibitor (§5.7):
    penicillin V by age (the doses of ``[prophylaxis.encapsulated]``), for as long as the
    inhibitor is given (UK practice, the default) or until 2 weeks after vaccination (the
    US labels, the alternative)."""
    treatments = complement_treatments(ctx)
    if not treatments:
        return None
    e, m = ctx.protocol.prophylaxis.encapsulated, ctx.protocol.prophylaxis.meningococcal
    age = ctx.facts.age_months
    band = next((b for b in e.doses_by_age if age < b.below_age_months), None)
    if band is None and e.doses_by_age:
        band = e.doses_by_age[-1]
    dose = (
        f"{band.mg_per_dose:g} mg {e.doses_per_day} times a day"
        if band is not None and band.mg_per_dose is not None
        else "dose by the clinician (none in the protocol for this age)"
    )
    drugs = ", ".join(
        f"{t.drug} ({complement_inhibitor(t, ctx.protocol)}, from {t.start})" for t in treatments
    )
    first = min(t.start for t in treatments)
    start = ctx.calendar.next_working_day(max(due, first))
    review = ctx.calendar.next_working_day(max(first_review, start + timedelta(days=1)))
    if m.antibiotic_until == "treatment":
        until = (
            "for as long as the inhibitor is given and while the risk remains (UK practice, "
            "the cautious default: vaccines do not prevent all meningococcal disease); "
            "reviewed at every plan review"
        )
    else:
        until = (
            "until 2 weeks after the meningococcal vaccines when the inhibitor starts sooner "
            "(the US labels, the protocol's alternative); reviewed at every plan review"
        )
    items: list[ProphylaxisItem] = []
    if penicillin_planned:
        what = (
            f"{e.drug} {dose} (already planned against encapsulated bacteria) also covers "
            f"meningococcus while on {drugs}"
        )
    else:
        what = f"{e.drug} {dose} against meningococcus while on the complement inhibitor"
        items.append(
            ProphylaxisItem(
                key=f"prophylaxis:{e.drug}",
                due=start,
                drug=e.drug,
                regimen=f"{dose} (at {age} months of age)",
                review=review,
                indication="meningococcus (Neisseria) on a complement inhibitor",
            )
        )
    if first <= ctx.today:
        # Already on the inhibitor: the cover cannot wait for the plan's first booking day.
        what += f": on it since {first}: confirm today that the cover is running"
        urgent = (
            f"the inhibitor started on {first}, before this plan's first booking day ({start}): "
            "the cover must be running now: confirm today that it is, and if not start it "
            "today; "
        )
    elif first < start:
        what += f": from the inhibitor's first dose on {first}"
        urgent = (
            f"the inhibitor starts on {first}, before this plan's first booking day ({start}): "
            "start the cover with its first dose; "
        )
    else:
        urgent = ""
    decision = Decision(
        "prophylaxis",
        what,
        f"{urgent}{drugs}: complement blockade leaves a 1000-2000-fold risk of meningococcal "
        "disease, which vaccination lowers but does not remove (ACIP; the labels' boxed "
        "warning and REMS); "
        f"from {start}, {until}; by age ({e.doses_per_day} times a day, BNF for Children); "
        f"alternatives: {e.alternatives}; fever on the inhibitor is an emergency whatever the "
        "prophylaxis",
        ctx.cite(
            "prophylaxis.meningococcal.drugs",
            "prophylaxis.meningococcal.antibiotic_until",
            "prophylaxis.encapsulated.doses_by_age",
        ),
    )
    return items, decision


def complement_treatments(ctx: PlanContext) -> list[TreatmentEntry]:
    """The complement inhibitors given now or planned (§5.7), in the referral's order."""
    return [
        t
        for t in ctx.referral.treatments
        if (t.end is None or t.end >= ctx.today)
        and complement_inhibitor(t, ctx.protocol) is not None
    ]
