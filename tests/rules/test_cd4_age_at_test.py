"""§2.3: a CD4 result is judged against the band of the child's age on the day it was drawn.

CDC 2014's paediatric staging (MMWR Recomm Rep 2014;63(RR-3), table: "age on date of
CD4+ T-lymphocyte test") gives the thresholds by the age at the test, since the normal
counts fall with age. A count drawn at 11 months is an infant's count, even if the child
is 13 months old when the plan is made; the younger band's thresholds are the higher, so
the age at the test is never the less cautious reading. Expected values come from the
table in docs/clinical-reference.md §2.3, not from what the code gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest_rules import (
    TODAY,
    ago,
    born,
    context_for,
    decisions_text,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
)

from sidflows.rules.grading import grade

AGE_AT_TEST_CASES: list[tuple[str, dict[str, int], dict[str, float], int, str, str | None]] = [
    (
        "§2.3 13 months today, CD4 600/uL drawn at 11 months: under-1 band, severe (< 750)",
        {"months": 13},
        {"cd4_per_ul": 600},
        60,
        "high",
        "under 1 year",
    ),
    (
        "§2.3 6 y 1 m today, CD4 450/uL drawn at 5 y 11 m: 1-5 y band, severe (< 500)",
        {"years": 6, "months": 1},
        {"cd4_per_ul": 450},
        60,
        "high",
        "1-5 years",
    ),
    (
        "§2.3 6 y 1 m today, CD4 21 % drawn at 5 y 11 m: 1-5 y band, severe (< 22 %)",
        {"years": 6, "months": 1},
        {"cd4_percent": 21},
        60,
        "high",
        "1-5 years",
    ),
    (
        "§2.3 6 y 1 m today, CD4 450/uL drawn at 6 y: today's band, moderate (200-499)",
        {"years": 6, "months": 1},
        {"cd4_per_ul": 450},
        5,
        "low",
        None,
    ),
    (
        "§2.3 13 months today, CD4 1200/uL drawn at 11 months: under-1 band, moderate (< 1500)",
        {"months": 13},
        {"cd4_per_ul": 1200},
        60,
        "low",
        "under 1 year",
    ),
]


@pytest.mark.parametrize(
    ("age", "values", "days_ago", "level", "band"),
    [pytest.param(a, v, d, lv, b, id=case) for case, a, v, d, lv, b in AGE_AT_TEST_CASES],
)
def test_a_cd4_is_graded_by_the_age_at_the_test(
    age: dict[str, int], values: dict[str, float], days_ago: int, level: str, band: str | None
) -> None:
    referral = make_referral(
        birth_date=born(**age), weight_kg=9.0, labs=[lab(ago(days=days_ago), **values)]
    )
    grading = grade(context_for(referral))
    assert grading.level == level, grading.reasons
    said = " ".join(grading.reasons)
    assert "CDC 2014" in said
    if band is None:
        assert "the band of the age at the test" not in said
    else:
        assert f"the band of the age at the test: {band}" in said, said


@pytest.mark.parametrize(
    ("case", "birth", "cd4", "prophylaxis"),
    [
        (
            "§2.3, §5.1, §6.6: a stale CD4 700/uL drawn at 11 months is severe for its age: kept",
            {"months": 16},
            {"cd4_per_ul": 700},
            True,
        ),
        (
            "§2.3, §6.6: the same count drawn at 1 year is moderate for its age: nothing kept",
            {"months": 18},
            {"cd4_per_ul": 700},
            False,
        ),
    ],
)
def test_a_stale_cd4_is_read_in_the_band_of_its_own_day(
    case: str, birth: dict[str, int], cd4: dict[str, float], prophylaxis: bool
) -> None:
    """A stale severe CD4 keeps Pneumocystis prophylaxis (§5.1, §6.6); severe is the band of
    the age the child had when it was drawn (5 months before TODAY)."""
    plan = plan_for(
        make_referral(
            received=TODAY,
            birth_date=born(**birth),
            weight_kg=10,
            label="severe aplastic anaemia",
            treatments=[treatment("ciclosporin", "calcineurin_inhibitor", ago(months=6))],
            labs=[lab(ago(months=5), **cd4), lab(ago(days=10), igg_g_l=6.0, anc_per_ul=900)],
        )
    )
    pjp = [i for i in items_of(plan, "prophylaxis") if getattr(i, "drug", "") == "co-trimoxazole"]
    text = decisions_text(plan, "prophylaxis")
    assert bool(pjp) is prophylaxis, (case, text)
    if prophylaxis:
        assert "stale" in text, text
        assert "the band of the age at the test: under 1 year" in text, text


def test_the_age_on_the_tests_day_is_the_childs_age_then() -> None:
    """The facts carry the birth date: 13 months today, 11 months on the test's day."""
    referral = make_referral(
        birth_date=born(months=13), weight_kg=9.0, labs=[lab(ago(days=60), cd4_per_ul=600)]
    )
    context: Any = context_for(referral)
    facts = context.facts
    assert facts.age_years_on(facts.today) == facts.age_years == 1
    assert facts.age_years_on(facts.latest_cd4_count.date) == 0
