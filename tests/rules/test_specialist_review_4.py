"""The fourth specialist review's three clinical fixes (protocol 2026.6), as tables of cases.

Every case's id cites the section of docs/clinical-reference.md it follows: §2.12 and §5.7
complement inhibitors (ACIP MMWR 2020;69(RR-9); the labels' REMS; UK practice); §5.1
co-trimoxazole by body-surface area (ECIL-5 150 mg/m2/day; Costeff, Arch Dis Child 1966);
§2.1 methotrexate written as a daily dose, a decision for the clinician.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    START,
    TODAY,
    ago,
    ahead,
    born,
    decisions_text,
    facts_for,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
    with_protocol,
)

from sidflows.calendar import add_years
from sidflows.rules.model import Plan

PEN = "phenoxymethylpenicillin"


def _vaccines(plan: Plan, *names: str) -> list[Any]:
    return sorted(
        (d for d in items_of(plan, "vaccine_dose") if d.vaccine in names),  # type: ignore[attr-defined]
        key=lambda d: d.due,
    )


def _prophylaxis(plan: Plan, drug: str) -> list[Any]:
    return [p for p in items_of(plan, "prophylaxis") if p.drug == drug]  # type: ignore[attr-defined]


def _coded(drug: str, code: str | None, cls: str = "other_biologic", **kw: Any) -> dict[str, Any]:
    t = treatment(drug, cls, kw.pop("start", ago(months=2)), kw.pop("end", None), **kw)
    if code is not None:
        t["code"] = code
        t["system"] = "http://www.whocc.no/atc"
    return t


# ------------------------------------------------- §2.12 recognised, graded as the sources do

# (id, drug as written, ATC code or None, class the referral gives)
RECOGNITION_CASES: list[tuple[str, str, str | None, str]] = [
    ("§2.12 eculizumab by name", "eculizumab", None, "other_biologic"),
    ("§2.12 Soliris, the brand", "Soliris 900 mg every 2 weeks", None, "other_biologic"),
    ("§2.12 ravulizumab by name", "ravulizumab", None, "other_biologic"),
    ("§2.12 crovalimab by name", "crovalimab", None, "other_biologic"),
    ("§2.12 pegcetacoplán, Spanish spelling", "pegcetacoplán", None, "other_biologic"),
    ("§2.12 iptacopán, Spanish spelling", "iptacopán", None, "other_biologic"),
    ("§2.12 capitals and a dose", "ECULIZUMAB 600 mg", None, "other_biologic"),
    ("§2.12 ATC L04AJ01, brand only", "Ultomiris", "L04AJ01", "other_biologic"),
    ("§2.12 older ATC L04AA25, unknown name", "anticuerpo anti-C5", "L04AA25", "other_biologic"),
    ("§2.12 ATC L04AJ group, trial name", "estudio C5", "L04AJ", "other_biologic"),
    ("§2.12 referred as another class", "eculizumab", None, "calcineurin_inhibitor"),
]


@pytest.mark.parametrize(
    ("drug", "code", "cls"),
    [pytest.param(d, c, k, id=case) for case, d, c, k in RECOGNITION_CASES],
)
def test_complement_inhibitor_recognised_and_graded_none(
    drug: str, code: str | None, cls: str
) -> None:
    referral = make_referral(
        birth_date=born(years=12),
        weight_kg=40,
        label="atypical haemolytic uraemic syndrome",
        treatments=[_coded(drug, code, cls)],
    )
    facts = facts_for(referral)
    assert facts.unrecognised_drugs == ()
    assert facts.active == ()  # not general immunosuppression
    plan = plan_for(referral)
    assert plan.grading.level == "none"
    assert any("complement inhibitor" in r for r in plan.grading.reasons)
    assert "drug not recognised" not in decisions_text(plan)
    assert len(_prophylaxis(plan, PEN)) == 1
    assert len(_vaccines(plan, "MenACWY")) == 2
    assert len(_vaccines(plan, "MenB")) == 2


def test_another_biologic_is_not_a_complement_inhibitor() -> None:
    """§2.12 the control: tocilizumab keeps the unlisted grading and gets no cover (no
    MenB, no 2-dose MenACWY series: only the routine MenACWY dose at 11 years, §4.16)."""
    plan = plan_for(
        make_referral(treatments=[treatment("tocilizumab", "other_biologic", ago(months=2))])
    )
    assert plan.grading.level == "high"
    assert not _prophylaxis(plan, PEN)
    assert not _vaccines(plan, "MenB")
    assert len(_vaccines(plan, "MenACWY")) <= 1
    assert "MenACWY: routine catch-up" in decisions_text(plan)


# (id, birth date, MMR doses documented, protocol grading_level, live dose planned)
LIVE_CASES: list[tuple[str, str, int, str, bool]] = [
    ("§2.12 4 years, 1 MMR: dose 2 planned (no live block)", born(years=4), 1, "none", True),
    ("§2.12 the alternative 'low': MMR held", born(years=4), 1, "low", False),
]


@pytest.mark.parametrize(
    ("birth", "mmr", "level", "planned"),
    [pytest.param(b, m, lv, p, id=case) for case, b, m, lv, p in LIVE_CASES],
)
def test_complement_inhibitor_does_not_block_live_vaccines(
    birth: str, mmr: int, level: str, planned: bool
) -> None:
    protocol = with_protocol(PROTOCOL, "prophylaxis.meningococcal.grading_level", level)
    referral = make_referral(
        birth_date=birth,
        weight_kg=16,
        treatments=[treatment("eculizumab", "other_biologic", ago(months=3))],
        vaccinations=[vaccination("MMR", ago(years=3))][:mmr],
    )
    plan = plan_for(referral, protocol=protocol)
    assert bool(_vaccines(plan, "MMR")) is planned
    assert plan.grading.level == ("none" if level == "none" else "low")


# ------------------------------------------------------------- §5.7 antibiotic cover by age

# (id, birth date, mg a dose of penicillin V)
PENICILLIN_CASES: list[tuple[str, str, float]] = [
    ("§5.7 11 months: 62.5 mg (BNF for Children)", born(months=11), 62.5),
    ("§5.7 12 months: 125 mg", born(months=12), 125.0),
    ("§5.7 4 years 11 months: 125 mg", born(years=4, months=11), 125.0),
    ("§5.7 5 years: 250 mg", born(years=5), 250.0),
    ("§5.7 17 years: 250 mg", born(years=17), 250.0),
]


@pytest.mark.parametrize(
    ("birth", "mg"), [pytest.param(b, m, id=case) for case, b, m in PENICILLIN_CASES]
)
def test_penicillin_v_by_age_while_on_the_inhibitor(birth: str, mg: float) -> None:
    plan = plan_for(
        make_referral(
            birth_date=birth,
            weight_kg=20,
            treatments=[treatment("ravulizumab", "other_biologic", ago(months=1))],
        )
    )
    (item,) = _prophylaxis(plan, PEN)
    assert item.regimen.startswith(f"{mg:g} mg 2 times a day")
    assert item.due == START
    text = decisions_text(plan, "prophylaxis")
    assert "for as long as the inhibitor is given" in text
    assert "meningococc" in item.indication


def test_penicillin_alternative_two_weeks_after_vaccination() -> None:
    """§5.7 the US labels' alternative is said in the decision."""
    protocol = with_protocol(
        PROTOCOL, "prophylaxis.meningococcal.antibiotic_until", "two_weeks_after_vaccination"
    )
    plan = plan_for(
        make_referral(treatments=[treatment("eculizumab", "other_biologic", ago(months=1))]),
        protocol=protocol,
    )
    assert "until 2 weeks after the meningococcal vaccines" in decisions_text(plan, "prophylaxis")


