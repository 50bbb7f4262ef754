"""What an item's outcome leads to: review, re-plan, escalation, discharge, an alert.

One frozen :class:`OutcomeContext` in (the item as planned, what happened, the
protocol, the day), one frozen :class:`OutcomeDecision` out, carrying its
rationale and source. Like the planning rules it reads no clock, database or
environment; the store records the outcome and applies the decision.

The sections are those of docs/clinical-reference.md: §3 immunoglobulin, §4
vaccination, §5 prophylaxis, §6 reassessment and plan review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from types import MappingProxyType
from typing import Any, Literal

from pydantic import ValidationError

from sidflows.documents import invalid_from_pydantic
from sidflows.errors import InvalidInput
from sidflows.protocol import Protocol
from sidflows.referral import LabEntry

Alert = Literal["ig_session_missed", "trough_below_target"]

KINDS = ("ig_session", "ig_trough", "vaccine_dose", "prophylaxis", "reassessment", "plan_review")
# Items whose outcome is results (a lab drawn): their values join the record.
LAB_KINDS = ("ig_trough", "reassessment")
# What the form records: the item happened (given, done) or did not (missed); a plan
# review also continues, modifies or discharges (§6.5).
HAPPENED = ("given", "done")
REVIEW_RESULTS = ("continue", "modify", "discharge")
OUTCOME_FIELDS = frozenset({"result", "dose_g", "lot", "values"})
# A missed item is re-planned from what was really done when its stream is a series.
REPLANNED_WHEN_MISSED = ("ig_session", "vaccine_dose", "ig_trough", "reassessment")

ESCALATION = "unit policy (a missed item is escalated to the coordinator)"
PROPHYLAXIS = "docs/clinical-reference.md §5"
REASSESSMENT = "docs/clinical-reference.md §6"
VACCINATION = "docs/clinical-reference.md §4"


@dataclass(frozen=True, slots=True)
class OutcomeContext:
    """One outcome of one plan item, as the rule sees it.

    ``details`` is the item's entry in the plan document; ``values`` the results
    given (lab names as in a referral's labs, none left empty); ``dose_g`` the grams
    the nurse recorded, None for the planned dose. ``plan_changes`` is what a plan
    proposed from the record with these results would change, when the caller has
    proposed it (None: not known: new results ask for a re-plan).
    """

    kind: str
    key: str
    details: Mapping[str, Any]
    result: str
    values: Mapping[str, float]
    dose_g: float | None
    trough_target_g_l: float | None
    protocol: Protocol
    today: date
    plan_changes: tuple[str, ...] | None = None

    @classmethod
    def build(
        cls,
        *,
        kind: str,
        key: str,
        details: Mapping[str, Any],
        outcome: Mapping[str, Any],
        protocol: Protocol,
        today: date,
        plan_changes: tuple[str, ...] | None = None,
    ) -> OutcomeContext:
        """The context of an outcome as the form records it; a field it cannot be, refused."""
        unknown = sorted(set(outcome) - OUTCOME_FIELDS)
        if unknown:
            raise InvalidInput(unknown[0], "unknown field of an outcome")
        result = outcome.get("result") or "given"
        if not isinstance(result, str):
            raise InvalidInput("result", "must be a string")
        lot = outcome.get("lot")
        if lot is not None and not isinstance(lot, str):
            raise InvalidInput("lot", "must be a string")
        target = details.get("target_g_l")
        return cls(
            kind=kind,
            key=key,
            details=MappingProxyType(dict(details)),
            result=result,
            values=MappingProxyType(_lab_values(outcome.get("values"), today)),
            dose_g=_dose(outcome.get("dose_g")),
            trough_target_g_l=float(target) if target is not None else None,
            protocol=protocol,
            today=today,
            plan_changes=plan_changes,
        )

    def cite(self, *paths: str) -> str:
        """The protocol's citations of these parameters (``Protocol.cite``)."""
        return self.protocol.cite(*paths)


def _lab_values(values: Any, today: date) -> dict[str, float]:
    """Results as a referral's lab holds them: known names, numbers within range."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidInput("values", "must be an object of lab results")
    given = {k: v for k, v in values.items() if v is not None}
    if "date" in given:  # the day of the results is the outcome's day
        raise InvalidInput("values.date", "unknown field")
    try:
        LabEntry.model_validate({"date": today, **given})
    except ValidationError as exc:
        raise invalid_from_pydantic(exc, prefix="values") from None
    return given


def _dose(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidInput("dose_g", "must be a number of grams above 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class OutcomeDecision:
    """What an outcome leads to, why, and on whose authority.

    ``status`` is the item's (done or missed); ``dose_g`` the grams an IG session
    gave, as the record keeps them; ``low_trough`` (IgG, target) in g/L.
    """

    status: Literal["done", "missed"]
    rationale: str
    source: str
    replan: bool = False
    escalate: bool = False
    discharge: bool = False
    review_reason: str | None = None
    alert: Alert | None = None
    low_trough: tuple[float, float] | None = None
    dose_g: float | None = None
    notes: tuple[str, ...] = ()


def decide_outcome(ctx: OutcomeContext) -> OutcomeDecision:
    """What follows the outcome of one item; a result the item cannot have is refused."""
    _check(ctx)
    if ctx.result == "missed":
        decision = _missed(ctx)
    elif ctx.kind == "ig_session":
        decision = _session_given(ctx)
    elif ctx.kind == "vaccine_dose":
        decision = OutcomeDecision(
            "done", f"{ctx.details.get('vaccine', 'vaccine')} dose recorded", VACCINATION
        )
    elif ctx.kind == "prophylaxis":
        decision = OutcomeDecision(
            "done", "recorded: the course goes on to its review", PROPHYLAXIS
        )
    elif ctx.kind in LAB_KINDS:
        decision = _results(ctx)
    else:
        decision = _review(ctx)
    return _with_plan_changes(ctx, decision)


def _check(ctx: OutcomeContext) -> None:
    if ctx.kind not in KINDS:
        raise InvalidInput("kind", f"{ctx.kind!r} is not a kind of plan item")
    allowed = ("missed", *HAPPENED, *(REVIEW_RESULTS if ctx.kind == "plan_review" else ()))
    if ctx.result not in allowed:
        raise InvalidInput(
            "result", f"{ctx.result!r} is not an outcome of a {ctx.kind} ({', '.join(allowed)})"
        )
    if ctx.values and (ctx.kind not in LAB_KINDS or ctx.result == "missed"):
        raise InvalidInput("values", f"a {ctx.kind} {ctx.result} has no results to record")
    if ctx.dose_g is not None and (ctx.kind != "ig_session" or ctx.result == "missed"):
        raise InvalidInput("dose_g", f"a {ctx.kind} {ctx.result} has no dose to record")


def _missed(ctx: OutcomeContext) -> OutcomeDecision:
    replan = ctx.kind in REPLANNED_WHEN_MISSED
    why, source = {
        "ig_session": (
            "one missed dose does not end replacement: the next sessions are re-planned "
            "from the doses given",
            ctx.cite("immunoglobulin.on_replacement_within_intervals"),
        ),
        "vaccine_dose": ("the series is re-planned from the doses given", VACCINATION),
        "ig_trough": (
            "the trough is re-planned",
            ctx.cite("immunoglobulin.trough_every_months"),
        ),
        "reassessment": ("the reassessment is re-planned", REASSESSMENT),
        "prophylaxis": ("the course stands as planned", PROPHYLAXIS),
        "plan_review": (
            "the plan stands until the review is held",
            ctx.cite("review.every_months"),
        ),
    }[ctx.kind]
    return OutcomeDecision(
        "missed",
        f"{ctx.kind} missed: escalated to the coordinator; {why}",
        f"{ESCALATION}; {source}",
        replan=replan,
        escalate=True,
        alert="ig_session_missed" if ctx.kind == "ig_session" else None,
        notes=(f"{ctx.key} missed: escalate to the coordinator",),
    )


def _session_given(ctx: OutcomeContext) -> OutcomeDecision:
    route = ctx.details.get("route")
    if route not in ("iv", "sc"):
        raise InvalidInput("route", f"{ctx.key} has no IV or SC route in its plan")
    grams = ctx.dose_g if ctx.dose_g is not None else float(ctx.details["dose_g"])
    planned = " (the planned dose)" if ctx.dose_g is None else ""
    return OutcomeDecision(
        "done",
        f"{route.upper()} session given: {grams:g} g recorded{planned}",
        ctx.cite(f"immunoglobulin.{route}.g_per_kg"),
        dose_g=grams,
    )


def _results(ctx: OutcomeContext) -> OutcomeDecision:
    source = _target_source(ctx) if ctx.kind == "ig_trough" else REASSESSMENT
    if not ctx.values:
        return OutcomeDecision("done", "no result recorded: nothing follows", source)
    igg, target = ctx.values.get("igg_g_l"), ctx.trough_target_g_l
    if ctx.kind == "ig_trough" and igg is not None and target is not None and igg < target:
        reason = f"trough IgG {igg:g} g/L below target {target:g}"
        return OutcomeDecision(
            "done",
            f"{reason}: the plan is reviewed and re-planned, the clinicians alerted",
            source,
            replan=True,
            review_reason=reason,
            alert="trough_below_target",
            low_trough=(float(igg), float(target)),
            notes=(reason,),
        )
    return OutcomeDecision(
        "done", "new results: the plan is proposed again from the record", source, replan=True
    )


def _target_source(ctx: OutcomeContext) -> str:
    """The citation of the target the trough was planned against."""
    ig = ctx.protocol.immunoglobulin
    if ctx.trough_target_g_l is not None and ctx.trough_target_g_l == ig.trough_target_car_t_g_l:
        return ctx.cite("immunoglobulin.trough_target_car_t_g_l")
    return ctx.cite("immunoglobulin.trough_target_g_l")


def _review(ctx: OutcomeContext) -> OutcomeDecision:
    if ctx.result == "discharge":
        return OutcomeDecision(
            "done",
            "discharged at plan review (a clinician's decision): the pathway is closed",
            ctx.cite("review.off_ig_months_for_recovery"),
            discharge=True,
            notes=("discharged",),
        )
    return OutcomeDecision(
        "done",
        f"plan review ({ctx.result}): each review re-plans from the current record",
        ctx.cite("review.every_months"),
        replan=True,
    )


def wants_plan_comparison(kind: str, *, replan: bool, review_reason: str | None) -> bool:
    """New results whose re-plan depends on what the plan they give would change."""
    return replan and kind in LAB_KINDS and review_reason is None


def _with_plan_changes(ctx: OutcomeContext, decision: OutcomeDecision) -> OutcomeDecision:
    """Results re-plan only when the plan they give differs, once the caller knows it."""
    if ctx.plan_changes is None or not wants_plan_comparison(
        ctx.kind, replan=decision.replan, review_reason=decision.review_reason
    ):
        return decision
    if not ctx.plan_changes:
        why = "the results leave the plan as it is"
        return replace(decision, rationale=f"{decision.rationale}; {why}", replan=False)
    reason = "results change the plan: " + "; ".join(ctx.plan_changes)
    return replace(decision, rationale=f"{decision.rationale}; {reason}", review_reason=reason)
