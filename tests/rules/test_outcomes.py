"""What an item's outcome leads to: docs/clinical-reference.md §3-§6 as a table of cases."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest_rules import PROTOCOL, TODAY

from sidflows.errors import InvalidInput
from sidflows.rules import outcomes
from sidflows.rules.outcomes import OutcomeContext, OutcomeDecision, decide_outcome

REF = "docs/clinical-reference.md"

IV_SESSION: dict[str, Any] = {
    "kind": "ig_session",
    "key": "ig_session:2026-12-01",
    "due": "2026-12-01",
    "route": "iv",
    "dose_g": 10.0,
    "dose_g_per_kg": 0.4,
    "setting": "day_unit",
}
SC_SESSION: dict[str, Any] = {
    **IV_SESSION,
    "route": "sc",
    "dose_g": 2.5,
    "dose_g_per_kg": 0.1,
    "setting": "home",
}
TROUGH: dict[str, Any] = {
    "kind": "ig_trough",
    "key": "ig_trough:2027-03-23",
    "due": "2027-03-23",
    "target_g_l": 7.0,
}
TROUGH_CAR_T: dict[str, Any] = {
    **TROUGH,
    "target_g_l": PROTOCOL.immunoglobulin.trough_target_car_t_g_l,
}
VACCINE: dict[str, Any] = {
    "kind": "vaccine_dose",
    "key": "vaccine_dose:IIV:2026:1",
    "vaccine": "IIV",
    "live": False,
}
PROPHYLAXIS: dict[str, Any] = {
    "kind": "prophylaxis",
    "key": "prophylaxis:co-trimoxazole",
    "drug": "co-trimoxazole",
}
REASSESSMENT: dict[str, Any] = {
    "kind": "reassessment",
    "key": "reassessment:2027-03-01",
    "panel": ["IgG", "CD19"],
    "reason": "every 3 months from the last anti-CD20 dose until B-cell recovery",
}
REVIEW: dict[str, Any] = {
    "kind": "plan_review",
    "key": "plan_review:2027-03-01",
    "reason": "every 3 months",
}


class Then(NamedTuple):
    """The parts of the decision a case pins down."""

    status: str = "done"
    replan: bool = False
    escalate: bool = False
    discharge: bool = False
    alert: str | None = None
    review_reason: str | None = None


def _decide(
    item: dict[str, Any], outcome: dict[str, Any], changes: tuple[str, ...] | None = None
) -> OutcomeDecision:
    context = OutcomeContext.build(
        kind=item["kind"],
        key=item["key"],
        details=item,
        outcome=outcome,
        protocol=PROTOCOL,
        today=TODAY,
        plan_changes=changes,
    )
    return decide_outcome(context)


def _igg(value: float, **more: float) -> dict[str, Any]:
    return {"result": "done", "values": {"igg_g_l": value, **more}}


MISSED: dict[str, Any] = {"result": "missed"}
LOW = "trough IgG 5.2 g/L below target 7"
CHANGES = ("IV 10 g every 28 days -> IV 12.5 g every 28 days",)

# (id, the item as planned, the outcome, plan changes if known, what follows, the source cited)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...] | None, Then, str]] = [
    (
        "§3.5 trough 5.2 g/L, target 7 -> review, re-plan, alert the clinicians",
        TROUGH,
        _igg(5.2),
        None,
        Then(replan=True, alert="trough_below_target", review_reason=LOW),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough 6.9 g/L, target 7 -> below: review",
        TROUGH,
        _igg(6.9),
        None,
        Then(
            replan=True,
            alert="trough_below_target",
            review_reason="trough IgG 6.9 g/L below target 7",
        ),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough 7.0 g/L at target 7 -> no review; new results re-plan",
        TROUGH,
        _igg(7.0),
        None,
        Then(replan=True),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough 9.1 g/L above target 7 -> no review; new results re-plan",
        TROUGH,
        _igg(9.1),
        None,
        Then(replan=True),
        f"{REF} §3.5",
    ),
    (
        "§3.6 after CD19 CAR-T: trough 9.0 g/L, target 10 -> review, alert",
        TROUGH_CAR_T,
        _igg(9.0),
        None,
        Then(
            replan=True,
            alert="trough_below_target",
            review_reason="trough IgG 9 g/L below target 10",
        ),
        f"{REF} §3.6",
    ),
    (
        "§3.6 after CD19 CAR-T: trough 10.0 g/L at target 10 -> no review",
        TROUGH_CAR_T,
        _igg(10.0),
        None,
        Then(replan=True),
        f"{REF} §3.6",
    ),
    (
        "§3.6 after CD19 CAR-T: trough 11.5 g/L above target 10 -> no review",
        TROUGH_CAR_T,
        _igg(11.5),
        None,
        Then(replan=True),
        f"{REF} §3.6",
    ),
    (
        "§3.5 trough drawn, no IgG result (CD19 only) -> no review; new results re-plan",
        TROUGH,
        {"result": "done", "values": {"cd19_per_ul": 120.0}},
        None,
        Then(replan=True),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough recorded without results -> nothing follows",
        TROUGH,
        {"result": "done"},
        None,
        Then(),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough 8.0 g/L whose plan stays the same -> no re-plan",
        TROUGH,
        _igg(8.0),
        (),
        Then(replan=False),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough 8.0 g/L that changes the plan -> re-plan, saying what changes",
        TROUGH,
        _igg(8.0),
        CHANGES,
        Then(replan=True, review_reason=f"results change the plan: {CHANGES[0]}"),
        f"{REF} §3.5",
    ),
    (
        "§3.5 a trough below target is reviewed whatever the plan changes",
        TROUGH,
        _igg(5.2),
        (),
        Then(replan=True, alert="trough_below_target", review_reason=LOW),
        f"{REF} §3.5",
    ),
    (
        "§6 reassessment results that change the plan -> re-plan, saying what changes",
        REASSESSMENT,
        _igg(6.1, cd19_per_ul=180.0, cd19_lower_limit_per_ul=100.0),
        CHANGES,
        Then(replan=True, review_reason=f"results change the plan: {CHANGES[0]}"),
        f"{REF} §6",
    ),
    (
        "§6 reassessment results that leave the plan as it is -> no re-plan",
        REASSESSMENT,
        _igg(6.1, cd19_per_ul=40.0, cd19_lower_limit_per_ul=100.0),
        (),
        Then(replan=False),
        f"{REF} §6",
    ),
    (
        "§6 reassessment results, the plan not proposed yet -> re-plan (the caller checks)",
        REASSESSMENT,
        _igg(6.1),
        None,
        Then(replan=True),
        f"{REF} §6",
    ),
    (
        "§6 a low IgG at a reassessment is no trough: no review by target",
        {**REASSESSMENT, "target_g_l": 7.0},
        _igg(3.0),
        None,
        Then(replan=True),
        f"{REF} §6",
    ),
    (
        "§3.2 IV session given -> dose recorded, nothing else follows",
        IV_SESSION,
        {"result": "given", "dose_g": 10.0, "lot": "LOT-1"},
        None,
        Then(),
        f"{REF} §3.2",
    ),
    (
        "§3.3 SC session given at home -> dose recorded, nothing else follows",
        SC_SESSION,
        {"result": "given", "lot": "LOT-2"},
        None,
        Then(),
        f"{REF} §3.3",
    ),
    (
        "§3.5 IV session missed -> escalate, missed-session alert, re-plan the sessions",
        IV_SESSION,
        MISSED,
        None,
        Then(status="missed", replan=True, escalate=True, alert="ig_session_missed"),
        f"{REF} §3.5",
    ),
    (
        "§3.5 SC session missed -> escalate, missed-session alert, re-plan the sessions",
        SC_SESSION,
        MISSED,
        None,
        Then(status="missed", replan=True, escalate=True, alert="ig_session_missed"),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough missed -> escalate, re-plan the trough (no alert of its own)",
        TROUGH,
        MISSED,
        None,
        Then(status="missed", replan=True, escalate=True),
        f"{REF} §3.5",
    ),
    (
        "§3.5 trough missed, the plan unchanged by it -> escalate, no re-plan",
        TROUGH,
        MISSED,
        (),
        Then(status="missed", replan=False, escalate=True),
        f"{REF} §3.5",
    ),
    (
        "§4 vaccine dose given -> recorded, the series goes on",
        VACCINE,
        {"result": "given", "lot": "FLU-26"},
        None,
        Then(),
        f"{REF} §4",
    ),
    (
        "§4 vaccine dose missed -> escalate, re-plan the series",
        VACCINE,
        MISSED,
        None,
        Then(status="missed", replan=True, escalate=True),
        f"{REF} §4",
    ),
    (
        "§5 prophylaxis done -> nothing follows",
        PROPHYLAXIS,
        {"result": "done"},
        None,
        Then(),
        f"{REF} §5",
    ),
    (
        "§5 prophylaxis missed -> escalate; the course stands",
        PROPHYLAXIS,
        MISSED,
        None,
        Then(status="missed", escalate=True),
        f"{REF} §5",
    ),
    (
        "§6 reassessment missed -> escalate, re-plan",
        REASSESSMENT,
        MISSED,
        None,
        Then(status="missed", replan=True, escalate=True),
        f"{REF} §6",
    ),
    (
        "§6.5 plan review: continue -> re-plan from the current record",
        REVIEW,
        {"result": "continue"},
        None,
        Then(replan=True),
        f"{REF} §6.5",
    ),
    (
        "§6.5 plan review: modify -> re-plan from the current record",
        REVIEW,
        {"result": "modify"},
        None,
        Then(replan=True),
        f"{REF} §6.5",
    ),
    (
        "§6.5 plan review held (done) -> re-plan from the current record",
        REVIEW,
        {"result": "done"},
        None,
        Then(replan=True),
        f"{REF} §6.5",
    ),
    (
        "§6.4 plan review: discharge (the clinician's decision) -> close the pathway",
        REVIEW,
        {"result": "discharge"},
        None,
        Then(discharge=True),
        f"{REF} §6.4",
    ),
    (
        "§6.5 plan review missed -> escalate; the plan stands until it is held",
        REVIEW,
        MISSED,
        None,
        Then(status="missed", escalate=True),
        f"{REF} §6.5",
    ),
]


@pytest.mark.parametrize(
    ("item", "outcome", "changes", "then", "section"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_what_an_outcome_leads_to(
    item: dict[str, Any],
    outcome: dict[str, Any],
    changes: tuple[str, ...] | None,
    then: Then,
    section: str,
) -> None:
    decision = _decide(item, outcome, changes)
    assert (
        Then(
            decision.status,
            decision.replan,
            decision.escalate,
            decision.discharge,
            decision.alert,
            decision.review_reason,
        )
        == then
    )
    assert section in decision.source
    assert decision.rationale


# (id citing the section, the item as planned, the outcome, the field refused)
REFUSED: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("§3.2 an unknown result at an IV session", IV_SESSION, {"result": "bogus"}, "result"),
    ("§6.4 discharge is decided at plan review, not at a session", IV_SESSION,
     {"result": "discharge"}, "result"),
    ("§6.5 continue is a plan review's result, not a vaccine's", VACCINE,
     {"result": "continue"}, "result"),
    ("§6.5 an unknown result at a plan review", REVIEW, {"result": "trial"}, "result"),
    ("§3.5 a result that is not text", TROUGH, {"result": 1}, "result"),
    ("§3.5 an unknown lab name at a trough", TROUGH, _igg(5.0, igg=5.0), "values.igg"),
    ("§3.5 an IgG a record cannot hold (50 g/L)", TROUGH, _igg(50.0), "values.igg_g_l"),
    ("§3.5 an IgG that is not a number", TROUGH,
     {"result": "done", "values": {"igg_g_l": "low"}}, "values.igg_g_l"),
    ("§3.5 results are dated by the outcome's day", TROUGH,
     {"result": "done", "values": {"date": "2026-01-01", "igg_g_l": 6.0}}, "values.date"),
    ("§3.5 results belong to the trough, not the session", IV_SESSION, _igg(6.0), "values"),
    ("§3.5 a missed trough has no results", TROUGH,
     {"result": "missed", "values": {"igg_g_l": 6.0}}, "values"),
    ("§3.2 a session given with no grams (0 g)", IV_SESSION,
     {"result": "given", "dose_g": 0}, "dose_g"),
    ("§3.2 a dose that is not a number", IV_SESSION,
     {"result": "given", "dose_g": "10"}, "dose_g"),
    ("§3.2 a missed session has no dose", IV_SESSION,
     {"result": "missed", "dose_g": 10.0}, "dose_g"),
    ("§4 a vaccine has no dose in grams", VACCINE, {"result": "given", "dose_g": 0.5}, "dose_g"),
    ("§3.2 an unknown field of the form", IV_SESSION, {"result": "given", "dose": 10.0}, "dose"),
    ("§1 a kind of item no plan has", {**IV_SESSION, "kind": "transfusion"},
     {"result": "given"}, "kind"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("item", "outcome", "field"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
)
def test_an_outcome_the_item_cannot_have_is_refused(
    item: dict[str, Any], outcome: dict[str, Any], field: str
) -> None:
    """Refused before anything is written: the store's transaction holds nothing of it."""
    with pytest.raises(InvalidInput) as refused:
        _decide(item, outcome)
    assert refused.value.field == field


