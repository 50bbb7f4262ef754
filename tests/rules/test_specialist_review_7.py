"""The third specialist review's prophylaxis fixes (D1, W1, W10, W7), as tables of cases.

Every case's id cites the section of docs/clinical-reference.md it follows: §5.8 no
co-trimoxazole before 6 weeks of age (WHO; the Swiss Bactrim label; the US label's 2 months
the alternative); §5.9 corticosteroids by dose x duration (ATS 2011, NCCN, EULAR 2022; the
ECIL-5 abstract's "> 4 weeks" the alternative); §5.10 levofloxacin and antifungal
prophylaxis of AML and profound neutropenia said to be outside the plan (Lehrnbecher, Clin
Infect Dis 2020;71:226; J Clin Oncol 2020;38:3205); §5.11 the referral's free-text reason.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    CALENDAR,
    PROTOCOL,
    RECEIVED,
    START,
    TODAY,
    ago,
    decisions_text,
    document_for,
    infection,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    with_protocol,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sidflows.rules.model import Plan

COTRIM = "co-trimoxazole"
SEVERE_CD4 = lab(RECEIVED, cd4_per_ul=90, cd4_percent=8)  # below every severe threshold


def _cotrimoxazole(plan: Plan) -> Any:
    found = [i for i in items_of(plan, "prophylaxis") if i.drug == COTRIM]  # type: ignore[attr-defined]
    assert len(found) <= 1
    return found[0] if found else None


# ------------------------------------------------ §5.8 no co-trimoxazole in the neonatal period

# (id, birth date, weight, indication fields, co-trimoxazole due or None, clinician decision?)
MIN_AGE_CASES: list[tuple[str, str, float, dict[str, Any], date | None, bool]] = [
    (
        "§5.8 12 days old, CD4 90: no co-trimoxazole until 6 weeks (2026-12-24)",
        "2026-11-12",
        3.3,
        {"labs": [SEVERE_CD4]},
        date(2026, 12, 24),
        True,
    ),
    (
        "§5.8 3 days old, CD4 90: from 6 weeks, the first working day on or after it",
        "2026-11-20",
        3.1,
        {"labs": [SEVERE_CD4]},
        date(2027, 1, 4),  # 2027-01-01 is a holiday; the 2nd-3rd a weekend
        True,
    ),
    (
        "§5.8 exactly 6 weeks on the plan's first day: co-trimoxazole that day",
        (CALENDAR.next_working_day(START) - timedelta(weeks=6)).isoformat(),
        4.5,
        {"labs": [SEVERE_CD4]},
        CALENDAR.next_working_day(START),
        False,
    ),
    (
        "§5.8 10 weeks old: co-trimoxazole from the plan's first day",
        ago(days=70),
        5.0,
        {"labs": [SEVERE_CD4]},
        CALENDAR.next_working_day(START),
        False,
    ),
    (
        "§5.8 5-week-old on prednisolone 3 mg/kg/day: 6 weeks on the plan's first day",
        "2026-10-20",
        3.4,
        {
            "treatments": [
                treatment(
                    "prednisolone", "corticosteroid", "2026-10-21", None, dose_mg_per_kg_day=3
                )
            ]
        },
        CALENDAR.next_working_day(START),
        False,
    ),
    (
        "§5.8, §5.1 a course that ends before 6 weeks is still covered after it (ECIL-5: 3 "
        "months after immunosuppression stops): from 6 weeks, the clinician decides before",
        "2026-11-15",
        3.5,
        {
            "treatments": [
                treatment(
                    "prednisolone",
                    "corticosteroid",
                    "2026-11-15",
                    "2026-12-20",
                    dose_mg_per_kg_day=2,
                )
            ]
        },
        CALENDAR.next_working_day(date(2026, 11, 15) + timedelta(weeks=6)),
        True,
    ),
]


@pytest.mark.parametrize(
    ("birth", "weight", "fields", "due", "decided"),
    [pytest.param(b, w, f, d, c, id=case) for case, b, w, f, d, c in MIN_AGE_CASES],
)
def test_no_cotrimoxazole_before_the_minimum_age(
    birth: str, weight: float, fields: dict[str, Any], due: date | None, decided: bool
) -> None:
    """§5.8: below 6 weeks no co-trimoxazole; it starts the day the child reaches 6 weeks,
    and a decision for the clinician names the date and the alternatives until then."""
    today = TODAY
    if "treatments" in fields and fields["treatments"][0]["end"] is not None:
        today = date(2026, 12, 14)  # 4 weeks of the course, which ends before 6 weeks
    plan = plan_for(make_referral(birth_date=birth, weight_kg=weight, **fields), today=today)
    item = _cotrimoxazole(plan)
    six_weeks = date.fromisoformat(birth) + timedelta(weeks=6)
    text = decisions_text(plan, "prophylaxis")
    if due is None:
        assert item is None, text
    else:
        assert item is not None, text
        assert item.due == due
        assert item.due >= six_weeks
        assert item.review > item.due
    clinician = [d for d in plan.decisions if d.decision.startswith("Pneumocystis prophylaxis")]
    assert bool(clinician) == decided, text
    if decided:
        (d,) = clinician
        assert str(six_weeks) in d.decision
        assert "kernicterus" in d.rationale
        assert "atovaquone" in d.rationale
        assert "pentamidine" in d.rationale
        assert "docs/clinical-reference.md §5.8" in d.source


def test_the_us_label_alternative_waits_longer() -> None:
    """§5.8: min_age_weeks 9 (the US label's 2 months, the alternative) moves the start."""
    protocol = with_protocol(PROTOCOL, "prophylaxis.pjp.min_age_weeks", 9)
    birth = date(2026, 10, 20)  # 5 weeks on TODAY
    plan = plan_for(
        make_referral(birth_date=birth.isoformat(), weight_kg=4.0, labs=[SEVERE_CD4]),
        protocol=protocol,
    )
    item = _cotrimoxazole(plan)
    assert item is not None
    assert item.due == CALENDAR.next_working_day(birth + timedelta(weeks=9))


@settings(max_examples=40, deadline=None)
@given(age_days=st.integers(min_value=0, max_value=120))
def test_property_no_cotrimoxazole_item_before_the_minimum_age(age_days: int) -> None:
    """§5.8 (property): for any birth date, no co-trimoxazole item is due before the child is
    6 weeks old; when the plan's first day is earlier, a clinician decision names the date."""
    birth = RECEIVED - timedelta(days=age_days)
    plan = plan_for(make_referral(birth_date=birth.isoformat(), weight_kg=4.0, labs=[SEVERE_CD4]))
    six_weeks = birth + timedelta(weeks=PROTOCOL.prophylaxis.pjp.min_age_weeks)
    item = _cotrimoxazole(plan)
    assert item is not None  # a severe CD4 indicates it, sooner or later
    assert item.due >= six_weeks
    early = six_weeks > CALENDAR.next_working_day(START)
    clinician = [d for d in plan.decisions if d.decision.startswith("Pneumocystis prophylaxis")]
    assert early == bool(clinician)
    assert all(str(six_weeks) in d.decision for d in clinician)


# (id, birth date, weight, co-trimoxazole offered among azithromycin's alternatives)
AZITHRO_ALTERNATIVE_CASES: list[tuple[str, str, float, bool]] = [
    (
        "§5.8 3 weeks old: azithromycin's alternatives leave co-trimoxazole out",
        "2026-11-01",
        3.8,
        False,
    ),
    ("§5.8 5 weeks 6 days old: still left out", "2026-10-21", 4.2, False),
    ("§5.8 7 weeks old: co-trimoxazole among the alternatives", "2026-10-08", 4.6, True),
    ("§5.8 8 years old: co-trimoxazole among the alternatives", "2018-06-01", 26.0, True),
]


@pytest.mark.parametrize(
    ("birth", "weight", "offered"),
    [pytest.param(b, w, o, id=case) for case, b, w, o in AZITHRO_ALTERNATIVE_CASES],
)
def test_azithromycin_alternatives_offer_no_cotrimoxazole_below_its_minimum_age(
    birth: str, weight: float, offered: bool
) -> None:
    """§5.2, §5.8: the antibacterial decision's alternatives come from the protocol; below
    co-trimoxazole's minimum age they leave it out and say until when (the first plan
    offered co-trimoxazole 5 mg/kg to a 3-week-old)."""
    plan = plan_for(
        make_referral(
            birth_date=birth,
            weight_kg=weight,
            labs=[lab(ago(days=10), igg_g_l=1.5)],
            infections=[infection(ago(days=10)), infection(ago(days=20))],
        )
    )
    (decision,) = [d for d in plan.decisions if d.decision.startswith("azithromycin")]
    alternatives = decision.rationale.split("alternatives: ", 1)[1]
    assert ("co-trimoxazole 5 mg/kg" in alternatives) is offered, alternatives
    assert "amoxicillin" in alternatives
    six_weeks = date.fromisoformat(birth) + timedelta(weeks=6)
    if not offered:
        assert f"not co-trimoxazole before 6 weeks of age ({six_weeks})" in alternatives
        assert "docs/clinical-reference.md §5.8" in decision.source


# --------------------------------------------------- §5.9 corticosteroids: dose x duration

# (id, weight, treatment, indicated)
STEROID_CASES: list[tuple[str, float, dict[str, Any], bool]] = [
    (
        "§5.9 prednisone 25 mg/day for 5 weeks (high dose >= 4 weeks) -> co-trimoxazole",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=34), None, dose_mg_day=25),
        True,
    ),
    (
        "§5.9 prednisone 20 mg/day for exactly 4 weeks -> co-trimoxazole",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=27), None, dose_mg_day=20),
        True,
    ),
    (
        "§5.9 prednisone 25 mg/day prescribed for 27 days, ending today -> none",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=26), ago(days=0), dose_mg_day=25),
        False,
    ),
    (
        "§5.9 no dose given, day 10 of a course with no end -> not yet (its dose checked first)",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=9), None),
        False,
    ),
    (
        "§5.9 prednisone 25 mg/day, day 10 with no end given -> covered (cautious)",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=9), None, dose_mg_day=25),
        True,
    ),
    (
        "§5.9 prednisone 10 mg/day for 8 weeks (low dose) -> none (was: > 4 weeks)",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=55), None, dose_mg_day=10),
        False,
    ),
    (
        "§5.9 R22: alternate-day prednisolone 0.25 mg/kg for 4 months -> none",
        18.0,
        treatment(
            "prednisolone alternate days",
            "corticosteroid",
            ago(months=4),
            None,
            dose_mg_per_kg_day=0.25,
        ),
        False,
    ),
    (
        "§5.9 lupus example: prednisone 10 mg/day at 48 kg for 3 months -> none",
        48.0,
        treatment("prednisone", "corticosteroid", ago(months=3), None, dose_mg_day=10),
        False,
    ),
    (
        "§5.9 dexamethasone 4 mg/day (26.7 mg prednisone) for 5 weeks -> co-trimoxazole",
        30.0,
        treatment("dexamethasone", "corticosteroid", ago(days=34), None, dose_mg_day=4),
        True,
    ),
    (
        "§5.9 under 10 kg: prednisolone 2 mg/kg/day for 5 weeks -> co-trimoxazole",
        8.0,
        treatment("prednisolone", "corticosteroid", ago(days=34), None, dose_mg_per_kg_day=2),
        True,
    ),
    (
        "§5.9 under 10 kg: prednisolone 1 mg/kg/day for 8 weeks -> none",
        8.0,
        treatment("prednisolone", "corticosteroid", ago(days=55), None, dose_mg_per_kg_day=1),
        False,
    ),
    (
        "§5.9 no dose given, 6 weeks -> read as high dose (cautious)",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=41), None),
        True,
    ),
    (
        "§5.1, §5.9 high dose for 8 weeks, stopped 5 days ago -> still covered (ECIL-5: >= 3 "
        "months after immunosuppression stops)",
        30.0,
        treatment("prednisone", "corticosteroid", ago(days=60), ago(days=5), dose_mg_day=40),
        True,
    ),
    (
        "§5.1, §5.9 high dose for 8 weeks, stopped 4 months ago -> none",
        30.0,
        treatment("prednisone", "corticosteroid", ago(months=6), ago(months=4), dose_mg_day=40),
        False,
    ),
]


