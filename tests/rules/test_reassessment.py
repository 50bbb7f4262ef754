"""Reassessment of transient deficiencies and plan reviews: docs/clinical-reference.md §6."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    CALENDAR,
    HORIZON_END,
    START,
    ago,
    context_for,
    decisions_text,
    ig_dose,
    lab,
    make_referral,
    plan_for,
    treatment,
)

from sidflows.calendar import add_months
from sidflows.rules.grading import grade
from sidflows.rules.immunoglobulin import decide_immunoglobulin
from sidflows.rules.model import Decision, Plan, PlanReviewItem, ReassessmentItem
from sidflows.rules.reassessment import plan_reassessments

NORMAL_IGG = [lab(ago(days=10), igg_g_l=8.0)]
CD20_PANEL = ("IgG", "IgA", "IgM", "CD19")
CHEMO_PANEL = ("IgG", "IgA", "IgM", "CD3", "CD4", "CD8", "CD19", "NK", "vaccine titres")


def _plan(**fields: Any) -> Plan:
    fields.setdefault("labs", NORMAL_IGG)
    return plan_for(make_referral(**fields))


def _labs(plan: Plan) -> list[ReassessmentItem]:
    """The reassessments, without the anti-HBs a hepatitis B series the plan completes
    books on its own (§4.4) and the vaccine titres moved to the weeks after the plan's
    own doses (§6.3): these tests are of the cadences."""
    return [
        i
        for i in plan.items
        if isinstance(i, ReassessmentItem)
        and i.panel != ("anti-HBs",)
        and "weeks after the vaccine doses of" not in i.reason
    ]


def _moved_titres(plan: Plan) -> list[ReassessmentItem]:
    return [
        i
        for i in plan.items
        if isinstance(i, ReassessmentItem) and "weeks after the vaccine doses of" in i.reason
    ]


def _reviews(plan: Plan) -> list[PlanReviewItem]:
    return [i for i in plan.items if isinstance(i, PlanReviewItem)]


def _recovery(plan: Plan) -> Decision:
    found = [
        d
        for d in plan.decisions
        if d.topic == "reassessment" and "no published recovery criteria" in d.source
    ]
    assert len(found) == 1, [d.decision for d in plan.decisions]
    return found[0]


def test_after_rituximab_every_three_months_from_the_last_dose() -> None:
    """§6: IgG, IgA, IgM, CD19 every 3 months from the last rituximab dose."""
    last = date(2026, 9, 10)
    plan = _plan(
        category="immune_mediated",
        treatments=[treatment("rituximab", "anti_cd20", "2026-08-27", last)],
    )
    expected = [
        CALENDAR.next_working_day(add_months(last, 3 * k))
        for k in range(1, 6)
        if add_months(last, 3 * k) <= HORIZON_END
    ]
    labs = _labs(plan)
    assert [r.due for r in labs] == expected
    assert all(r.panel == CD20_PANEL for r in labs)
    assert "rituximab label" in decisions_text(plan, "reassessment")


def test_after_rituximab_overdue_check_caught_up_at_the_first_day() -> None:
    """§6: a check due before the plan starts, with no lab since, is caught up at once."""
    last = date(2026, 8, 15)  # 3-month check due 2026-11-15; the last lab was 2026-11-12
    plan = _plan(
        category="immune_mediated",
        labs=[lab("2026-11-12", igg_g_l=5.1, cd19_per_ul=3)],
        treatments=[treatment("rituximab", "anti_cd20", "2026-08-01", last)],
    )
    labs = _labs(plan)
    assert labs[0].due == START
    assert "overdue: due 2026-11-15" in labs[0].reason
    assert [r.due for r in labs[1:]] == [
        CALENDAR.next_working_day(add_months(last, 3 * k)) for k in range(2, 6)
    ]


def test_after_rituximab_no_catch_up_when_a_lab_was_drawn_since() -> None:
    """§6: a check that fell before the plan is not repeated when labs were drawn after it."""
    last = date(2026, 8, 15)
    plan = _plan(
        category="immune_mediated",
        labs=[lab("2026-11-18", igg_g_l=5.1, cd19_per_ul=3)],
        treatments=[treatment("rituximab", "anti_cd20", "2026-08-01", last)],
    )
    labs = _labs(plan)
    assert labs[0].due == CALENDAR.next_working_day(add_months(last, 6))
    assert not any("overdue" in r.reason for r in labs)


def test_after_chemotherapy_at_three_six_twelve_months() -> None:
    """§6: after chemotherapy labs at 3, 6 and 12 months after the end, full panel."""
    end = date(2026, 10, 15)
    plan = _plan(
        category="oncology",
        treatments=[treatment("ALL maintenance", "chemotherapy", "2024-06-01", end)],
    )
    labs = _labs(plan)
    assert [r.due for r in labs] == [
        CALENDAR.next_working_day(add_months(end, m)) for m in (3, 6, 12)
    ]
    # The full panel; its titres drawn before the day's vaccines, or moved 6 weeks after
    # doses given in the weeks before the check (§6.3).
    assert all(set(r.panel) <= set(CHEMO_PANEL) for r in labs)
    assert all(set(CHEMO_PANEL) - {"vaccine titres"} <= set(r.panel) for r in labs)
    moved = _moved_titres(plan)
    assert len(moved) + sum("vaccine titres" in r.panel for r in labs) == 3
    assert all(r.panel == ("vaccine titres",) for r in moved)


def test_after_chemotherapy_overdue_three_month_check() -> None:
    """§6: the 3-month check after chemotherapy, missed, is caught up at the first day."""
    end = date(2026, 7, 1)  # 3 months: 2026-10-01, the last lab 2026-09-15
    plan = _plan(
        category="oncology",
        labs=[lab("2026-09-15", igg_g_l=8.0)],
        treatments=[treatment("vincristine", "chemotherapy", "2026-01-01", end)],
    )
    labs = _labs(plan)
    assert labs[0].due == START
    assert "overdue" in labs[0].reason
    assert [r.due for r in labs[1:]] == [
        CALENDAR.next_working_day(add_months(end, m)) for m in (6, 12)
    ]


def test_several_overdue_checks_become_one_visit() -> None:
    """§6: overdue checks are drawn together on the first day (one needle)."""
    end = date(2026, 4, 1)  # 3 and 6 months both passed, no lab since 2026-06-01
    plan = _plan(
        category="oncology",
        labs=[lab("2026-06-01", igg_g_l=8.0)],
        treatments=[treatment("vincristine", "chemotherapy", "2025-06-01", end)],
    )
    labs = _labs(plan)
    assert labs[0].due == START
    assert sum(1 for r in labs if r.due < START + timedelta(days=14)) == 1
    assert [r.due for r in labs[1:]] == [CALENDAR.next_working_day(add_months(end, 12))]


def test_ongoing_treatment_default_cadence() -> None:
    """§6 unit policy: other deficiencies (ongoing treatment) checked every 3 months."""
    plan = _plan(
        category="immune_mediated",
        treatments=[
            treatment("methotrexate", "antimetabolite", "2025-01-01", dose_mg_per_kg_week=0.3)
        ],
    )
    labs = _labs(plan)
    assert [r.due for r in labs] == [
        CALENDAR.next_working_day(add_months(START, 3 * k)) for k in range(4)
    ]
    assert "unit policy" in decisions_text(plan, "reassessment")


def test_no_igg_result_asks_for_a_baseline() -> None:
    """§3/§6: no IgG result: a baseline panel on the first day before deciding on IG."""
    plan = _plan(labs=[lab(ago(days=10), cd19_per_ul=200)])
    first = _labs(plan)[0]
    assert first.due == START
    assert {"IgG", "IgA", "IgM", "CD19"} <= set(first.panel)


def test_plan_review_every_three_months() -> None:
    """§6 unit policy: the plan is reviewed every 3 months over the horizon."""
    reviews = _reviews(_plan())
    assert [r.due for r in reviews] == [date(2027, 3, 1), date(2027, 6, 1), date(2027, 9, 1)]
    assert all(r.reason == "periodic review" for r in reviews)
    assert all(CALENDAR.is_working_day(r.due) for r in reviews)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="§6 no deficiency at all"),
        pytest.param(
            {"treatments": [treatment("vincristine", "chemotherapy", "2025-01-01", "2025-06-01")]},
            id="§6 long after chemotherapy",
        ),
        pytest.param({"labs": [lab(ago(days=10), igg_g_l=1.0)]}, id="§3 starting IG replacement"),
    ],
)
def test_plan_reviews_always_present(fields: dict[str, Any]) -> None:
    """§6: whatever the case, plan reviews continue: recovery is decided there."""
    assert len(_reviews(_plan(**fields))) == 3


RECOVERED = {
    "labs": [
        lab(ago(days=10), igg_g_l=8.0, cd19_per_ul=300, cd19_lower_limit_per_ul=100, cd4_per_ul=800)
    ],
    "treatments": [treatment("vincristine", "chemotherapy", "2025-01-01", "2025-06-01")],
}


def test_recovery_met_is_offered_to_the_clinician_never_a_discharge() -> None:
    """§6: recovery criteria met: discharge 'can be considered at plan review', not done."""
    plan = _plan(**RECOVERED)
    decision = _recovery(plan)
    assert decision.decision == "recovery criteria met: discharge can be considered at plan review"
    assert "clinician decision" in decision.source
    assert _reviews(plan)  # the plan goes on until a clinician decides
    assert {i.kind for i in plan.items} <= {
        "ig_session",
        "ig_trough",
        "vaccine_dose",
        "prophylaxis",
        "reassessment",
        "plan_review",
    }


RECOVERY_MISSING: list[tuple[str, dict[str, Any], str]] = [
    (
        "§6 IgG below the lower limit",
        {
            "labs": [
                lab(
                    ago(days=10),
                    igg_g_l=4.0,
                    cd19_per_ul=300,
                    cd19_lower_limit_per_ul=100,
                    cd4_per_ul=800,
                )
            ]
        },
        "IgG 4 g/L vs lower limit",
    ),
    (
        "§6, §2.13 CD19 without the lab's lower limit: above aplasia is not the age range",
        {"labs": [lab(ago(days=10), igg_g_l=8.0, cd19_per_ul=300, cd4_per_ul=800)]},
        "CD19 within the age range",
    ),
    (
        "§6 CD19 below range",
        {
            "labs": [
                lab(
                    ago(days=10),
                    igg_g_l=8.0,
                    cd19_per_ul=50,
                    cd19_lower_limit_per_ul=100,
                    cd4_per_ul=800,
                )
            ]
        },
        "CD19 below range",
    ),
    (
        "§6 CD4 below the age range",
        {
            "labs": [
                lab(
                    ago(days=10),
                    igg_g_l=8.0,
                    cd19_per_ul=300,
                    cd19_lower_limit_per_ul=100,
                    cd4_per_ul=300,
                )
            ]
        },
        "CD4 300/uL",
    ),
    (
        "§6 no CD4 count",
        {"labs": [lab(ago(days=10), igg_g_l=8.0, cd19_per_ul=300, cd19_lower_limit_per_ul=100)]},
        "CD4",
    ),
    (
        "§6 the cause has not ended",
        {**RECOVERED, "treatments": [treatment("infliximab", "anti_tnf", "2025-01-01")]},
        "the cause has not ended",
    ),
    (
        "§6 IgG measured on IG replacement does not count",
        {**RECOVERED, "immunoglobulin_doses": [ig_dose(ago(days=20))]},
        "IgG off IG replacement",
    ),
]


@pytest.mark.parametrize(
    ("fields", "missing"), [pytest.param(f, m, id=case) for case, f, m in RECOVERY_MISSING]
)
def test_not_yet_recovered_names_what_is_missing(fields: dict[str, Any], missing: str) -> None:
    """§6: when a recovery datum is missing the plan says what is still to show."""
    decision = _recovery(_plan(**fields))
    assert decision.decision == "not yet recovered"
    assert missing in decision.rationale


def test_trial_off_is_not_recovery() -> None:
    """§3/§6: a trial off IG is a step, not recovery: the recheck comes first."""
    plan = _plan(
        labs=[
            lab(
                ago(days=10),
                igg_g_l=8.0,
                cd19_per_ul=300,
                cd19_lower_limit_per_ul=100,
                cd4_per_ul=800,
            )
        ],
        immunoglobulin_doses=[ig_dose(ago(days=20))],
        treatments=[treatment("rituximab", "anti_cd20", "2025-06-01", "2025-07-01")],
    )
    assert _recovery(plan).decision == "not yet recovered"


def test_labs_closer_than_two_weeks_are_merged() -> None:
    """§6: checks closer than 14 days are drawn together; panels are joined."""
    plan = _plan(
        category="oncology",
        treatments=[
            treatment("R-CHOP", "chemotherapy", "2026-05-01", "2026-10-15"),
            treatment("rituximab", "anti_cd20", "2026-05-01", "2026-10-20"),
        ],
    )
    labs = _labs(plan)
    for a, b in itertools.pairwise(labs):
        assert (b.due - a.due).days >= 14
    assert all(CALENDAR.is_working_day(r.due) for r in labs)
    assert labs[0].due >= START
    assert labs[-1].due <= HORIZON_END


def test_series_titres_moved_past_the_horizon_are_said_not_dropped() -> None:
    """§6.2, §6.3: the 12-month check after chemotherapy falls in the horizon's last weeks,
    a week after a vaccine dose; its vaccine titres move 6 weeks after the dose, past the
    plan's last day. They are not booked, and a decision says when they are due."""
    end = add_months(HORIZON_END, -12) - timedelta(days=10)
    referral = make_referral(
        category="oncology",
        labs=NORMAL_IGG,
        treatments=[treatment("vincristine", "chemotherapy", "2025-06-01", end)],
    )
    ctx = context_for(referral)
    check = CALENDAR.next_working_day(add_months(end, 12))
    dose = check - timedelta(days=7)
    items, decisions = plan_reassessments(
        ctx,
        ig=decide_immunoglobulin(ctx),
        grading=grade(ctx),
        titres=[],
        dose_days=(dose,),
    )
    last = [i for i in items if i.due == check]
    assert last, [(i.due, i.panel) for i in items]
    assert "vaccine titres" not in last[0].panel
    assert not [i for i in items if i.due > check and "vaccine titres" in i.panel]
    notes = [d for d in decisions if "after this plan's last day" in d.decision]
    assert len(notes) == 1, [d.decision for d in decisions]
    due = CALENDAR.next_working_day(dose + timedelta(weeks=6))
    assert notes[0].decision.startswith(f"vaccine titres from {due}")
    assert f"book them on or after {due}" in notes[0].decision
    assert f"vaccine doses of {dose}" in notes[0].rationale
    assert "too soon" in notes[0].rationale
    assert notes[0].source
    # No other decision speaks of those titres as if they were booked.
    assert not [d for d in decisions if d.decision.startswith("labs") and "titres" in d.decision]


def test_series_titres_due_after_the_horizon_are_said_not_dropped() -> None:
    """§6.3: titres 6 weeks after the last dose of a series that ends in the horizon's last
    weeks are due after the plan's last day: not booked, and a decision says when."""
    referral = make_referral(labs=NORMAL_IGG)
    ctx = context_for(referral)
    last_dose = HORIZON_END - timedelta(weeks=3)
    items, decisions = plan_reassessments(
        ctx,
        ig=decide_immunoglobulin(ctx),
        grading=grade(ctx),
        titres=[(last_dose, "polio titres")],
    )
    assert not [i for i in items if "polio titres" in i.panel]
    notes = [d for d in decisions if "after this plan's last day" in d.decision]
    assert len(notes) == 1, [d.decision for d in decisions]
    due = CALENDAR.next_working_day(last_dose + timedelta(weeks=6))
    assert notes[0].decision.startswith(f"polio titres from {due}")
    assert "too soon" not in notes[0].rationale  # not moved by doses: the series' own weeks