def test_the_texts_the_pathway_shows_are_kept() -> None:
    """Notes and reasons read as the flows, the store's tests and the alerts expect."""
    missed = _decide(IV_SESSION, MISSED)
    assert missed.notes == ("ig_session:2026-12-01 missed: escalate to the coordinator",)
    low = _decide(TROUGH, _igg(5.2))
    assert (low.notes, low.low_trough) == ((LOW,), (5.2, 7.0))
    assert _decide(REVIEW, {"result": "discharge"}).notes == ("discharged",)


def test_a_session_records_the_dose_given_else_the_planned_one() -> None:
    assert _decide(IV_SESSION, {"result": "given", "dose_g": 12.5}).dose_g == 12.5
    assert _decide(IV_SESSION, {"result": "given", "dose_g": None}).dose_g == 10.0
    assert _decide(SC_SESSION, {}).dose_g == 2.5  # the form's default result is "given"
    assert _decide(VACCINE, {"result": "given"}).dose_g is None


def test_the_source_is_the_protocol_citation() -> None:
    """A parameter's citation is quoted exactly as the protocol gives it."""
    decision = _decide(TROUGH, _igg(5.2))
    assert PROTOCOL.source("immunoglobulin.trough_target_g_l") in decision.source
    missed = _decide(IV_SESSION, MISSED)
    assert missed.source.startswith("unit policy (a missed item is escalated")
    assert PROTOCOL.source("immunoglobulin.on_replacement_within_intervals") in missed.source


def test_context_and_decision_are_frozen() -> None:
    context = OutcomeContext.build(
        kind="ig_trough",
        key=TROUGH["key"],
        details=TROUGH,
        outcome=_igg(6.0),
        protocol=PROTOCOL,
        today=TODAY,
    )
    decision = decide_outcome(context)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.replan = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        context.values["igg_g_l"] = 9.0  # type: ignore[index]
    assert decide_outcome(context) == decision  # the same context, the same decision


def test_the_rule_touches_no_store_clock_or_environment() -> None:
    tree = ast.parse(Path(outcomes.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m and m.split(".")[0] in {"os", "time", "sqlmodel"}}
    assert not {m for m in imported if m and m.startswith(("sidflows.store", "prefect"))}
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not called & {"now", "today", "utcnow", "getenv"}