@pytest.mark.parametrize(
    ("weight", "entry", "indicated"),
    [pytest.param(w, t, i, id=case) for case, w, t, i in STEROID_CASES],
)
def test_steroid_indication_is_dose_times_duration(
    weight: float, entry: dict[str, Any], indicated: bool
) -> None:
    """§5.9: >= 20 mg/day prednisone-equivalent (>= 2 mg/kg/day under 10 kg) for >= 4 weeks;
    low-dose and alternate-day courses alone do not indicate co-trimoxazole."""
    plan = plan_for(make_referral(category="immune_mediated", weight_kg=weight, treatments=[entry]))
    item = _cotrimoxazole(plan)
    text = decisions_text(plan, "prophylaxis")
    assert (item is not None) == indicated, text
    if indicated:
        assert "corticosteroids" in text
        assert "docs/clinical-reference.md §5.9" in text
    else:
        assert "high-dose corticosteroids for >= 4 weeks" in text


def test_no_dose_is_said_to_the_clinician() -> None:
    """§5.9: a course without a dose is read as high, cautious, and the plan says so."""
    entry = treatment("prednisone", "corticosteroid", ago(days=41), None)
    plan = plan_for(make_referral(category="immune_mediated", treatments=[entry]))
    assert "dose not given" in decisions_text(plan, "prophylaxis")


