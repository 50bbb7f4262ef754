"""Vaccination reinforcement and live-vaccine blocks: docs/clinical-reference.md §4 as cases."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    CALENDAR,
    HORIZON_END,
    PROTOCOL,
    START,
    TODAY,
    ago,
    ahead,
    blood_product,
    born,
    day,
    decisions_text,
    ig_dose,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
    with_protocol,
)

from sidflows.calendar import add_months
from sidflows.rules.model import Deferral, Plan, VaccineDose

NORMAL_IGG = [lab(ago(days=10), igg_g_l=8.0)]  # no IG replacement: nothing else holds vaccines
CHEMO_END = date(2026, 10, 15)
# On methotrexate: a risk condition for the pneumococcal reinforcement (§4.16).
MTX = treatment("methotrexate", "antimetabolite", "2026-06-01", dose_mg_per_kg_week=0.3)
# IDSA 2013's alternative for influenza on anti-CD20 (§4.5).
FLU_SKIP = with_protocol(PROTOCOL, "vaccination.influenza_on_anti_cd20", "skip")


def _plan(**fields: Any) -> Plan:
    fields.setdefault("labs", NORMAL_IGG)
    return plan_for(make_referral(**fields))


def _doses(plan: Plan, vaccine: str) -> list[VaccineDose]:
    return [i for i in plan.items if isinstance(i, VaccineDose) and i.vaccine == vaccine]


def _first(plan: Plan, vaccine: str) -> VaccineDose:
    doses = _doses(plan, vaccine)
    assert doses, f"no {vaccine} dose in {[i.key for i in plan.items]}"
    return doses[0]


def _deferral(plan: Plan, vaccine: str) -> Deferral:
    found = [d for d in plan.deferred if d.vaccine == vaccine]
    assert len(found) == 1, plan.deferred
    return found[0]


def _on_first_working_day(dose: VaccineDose, earliest: date) -> None:
    assert dose.earliest == earliest
    assert dose.due == CALENDAR.next_working_day(earliest)


def _chemo(end: date | None = CHEMO_END, drug: str = "vincristine/dactinomycin") -> dict[str, Any]:
    return treatment(drug, "chemotherapy", "2026-01-10", end)


# ----------------------------------------------------------------------------- after chemotherapy


@pytest.mark.parametrize("vaccine", ["Tdap", "IPV", "Hib", "HepB", "PCV"])
def test_after_chemotherapy_inactivated_at_three_months(vaccine: str) -> None:
    """§4 default: inactivated boosters 3 months after the end of chemotherapy."""
    plan = _plan(category="oncology", label="Wilms tumour", treatments=[_chemo()])
    _on_first_working_day(_first(plan, vaccine), add_months(CHEMO_END, 3))


def test_after_chemotherapy_dtap_under_seven_tdap_from_seven() -> None:
    """§4: the tetanus booster is DTaP under 7 years and Tdap from 7."""
    young = _plan(
        category="oncology", birth_date=born(years=5), weight_kg=18.0, treatments=[_chemo()]
    )
    older = _plan(
        category="oncology", birth_date=born(years=7), weight_kg=22.0, treatments=[_chemo()]
    )
    assert _doses(young, "DTaP")
    assert not _doses(young, "Tdap")
    assert _doses(older, "Tdap")
    assert not _doses(older, "DTaP")


def test_after_chemotherapy_with_anti_cd20_inactivated_at_six_months() -> None:
    """§4: inactivated boosters 6 months after the end when the regimen had anti-CD20."""
    plan = _plan(
        category="oncology",
        label="B-cell non-Hodgkin lymphoma",
        treatments=[
            treatment("R-CHOP", "chemotherapy", "2026-05-01", CHEMO_END),
            treatment("rituximab", "anti_cd20", "2026-05-01", CHEMO_END),
        ],
    )
    for vaccine in ("Tdap", "IPV", "Hib", "HepB", "PCV"):
        _on_first_working_day(_first(plan, vaccine), add_months(CHEMO_END, 6))


@pytest.mark.parametrize("vaccine", ["MMR", "VAR"])
def test_after_chemotherapy_live_at_six_months(vaccine: str) -> None:
    """§4 default: MMR and varicella 6 months after the end of chemotherapy."""
    plan = _plan(category="oncology", treatments=[_chemo()])
    dose = _first(plan, vaccine)
    assert dose.live
    _on_first_working_day(dose, add_months(CHEMO_END, 6))


def test_after_chemotherapy_ppsv23_eight_weeks_after_pcv() -> None:
    """§4: PPSV23 at least 8 weeks after the conjugate."""
    plan = _plan(category="oncology", treatments=[_chemo()])
    pcv, ppsv = _first(plan, "PCV"), _first(plan, "PPSV23")
    assert ppsv.due >= pcv.due + timedelta(weeks=8)
    assert ppsv.due == CALENDAR.next_working_day(pcv.due + timedelta(weeks=8))


def test_doses_given_during_chemotherapy_do_not_count() -> None:
    """§4: inactivated doses given during maintenance are not valid: the booster is still due."""
    plan = _plan(
        category="oncology",
        treatments=[_chemo()],
        vaccinations=[vaccination("HepB", "2026-06-01")],
    )
    assert _doses(plan, "HepB")
    assert "given during chemotherapy not counted" in decisions_text(plan, "vaccination")


def test_booster_given_after_chemotherapy_is_not_repeated() -> None:
    """§4: a booster documented after the end of chemotherapy is not planned again."""
    plan = _plan(
        category="oncology",
        treatments=[_chemo(end=date(2026, 6, 1))],
        vaccinations=[vaccination("HepB", "2026-10-01")],
    )
    assert not _doses(plan, "HepB")
    assert _doses(plan, "IPV")


def test_chemotherapy_ongoing_defers_live_vaccines_with_no_date() -> None:
    """§4: no live vaccine during chemotherapy: deferred with until null, naming the drug."""
    plan = _plan(category="oncology", treatments=[_chemo(end=None, drug="ALL maintenance")])
    for vaccine in ("MMR", "VAR"):
        assert not _doses(plan, vaccine)
        deferral = _deferral(plan, vaccine)
        assert deferral.until is None
        assert any("ALL maintenance" in r for r in deferral.reasons)
    assert not _doses(plan, "PCV")  # boosters wait for the end too


# ----------------------------------------------------------------------------- live-vaccine blocks

LIVE_BLOCK_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "§4 ongoing methotrexate -> no live vaccine, until null",
        {
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(months=8), dose_mg_per_kg_week=0.3)
            ]
        },
        "methotrexate",
    ),
    (
        "§4 ongoing low-dose prednisone -> no live vaccine, until null",
        {"treatments": [treatment("prednisone", "corticosteroid", ago(months=2), dose_mg_day=5)]},
        "prednisone",
    ),
    (
        "§4 ongoing anti-TNF -> no live vaccine, until null",
        {"treatments": [treatment("infliximab", "anti_tnf", ago(months=8))]},
        "infliximab",
    ),
    (
        "§4 ongoing tacrolimus -> no live vaccine, until null",
        {"treatments": [treatment("tacrolimus", "calcineurin_inhibitor", ago(months=8))]},
        "tacrolimus",
    ),
    (
        "§4 IG replacement continuing -> live vaccines not scheduled at all",
        {"labs": [lab(ago(days=10), igg_g_l=6.0)], "immunoglobulin_doses": [ig_dose(ago(days=20))]},
        "while IG replacement continues",
    ),
    (
        "§3/§4 IG replacement starting now -> live vaccines not scheduled at all",
        {"labs": [lab(ago(days=10), igg_g_l=1.0)]},
        "while IG replacement continues",
    ),
    (
        "§4 HSCT with active GVHD -> no live vaccine, until null",
        {
            "category": "hsct",
            "hsct": {"date": ago(months=30), "type": "allogeneic", "active_gvhd": True},
        },
        "active GVHD",
    ),
    (
        "§4.3 IDSA 2013 table 6: 8 years, CD4 100/uL and 8 % (CDC 2014 severe, §2.3), no "
        "treatment -> graded high, no live vaccine until reassessment, until null",
        {
            "birth_date": born(years=8),
            "labs": [lab(ago(days=10), igg_g_l=8.0, cd4_per_ul=100.0, cd4_percent=8.0)],
        },
        "graded high-level immunosuppression (CD4 100/uL",
    ),
    (
        "§4.3 IDSA 2013 table 6: 3 years, CD4 18 % alone (severe below 22 %, §2.3) -> graded "
        "high, no live vaccine, until null",
        {
            "birth_date": born(years=3),
            "labs": [lab(ago(days=10), igg_g_l=8.0, cd4_percent=18.0)],
        },
        "graded high-level immunosuppression (CD4 18 %",
    ),
    (
        "§4.3 IDSA 2013 table 6: ANC 300/uL (severe neutropenia, §2.2) -> graded high, no live "
        "vaccine, until null",
        {"labs": [lab(ago(days=10), igg_g_l=8.0, anc_per_ul=300.0)]},
        "graded high-level immunosuppression (severe neutropenia",
    ),
    (
        "§2.6 IDSA 2013 table 6: blinatumomab (referred as chemotherapy) ended 8 months ago, "
        "CD19 0 -> B-cell depletion, no live vaccine until B cells recover, until null",
        {
            "treatments": [treatment("blinatumomab", "chemotherapy", ago(months=9), ago(months=8))],
            "labs": [lab(ago(days=10), igg_g_l=8.0, cd19_per_ul=0.0)],
        },
        "B-cell depletion after blinatumomab",
    ),
]


@pytest.mark.parametrize(
    ("fields", "reason"), [pytest.param(f, r, id=case) for case, f, r in LIVE_BLOCK_CASES]
)
def test_live_vaccine_deferred_while_a_cause_is_ongoing(
    fields: dict[str, Any], reason: str
) -> None:
    """§4: while a cause is ongoing no live dose is planned; the deferral has no date."""
    plan = _plan(**fields)
    for vaccine in ("MMR", "VAR"):
        assert not _doses(plan, vaccine)
        deferral = _deferral(plan, vaccine)
        assert deferral.until is None
        assert any(reason in r for r in deferral.reasons), deferral.reasons


def test_moderate_cd4_graded_low_does_not_block_live_vaccines() -> None:
    """§4.3: the block is for high-level grading; 8 years, CD4 300/uL (CDC 2014 moderate,
    §2.3) grades low and MMR/varicella are planned as usual (the control of the cases above)."""
    plan = _plan(
        birth_date=born(years=8),
        labs=[lab(ago(days=10), igg_g_l=8.0, cd4_per_ul=300.0)],
    )
    assert plan.grading.level == "low"
    assert _doses(plan, "MMR")
    assert _doses(plan, "VAR")


# (id, g/kg of an IG dose given on IG_DAY, months before MMR/varicella)
IG_DAY = date(2026, 9, 1)  # 84 days before TODAY: no longer "on replacement"
IVIG_CASES: list[tuple[str, float, int]] = [
    ("§4 ACIP: IVIG 0.3 g/kg -> 8 months (300-400 mg/kg row)", 0.3, 8),
    ("§4 ACIP: IVIG 0.4 g/kg -> 8 months", 0.4, 8),
    ("§4 ACIP: IVIG 0.41 g/kg -> 10 months (between rows: the next higher row)", 0.41, 10),
    ("§4 ACIP: IVIG 0.8 g/kg -> 10 months (next higher row)", 0.8, 10),
    ("§4 ACIP: IVIG 1 g/kg (ITP) -> 10 months", 1.0, 10),
    ("§4 ACIP: IVIG 1.01 g/kg -> 11 months (next higher row)", 1.01, 11),
    ("§4 ACIP: IVIG 2 g/kg (Kawasaki) -> 11 months", 2.0, 11),
    ("§4 ACIP: IVIG 2.5 g/kg -> 11 months (highest row)", 2.5, 11),
    ("§4 ACIP: SC 0.1 g/kg dose -> 8 months", 0.1, 8),
]


@pytest.mark.parametrize(
    ("g_per_kg", "months"), [pytest.param(g, m, id=case) for case, g, m in IVIG_CASES]
)
def test_live_vaccine_after_immunoglobulin(g_per_kg: float, months: int) -> None:
    """§4: MMR and varicella wait the ACIP interval for the dose given, from that dose."""
    plan = _plan(immunoglobulin_doses=[ig_dose(IG_DAY, g_per_kg)])
    for vaccine in ("MMR", "VAR"):
        _on_first_working_day(_first(plan, vaccine), add_months(IG_DAY, months))


def test_live_vaccine_waits_for_the_binding_immunoglobulin_dose() -> None:
    """§4: with several IG doses the latest end of their intervals binds (2 g/kg earlier wins)."""
    doses = [ig_dose("2026-07-01", 2.0), ig_dose("2026-09-10", 0.4)]
    plan = _plan(immunoglobulin_doses=doses)
    _on_first_working_day(_first(plan, "MMR"), date(2027, 6, 1))  # 1 Jul 2026 + 11 months


# (id, product, months before MMR/varicella)
PRODUCT_DAY = date(2026, 11, 16)
PRODUCT_CASES: list[tuple[str, str, int]] = [
    ("§4 ACIP: plasma -> 7 months", "plasma", 7),
    ("§4 ACIP: platelets -> 7 months", "platelets", 7),
    ("§4 ACIP: packed red cells -> 6 months", "packed_red_cells", 6),
    ("§4 ACIP: whole blood -> 6 months", "whole_blood", 6),
    ("§4 ACIP: red cells, adenine-saline -> 3 months", "red_cells_adenine_saline", 3),
    ("§4 ACIP: washed red cells -> 0 months", "washed_red_cells", 0),
    ("§4 ACIP: CMV IGIV -> 6 months", "cmv_igiv", 6),
    ("§4 ACIP: botulism IG -> 6 months", "botulism_ig", 6),
    ("§4 ACIP: varicella IG -> 5 months", "varicella_ig", 5),
    ("§4 ACIP: rabies IG -> 4 months", "rabies_ig", 4),
    ("§4 ACIP: hepatitis B IG -> 3 months", "hepatitis_b_ig", 3),
    ("§4 ACIP: tetanus IG -> 3 months", "tetanus_ig", 3),
    ("§4 ACIP: measles IG -> 6 months", "measles_ig", 6),
    ("§4 ACIP: palivizumab -> 0 months", "palivizumab", 0),
]


@pytest.mark.parametrize(
    ("product", "months"), [pytest.param(p, m, id=case) for case, p, m in PRODUCT_CASES]
)
def test_live_vaccine_after_blood_product(product: str, months: int) -> None:
    """§4: MMR and varicella wait the ACIP interval after each blood product."""
    plan = _plan(blood_products=[blood_product(product, PRODUCT_DAY)])
    for vaccine in ("MMR", "VAR"):
        _on_first_working_day(_first(plan, vaccine), max(START, add_months(PRODUCT_DAY, months)))


def test_shipped_antibody_interval_table_is_acips() -> None:
    """§4: every row of the ACIP table is in the shipped protocol with its months."""
    table = PROTOCOL.vaccination.antibody_interval
    assert dict(table.products) == {product: months for _, product, months in PRODUCT_CASES}
    for _, g_per_kg, months in IVIG_CASES:
        assert table.ivig_months(g_per_kg) == months


def test_high_dose_steroid_live_three_months_after_stopping() -> None:
    """§4: after a high-dose steroid course, live vaccines wait 3 months (CHOP, cautious)."""
    end = date(2026, 10, 31)
    plan = _plan(
        treatments=[treatment("prednisone", "corticosteroid", "2026-06-01", end, dose_mg_day=30)]
    )
    _on_first_working_day(_first(plan, "MMR"), add_months(end, 3))


def test_low_dose_steroid_stopped_live_vaccine_at_once() -> None:
    """§4: a low-dose steroid that has stopped does not hold live vaccines back."""
    plan = _plan(
        treatments=[
            treatment("prednisone", "corticosteroid", "2026-06-01", "2026-10-31", dose_mg_day=10)
        ]
    )
    _on_first_working_day(_first(plan, "MMR"), START)


def test_live_vaccine_at_least_four_weeks_before_planned_immunosuppression() -> None:
    """§4: a live dose before a planned treatment is >= 4 weeks before it starts."""
    starts = date(2027, 1, 20)
    plan = _plan(treatments=[treatment("rituximab", "anti_cd20", starts, starts)])
    mmr = _doses(plan, "MMR")
    assert mmr, plan.deferred
    assert mmr[0].due <= starts - timedelta(days=28)
    assert mmr[0].latest == starts - timedelta(days=29)
    assert all(d.due <= starts - timedelta(days=28) or d.due >= add_months(starts, 6) for d in mmr)


def test_live_vaccine_not_before_twelve_months_of_age() -> None:
    """§4: MMR and varicella from 12 months of age."""
    birth = date(2026, 5, 10)
    plan = _plan(birth_date=birth, weight_kg=7.0)
    _on_first_working_day(_first(plan, "MMR"), add_months(birth, 12))


# ----------------------------------------------------------------------------- after HSCT


def _hsct(when: date, *, gvhd: bool = False, kind: str = "autologous", **fields: Any) -> Plan:
    return _plan(
        category="hsct",
        label="neuroblastoma, HSCT",
        hsct={"date": when.isoformat(), "type": kind, "active_gvhd": gvhd},
        **fields,
    )


def test_hsct_pcv_from_three_months_three_doses() -> None:
    """§4 table: PCV from 3 months after HSCT, 3 doses a month apart."""
    hsct = date(2026, 9, 10)
    pcv = _doses(_hsct(hsct), "PCV")
    assert [d.dose_number for d in pcv] == [1, 2, 3]
    assert pcv[0].earliest == add_months(hsct, 3)
    for a, b in itertools.pairwise(pcv):
        assert b.due >= add_months(a.due, 1)
        assert (b.due - a.due).days <= 31 + 4


def test_hsct_ppsv23_at_twelve_months_and_eight_weeks_after_pcv() -> None:
    """§4 table: PPSV23 >= 12 months after HSCT and >= 8 weeks after the conjugate, no GVHD."""
    hsct = date(2026, 5, 10)
    plan = _hsct(hsct)
    pcv = _doses(plan, "PCV")
    ppsv = _first(plan, "PPSV23")
    assert ppsv.due >= add_months(hsct, 12)
    assert ppsv.due >= pcv[-1].due + timedelta(weeks=8)
    _on_first_working_day(ppsv, add_months(hsct, 12))


def test_hsct_with_gvhd_fourth_pcv_instead_of_ppsv23() -> None:
    """§4 table: with active GVHD a 4th conjugate dose 12 months after the first, no PPSV23."""
    hsct = date(2025, 9, 1)
    given = [vaccination("PCV", d) for d in ("2025-12-01", "2026-01-05", "2026-02-05")]
    plan = _hsct(hsct, gvhd=True, kind="allogeneic", vaccinations=given)
    pcv = _doses(plan, "PCV")
    assert [d.dose_number for d in pcv] == [4]
    _on_first_working_day(pcv[0], max(START, date(2026, 12, 1)))
    assert not _doses(plan, "PPSV23")


@pytest.mark.parametrize("vaccine", ["DTaP", "Tdap", "IPV", "Hib", "HepB"])
def test_hsct_inactivated_from_six_months_three_doses(vaccine: str) -> None:
    """§4 table: DTaP/Tdap, IPV, Hib, HepB from 6 months after HSCT, 3 doses."""
    hsct = date(2026, 7, 1)
    # §4.6.2: DTaP at every age after HSCT by default (IDSA 2013 table 4); the alternative,
    # §4.11's Tdap once from 7 years then Td, with "Tdap_then_Td".
    alternative = with_protocol(PROTOCOL, "vaccination.hsct.tetanus_series", "Tdap_then_Td")
    referral = make_referral(
        category="hsct",
        label="neuroblastoma, HSCT",
        hsct={"date": hsct.isoformat(), "type": "autologous", "active_gvhd": False},
        labs=NORMAL_IGG,
    )
    plan = plan_for(referral, protocol=alternative) if vaccine == "Tdap" else _hsct(hsct)
    doses = _doses(plan, vaccine)
    if vaccine == "Tdap":
        doses = sorted([*doses, *_doses(plan, "Td")], key=lambda d: d.due)
        assert [d.vaccine for d in doses] == ["Tdap", "Td", "Td"]  # type: ignore[attr-defined]
    assert [d.dose_number for d in doses] == [1, 2, 3]
    _on_first_working_day(doses[0], add_months(hsct, 6))


def test_hsct_dtap_for_a_young_child() -> None:
    """§4 table: a child under 7 gets DTaP after HSCT."""
    plan = _hsct(date(2026, 7, 1), birth_date=born(years=4), weight_kg=16.0)
    assert len(_doses(plan, "DTaP")) == 3
    assert not _doses(plan, "Tdap")


def test_hsct_titres_after_the_series() -> None:
    """§6: titres 6 weeks after the last dose of a series (anti-HBs after HepB)."""
    plan = _hsct(date(2026, 7, 1))
    last_hepb = _doses(plan, "HepB")[-1].due
    titres = [
        r for r in plan.items if r.kind == "reassessment" and "anti-HBs" in getattr(r, "panel", ())
    ]
    assert titres
    assert titres[0].due >= last_hepb + timedelta(weeks=6)
    assert "anti-HBs" in decisions_text(plan, "vaccination")


@pytest.mark.parametrize("vaccine", ["MMR", "VAR"])
def test_hsct_live_not_before_24_months(vaccine: str) -> None:
    """§4 table: MMR and varicella 24 months after HSCT, 2 doses."""
    hsct = date(2025, 3, 1)
    doses = _doses(_hsct(hsct), vaccine)
    assert [d.dose_number for d in doses] == [1, 2]
    _on_first_working_day(doses[0], add_months(hsct, 24))
    assert doses[1].due >= doses[0].due + timedelta(days=28)


def test_hsct_live_deferred_to_24_months_beyond_the_horizon() -> None:
    """§4: a live vaccine the horizon cannot hold is deferred to the date it becomes possible."""
    hsct = date(2026, 6, 1)
    deferral = _deferral(_hsct(hsct), "MMR")
    assert deferral.until == add_months(hsct, 24)
    assert any("24 months" in r for r in deferral.reasons)


# ----------------------------------------------------------------------------- influenza


def _iiv(plan: Plan) -> list[VaccineDose]:
    return _doses(plan, "IIV")


def test_influenza_every_season_one_dose() -> None:
    """§4: inactivated influenza every season: one dose in 2026-27, one in 2027-28."""
    doses = _iiv(_plan())
    assert [d.due for d in doses] == [START, date(2027, 10, 1)]
    for d in doses:
        assert d.latest is not None
        season_start = date(d.due.year if d.due.month >= 10 else d.due.year - 1, 10, 1)
        assert season_start <= d.due <= d.latest == date(season_start.year + 1, 3, 31)


def test_influenza_from_six_months_of_age() -> None:
    """§4: no influenza vaccine before 6 months of age."""
    birth = date(2026, 7, 24)
    doses = _iiv(_plan(birth_date=birth, weight_kg=6.0))
    assert doses[0].due == CALENDAR.next_working_day(add_months(birth, 6))


def test_influenza_too_young_for_this_season() -> None:
    """§4: a child reaching 6 months after the season ends is vaccinated the next season,
    with two doses 4 weeks apart: a first season under 9 years (ACIP influenza
    recommendations; changed from one dose, which missed ACIP's second dose)."""
    birth = date(2026, 10, 15)
    doses = _iiv(_plan(birth_date=birth, weight_kg=5.0))
    assert [d.due for d in doses] == [date(2027, 10, 1), date(2027, 10, 29)]


def test_influenza_not_during_anti_cd20_depletion() -> None:
    """§4.5, IDSA 2013's alternative ("skip"): no influenza vaccine during anti-B-cell
    antibodies (depletion for 6 months). The default gives it on schedule (ACR 2022)."""
    plan = plan_for(
        make_referral(
            labs=NORMAL_IGG,
            treatments=[treatment("rituximab", "anti_cd20", "2026-09-15", "2026-10-01")],
        ),
        protocol=FLU_SKIP,
    )
    assert [d.due for d in _iiv(plan)] == [date(2027, 10, 1)]


def test_influenza_after_anti_cd20_depletion_within_the_season() -> None:
    """§4.5, IDSA 2013's alternative ("skip"): depletion ending mid-season frees influenza
    for the rest of the season."""
    plan = plan_for(
        make_referral(
            labs=NORMAL_IGG,
            treatments=[treatment("rituximab", "anti_cd20", "2026-06-01", "2026-07-20")],
        ),
        protocol=FLU_SKIP,
    )
    _on_first_working_day(_iiv(plan)[0], date(2027, 1, 20))


def test_influenza_not_during_intensive_chemotherapy() -> None:
    """§4: no influenza vaccine during intensive induction or consolidation."""
    plan = _plan(
        category="oncology",
        treatments=[treatment("ALL induction", "chemotherapy", "2026-11-01", "2027-02-15")],
    )
    _on_first_working_day(_iiv(plan)[0], date(2027, 2, 16))


def test_influenza_during_maintenance_chemotherapy() -> None:
    """§4: maintenance is not intensive: influenza is given in season."""
    plan = _plan(category="oncology", treatments=[_chemo(end=None, drug="ALL maintenance")])
    assert _iiv(plan)[0].due == START


def test_influenza_already_given_this_season() -> None:
    """§4: one dose per season: a dose documented this season is not repeated."""
    plan = _plan(vaccinations=[vaccination("IIV", "2026-10-15")])
    assert [d.due for d in _iiv(plan)] == [date(2027, 10, 1)]


def test_influenza_two_doses_in_the_first_season_after_hsct() -> None:
    """§4 table: after HSCT influenza from 6 months, 2 doses the first season."""
    hsct = date(2026, 4, 1)
    doses = _iiv(_hsct(hsct))
    first_season = [d for d in doses if d.due <= date(2027, 3, 31)]
    assert len(first_season) == 2
    assert first_season[1].due >= first_season[0].due + timedelta(days=28)
    assert first_season[0].due >= add_months(hsct, 6)


# ----------------------------------------------------------------------------- immune-mediated


def test_rituximab_inactivated_six_months_after_last_dose() -> None:
    """§4: after rituximab, vaccinate >= 6 months after the last dose."""
    last = date(2026, 8, 15)
    plan = _plan(
        category="immune_mediated",
        label="nephrotic syndrome",
        treatments=[treatment("rituximab", "anti_cd20", "2026-08-01", last)],
    )
    _on_first_working_day(_first(plan, "PCV"), add_months(last, 6))


def test_rituximab_inactivated_four_weeks_before_the_next_course() -> None:
    """§4: and >= 4 weeks before the next rituximab course."""
    nxt = date(2027, 1, 1)
    plan = _plan(
        category="immune_mediated",
        treatments=[
            treatment("rituximab", "anti_cd20", "2026-03-01", "2026-04-01"),
            treatment("rituximab", "anti_cd20", nxt, nxt),
        ],
    )
    pcv = _first(plan, "PCV")
    assert pcv.due <= nxt - timedelta(days=28)
    assert pcv.latest == nxt - timedelta(days=29)


def test_immune_mediated_two_mmr_doses_documented_no_mmr() -> None:
    """§4: immune-mediated disease with 2 MMR doses documented: no MMR planned or deferred."""
    plan = _plan(
        category="immune_mediated",
        vaccinations=[vaccination("MMR", "2017-10-01"), vaccination("MMR", "2020-10-01")],
    )
    assert not _doses(plan, "MMR")
    assert not [d for d in plan.deferred if d.vaccine == "MMR"]
    assert _doses(plan, "VAR")


def test_immune_mediated_mmrv_counts_for_both_series() -> None:
    """§4: MMRV doses count towards both the MMR and the varicella series."""
    plan = _plan(
        category="immune_mediated",
        vaccinations=[vaccination("MMRV", "2017-10-01"), vaccination("MMRV", "2020-10-01")],
    )
    assert not _doses(plan, "MMR")
    assert not _doses(plan, "VAR")


def test_immune_mediated_one_mmr_dose_completes_the_series() -> None:
    """§4: one documented MMR dose: the plan gives dose 2 only."""
    plan = _plan(category="immune_mediated", vaccinations=[vaccination("MMR", "2017-10-01")])
    assert [d.dose_number for d in _doses(plan, "MMR")] == [2]


def test_immune_mediated_pcv_then_ppsv23() -> None:
    """§4: pneumococcal conjugate first, PPSV23 >= 8 weeks later (on an immunosuppressant,
    a risk condition, §4.16)."""
    plan = _plan(category="immune_mediated", treatments=[MTX])
    pcv, ppsv = _first(plan, "PCV"), _first(plan, "PPSV23")
    assert pcv.due == START
    assert ppsv.due == CALENDAR.next_working_day(pcv.due + timedelta(weeks=8))


def test_second_ppsv23_five_years_after_the_first() -> None:
    """§4: a second PPSV23 5 years after the first in chronic inflammatory disease."""
    plan = _plan(
        category="immune_mediated",
        treatments=[MTX],
        vaccinations=[vaccination("PCV", "2021-09-01"), vaccination("PPSV23", "2022-01-10")],
    )
    ppsv = _doses(plan, "PPSV23")
    assert [d.dose_number for d in ppsv] == [2]
    _on_first_working_day(ppsv[0], date(2027, 1, 10))


# ----------------------------------------------------------------------------- deferrals

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def test_deferral_lists_every_reason_with_its_date() -> None:
    """§4: a deferred live vaccine names every cause that holds it back, each with its date."""
    hsct = date(2026, 6, 1)
    plan = _hsct(
        hsct,
        kind="allogeneic",
        treatments=[
            treatment("rituximab", "anti_cd20", "2026-09-01", "2026-10-01"),
            treatment("prednisone", "corticosteroid", "2026-06-01", "2026-11-01", dose_mg_day=30),
        ],
        immunoglobulin_doses=[ig_dose("2026-08-01", 1.0)],
        blood_products=[blood_product("plasma", "2026-11-10")],
        # §4.12: a CD19 showing recovery after the anti-CD20, or live vaccines wait for one.
        labs=[lab("2026-11-20", cd19_per_ul=150, cd19_lower_limit_per_ul=90)],
    )
    for vaccine in ("MMR", "VAR"):
        deferral = _deferral(plan, vaccine)
        assert deferral.until == add_months(hsct, 24)
        causes = {
            "rituximab": "2026-10-01",
            "prednisone": "2026-11-01",
            "immunoglobulin 1 g/kg": "2026-08-01",
            "plasma": "2026-11-10",
            "HSCT": "2026-06-01",
            # §2.6: the B-cell depletion after the last anti-CD20 dose is named with its date.
            "B-cell depletion after anti-CD20": "2026-10-01",
            # §4.6.1: 12 months off all systemic immunosuppression (the 2-1-8 rule).
            "months off all systemic immunosuppression": "2026-11-01",
        }
        for cause, when in causes.items():
            assert any(cause in r and when in r for r in deferral.reasons), (
                cause,
                deferral.reasons,
            )
        assert len(deferral.reasons) == len(causes)
        for r in deferral.reasons:
            assert _ISO.search(r), r
            assert r.endswith(")"), r  # each names its source


def test_deferral_reasons_include_every_ongoing_cause() -> None:
    """§4: two ongoing treatments and IG replacement: all three reasons, until null."""
    plan = _plan(
        category="immune_mediated",
        treatments=[
            treatment("mycophenolate", "antimetabolite", "2026-03-01"),
            treatment("prednisone", "corticosteroid", "2026-07-20", dose_mg_day=10),
        ],
        labs=[lab(ago(days=10), igg_g_l=1.2)],
    )
    deferral = _deferral(plan, "MMR")
    assert deferral.until is None
    for cause in ("mycophenolate", "prednisone", "IG replacement"):
        assert any(cause in r for r in deferral.reasons), (cause, deferral.reasons)


def test_deferred_live_vaccine_is_not_also_scheduled() -> None:
    """§4: a vaccine is either scheduled in the horizon or deferred, never both."""
    for plan in (
        _plan(),
        _hsct(date(2026, 6, 1)),
        _plan(category="oncology", treatments=[_chemo(end=None)]),
    ):
        deferred = {d.vaccine for d in plan.deferred}
        scheduled = {i.vaccine for i in plan.items if isinstance(i, VaccineDose)}
        assert not deferred & scheduled


def test_vaccine_items_in_horizon_on_working_days() -> None:
    """§4: every vaccine dose is on a working day between the first item day and the horizon."""
    plans = [
        _hsct(date(2026, 5, 10)),
        _plan(category="oncology", treatments=[_chemo()]),
        _plan(
            category="immune_mediated",
            treatments=[treatment("rituximab", "anti_cd20", "2026-08-01", "2026-08-15")],
        ),
    ]
    for plan in plans:
        for d in (i for i in plan.items if isinstance(i, VaccineDose)):
            assert START <= d.earliest <= d.due <= HORIZON_END
            assert CALENDAR.is_working_day(d.due)
            assert d.latest is None or d.due <= d.latest
            assert d.live is (d.vaccine in {"MMR", "VAR", "MMRV", "LAIV", "ROTA", "BCG", "YF"})


def test_future_day_helpers_are_consistent() -> None:
    """The fixed dates of this module are what the comments say (guards the tables above)."""
    assert TODAY.isoweekday() == 2
    assert TODAY + timedelta(days=7) == START
    assert day(ahead(months=12)) == HORIZON_END
    assert (TODAY - IG_DAY).days > 2 * PROTOCOL.immunoglobulin.iv.interval_days
