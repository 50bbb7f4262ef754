"""The sixth specialist review's four clinical fixes, as tables of cases.

Every case's id cites the section of docs/clinical-reference.md it follows: §3.11 a trough
below the indication's target proposes the change the published dose-trough slope asks
for (Lee, J Clin Immunol 2020;40:682; Berger, J Clin Immunol 2013;33:984), a higher dose
as well as a shorter interval when the trough is far below, within the protocol's maximum;
§3.12 rounding to whole vials never goes below the proposed dose unless the maximum
forbids it; §2.13 a CD19 count without the lab's lower limit is judged against the
protocol's age table or Hill 2019's aplasia threshold (Blood Rev 2019;38:100596), and
says which; §2.14 a child with no immunosuppressive cause recorded (hydroxychloroquine,
sulfasalazine: not immunosuppressive, IDSA 2013) is neither "transient" nor "permanent":
the plan says so, and asks the clinician whether the child is in scope.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    ago,
    born,
    decisions_text,
    document_for,
    facts_for,
    ig_dose,
    items_of,
    lab,
    make_doc,
    make_referral,
    plan_for,
    treatment,
    with_protocol,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sidflows.errors import InvalidInput
from sidflows.protocol import Cd19LowerLimit
from sidflows.referral import validate_referral
from sidflows.rules.ig_dose import dose_for, round_to_vials
from sidflows.rules.model import Plan

CAR_T = treatment("tisagenlecleucel", "car_t", ago(months=8), ago(months=8))
CHOP = "Pediatr Blood Cancer 2020;67:e28092"
LEE = "Lee JL et al., J Clin Immunol 2020;40:682"
BERGER = "Berger M et al., J Clin Immunol 2013;33:984"


def _on_ig(route: str, g_per_kg: float, every: int) -> list[dict[str, Any]]:
    """Three doses at the interval in use, and a trough drawn on the last one's day."""
    return [ig_dose(ago(days=every * k), g_per_kg, route) for k in (3, 2, 1)]


def _plan(
    *,
    route: str,
    weight: float,
    g_per_kg: float,
    every: int,
    trough: float,
    car_t: bool = False,
    protocol: Any = PROTOCOL,
) -> Plan:
    labs = [lab(ago(days=every), igg_g_l=trough, **({"cd19_per_ul": 0} if car_t else {}))]
    return plan_for(
        make_referral(
            birth_date=born(years=8),
            weight_kg=weight,
            label="B-ALL" if car_t else "secondary immunodeficiency",
            treatments=[CAR_T] if car_t else [],
            labs=labs,
            immunoglobulin_doses=_on_ig(route, g_per_kg, every),
        ),
        protocol=protocol,
    )


def _sessions(plan: Plan) -> list[Any]:
    return items_of(plan, "ig_session")


def _interval(plan: Plan) -> int:
    s = _sessions(plan)
    return int((s[2].due - s[1].due).days)  # past the first (it may be brought forward)


def _proposal(plan: Plan) -> Any:
    return next(
        d
        for d in plan.decisions
        if d.topic == "immunoglobulin"
        and (d.decision.startswith("proposed") or "maximum dose" in d.decision)
    )


# ------------------------------------------------------------ §3.11 a trough below its target

