"""Degree of immunosuppression: docs/clinical-reference.md §2 as a table of clinical cases."""

from __future__ import annotations

from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    TODAY,
    ago,
    ahead,
    born,
    context_for,
    lab,
    make_referral,
    treatment,
)

from sidflows.rules.grading import cd4_band, cd4_severity, grade
from sidflows.rules.model import Grading


def _grade(**fields: Any) -> Grading:
    referral = make_referral(**fields)
    return grade(context_for(referral))


def _steroid(days: int, **dose: float) -> dict[str, Any]:
    """Prednisone started so that ``days`` days of the course have been given by TODAY."""
    return treatment("prednisone", "corticosteroid", ago(days=days - 1), None, **dose)


# (id citing docs/clinical-reference.md, referral fields, expected level, fragment of a reason)
LEVEL_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("§2 no treatment, no marker -> none", {}, "none", "no active immunosuppressive"),
    (
        "§2 cytotoxic chemotherapy ongoing -> high",
        {"treatments": [treatment("vincristine", "chemotherapy", ago(months=2))]},
        "high",
        "vincristine (chemotherapy): high-level",
    ),
    (
        "§2 chemotherapy with a planned end, still running -> high",
        {"treatments": [treatment("vincristine", "chemotherapy", ago(months=2), ahead(days=10))]},
        "high",
        "high-level",
    ),
    (
        "§2 anti-CD20 ongoing -> high",
        {"treatments": [treatment("rituximab", "anti_cd20", ago(days=10))]},
        "high",
        "rituximab (anti-CD20): high-level",
    ),
    (
        "§2/§6 anti-CD20 last dose 5 months ago: inside the 6-month depletion window -> high",
        {
            "treatments": [
                treatment("rituximab", "anti_cd20", ago(months=5, days=14), ago(months=5))
            ]
        },
        "high",
        "B-cell depletion after anti-CD20",
    ),
    (
        "§2/§6 anti-CD20 last dose 6 months less a day ago -> high",
        {
            "treatments": [
                treatment("rituximab", "anti_cd20", ago(months=7), ago(months=6, days=-1))
            ]
        },
        "high",
        "B-cell depletion",
    ),
    (
        "§2/§6 anti-CD20 last dose exactly 6 months ago: window over -> none",
        {"treatments": [treatment("rituximab", "anti_cd20", ago(months=7), ago(months=6))]},
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2/§6 anti-CD20 last dose 7 months ago -> none",
        {"treatments": [treatment("rituximab", "anti_cd20", ago(months=8), ago(months=7))]},
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2.6 blinatumomab (anti-CD19, referred as chemotherapy) ended 8 months ago, CD19 0 "
        "-> high (other B-cell-depleting treatment, by name)",
        {
            "treatments": [treatment("blinatumomab", "chemotherapy", ago(months=9), ago(months=8))],
            "labs": [lab(ago(days=10), cd19_per_ul=0.0, igg_g_l=6.0)],
        },
        "high",
        "B-cell depletion after blinatumomab",
    ),
    (
        "§2.6 inotuzumab (anti-CD22) ended 8 months ago, CD19 5/uL (below Hill 2019's 20) -> high",
        {
            "treatments": [treatment("inotuzumab", "chemotherapy", ago(months=9), ago(months=8))],
            "labs": [lab(ago(days=10), cd19_per_ul=5.0, igg_g_l=6.0)],
        },
        "high",
        "B-cell depletion after inotuzumab",
    ),
    (
        "§2.6 blinatumomab ended 8 months ago, CD19 300 >= lab limit 100 -> none (recovered)",
        {
            "treatments": [treatment("blinatumomab", "chemotherapy", ago(months=9), ago(months=8))],
            "labs": [
                lab(ago(days=10), cd19_per_ul=300.0, cd19_lower_limit_per_ul=100.0, igg_g_l=6.0)
            ],
        },
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2.6 rituximab referred as chemotherapy ended 8 months ago, CD19 0 -> high (anti-CD20 "
        "by the class's curated names, config/codes.toml)",
        {
            "treatments": [treatment("rituximab", "chemotherapy", ago(months=9), ago(months=8))],
            "labs": [lab(ago(days=10), cd19_per_ul=0.0, igg_g_l=6.0)],
        },
        "high",
        "B-cell depletion after rituximab",
    ),
    (
        "§2.6 an unnamed drug coded ATC L01FX07 (blinatumomab) ended 8 months ago, CD19 0 -> high "
        "(by its ATC row's drug)",
        {
            "treatments": [
                {
                    **treatment("study drug", "chemotherapy", ago(months=9), ago(months=8)),
                    "code": "L01FX07",
                    "system": "http://www.whocc.no/atc",
                }
            ],
            "labs": [lab(ago(days=10), cd19_per_ul=0.0, igg_g_l=6.0)],
        },
        "high",
        "B-cell depletion after study drug",
    ),
    (
        "§2.6 rituximab coded ATC L01FA01 but referred as other biologic, ended 8 months ago, "
        "CD19 0 -> high (anti-CD20 by its ATC code)",
        {
            "treatments": [
                {
                    **treatment("MabThera", "other_biologic", ago(months=9), ago(months=8)),
                    "code": "L01FA01",
                    "system": "http://www.whocc.no/atc",
                }
            ],
            "labs": [lab(ago(days=10), cd19_per_ul=0.0, igg_g_l=6.0)],
        },
        "high",
        "B-cell depletion after MabThera",
    ),
    (
        "§2.6 vincristine (not B-cell depleting) ended 8 months ago, CD19 0 -> not graded as "
        "B-cell depletion",
        {
            "treatments": [treatment("vincristine", "chemotherapy", ago(months=9), ago(months=8))],
            "labs": [lab(ago(days=10), cd19_per_ul=0.0, igg_g_l=6.0)],
        },
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2 anti-TNF -> high",
        {"treatments": [treatment("infliximab", "anti_tnf", ago(months=4))]},
        "high",
        "infliximab (anti-tnf): high-level",
    ),
    (
        "§2 CD19 CAR-T (B-cell depleting) -> high",
        {"treatments": [treatment("tisagenlecleucel", "car_t", ago(days=20), ahead(days=20))]},
        "high",
        "high-level",
    ),
    (
        "§2 prednisone 20 mg/day 14 days -> high",
        {"treatments": [_steroid(14, dose_mg_day=20)]},
        "high",
        "high dose for 14 days",
    ),
    (
        "§2 prednisone 20 mg/day 13 days -> low (high-level from day 14)",
        {"treatments": [_steroid(13, dose_mg_day=20)]},
        "low",
        "high-level from day 14",
    ),
    (
        "§2 prednisone 19 mg/day 60 days -> low (below 20 mg/day)",
        {"treatments": [_steroid(60, dose_mg_day=19)]},
        "low",
        "below the high-dose threshold",
    ),
    (
        "§2 prednisone 1 mg/kg/day at 30 kg (30 mg/day) 20 days -> high",
        {"treatments": [_steroid(20, dose_mg_per_kg_day=1.0)]},
        "high",
        "high dose for 20 days",
    ),
    (
        "§2 prednisone 0.6 mg/kg/day at 30 kg (18 mg/day) 60 days -> low",
        {"treatments": [_steroid(60, dose_mg_per_kg_day=0.6)]},
        "low",
        "below the high-dose threshold",
    ),
    (
        "§2 child 8 kg: prednisone 2 mg/kg/day 14 days -> high (mg/kg threshold < 10 kg)",
        {
            "weight_kg": 8.0,
            "birth_date": born(years=1),
            "treatments": [_steroid(14, dose_mg_per_kg_day=2.0)],
        },
        "high",
        "high dose",
    ),
    (
        "§2 child 8 kg: 16 mg/day given as mg/day = 2 mg/kg/day 30 days -> high",
        {
            "weight_kg": 8.0,
            "birth_date": born(years=1),
            "treatments": [_steroid(30, dose_mg_day=16)],
        },
        "high",
        "high dose",
    ),
    (
        "§2 child 8 kg: 1.9 mg/kg/day 30 days -> low",
        {
            "weight_kg": 8.0,
            "birth_date": born(years=1),
            "treatments": [_steroid(30, dose_mg_per_kg_day=1.9)],
        },
        "low",
        "below the high-dose threshold",
    ),
    (
        "§2 child 9.9 kg: 15 mg/day (1.5 mg/kg/day) 30 days -> low (mg/kg threshold < 10 kg)",
        {
            "weight_kg": 9.9,
            "birth_date": born(years=1),
            "treatments": [_steroid(30, dose_mg_day=15)],
        },
        "low",
        "below the high-dose threshold",
    ),
    (
        "§2 child 12 kg: 1.9 mg/kg/day = 22.8 mg/day 30 days -> high (>= 20 mg/day from 10 kg)",
        {
            "weight_kg": 12.0,
            "birth_date": born(years=2),
            "treatments": [_steroid(30, dose_mg_per_kg_day=1.9)],
        },
        "high",
        "high dose",
    ),
    (
        "§2 steroid with no dose given -> high (cautious)",
        {"treatments": [_steroid(3)]},
        "high",
        "dose not given, graded high-level (cautious)",
    ),
    (
        "§2 high-dose steroid course that has ended -> none",
        {
            "treatments": [
                treatment(
                    "prednisone", "corticosteroid", ago(months=3), ago(months=1), dose_mg_day=40
                )
            ]
        },
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2 methotrexate 0.4 mg/kg/week -> low",
        {
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.4)
            ]
        },
        "low",
        "(<= 0.4): low-level",
    ),
    (
        "§2 methotrexate 0.41 mg/kg/week -> high",
        {
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.41)
            ]
        },
        "high",
        "> 0.4 low-level ceiling",
    ),
    (
        "§2 methotrexate with no weekly dose -> high (cautious)",
        {"treatments": [treatment("methotrexate", "antimetabolite", ago(months=6))]},
        "high",
        "dose not given",
    ),
    (
        "§2 azathioprine 3 mg/kg/day -> low",
        {
            "treatments": [
                treatment("azathioprine", "antimetabolite", ago(months=6), dose_mg_per_kg_day=3.0)
            ]
        },
        "low",
        "(<= 3): low-level",
    ),
    (
        "§2 azathioprine 90 mg/day at 30 kg (3 mg/kg/day) -> low",
        {
            "treatments": [
                treatment("azathioprine", "antimetabolite", ago(months=6), dose_mg_day=90)
            ]
        },
        "low",
        "low-level",
    ),
    (
        "§2 azathioprine 3.5 mg/kg/day -> high",
        {
            "treatments": [
                treatment("azathioprine", "antimetabolite", ago(months=6), dose_mg_per_kg_day=3.5)
            ]
        },
        "high",
        "> 3 low-level ceiling",
    ),
    (
        "§2 6-mercaptopurine 1.5 mg/kg/day -> low",
        {
            "treatments": [
                treatment("mercaptopurine", "antimetabolite", ago(months=6), dose_mg_per_kg_day=1.5)
            ]
        },
        "low",
        "low-level",
    ),
    (
        "§2 6-mercaptopurine 1.6 mg/kg/day -> high",
        {
            "treatments": [
                treatment("6-MP", "antimetabolite", ago(months=6), dose_mg_per_kg_day=1.6)
            ]
        },
        "high",
        "ceiling",
    ),
    (
        "§1/§2 mycophenolate (not graded by IDSA) -> high by protocol (cautious)",
        {
            "treatments": [
                treatment("mycophenolate", "antimetabolite", ago(months=6), dose_mg_per_kg_day=20)
            ]
        },
        "high",
        "not graded by IDSA 2013",
    ),
    (
        "§2 tacrolimus (calcineurin inhibitor, not graded by IDSA) -> high by protocol",
        {"treatments": [treatment("tacrolimus", "calcineurin_inhibitor", ago(months=6))]},
        "high",
        "not graded by IDSA 2013",
    ),
    (
        "§2 low-level drug plus a high-level one -> high (the highest wins)",
        {
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.3),
                treatment("adalimumab", "anti_tnf", ago(months=3)),
            ]
        },
        "high",
        "methotrexate 0.3 mg/kg/week",
    ),
    (
        "§2 planned treatment that has not started -> none today",
        {"treatments": [treatment("rituximab", "anti_cd20", ahead(days=20))]},
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2 ANC 499/uL -> high (severe neutropenia)",
        {"labs": [lab(ago(days=5), anc_per_ul=499)]},
        "high",
        "severe neutropenia",
    ),
    (
        "§2 ANC 99/uL -> high (profound neutropenia)",
        {"labs": [lab(ago(days=5), anc_per_ul=99)]},
        "high",
        "profound neutropenia",
    ),
    (
        "§2 ANC 500/uL -> none",
        {"labs": [lab(ago(days=5), anc_per_ul=500)]},
        "none",
        "no active immunosuppressive",
    ),
    (
        "§2 latest ANC counts: ANC 300 a month ago, 2000 last week -> none",
        {"labs": [lab(ago(months=1), anc_per_ul=300), lab(ago(days=7), anc_per_ul=2000)]},
        "none",
        "no active immunosuppressive",
    ),
    (
        "§4 HSCT 6 months ago, no GVHD -> high (immune reconstitution for 24 months)",
        {
            "category": "hsct",
            "hsct": {"date": ago(months=6), "type": "autologous", "active_gvhd": False},
        },
        "high",
        "immune reconstitution",
    ),
    (
        "§4 HSCT 25 months ago, no GVHD -> none",
        {
            "category": "hsct",
            "hsct": {"date": ago(months=25), "type": "allogeneic", "active_gvhd": False},
        },
        "none",
        "no active immunosuppressive",
    ),
    (
        "§4 HSCT 30 months ago with active GVHD -> high",
        {
            "category": "hsct",
            "hsct": {"date": ago(months=30), "type": "allogeneic", "active_gvhd": True},
        },
        "high",
        "active GVHD",
    ),
]