def test_penicillin_already_planned_for_gvhd_is_not_doubled() -> None:
    """§5.6 and §5.7: one penicillin V item covers both."""
    plan = plan_for(
        make_referral(
            category="hsct",
            hsct={"date": ago(months=8), "type": "allogeneic", "active_gvhd": True},
            treatments=[treatment("eculizumab", "other_biologic", ago(months=1))],
        )
    )
    assert len(_prophylaxis(plan, PEN)) == 1
    assert "also covers meningococcus" in decisions_text(plan, "prophylaxis")


def test_planned_inhibitor_starts_cover_on_its_first_dose() -> None:
    """§5.7: an inhibitor planned in 2 months: penicillin from its first dose."""
    start = ahead(months=2)
    plan = plan_for(make_referral(treatments=[treatment("iptacopan", "other_biologic", start)]))
    (item,) = _prophylaxis(plan, PEN)
    assert item.due >= date.fromisoformat(start)


# ---------------------------------------------------- §5.7 meningococcal vaccines by age

# (id, birth date, MenACWY doses planned, MenB doses planned, clinician decisions expected)
AGE_CASES: list[tuple[str, str, int, int, tuple[str, ...]]] = [
    (
        "§5.7 23 months: MenACWY and MenB for the clinician",
        born(months=23),
        0,
        0,
        ("MenACWY under 2 years", "MenB under 10 years"),
    ),
    ("§5.7 24 months: MenACWY x2; MenB for the clinician", born(months=24), 2, 0, ("MenB under",)),
    ("§5.7 9 years: MenACWY x2; MenB for the clinician", born(years=9, months=11), 2, 0, ("MenB",)),
    ("§5.7 10 years: MenACWY x2 and MenB x2", born(years=10), 2, 2, ()),
    ("§5.7 16 years: MenACWY x2 and MenB x2", born(years=16), 2, 2, ()),
]