# (id, route, kg, g/kg in use, days in use, trough, after CAR-T, g/kg proposed, interval
#  proposed, the rationale says the target is still out of reach)
TROUGH_CASES: list[tuple[str, str, float, float, int, float, bool, float, int, bool]] = [
    (
        "§3.11/§3.6 CAR-T aplasia, trough 3 on 0.4 g/kg every 28 d: dose AND interval, "
        "capped at 0.6 g/kg every 21 d, still short of > 10",
        "iv",
        25,
        0.4,
        28,
        3.0,
        True,
        0.6,
        21,
        True,
    ),
    (
        "§3.11 target 7, trough 6.5 on 0.4 every 28: the shorter interval alone suffices",
        "iv",
        30,
        0.4,
        28,
        6.5,
        False,
        0.4,
        21,
        False,
    ),
    (
        "§3.11 target 7, trough 5 on 0.4 every 28: neither alone suffices: both",
        "iv",
        30,
        0.4,
        28,
        5.0,
        False,
        0.51,
        21,
        False,
    ),
    (
        "§3.11 target 7, trough 5.5 already every 21: a higher dose at 21 days",
        "iv",
        30,
        0.4,
        21,
        5.5,
        False,
        0.55,
        21,
        False,
    ),
    (
        "§3.11 SC target 7, trough 6 on 0.1 g/kg weekly: a higher weekly dose",
        "sc",
        20,
        0.1,
        7,
        6.0,
        False,
        0.13,
        7,
        False,
    ),
    (
        "§3.11 at the maximum 0.6 g/kg every 28: the shorter interval, still short of 7",
        "iv",
        30,
        0.6,
        28,
        5.0,
        False,
        0.6,
        21,
        True,
    ),
    (
        "§3.11/§3.6 SC after CAR-T, trough 4 on 0.1 weekly: up to the 0.2 maximum, still short",
        "sc",
        20,
        0.1,
        7,
        4.0,
        True,
        0.2,
        7,
        True,
    ),
]


@pytest.mark.parametrize(
    ("route", "kg", "g_per_kg", "every", "trough", "car_t", "want", "interval", "short"),
    [pytest.param(*rest, id=case) for case, *rest in TROUGH_CASES],
)
def test_a_low_trough_proposes_what_the_slope_asks(
    route: str,
    kg: float,
    g_per_kg: float,
    every: int,
    trough: float,
    car_t: bool,
    want: float,
    interval: int,
    short: bool,
) -> None:
    """§3.11: the smallest change that reaches the target by the published slope, within the
    route's maximum and shortest interval; the rationale names the slope and the target."""
    plan = _plan(route=route, weight=kg, g_per_kg=g_per_kg, every=every, trough=trough, car_t=car_t)
    proposal = _proposal(plan)
    dosing = PROTOCOL.immunoglobulin.route(route)
    sessions = _sessions(plan)
    assert sessions, proposal
    assert _interval(plan) == interval, proposal
    assert proposal.decision.startswith("proposed"), proposal
    assert f"{want:.2f} g/kg" in proposal.decision or want == g_per_kg, proposal
    # Rounded up to whole vials: never below the proposal, never above the maximum.
    for s in sessions:
        assert (
            s.dose_g >= round(want * kg, 1) - 1e-9 or s.dose_g_per_kg >= dosing.max_g_per_kg - 0.01
        )
        assert s.dose_g <= dosing.max_g_per_kg * kg + 1e-9
    assert ("still below the target" in proposal.rationale) is short, proposal.rationale
    assert (LEE if route == "iv" else BERGER) in proposal.source
    assert "estimated need" in proposal.rationale
    if car_t:
        assert CHOP in proposal.source
        assert "target 10 g/L" in proposal.rationale


def test_a_low_trough_at_the_maximum_is_a_clinician_decision() -> None:
    """§3.11: at 0.6 g/kg every 21 days the plan proposes nothing beyond the protocol."""
    plan = _plan(route="iv", weight=30, g_per_kg=0.6, every=21, trough=5.0)
    proposal = _proposal(plan)
    assert "maximum dose and shortest interval" in proposal.decision
    assert "clinician decision" in proposal.rationale
    assert all(s.dose_g <= 18.0 for s in _sessions(plan))