@pytest.mark.parametrize(
    ("fields", "level", "reason"),
    [pytest.param(f, lv, r, id=case) for case, f, lv, r in LEVEL_CASES],
)
def test_grading_level(fields: dict[str, Any], level: str, reason: str) -> None:
    """Each clinical case gets the level docs/clinical-reference.md §2 gives it, and its reason."""
    grading = _grade(**fields)
    assert grading.level == level, grading.reasons
    assert any(reason.lower() in r.lower() for r in grading.reasons), grading.reasons


# (id, age on TODAY as born() kwargs, CD4 /uL or None, CD4 % or None, expected level)
CD4_CASES: list[tuple[str, dict[str, int], float | None, float | None, str]] = [
    ("§2 <1 y: CD4 749 -> severe (high)", {"months": 6}, 749, None, "high"),
    ("§2 <1 y: CD4 750 -> moderate (low)", {"months": 6}, 750, None, "low"),
    ("§2 <1 y: CD4 1499 -> moderate (low)", {"months": 6}, 1499, None, "low"),
    ("§2 <1 y: CD4 1500 -> none", {"months": 6}, 1500, None, "none"),
    ("§2 <1 y: CD4 25 % -> severe (high)", {"months": 6}, None, 25, "high"),
    (
        "§2.3 <1 y: CD4 26 % -> moderate (CDC 2014 stage 2: 26-33 %) (low)",
        {"months": 6},
        None,
        26,
        "low",
    ),
    ("§2.3 <1 y: CD4 34 % -> none", {"months": 6}, None, 34, "none"),
    ("§2 <1 y: CD4 2000/uL but 20 % -> severe (either criterion)", {"months": 6}, 2000, 20, "high"),
    (
        "§2.3 exactly 1 y on the test's day: CD4 600 -> 1-5 y band: moderate (low)",
        {"years": 1, "days": 5},
        600,
        None,
        "low",
    ),
    ("§2 1-5 y: CD4 499 -> severe (high)", {"years": 3}, 499, None, "high"),
    ("§2 1-5 y: CD4 500 -> moderate (low)", {"years": 3}, 500, None, "low"),
    ("§2 1-5 y: CD4 999 -> moderate (low)", {"years": 3}, 999, None, "low"),
    ("§2 1-5 y: CD4 1000 -> none", {"years": 3}, 1000, None, "none"),
    ("§2 1-5 y: CD4 21 % -> severe (high)", {"years": 3}, None, 21, "high"),
    (
        "§2.3 1-5 y: CD4 22 % -> moderate (CDC 2014 stage 2: 22-29 %) (low)",
        {"years": 3},
        None,
        22,
        "low",
    ),
    ("§2.3 1-5 y: CD4 30 % -> none", {"years": 3}, None, 30, "none"),
    (
        "§2 5 y 11 m: CD4 300 -> 1-5 y band: severe (high)",
        {"years": 5, "months": 11},
        300,
        None,
        "high",
    ),
    (
        "§2.3 exactly 6 y on the test's day: CD4 300 -> >=6 y band: moderate (low)",
        {"years": 6, "days": 5},
        300,
        None,
        "low",
    ),
    ("§2 >=6 y: CD4 199 -> severe (high)", {"years": 10}, 199, None, "high"),
    ("§2 >=6 y: CD4 200 -> moderate (low)", {"years": 10}, 200, None, "low"),
    ("§2 >=6 y: CD4 499 -> moderate (low)", {"years": 10}, 499, None, "low"),
    ("§2 >=6 y: CD4 500 -> none", {"years": 10}, 500, None, "none"),
    ("§2 >=6 y: CD4 13 % -> severe (high)", {"years": 10}, None, 13, "high"),
    (
        "§2.3 >=6 y: CD4 14 % -> moderate (CDC 2014 stage 2: 14-25 %) (low)",
        {"years": 10},
        None,
        14,
        "low",
    ),
    ("§2.3 >=6 y: CD4 26 % -> none", {"years": 10}, None, 26, "none"),
    (
        "§2.3 >=6 y: CD4 800/uL but 10 % -> severe (each measure counts)",
        {"years": 10},
        800,
        10,
        "high",
    ),
    ("§2 17 y: CD4 150 -> severe (high)", {"years": 17}, 150, None, "high"),
]