@pytest.mark.parametrize(
    ("birth", "acwy", "menb", "clinician"),
    [pytest.param(b, a, m, c, id=case) for case, b, a, m, c in AGE_CASES],
)
def test_meningococcal_vaccines_by_age(
    birth: str, acwy: int, menb: int, clinician: tuple[str, ...]
) -> None:
    plan = plan_for(
        make_referral(
            birth_date=birth,
            weight_kg=20,
            treatments=[treatment("eculizumab", "other_biologic", ago(months=1))],
        )
    )
    acwy_doses = _vaccines(plan, "MenACWY")
    menb_doses = _vaccines(plan, "MenB")
    assert len(acwy_doses) == acwy
    assert len(menb_doses) == menb
    if acwy == 2:
        assert acwy_doses[1].due - acwy_doses[0].due >= timedelta(weeks=8)
    if menb == 2:
        assert menb_doses[1].due - menb_doses[0].due >= timedelta(weeks=4)
    text = decisions_text(plan, "vaccination")
    for words in clinician:
        assert words in text
    assert "check Hib and pneumococcal status" in text


def test_boosters_are_dated() -> None:
    """§5.7: MenACWY booster 5 years after the series; MenB 1 year after the series."""
    plan = plan_for(
        make_referral(
            birth_date=born(years=12),
            treatments=[treatment("eculizumab", "other_biologic", ago(months=1))],
        )
    )
    acwy = _vaccines(plan, "MenACWY")
    menb = _vaccines(plan, "MenB")
    text = decisions_text(plan, "vaccination")
    assert f"MenACWY booster due {add_years(acwy[-1].due, 5)}" in text
    assert f"MenB booster due {add_years(menb[-1].due, 1)}" in text


# (id, months since the second documented MenACWY dose, booster planned in the horizon)
BOOSTER_CASES: list[tuple[str, int, bool]] = [
    ("§5.7 series 4 years ago: booster in the horizon", 48, True),
    ("§5.7 series 3 years 11 months ago: booster beyond the horizon", 47, False),
    ("§5.7 series 5 years ago: booster now", 60, True),
]