def test_the_slope_is_a_protocol_parameter() -> None:
    """§3.11: Berger 2013's 1.21 g/L per 0.1 g/kg a month, the alternative, asks for less."""
    cautious = _plan(route="iv", weight=30, g_per_kg=0.4, every=28, trough=5.0)
    other = _plan(
        route="iv",
        weight=30,
        g_per_kg=0.4,
        every=28,
        trough=5.0,
        protocol=with_protocol(
            PROTOCOL, "immunoglobulin.iv.trough_rise_g_l_per_0_1_g_kg_month", 1.21
        ),
    )

    def per_day(plan: Plan) -> float:
        return float(_sessions(plan)[1].dose_g) / _interval(plan)

    assert per_day(other) < per_day(cautious)


# ------------------------------------------------------------------ §3.12 rounding to vials

# (id, target g, low g, high g, vial sizes, expected (grams, whole vials))
ROUNDING_CASES: list[tuple[str, float, float, float, tuple[float, ...], tuple[float, bool]]] = [
    (
        "§3.12 2.3 g on 1/2/4/10 g vials: up to 3, not back to 2",
        2.3,
        2.0,
        4.0,
        (1.0, 2.0, 4.0, 10.0),
        (3.0, True),
    ),
    (
        "§3.12 10.2 g on the IV vials: 10.5, the next total up",
        10.2,
        6.0,
        18.0,
        (1.0, 2.5, 5.0, 10.0, 20.0),
        (10.5, True),
    ),
    ("§3.12 an exact total stays", 12.5, 6.0, 18.0, (2.5, 5.0), (12.5, True)),
    (
        "§3.12 up would pass the maximum: the largest within it",
        16.2,
        8.1,
        16.2,
        (1.0, 2.5, 5.0, 10.0, 20.0),
        (16.0, True),
    ),
    (
        "§3.12 no whole-vial total fits: a partial vial, not below",
        0.61,
        0.3,
        0.9,
        (1.0,),
        (0.7, False),
    ),
]


@pytest.mark.parametrize(
    ("target", "low", "high", "vials", "expected"),
    [pytest.param(*rest, id=case) for case, *rest in ROUNDING_CASES],
)
def test_rounding_keeps_the_proposed_dose(
    target: float, low: float, high: float, vials: tuple[float, ...], expected: tuple[float, bool]
) -> None:
    """§3.12: the nearest whole-vial total not below the proposal, unless above the maximum."""
    assert round_to_vials(target, low, high, vials) == expected


def test_an_sc_increase_never_rounds_back_to_the_old_dose() -> None:
    """§3.12: 20 kg on 2 g SC weekly, trough 6.5 < 7: the increase is given (3 g), named."""
    plan = _plan(route="sc", weight=20, g_per_kg=0.1, every=7, trough=6.5)
    assert {s.dose_g for s in _sessions(plan)} == {3.0}
    assert "rounded up to whole vials, never below the proposed dose" in decisions_text(
        plan, "immunoglobulin"
    )


def test_rounding_down_at_the_maximum_is_said() -> None:
    """§3.12: 27 kg at 0.6 g/kg IV (16.2 g): 16 g, and the rationale says why it is below."""
    plan = _plan(route="iv", weight=27, g_per_kg=0.6, every=21, trough=8.0)
    assert {s.dose_g for s in _sessions(plan)} == {16.0}
    assert "rounded down" in decisions_text(plan, "immunoglobulin")


@settings(max_examples=200, deadline=None)
@given(
    route=st.sampled_from(["iv", "sc"]),
    weight=st.floats(min_value=2.5, max_value=120.0),
    share=st.floats(min_value=0.0, max_value=1.0),
)
def test_rounding_is_never_below_the_proposal_nor_above_the_maximum(
    route: str, weight: float, share: float
) -> None:
    """§3.12 property: grams >= the proposed dose unless that would pass the maximum, and
    never above the maximum per kg."""
    dosing = PROTOCOL.immunoglobulin.route(route)
    g_per_kg = dosing.min_g_per_kg + share * (dosing.max_g_per_kg - dosing.min_g_per_kg)
    grams, note = dose_for(dosing, weight, g_per_kg)
    high = dosing.max_g_per_kg * weight
    assert grams <= high + 1e-9
    if grams < g_per_kg * weight - 0.05:
        assert "rounded down" in note or "partial vial" in note
        assert grams > high - max(dosing.vial_sizes_g) - 1e-9


