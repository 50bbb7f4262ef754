"""Propose a child's individualised plan: the rules, put on the unit's calendar."""

from __future__ import annotations

from datetime import date
from typing import Any

from sidflows.calendar import UnitCalendar
from sidflows.protocol import Protocol
from sidflows.referral import ReferralDocument
from sidflows.rules.context import HORIZON_MONTHS, PlanContext
from sidflows.rules.free_text import free_text_checks
from sidflows.rules.grading import grade
from sidflows.rules.ig_schedule import ig_schedule
from sidflows.rules.immunoglobulin import decide_immunoglobulin
from sidflows.rules.model import Decision, Item, Plan
from sidflows.rules.prophylaxis import plan_prophylaxis
from sidflows.rules.reassessment import plan_reassessments, plan_reviews
from sidflows.rules.recognition import record_checks
from sidflows.rules.titres import response_titres
from sidflows.rules.vaccination import plan_vaccination

__all__ = ["HORIZON_MONTHS", "plan_changes", "propose_plan"]

_KIND_ORDER = {
    "ig_session": 0,
    "ig_trough": 1,
    "vaccine_dose": 2,
    "prophylaxis": 3,
    "reassessment": 4,
    "plan_review": 5,
}


def propose_plan(
    referral: ReferralDocument,
    *,
    today: date,
    protocol: Protocol,
    calendar: UnitCalendar,
    last_review: date | None = None,
) -> Plan:
    """The plan the unit would propose for this child on ``today``, 12 months ahead.

    ``last_review``: the day of the last plan review held, when the unit has held one.
    """
    ctx = PlanContext.build(
        referral, today=today, protocol=protocol, calendar=calendar, last_review=last_review
    )
    grading = grade(ctx)
    ig = decide_immunoglobulin(ctx)
    ig_items, ig_notes = ig_schedule(ctx, ig=ig)
    vaccination = plan_vaccination(ctx, ig=ig, grading=grading)
    reviews, review_notes = plan_reviews(ctx, ig=ig)
    first_review = min(
        (r.due for r in reviews if r.reason == "periodic review"), default=ctx.horizon_end
    )
    prophylaxis, prophylaxis_notes = plan_prophylaxis(
        ctx, first_review=first_review, ig_indicated=ig.gives_ig
    )
    labs, lab_notes = plan_reassessments(
        ctx,
        ig=ig,
        grading=grading,
        titres=[
            *vaccination.titres,
            *(response_titres(ig, vaccination.items) if ctx.facts.age_months >= 24 else []),
        ],
        dose_days=tuple(i.due for i in vaccination.items),
    )
    items: list[Item] = [*ig_items, *vaccination.items, *prophylaxis, *labs, *reviews]
    items.sort(key=lambda i: (i.due, _KIND_ORDER[i.kind], i.key))
    funded: dict[str, bool] = {str(k): v for k, v in protocol.funding.publicly_funded.items()}
    consent = referral.consent is not None and referral.consent.cost_accepted
    decisions = [
        *record_checks(ctx),
        *free_text_checks(ctx),
        *ig.decisions,
        *ig_notes,
        *prophylaxis_notes,
        *vaccination.decisions,
        *lab_notes,
        *review_notes,
        _funding(items, funded, consent, source=ctx.cite("funding.publicly_funded")),
    ]
    return Plan(
        patient_ref=referral.ref,
        protocol_version=protocol.version,
        as_of=today,
        horizon_end=ctx.horizon_end,
        grading=grading,
        decisions=tuple(decisions),
        items=tuple(items),
        deferred=tuple(vaccination.deferred),
        publicly_funded=funded,
        consent_recorded=consent,
    )


def _funding(items: list[Item], funded: dict[str, bool], consent: bool, *, source: str) -> Decision:
    unfunded = sorted({i.kind for i in items if not funded.get(i.kind, False)})
    if not unfunded:
        return Decision("funding", "every item is publicly funded", "no cost to the family", source)
    state = "recorded" if consent else "needed before the plan can be activated"
    return Decision(
        "funding",
        f"family consent to the cost {state}",
        f"not covered by public health: {', '.join(unfunded)}",
        source,
    )


_GIVES_IG = ("start IG replacement", "continue IG replacement")


def _essentials(document: dict[str, Any]) -> dict[str, set[str]]:
    """The clinical substance of a plan document, without its dates."""
    decisions = document["decisions"]
    ig = next((d["decision"] for d in decisions if d["topic"] == "immunoglobulin"), "")
    if ig.startswith(_GIVES_IG):
        # Starting and continuing are one course of treatment: the first result on IG
        # (the plan now says "continue") is no reason for a clinician to approve again.
        ig = "IG replacement given"
    recovery = {
        d["decision"]
        for d in decisions
        if d["topic"] == "reassessment" and ("recover" in d["decision"])
    }
    return {
        "immunosuppression": {document["grading"]["level"]},
        "immunoglobulin": {ig},
        "prophylaxis": {i["drug"] for i in document["items"] if i["kind"] == "prophylaxis"},
        "vaccines deferred": {d["vaccine"] for d in document["deferred"]},
        "recovery": recovery,
    }


def plan_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What a new plan version changes, in words (for re-plans and their notices)."""
    old, new = _essentials(before), _essentials(after)
    changes = []
    for topic in old:
        added, removed = sorted(new[topic] - old[topic]), sorted(old[topic] - new[topic])
        if added or removed:
            parts = ([f"now {', '.join(added)}"] if added else []) + (
                [f"no longer {', '.join(removed)}"] if removed else []
            )
            changes.append(f"{topic}: {'; '.join(parts)}")
    return changes