@pytest.mark.parametrize(
    ("months", "planned"), [pytest.param(m, p, id=case) for case, m, p in BOOSTER_CASES]
)
def test_menacwy_booster_after_a_documented_series(months: int, planned: bool) -> None:
    second = ago(months=months)
    first = ago(months=months + 3)
    plan = plan_for(
        make_referral(
            birth_date=born(years=14),
            treatments=[treatment("eculizumab", "other_biologic", ago(months=1))],
            vaccinations=[vaccination("MenACWY", first), vaccination("MenACWY", second)],
        )
    )
    doses = _vaccines(plan, "MenACWY")
    assert bool(doses) is planned
    if planned:
        assert doses[0].dose_number == 3
        assert doses[0].due >= add_years(date.fromisoformat(second), 5)


# (id, inhibitor start relative to TODAY in days, in time)
TIMING_CASES: list[tuple[str, int, bool]] = [
    ("§5.7 starts in 60 days: the first doses >= 2 weeks before", 60, True),
    ("§5.7 starts in 21 days: first dose on day 7, 14 days before", 21, True),
    ("§5.7 starts in 20 days: < 2 weeks after the first dose", 20, False),
]


@pytest.mark.parametrize(
    ("days", "in_time"), [pytest.param(d, t, id=case) for case, d, t in TIMING_CASES]
)
def test_vaccines_two_weeks_before_the_first_dose(days: int, in_time: bool) -> None:
    start = TODAY + timedelta(days=days)
    plan = plan_for(
        make_referral(
            birth_date=born(years=12),
            treatments=[treatment("eculizumab", "other_biologic", start)],
        )
    )
    text = decisions_text(plan, "vaccination")
    assert f"meningococcal vaccines by {start - timedelta(days=14)}" in text
    assert ("in time" in text) is in_time
    assert ("< 2 weeks after vaccination" in text) is not in_time


# ------------------------------------------------------- §5.1 co-trimoxazole by BSA (Costeff)

# (id, birth date, weight kg, TMP mg a dose, BSA as shown) worked by hand:
# BSA = (4W + 7) / (W + 90); 150 mg/m2/day, 2 doses to the nearest 5 mg, max 320 mg/day.
TMP_CASES: list[tuple[str, str, float, int, str]] = [
    ("§5.1 3.5 kg: 21/93.5 = 0.22 m2, 34 mg/day -> 15 mg", born(months=1), 3.5, 15, "0.22"),
    ("§5.1 5 kg: 27/95 = 0.28 m2, 43 mg/day -> 20 mg", born(months=3), 5.0, 20, "0.28"),
    ("§5.1 10 kg: 47/100 = 0.47 m2, 71 mg/day -> 35 mg", born(months=11), 10.0, 35, "0.47"),
    ("§5.1 20 kg: 87/110 = 0.79 m2, 119 mg/day -> 60 mg", born(years=6), 20.0, 60, "0.79"),
    ("§5.1 99 kg: 403/189 = 2.13 m2, 320 mg/day -> 160 mg", born(years=15), 99.0, 160, "2.13"),
    ("§5.1 100 kg: 2.14 m2, 321 capped at 320 -> 160 mg", born(years=15), 100.0, 160, "2.14"),
]


@pytest.mark.parametrize(
    ("birth", "weight", "per_dose", "bsa"),
    [pytest.param(b, w, p, s, id=case) for case, b, w, p, s in TMP_CASES],
)
def test_cotrimoxazole_by_body_surface_area(
    birth: str, weight: float, per_dose: int, bsa: str
) -> None:
    plan = plan_for(
        make_referral(
            birth_date=birth,
            weight_kg=weight,
            labs=[lab(ago(days=10), igg_g_l=8.0, cd4_per_ul=50)],
        )
    )
    (item,) = _prophylaxis(plan, "co-trimoxazole")
    assert item.regimen.startswith(f"TMP {per_dose} mg 2 times a day")
    assert f"BSA {bsa} m2" in item.regimen
    assert "Costeff (4W + 7) / (W + 90)" in item.regimen
    assert 2 * per_dose <= 320
    assert ("capped" in item.regimen) is (weight >= 100)
    assert f"BSA {bsa} m2" in decisions_text(plan, "prophylaxis")