# ----------------------------------------------------------- §2.13 CD19 without a lab limit

# (id, CD19/uL, lab limit or None, age table row or None, depleted, words in the reason)
CD19_CASES: list[tuple[str, float, float | None, float | None, bool, str]] = [
    (
        "§2.13 CAR-T, CD19 150 without a limit: above Hill's 20: recovered",
        150,
        None,
        None,
        False,
        "",
    ),
    (
        "§2.13 CAR-T, CD19 10 without a limit: aplasia (Hill 2019)",
        10,
        None,
        None,
        True,
        "B-cell aplasia (Hill 2019) 20/uL (no lab limit given)",
    ),
    (
        "§2.13 CAR-T, CD19 150 below the lab's 200: depleted",
        150,
        200,
        None,
        True,
        "the lab's lower limit 200/uL",
    ),
    (
        "§2.13 CAR-T, CD19 150, the protocol's age row 200: depleted",
        150,
        None,
        200,
        True,
        "the protocol's age table 200/uL (no lab limit given)",
    ),
    ("§2.13 the lab's limit wins over the age row", 150, 100, 200, False, ""),
]


@pytest.mark.parametrize(
    ("cd19", "limit", "row", "depleted", "words"),
    [pytest.param(*rest, id=case) for case, *rest in CD19_CASES],
)
def test_cd19_without_a_lab_limit_can_show_recovery(
    cd19: float, limit: float | None, row: float | None, depleted: bool, words: str
) -> None:
    """§2.13: the lab's limit, else the age row, else Hill 2019's 20/uL; the reason says which."""
    protocol = PROTOCOL
    if row is not None:
        table = (Cd19LowerLimit(below_age_months=216, per_ul=row),)
        protocol = with_protocol(PROTOCOL, "grading.cd19_lower_limit", table)
    values: dict[str, float] = {"cd19_per_ul": cd19, "igg_g_l": 8.0}
    if limit is not None:
        values["cd19_lower_limit_per_ul"] = limit
    referral = make_referral(
        birth_date=born(years=8),
        weight_kg=25,
        treatments=[CAR_T],
        labs=[lab(ago(days=5), **values)],
    )
    depletion = facts_for(referral, protocol=protocol).b_cell_depletion
    assert (depletion is not None) is depleted, depletion
    plan = plan_for(referral, protocol=protocol)
    if depleted:
        assert depletion is not None
        assert words in depletion.reason
        assert plan.grading.level == "high"
    else:
        assert not any("aplasia" in r for r in plan.grading.reasons), plan.grading.reasons


def test_a_trial_off_names_the_limit_it_used() -> None:
    """§2.13/§3.7: on IG after CAR-T, CD19 150 without a limit: trial off, naming Hill 2019."""
    referral = make_referral(
        birth_date=born(years=8),
        weight_kg=25,
        treatments=[CAR_T],
        labs=[lab(ago(days=28), igg_g_l=8.0, cd19_per_ul=150)],
        immunoglobulin_doses=[ig_dose(ago(days=56)), ig_dose(ago(days=28))],
    )
    plan = plan_for(referral)
    first = next(d for d in plan.decisions if d.topic == "immunoglobulin")
    assert first.decision.startswith("propose a trial off IG"), first
    assert "B-cell aplasia (Hill 2019) 20/uL (no lab limit given)" in first.rationale
    assert "Hill 2019" in first.source


def test_above_aplasia_is_not_the_age_range_for_discharge() -> None:
    """§2.13/§6.4: a count above 20/uL without a lab limit is no longer aplasia, but it is not
    shown within the age range: recovery for discharge still asks for it."""
    plan = plan_for(
        make_referral(labs=[lab(ago(days=10), igg_g_l=8.0, cd19_per_ul=300, cd4_per_ul=800)])
    )
    recovery = next(d for d in plan.decisions if d.decision == "not yet recovered")
    assert "CD19 within the age range" in recovery.rationale