@pytest.mark.parametrize(
    ("age", "count", "percent", "level"),
    [pytest.param(a, c, p, lv, id=case) for case, a, c, p, lv in CD4_CASES],
)
def test_cd4_thresholds_by_age(
    age: dict[str, int], count: float | None, percent: float | None, level: str
) -> None:
    """CD4 below the age band's severe threshold grades high, moderate grades low (CDC 2014)."""
    values = {"cd4_per_ul": count, "cd4_percent": percent}
    measured = {k: v for k, v in values.items() if v is not None}
    grading = _grade(birth_date=born(**age), weight_kg=20.0, labs=[lab(ago(days=5), **measured)])
    assert grading.level == level, grading.reasons
    if level != "none":
        assert any("CDC 2014" in r for r in grading.reasons)


@pytest.mark.parametrize(
    ("age_years", "severe", "percent", "moderate"),
    [
        pytest.param(0, 750, 26, 1500, id="§2 band <1 y: 750/26 %/1500"),
        pytest.param(1, 500, 22, 1000, id="§2 band 1-5 y (at 1): 500/22 %/1000"),
        pytest.param(5, 500, 22, 1000, id="§2 band 1-5 y (at 5): 500/22 %/1000"),
        pytest.param(6, 200, 14, 500, id="§2 band >=6 y (at 6): 200/14 %/500"),
        pytest.param(17, 200, 14, 500, id="§2 band >=6 y (at 17): 200/14 %/500"),
    ],
)
def test_cd4_band_table(age_years: int, severe: float, percent: float, moderate: float) -> None:
    """The shipped protocol's CD4 bands are CDC 2014's, chosen by completed years of age."""
    band = cd4_band(age_years, PROTOCOL)
    assert (band.severe_below_per_ul, band.severe_below_percent, band.moderate_below_per_ul) == (
        severe,
        percent,
        moderate,
    )