def test_infant_dose_is_no_longer_a_third_under() -> None:
    """§5.1: at 5 kg the old 5 mg/kg/day gave 12.5 mg a dose; by BSA it is 20."""
    plan = plan_for(
        make_referral(
            birth_date=born(months=3),
            weight_kg=5.0,
            labs=[lab(ago(days=10), igg_g_l=8.0, cd4_per_ul=50)],
        )
    )
    (item,) = _prophylaxis(plan, "co-trimoxazole")
    assert not item.regimen.startswith("TMP 12 mg")
    assert not item.regimen.startswith("TMP 13 mg")


# ------------------------------------------------------ §2.1 methotrexate as a daily dose

# (id, treatment, grading level, decision expected)
MTX_CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    (
        "§2.1 0.05 mg/kg/day x 7 = 0.35 mg/kg/week: low, and asked",
        treatment("methotrexate", "antimetabolite", ago(months=2), dose_mg_per_kg_day=0.05),
        "low",
        True,
    ),
    (
        "§2.1 0.06 mg/kg/day x 7 = 0.42 mg/kg/week: high, and asked",
        treatment("methotrexate", "antimetabolite", ago(months=2), dose_mg_per_kg_day=0.06),
        "high",
        True,
    ),
    (
        "§2.1 metotrexato 10 mg/day at 30 kg x 7 = 2.33 mg/kg/week: high, and asked",
        treatment("metotrexato", "antimetabolite", ago(months=2), dose_mg_day=10.0),
        "high",
        True,
    ),
    (
        "§2.1 0.3 mg/kg/week as written: low, nothing to ask",
        treatment("methotrexate", "antimetabolite", ago(months=2), dose_mg_per_kg_week=0.3),
        "low",
        False,
    ),
    (
        "§2.1 azathioprine daily is daily: nothing to ask",
        treatment("azathioprine", "antimetabolite", ago(months=2), dose_mg_per_kg_day=2.0),
        "low",
        False,
    ),
]


@pytest.mark.parametrize(
    ("t", "level", "asked"), [pytest.param(t, lv, a, id=case) for case, t, lv, a in MTX_CASES]
)
def test_methotrexate_daily_dose_is_a_decision(t: dict[str, Any], level: str, asked: bool) -> None:
    plan = plan_for(make_referral(weight_kg=30.0, treatments=[t]))
    assert plan.grading.level == level
    decisions = [d for d in plan.decisions if d.topic == "grading"]
    found = [d for d in decisions if d.decision.startswith("methotrexate written as a daily")]
    assert bool(found) is asked
    if asked:
        (d,) = found
        assert "confirm the weekly dose" in d.decision
        assert "x 7" in d.rationale
        assert "§2.1" in d.source
        # The conversion stays in the grading.
        assert any("x 7" in r for r in plan.grading.reasons)


def test_methotrexate_in_all_maintenance_is_graded_as_chemotherapy_and_asked() -> None:
    """§2.1 and §2.8: methotrexate read as chemotherapy is not graded by the weekly ceiling,
    but a daily figure is still asked about (review 6: the prescribing check stands)."""
    plan = plan_for(
        make_referral(
            category="oncology",
            label="acute lymphoblastic leukaemia",
            treatments=[
                treatment("methotrexate", "antimetabolite", ago(months=2), dose_mg_day=10.0)
            ],
        )
    )
    asked = [d for d in plan.decisions if d.decision.startswith("methotrexate written as a daily")]
    assert len(asked) == 1
    assert "x 7" not in asked[0].rationale  # not graded by the weekly ceiling
    assert not any("x 7" in r for r in plan.grading.reasons)