def test_a_cd19_percentage_is_refused_not_read_as_a_count() -> None:
    """§2.13: the format carries the absolute count only; a percentage is refused naming the
    field, so it is never read as cells/uL."""
    with pytest.raises(InvalidInput, match="cd19_percent"):
        validate_referral(make_doc(labs=[lab(ago(days=5), cd19_percent=0.5)]))


# ------------------------------------------------------- §2.14 no immunosuppression found

HCQ = treatment("hydroxychloroquine", "other_biologic", ago(months=6))
SSZ = treatment("sulfasalazine", "other_biologic", ago(months=6))
MTX = treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.3)
VCR = treatment("vincristine", "chemotherapy", ago(months=2))
ECU = treatment("eculizumab", "other_biologic", ago(months=2))

# (id, treatments, transient (None: no cause found), words in the grading's last reason)
SCOPE_CASES: list[tuple[str, list[dict[str, Any]], bool | None, str]] = [
    ("§2.14 hydroxychloroquine alone: no cause found", [HCQ], None, "only hydroxychloroquine"),
    ("§2.14 sulfasalazine alone: no cause found", [SSZ], None, "only sulfasalazine"),
    ("§2.14 both: no cause found", [HCQ, SSZ], None, "not immunosuppressive"),
    ("§2.14 no treatment recorded: no cause found", [], None, "no immunosuppressive treatment"),
    ("§2.14 with methotrexate (no end): not transient", [HCQ, MTX], False, "not transient"),
    ("§2.5 chemotherapy: transient", [VCR], True, "transient: the causes are time-limited"),
    (
        "§2.14/§2.12 a complement inhibitor is a cause: not transient while it goes on",
        [ECU],
        False,
        "acquired complement deficiency",
    ),
]


@pytest.mark.parametrize(
    ("treatments", "transient", "words"),
    [pytest.param(t, tr, w, id=case) for case, t, tr, w in SCOPE_CASES],
)
def test_the_words_follow_what_was_found(
    treatments: list[dict[str, Any]], transient: bool | None, words: str
) -> None:
    """§2.14: "transient" only for time-limited causes; none found is said, and the scope
    is a decision for the clinician; no lab series follows a deficiency nobody has shown."""
    referral = make_referral(
        label="juvenile idiopathic arthritis",
        treatments=treatments,
        labs=[lab(ago(days=10), igg_g_l=6.0)],
    )
    plan = plan_for(referral)
    assert plan.grading.transient is transient, plan.grading.reasons
    assert words in plan.grading.reasons[-1]
    assert document_for(referral)["grading"]["transient"] is transient
    scope = [d for d in plan.decisions if d.decision.startswith("no immunosuppression found")]
    labs = [
        d for d in plan.decisions if d.topic == "reassessment" and d.decision.startswith("labs")
    ]
    if transient is None:
        assert len(scope) == 1
        assert scope[0].topic == "grading"
        assert "clinician decision" in scope[0].decision
        assert "IDSA 2013" in scope[0].source
        assert "transient: the causes are time-limited" not in " ".join(plan.grading.reasons)
        assert all("transient deficiencies" not in d.rationale for d in labs)
        assert len(items_of(plan, "reassessment")) == 1  # one check, not a series
    else:
        assert not scope


def test_markers_without_a_cause_are_said_as_such() -> None:
    """§2.14: a severe CD4 with no treatment recorded is graded high, and its cause is named
    a clinician question, not called transient."""
    plan = plan_for(make_referral(labs=[lab(ago(days=10), igg_g_l=7.0, cd4_per_ul=100)]))
    assert plan.grading.level == "high"
    assert plan.grading.transient is None
    assert "markers graded high without a recorded cause" in plan.grading.reasons[-1]