def test_cd4_severity_without_any_value_is_none() -> None:
    """A lab with neither a CD4 count nor a percentage flags nothing."""
    assert cd4_severity(None, None, cd4_band(10, PROTOCOL)) is None


TRANSIENT_CASES: list[tuple[str, dict[str, Any], bool | None]] = [
    ("§2.14 no treatment -> no cause found: neither (None)", {}, None),
    (
        "§1 chemotherapy (time-limited) -> transient",
        {"treatments": [treatment("vincristine", "chemotherapy", ago(months=2))]},
        True,
    ),
    (
        "§1 rituximab course over -> transient",
        {"treatments": [treatment("rituximab", "anti_cd20", ago(months=3), ago(months=2))]},
        True,
    ),
    (
        "§1 methotrexate with no planned end -> not transient",
        {
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.3)
            ]
        },
        False,
    ),
    (
        "§1 methotrexate with a planned end -> transient",
        {
            "treatments": [
                treatment(
                    "methotrexate",
                    "antimetabolite",
                    ago(months=6),
                    ahead(months=2),
                    dose_mg_per_kg_week=0.3,
                )
            ]
        },
        True,
    ),
    (
        "§1 ongoing prednisone with no planned end -> not transient",
        {"treatments": [_steroid(40, dose_mg_day=5)]},
        False,
    ),
    (
        "§1 anti-TNF with no planned end -> not transient",
        {"treatments": [treatment("infliximab", "anti_tnf", ago(months=4))]},
        False,
    ),
    (
        "§4 active GVHD -> not transient",
        {
            "category": "hsct",
            "hsct": {"date": ago(months=8), "type": "allogeneic", "active_gvhd": True},
        },
        False,
    ),
    (
        "§4 HSCT without GVHD -> transient",
        {
            "category": "hsct",
            "hsct": {"date": ago(months=8), "type": "allogeneic", "active_gvhd": False},
        },
        True,
    ),
]