def test_duration_only_is_the_configured_alternative() -> None:
    """§5.9: steroid_rule "duration_only" (the ECIL-5 abstract) indicates any dose > 4 weeks."""
    protocol = with_protocol(PROTOCOL, "prophylaxis.pjp.steroid_rule", "duration_only")
    entry = treatment("prednisone", "corticosteroid", ago(days=55), None, dose_mg_day=10)
    plan = plan_for(
        make_referral(category="immune_mediated", treatments=[entry]), protocol=protocol
    )
    assert _cotrimoxazole(plan) is not None
    assert "> 4 weeks of corticosteroids" in decisions_text(plan, "prophylaxis")


# --------------------------------------- §5.10 AML and profound neutropenia: outside the plan

OUTSIDE = "levofloxacin and antifungal prophylaxis per the oncology protocol"

# (id, diagnosis label, treatments, labs, decision expected)
SCOPE_CASES: list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]], bool]] = [
    (
        "§5.10 R30: AML induction, ANC 50 -> outside the plan, said",
        "acute myeloid leukaemia (AML), induction ADE",
        [treatment("ADE", "chemotherapy", ago(days=10))],
        [lab(ago(days=5), anc_per_ul=50, cd4_per_ul=150)],
        True,
    ),
    (
        "§5.10 AML on chemotherapy, ANC 2000 -> said (AML)",
        "leucemia mieloide aguda",
        [treatment("FLAG-Ida", "chemotherapy", ago(days=20))],
        [lab(ago(days=5), anc_per_ul=2000)],
        True,
    ),
    (
        "§5.10 neuroblastoma on chemotherapy, ANC 300 -> said (neutropenia)",
        "neuroblastoma",
        [treatment("rapid COJEC", "chemotherapy", ago(days=20))],
        [lab(ago(days=5), anc_per_ul=300)],
        True,
    ),
    (
        "§5.10 ALL maintenance, ANC 900 -> not said",
        "acute lymphoblastic leukaemia",
        [treatment("mercaptopurine", "chemotherapy", ago(months=6))],
        [lab(ago(days=5), anc_per_ul=900)],
        False,
    ),
    (
        "§5.10 ANC 300 without chemotherapy -> not said",
        "autoimmune neutropenia",
        [],
        [lab(ago(days=5), anc_per_ul=300)],
        False,
    ),
    (
        "§5.10 AML at referral, no treatment recorded yet -> said",
        "acute myeloid leukaemia",
        [],
        [],
        True,
    ),
    (
        "§5.10 AML, chemotherapy ended 2 years ago -> not said",
        "acute myeloid leukaemia",
        [treatment("ADE", "chemotherapy", ago(years=3), ago(years=2))],
        [],
        False,
    ),
]


