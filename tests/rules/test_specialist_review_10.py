"""After chemotherapy a series the child had not completed is completed, not given one booster.

The first plans gave one dose of each routine vaccine after chemotherapy (§4.2), whatever
the child had had before it: a child who started chemotherapy at 4 months, after one dose
at 2 months, was left with two doses of DTaP for life. IDSA 2013 rec. 73 vaccinates
"according to the CDC schedule that is routinely indicated", AIEOP (Cesaro 2014, table 2)
gives a "booster or vaccination", and ACIP's general best practice continues an interrupted
series rather than restarting it: the booster is the next dose, and the doses CDSi still
forecasts after it follow at ACIP's ages and intervals. Each case's id cites the section of
docs/clinical-reference.md it follows; the expected doses are read from ACIP's catch-up
schedule (2025, table 2: minimum ages and intervals), not from what the code gives.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from conftest_rules import ago, born, items_of, make_referral, plan_for, treatment, vaccination
from hypothesis import given, settings
from hypothesis import strategies as st

from sidflows.rules.model import Plan, VaccineDose

ROUTINE = ("DTaP", "IPV", "Hib", "HepB", "PCV")


def doses(plan: Plan, vaccine: str) -> list[date]:
    return sorted(
        i.due
        for i in items_of(plan, "vaccine_dose")
        if isinstance(i, VaccineDose) and i.vaccine == vaccine
    )


def after_all(birth: str, before: list[str], start: str, end: str, weight: float) -> Plan:
    """A child treated for ALL from ``start`` to ``end``, with each routine vaccine given on
    the days ``before`` (all before chemotherapy)."""
    return plan_for(
        make_referral(
            birth_date=birth,
            weight_kg=weight,
            category="oncology",
            label="acute lymphoblastic leukaemia",
            treatments=[treatment("ALL chemotherapy", "chemotherapy", start, end)],
            vaccinations=[vaccination(v, d) for v in ROUTINE for d in before],
        )
    )


# (id, birth, doses before chemotherapy, chemotherapy, vaccine, expected dose days)
CASES: list[tuple[str, str, list[str], tuple[str, str], str, list[date]]] = [
    (
        "§4.2 one DTaP at 2 months, 21 months now: booster, dose 3 at 4 weeks, dose 4 at 6 months",
        "2025-03-01",
        ["2025-05-01"],
        ("2025-07-01", "2026-08-15"),
        "DTaP",
        [date(2026, 12, 1), date(2026, 12, 29), date(2027, 6, 29)],
    ),
    (
        "§4.2 one HepB at 2 months: booster, dose 3 at 8 weeks (16 after dose 1, 24 weeks old)",
        "2025-03-01",
        ["2025-05-01"],
        ("2025-07-01", "2026-08-15"),
        "HepB",
        [date(2026, 12, 1), date(2027, 1, 26)],
    ),
    (
        "§4.2 one IPV at 2 months: booster, dose 3 at 4 weeks (dose 4 from 4 years, later)",
        "2025-03-01",
        ["2025-05-01"],
        ("2025-07-01", "2026-08-15"),
        "IPV",
        [date(2026, 12, 1), date(2026, 12, 29)],
    ),
    (
        "§4.2 one Hib before 12 months, 21 months now: the booster is the final dose",
        "2025-03-01",
        ["2025-05-01"],
        ("2025-07-01", "2026-08-15"),
        "Hib",
        [date(2026, 12, 1)],
    ),
    (
        "§4.2 three DTaP in infancy, 4 years now: the booster is dose 4 at >= 4 years, complete",
        "2022-06-01",
        ["2022-08-01", "2022-10-01", "2022-12-01"],
        ("2023-01-01", "2026-05-15"),
        "DTaP",
        [date(2026, 12, 1)],
    ),
    (
        "§4.2 no MMR before chemotherapy, 4 years now: MMR twice, 4 weeks apart",
        "2022-06-01",
        ["2022-08-01", "2022-10-01", "2022-12-01"],
        ("2023-01-01", "2026-05-15"),
        "MMR",
        [date(2026, 12, 1), date(2026, 12, 29)],
    ),
    (
        "§4.2 no varicella before chemotherapy, 4 years now: twice, 12 weeks apart (< 13 years)",
        "2022-06-01",
        ["2022-08-01", "2022-10-01", "2022-12-01"],
        ("2023-01-01", "2026-05-15"),
        "VAR",
        [date(2026, 12, 1), date(2027, 2, 23)],
    ),
]


@pytest.mark.parametrize(
    ("birth", "before", "chemo", "vaccine", "expected"),
    [pytest.param(b, v, c, x, e, id=case) for case, b, v, c, x, e in CASES],
)
def test_an_incomplete_series_is_completed_after_chemotherapy(
    birth: str, before: list[str], chemo: tuple[str, str], vaccine: str, expected: list[date]
) -> None:
    plan = after_all(birth, before, *chemo, weight=11.0 if birth > "2024" else 16.0)
    assert doses(plan, vaccine) == expected
    completed = [d for d in plan.decisions if d.decision.startswith(f"{vaccine}: the series")]
    assert bool(completed) == (len(expected) > 1)
    for d in completed:
        assert f"{len(expected) - 1} more dose(s)" in d.decision
        assert "IDSA 2013 rec. 73" in d.source
        assert "AIEOP (Cesaro 2014)" in d.source
        assert "CDSi" in d.source


def test_a_dose_given_during_chemotherapy_does_not_complete_the_series() -> None:
    """§4.1: doses given during chemotherapy do not count; the completion counts without them
    (the same plan as with no dose at all on that day)."""
    during = after_all("2025-03-01", ["2025-05-01", "2025-09-01"], "2025-07-01", "2026-08-15", 11)
    without = after_all("2025-03-01", ["2025-05-01"], "2025-07-01", "2026-08-15", 11)
    for vaccine in ("DTaP", "IPV", "HepB"):
        assert doses(during, vaccine) == doses(without, vaccine)


@settings(max_examples=25, deadline=None)
@given(months=st.integers(min_value=2, max_value=10), n=st.integers(min_value=0, max_value=3))
def test_property_no_completion_dose_breaks_the_minimum_interval(months: int, n: int) -> None:
    """§4.2 (property): whatever the age chemotherapy began and the doses given before it,
    the doses after chemotherapy are at least 4 weeks apart (ACIP's shortest minimum
    interval of these series) and never more than the series has (DTaP 5, IPV 4, HepB 3)."""
    birth = date(2024, 1, 1)
    before = [(birth + timedelta(days=61 * (k + 1))).isoformat() for k in range(n)]
    start = (birth + timedelta(days=30 * months + 5 + 61 * n)).isoformat()
    plan = after_all(birth.isoformat(), before, start, "2026-08-15", 13.0)
    for vaccine, most in (("DTaP", 5), ("IPV", 4), ("HepB", 3)):
        days = doses(plan, vaccine)
        assert days, vaccine
        assert all(b - a >= timedelta(days=28) for a, b in itertools.pairwise(days))
        assert n + len(days) <= most + 1, (vaccine, n, days)  # the booster may be one beyond


# ------------------------------------ §5.12 with §4.6: asplenia after a stem cell transplant


def meningococcal(plan: Plan) -> list[tuple[str, date]]:
    return sorted(
        (i.vaccine, i.due)
        for i in items_of(plan, "vaccine_dose")
        if isinstance(i, VaccineDose) and i.vaccine.startswith("Men")
    )


def transplanted(years: int, months_since: int, spleen: bool, **more: object) -> Plan:
    fields: dict[str, object] = {
        "birth_date": born(years=years),
        "weight_kg": 25.0,
        "category": "oncology",
        "label": "acute myeloid leukaemia",
        "hsct": {"date": ago(months=months_since), "type": "allogeneic", "active_gvhd": False},
        **more,
    }
    if spleen:
        fields["risk_conditions"] = ["asplenia"]
    return plan_for(make_referral(**fields))


def test_asplenia_after_hsct_gets_menacwy_below_the_adolescent_age() -> None:
    """§5.12, §4.15: an asplenic 8-year-old after HSCT got no MenACWY (the transplant's
    adolescent series, from 11 years, claimed the vaccine and planned nothing); ACIP gives
    asplenia 2 doses >= 8 weeks apart from 2 years, so it has them now."""
    plan = transplanted(8, 7, spleen=True)
    acwy = [d for v, d in meningococcal(plan) if v == "MenACWY"]
    assert len(acwy) == 2
    assert acwy[1] - acwy[0] >= timedelta(weeks=8)
    assert meningococcal(transplanted(8, 7, spleen=False)) == [], "no risk, under 11: none"


def test_asplenia_series_after_a_recent_hsct_waits_for_the_inactivated_start() -> None:
    """§4.6: 3 months after HSCT, the asplenia series starts with the other inactivated
    vaccines, 6 months after the transplant; a dose given before the transplant does not
    count."""
    plan = transplanted(8, 3, spleen=True, vaccinations=[vaccination("MenACWY", ago(months=5))])
    acwy = [d for v, d in meningococcal(plan) if v == "MenACWY"]
    six_months = date.fromisoformat(ago(months=3)) + timedelta(days=182)
    assert len(acwy) == 2
    assert acwy[0] >= six_months - timedelta(days=3)
    (decision,) = [d for d in plan.decisions if "MenACWY" in d.decision and "dose" in d.decision]
    assert "after HSCT" in decision.rationale


def test_an_adolescent_after_hsct_keeps_the_transplant_series_beside_asplenia() -> None:
    """§4.15: from 11 years the transplant's MenACWY series stands; asplenia adds its
    booster rule and the clinician checks both (no second series)."""
    plan = transplanted(13, 7, spleen=True)
    acwy = [d for v, d in meningococcal(plan) if v == "MenACWY"]
    assert len(acwy) == 2
    assert any(d.decision.startswith("MenACWY as after HSCT") for d in plan.decisions)