@pytest.mark.parametrize(
    ("fields", "transient"), [pytest.param(f, t, id=case) for case, f, t in TRANSIENT_CASES]
)
def test_transient_or_not(fields: dict[str, Any], transient: bool | None) -> None:
    """A deficiency is transient unless a maintenance drug has no end or GVHD is active;
    with no cause recorded neither can be said (§2.14)."""
    grading = _grade(**fields)
    assert grading.transient is transient, grading.reasons
    if transient is None:
        assert "neither transient nor permanent" in grading.reasons[-1]
    else:
        assert ("not transient" in grading.reasons[-1]) is not transient


def test_every_grading_states_its_reasons() -> None:
    """Every grading carries at least one level reason plus the transience reason."""
    for _, fields, _, _ in LEVEL_CASES:
        grading = _grade(**fields)
        assert len(grading.reasons) >= 2
        assert all(r.strip() for r in grading.reasons)


def test_grading_is_a_function_of_today() -> None:
    """The same referral grades high inside the anti-CD20 window and none after it."""
    referral = make_referral(
        treatments=[treatment("rituximab", "anti_cd20", ago(months=2, days=14), ago(months=2))]
    )
    inside = grade(context_for(referral, today=TODAY))
    after = grade(context_for(referral, today=TODAY.replace(year=TODAY.year + 1)))
    assert (inside.level, after.level) == ("high", "none")