@pytest.mark.parametrize(
    ("label", "treatments", "labs", "said"),
    [pytest.param(lb, t, la, s, id=case) for case, lb, t, la, s in SCOPE_CASES],
)
def test_oncology_prophylaxis_outside_the_plan_is_said(
    label: str, treatments: list[dict[str, Any]], labs: list[dict[str, Any]], said: bool
) -> None:
    """§5.10: for AML or an ANC below 500/uL on chemotherapy the plan says levofloxacin and
    antifungal prophylaxis follow the oncology protocol (Lehrnbecher 2020)."""
    plan = plan_for(
        make_referral(category="oncology", label=label, treatments=treatments, labs=labs)
    )
    found = [d for d in plan.decisions if d.decision.startswith(OUTSIDE)]
    assert bool(found) == said, decisions_text(plan, "prophylaxis")
    if said:
        assert found[0].topic == "prophylaxis"
        assert "Lehrnbecher" in found[0].source
        assert "docs/clinical-reference.md §5.10" in found[0].source


# ------------------------------------------------------- §5.11 the free-text reason, not read

REASON_CASES: list[tuple[str, str | None, bool]] = [
    ("§5.11 R08: a household varicella contact in the reason -> said", "VZV contact", True),
    ("§5.11 no reason -> nothing", None, False),
    ("§5.11 a blank reason -> nothing", "   ", False),
]


@pytest.mark.parametrize(
    ("reason", "said"), [pytest.param(r, s, id=case) for case, r, s in REASON_CASES]
)
def test_free_text_reason_is_a_decision(reason: str | None, said: bool) -> None:
    """§5.11: a non-empty reason is a decision for the clinician; its text is not copied."""
    document = document_for(make_referral(reason=reason))
    found = [d for d in document["decisions"] if "free text" in d["decision"]]
    assert bool(found) == said
    if said:
        (d,) = found
        assert d["topic"] == "grading"
        assert "VZV" not in d["decision"] + d["rationale"]
        assert "docs/clinical-reference.md §5.11" in d["source"]


def test_aml_long_after_transplant_is_not_said() -> None:
    """§5.10: AML 2 years after an allogeneic HSCT, off treatment: nothing to say."""
    plan = plan_for(
        make_referral(
            category="hsct",
            label="allogeneic HSCT for AML",
            hsct={"date": ago(years=2), "type": "allogeneic", "active_gvhd": False},
        )
    )
    assert not [d for d in plan.decisions if d.decision.startswith(OUTSIDE)]
