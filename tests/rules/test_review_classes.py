"""The classes of error a paediatric immunologist's review found, each as a table of cases.

Every case's id cites the section of docs/clinical-reference.md it follows:
§2.6 B-cell depletion outlasts the treatment; §3.6 IG after CAR-T; §3.7/§3.8 a child on
IG stays on IG; §3.5 troughs are troughs; §4.7 an IG course counts as a course; §8 coded
diagnoses and drugs; §2.3/§6.6 every measure counts, fresh; §6.6 doses in their units.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    START,
    TODAY,
    ago,
    context_for,
    decisions_text,
    ig_dose,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
)

from sidflows.calendar import add_months
from sidflows.rules.grading import grade
from sidflows.rules.immunoglobulin import decide_immunoglobulin

CAR_T = treatment("tisagenlecleucel", "car_t", ago(months=10), ago(months=10))
RITUXIMAB_LONG_AGO = treatment("rituximab", "anti_cd20", ago(months=12), ago(months=11))


def _grading(**fields: Any) -> Any:
    return grade(context_for(make_referral(**fields)))


def _ig(**fields: Any) -> Any:
    return decide_immunoglobulin(context_for(make_referral(**fields)))


# ------------------------------------------------------------------ §2.6 B-cell depletion

DEPLETION_CASES: list[tuple[str, dict[str, Any], str, str | None]] = [
    (
        "§2.6 CAR-T 10 months ago, CD19 0 (absent B cells) -> high, named",
        {"treatments": [CAR_T], "labs": [lab(ago(days=5), cd19_per_ul=0)]},
        "high",
        "B-cell depletion after tisagenlecleucel",
    ),
    (
        "§2.6 CAR-T 10 months ago, CD19 below the lab's limit -> high",
        {
            "treatments": [CAR_T],
            "labs": [lab(ago(days=5), cd19_per_ul=60, cd19_lower_limit_per_ul=100)],
        },
        "high",
        "below the lab's lower limit 100",
    ),
    (
        "§2.6 CAR-T, no CD19 since -> high (aplasia expected until a count shows recovery)",
        {"treatments": [CAR_T]},
        "high",
        "B-cell aplasia expected after tisagenlecleucel",
    ),
    (
        "§2.6 CAR-T, fresh CD19 at the lab's limit -> recovered, not graded by it",
        {
            "treatments": [CAR_T],
            "labs": [lab(ago(days=5), cd19_per_ul=150, cd19_lower_limit_per_ul=100)],
        },
        "none",
        None,
    ),
    (
        "§2.6 CAR-T, CD19 10/uL without a lab limit -> below Hill 2019's 20/uL: high",
        {"treatments": [CAR_T], "labs": [lab(ago(days=5), cd19_per_ul=10)]},
        "high",
        "B-cell aplasia (Hill 2019) 20",
    ),
    (
        "§2.6 rituximab 11 months ago, CD19 still below the lab's limit -> high",
        {
            "treatments": [RITUXIMAB_LONG_AGO],
            "labs": [lab(ago(days=5), cd19_per_ul=5, cd19_lower_limit_per_ul=100)],
        },
        "high",
        "B-cell depletion after rituximab",
    ),
    (
        "§2.6 rituximab 11 months ago, CD19 recovered -> none",
        {
            "treatments": [RITUXIMAB_LONG_AGO],
            "labs": [lab(ago(days=5), cd19_per_ul=250, cd19_lower_limit_per_ul=100)],
        },
        "none",
        None,
    ),
    (
        "§2.6 rituximab 2 months ago, CD19 recovered -> high (counts never shorten the label)",
        {
            "treatments": [treatment("rituximab", "anti_cd20", ago(months=3), ago(months=2))],
            "labs": [lab(ago(days=5), cd19_per_ul=250, cd19_lower_limit_per_ul=100)],
        },
        "high",
        "rituximab label",
    ),
    (
        "§2.6 rituximab 11 months ago, a stale low CD19 still keeps the depletion (cautious)",
        {
            "treatments": [RITUXIMAB_LONG_AGO],
            "labs": [lab(ago(months=5), cd19_per_ul=5, cd19_lower_limit_per_ul=100)],
        },
        "high",
        "B-cell depletion after rituximab",
    ),
]


@pytest.mark.parametrize(
    ("fields", "level", "reason"),
    [pytest.param(f, lv, r, id=case) for case, f, lv, r in DEPLETION_CASES],
)
def test_b_cell_depletion_is_graded_by_its_effect(
    fields: dict[str, Any], level: str, reason: str | None
) -> None:
    grading = _grading(**fields)
    assert grading.level == level, grading.reasons
    if reason is not None:
        assert any(reason in r for r in grading.reasons), grading.reasons


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(f, id=case)
        for case, f, lv, _ in DEPLETION_CASES
        if lv == "high" and "never shorten" not in case
    ],
)
def test_b_cell_depletion_blocks_live_vaccines(fields: dict[str, Any]) -> None:
    """§2.6/§4.7: no live vaccine in the horizon while B cells are depleted (no end date)."""
    plan = plan_for(make_referral(**fields))
    assert not [i for i in items_of(plan, "vaccine_dose") if i.live]  # type: ignore[attr-defined]


# ------------------------------------------------------------------ §3.6 IG after CAR-T

CAR_T_IG_CASES: list[tuple[str, dict[str, Any], str, float]] = [
    (
        "§3.6 aplasia after CAR-T, IgG 6.5 -> start (paediatric sources), target 10",
        {"treatments": [CAR_T], "labs": [lab(ago(days=5), igg_g_l=6.5, cd19_per_ul=0)]},
        "start",
        10.0,
    ),
    (
        "§3.6 recovered after CAR-T, IgG 3.5 -> start (Hill 2019 <= 4 g/L), target 7",
        {
            "treatments": [CAR_T],
            "labs": [lab(ago(days=5), igg_g_l=3.5, cd19_per_ul=150, cd19_lower_limit_per_ul=100)],
        },
        "start",
        7.0,
    ),
    (
        "§3.6 recovered after CAR-T, IgG 5 with no infections -> not indicated",
        {
            "treatments": [CAR_T],
            "labs": [lab(ago(days=5), igg_g_l=5.0, cd19_per_ul=150, cd19_lower_limit_per_ul=100)],
        },
        "not_indicated",
        7.0,
    ),
]


@pytest.mark.parametrize(
    ("fields", "status", "target"),
    [pytest.param(f, s, t, id=case) for case, f, s, t in CAR_T_IG_CASES],
)
def test_ig_after_car_t_follows_its_own_indication(
    fields: dict[str, Any], status: str, target: float
) -> None:
    ig = _ig(**fields)
    assert ig.status == status, [d.rationale for d in ig.decisions]
    assert ig.trough_target_g_l == target
    assert "after CAR-T" in ig.decisions[0].decision or status == "not_indicated"


# ------------------------------------------------------------------ §3.7/§3.8 on IG stays on IG

ON_IG_CASES: list[tuple[str, dict[str, Any], str, float]] = [
    (
        "§3.8 SC log 5 weeks behind -> still on IG: continue at the dose in use (0.15 g/kg)",
        {"immunoglobulin_doses": [ig_dose(ago(days=35), 0.15, "sc")]},
        "continue",
        0.15,
    ),
    (
        "§3.8 on IV 0.5 g/kg, normal IgG on IG -> continue 0.5 (not reset to 0.4, not stopped)",
        {
            "immunoglobulin_doses": [ig_dose(ago(days=33), 0.5), ig_dose(ago(days=5), 0.5)],
            "labs": [lab(ago(days=4), igg_g_l=11.0)],
        },
        "continue",
        0.5,
    ),
    (
        "§3.8 on IV 0.8 g/kg -> continued at the protocol's maximum 0.6",
        {"immunoglobulin_doses": [ig_dose(ago(days=10), 0.8)]},
        "continue",
        0.6,
    ),
    (
        "§3.7 on IG, CD19 recovered but rituximab 4 months ago -> continue (cause continues)",
        {
            "treatments": [treatment("rituximab", "anti_cd20", ago(months=5), ago(months=4))],
            "immunoglobulin_doses": [ig_dose(ago(days=10))],
            "labs": [lab(ago(days=5), cd19_per_ul=250, cd19_lower_limit_per_ul=100)],
        },
        "continue",
        0.4,
    ),
    (
        "§3.7 on IG after CAR-T, CD19 absent -> continue (B cells absent)",
        {
            "treatments": [CAR_T],
            "immunoglobulin_doses": [ig_dose(ago(days=10))],
            "labs": [lab(ago(days=5), cd19_per_ul=0)],
        },
        "continue",
        0.4,
    ),
    (
        "§3.7 on IG, cause ended, B cells recovered -> trial off",
        {
            "treatments": [RITUXIMAB_LONG_AGO],
            "immunoglobulin_doses": [ig_dose(ago(days=10))],
            "labs": [lab(ago(days=5), cd19_per_ul=250, cd19_lower_limit_per_ul=100)],
        },
        "trial_off",
        0.4,
    ),
]


@pytest.mark.parametrize(
    ("fields", "status", "g_per_kg"),
    [pytest.param(f, s, g, id=case) for case, f, s, g in ON_IG_CASES],
)
def test_a_child_on_ig_stays_on_ig(fields: dict[str, Any], status: str, g_per_kg: float) -> None:
    referral = make_referral(**fields)
    ig = decide_immunoglobulin(context_for(referral))
    assert ig.status == status, [d.rationale for d in ig.decisions]
    assert ig.gives_ig
    grams = g_per_kg * referral.patient.weight_kg
    assert abs(ig.dose_g - grams) <= 1.0, (ig.dose_g, grams)


def test_trial_off_is_timed_by_the_season() -> None:
    """§3.7: proposed in the season the sessions stop at the start; outside, at 1 June."""
    fields = dict(ON_IG_CASES[-1][1])
    in_season = date(2026, 7, 14)
    july = decide_immunoglobulin(
        context_for(
            make_referral(
                **{
                    **fields,
                    "received": "2026-07-10",
                    "labs": [lab("2026-07-09", cd19_per_ul=250, cd19_lower_limit_per_ul=100)],
                    "immunoglobulin_doses": [ig_dose("2026-07-01")],
                    "treatments": [treatment("rituximab", "anti_cd20", "2025-06-01", "2025-07-01")],
                }
            ),
            today=in_season,
        )
    )
    assert july.status == "trial_off"
    assert july.sessions_until is None
    assert not july.gives_ig
    november = _ig(**fields)
    assert november.status == "trial_off"
    assert november.sessions_until == date(2027, 6, 1)


# ------------------------------------------------------------------ §3.5 troughs are troughs

TROUGH_CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], str | None]] = [
    (
        "§3.5 IgG 5 drawn on the infusion day (before it) -> a trough: every 21 days proposed",
        [ig_dose(ago(days=56)), ig_dose(ago(days=28))],
        [lab(ago(days=28), igg_g_l=5.0)],
        "every 21 days",
    ),
    (
        "§3.5 IgG 5 drawn 2 days before the infusion (window 3) -> a trough",
        [ig_dose(ago(days=56)), ig_dose(ago(days=28))],
        [lab(ago(days=30), igg_g_l=5.0)],
        "every 21 days",
    ),
    (
        "§3.5 IgG 5 drawn 10 days after the infusion -> not a trough: no change, said so",
        [ig_dose(ago(days=20))],
        [lab(ago(days=10), igg_g_l=5.0)],
        None,
    ),
    (
        "§3.8 trough 5 already every 21 days -> a higher dose, within the maximum",
        [ig_dose(ago(days=42)), ig_dose(ago(days=21))],
        [lab(ago(days=21), igg_g_l=5.0)],
        "g/kg instead of 0.4 g/kg",
    ),
]


@pytest.mark.parametrize(
    ("doses", "labs", "proposal"),
    [pytest.param(d, lb, p, id=case) for case, d, lb, p in TROUGH_CASES],
)
def test_troughs_are_troughs(
    doses: list[dict[str, Any]], labs: list[dict[str, Any]], proposal: str | None
) -> None:
    ig = _ig(immunoglobulin_doses=doses, labs=labs)
    text = "\n".join(f"{d.decision} | {d.rationale}" for d in ig.decisions)
    assert ig.status == "continue", text
    if proposal is None:
        assert "proposed:" not in text
        assert "is not a trough" in text
    else:
        assert proposal in text, text
        assert "review the dose" in text
    assert ig.dose_g_per_kg <= PROTOCOL.immunoglobulin.iv.max_g_per_kg + 1e-9


# ------------------------------------------------------------------ §4.7 an IG course

COURSE_CASES: list[tuple[str, list[dict[str, Any]], int]] = [
    ("§4.7 2 g/kg in one day -> 11 months", [ig_dose(ago(days=30), 2.0)], 11),
    (
        "§4.7 1 g/kg on each of two days -> the course's 2 g/kg: 11 months",
        [ig_dose(ago(days=31), 1.0), ig_dose(ago(days=30), 1.0)],
        11,
    ),
    (
        "§4.7 0.4 g/kg twice 28 days apart -> two replacement doses: 8 months",
        [ig_dose(ago(days=300), 0.4), ig_dose(ago(days=272), 0.4)],
        8,
    ),
]


@pytest.mark.parametrize(
    ("doses", "months"), [pytest.param(d, m, id=case) for case, d, m in COURSE_CASES]
)
def test_an_ig_course_counts_as_a_course(doses: list[dict[str, Any]], months: int) -> None:
    plan = plan_for(make_referral(immunoglobulin_doses=doses, birth_date="2020-01-01"))
    last = max(date.fromisoformat(d["date"]) for d in doses)
    dues = [i.due for i in items_of(plan, "vaccine_dose", vaccine="MMR")]
    text = " ".join(r for d in plan.deferred for r in d.reasons)
    assert f"{months} months before MMR" in text or any(
        due >= add_months(last, months) for due in dues
    ), text


# ------------------------------------------------------------------ §8 coded diagnoses, drugs

ALL_PROPHYLAXIS_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "§8.1 ICD-10 C91.0 -> ALL: co-trimoxazole",
        {"code": "C91.0", "system": "http://hl7.org/fhir/sid/icd-10", "label": "leukaemia"},
        "yes",
    ),
    (
        "§8.1 SNOMED 91857003 -> ALL",
        {"code": "91857003", "system": "http://snomed.info/sct", "label": "leukaemia"},
        "yes",
    ),
    ("§8.1 label B-ALL -> ALL", {"label": "B-ALL, relapse"}, "yes"),
    (
        "§8.1 Spanish label leucemia linfoblástica aguda -> ALL",
        {"label": "leucemia linfoblástica aguda"},
        "yes",
    ),
    ("§8.1 Spanish abbreviation LLA-B -> ALL", {"label": "LLA-B"}, "yes"),
    ("§8.1 Wilms tumour -> recognised, no ALL indication", {"label": "Wilms tumour"}, "no"),
    ("§5.1 unknown oncology label -> flagged for the clinician", {"label": "tumour X"}, "flag"),
]


@pytest.mark.parametrize(
    ("diagnosis", "expected"),
    [pytest.param(d, e, id=case) for case, d, e in ALL_PROPHYLAXIS_CASES],
)
def test_diagnosis_by_code_or_curated_label(diagnosis: dict[str, str], expected: str) -> None:
    referral = make_referral(
        category="oncology",
        treatments=[treatment("vincristine", "chemotherapy", ago(months=3))],
    )
    doc_diag = {"category": "oncology", **diagnosis}
    referral = referral.model_copy(update={"diagnosis": type(referral.diagnosis)(**doc_diag)})
    plan = plan_for(referral)
    drugs = {i.drug for i in items_of(plan, "prophylaxis")}  # type: ignore[attr-defined]
    text = decisions_text(plan, "prophylaxis")
    assert ("co-trimoxazole" in drugs) is (expected == "yes"), text
    assert ("diagnosis not recognised" in text) is (expected == "flag"), text


def test_unknown_drug_is_a_decision_for_the_clinician() -> None:
    """§8.2: a drug neither coded nor named by the protocol is said so."""
    plan = plan_for(
        make_referral(treatments=[treatment("zorbumab", "other_biologic", ago(months=1))])
    )
    assert "drug not recognised: zorbumab" in decisions_text(plan, "grading")
    coded = make_referral(
        treatments=[
            {
                **treatment("zorbumab", "anti_cd20", ago(months=1)),
                "code": "L01FA01",
                "system": "http://www.whocc.no/atc",
            }
        ]
    )
    assert "drug not recognised" not in decisions_text(plan_for(coded), "grading")


# ------------------------------------------------------------------ §6.6 fresh results, units


def test_a_stale_result_is_flagged_not_used() -> None:
    """§6.6: an IgG of 5 months ago is not used to decide; it is repeated at the start."""
    plan = plan_for(make_referral(labs=[lab(ago(months=5), igg_g_l=1.0)]))
    assert "stale results: IgG of" in decisions_text(plan, "reassessment")
    assert not items_of(plan, "ig_session")
    first = [r for r in items_of(plan, "reassessment") if r.due == START]  # type: ignore[attr-defined]
    assert first
    assert "IgG" in first[0].panel  # type: ignore[attr-defined]


DOSE_UNIT_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "§6.6 methotrexate 0.05 mg/kg/day -> x 7 = 0.35 mg/kg/week: low, conversion named",
        {"dose_mg_per_kg_day": 0.05},
        "low",
        "0.05 mg/kg/day x 7",
    ),
    (
        "§6.6 methotrexate 0.1 mg/kg/day -> 0.7 mg/kg/week: high, conversion named",
        {"dose_mg_per_kg_day": 0.1},
        "high",
        "converted",
    ),
    (
        "§6.6 methotrexate 10 mg/day at 30 kg -> 2.33 mg/kg/week: high",
        {"dose_mg_day": 10.0},
        "high",
        "mg/day x 7",
    ),
]


@pytest.mark.parametrize(
    ("dose", "level", "note"),
    [pytest.param(d, lv, n, id=case) for case, d, lv, n in DOSE_UNIT_CASES],
)
def test_doses_in_their_units(dose: dict[str, float], level: str, note: str) -> None:
    grading = _grading(
        treatments=[treatment("methotrexate", "antimetabolite", ago(months=2), **dose)]
    )
    assert grading.level == level, grading.reasons
    assert any(note in r for r in grading.reasons), grading.reasons
    assert not any("dose not given" in r for r in grading.reasons), grading.reasons


def test_today_is_the_fixture_day() -> None:
    assert date(2026, 11, 24) == TODAY
