"""The third specialist review's classes of error, each as a table of cases.

Every case's id cites the section of docs/clinical-reference.md it follows:
§2.8 chemotherapy whatever the referral's class (ALL maintenance referred as
antimetabolites; ATC L01; ECIL-5, IDSA 2013 rec. 73); §2.9 corticosteroids as prednisone
equivalents (BNF; Liu 2013; IDSA 2013 threshold); §2.10 CAR-T by brand and generic name,
and a low CD19 after any biologic (Hill 2019; EBMT/JACIE 2022); §4.12 live vaccines wait
for a CD19 that shows recovery (IDSA 2013; ACR 2022; rituximab label); §4.13 an incomplete
conjugate series is completed before PPSV23 (ACIP 2010).
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    START,
    ago,
    born,
    decisions_text,
    facts_for,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
)

from sidflows.calendar import add_months
from sidflows.rules.drugs import drug_is
from sidflows.rules.model import Plan
from sidflows.rules.steroids import steroid_mg_day
from sidflows.rules.vaccination.pneumococcal import pcv_needed

Doc = dict[str, Any]
ATC = "http://www.whocc.no/atc"


def _coded(doc: Doc, code: str) -> Doc:
    return {**doc, "code": code, "system": ATC}


def _vaccines(plan: Plan, vaccine: str) -> list[Any]:
    return [d for d in items_of(plan, "vaccine_dose") if d.vaccine == vaccine]  # type: ignore[attr-defined]


def _deferral(plan: Plan, vaccine: str) -> Any:
    found = [d for d in plan.deferred if d.vaccine == vaccine]
    return found[0] if found else None


# ------------------------------------------------- §2.8 chemotherapy, whatever the class

MAINTENANCE_START = ago(months=18)
MTX = treatment("metotrexato", "antimetabolite", MAINTENANCE_START, dose_mg_per_kg_week=0.8)
MP = treatment("mercaptopurina", "antimetabolite", MAINTENANCE_START, dose_mg_per_kg_day=1.5)

CHEMO_CASES: list[tuple[str, str, str, list[Doc], bool]] = [
    (
        "§2.8 ALL (Spanish label), MTX + 6-MP referred as antimetabolites, coded L01",
        "oncology",
        "leucemia linfoblástica aguda",
        [_coded(MTX, "L01BA01"), _coded(MP, "L01BB02")],
        True,
    ),
    (
        "§2.8 ALL, MTX + 6-MP referred as antimetabolites, uncoded",
        "oncology",
        "leucemia linfoblástica aguda",
        [MTX, MP],
        True,
    ),
    (
        "§2.8 B-ALL, 6-MP alone, uncoded",
        "oncology",
        "B-ALL in maintenance",
        [treatment("6-MP", "antimetabolite", MAINTENANCE_START, dose_mg_per_kg_day=1.5)],
        True,
    ),
    (
        "§2.8 lymphoblastic lymphoma (treated as ALL), methotrexate uncoded",
        "oncology",
        "T-lymphoblastic lymphoma",
        [treatment("methotrexate", "antimetabolite", MAINTENANCE_START, dose_mg_day=10)],
        True,
    ),
    (
        "§2.8 ATC L01 in a category other than oncology is still chemotherapy",
        "other",
        "acute lymphoblastic leukaemia",
        [_coded(MP, "L01BB02")],
        True,
    ),
]


@pytest.mark.parametrize(
    ("category", "label", "treatments", "chemo"),
    [pytest.param(c, lb, t, x, id=case) for case, c, lb, t, x in CHEMO_CASES],
)
def test_all_maintenance_is_ongoing_chemotherapy(
    category: str, label: str, treatments: list[Doc], chemo: bool
) -> None:
    referral = make_referral(category=category, label=label, treatments=treatments)
    facts = facts_for(referral)
    assert facts.chemotherapy_ongoing is chemo
    plan = plan_for(referral)
    # IDSA 2013: combination chemotherapy is high-level; time-limited, so transient.
    assert plan.grading.level == "high"
    assert plan.grading.transient
    assert any("read as chemotherapy" in r for r in plan.grading.reasons)
    # ECIL-5: Pneumocystis prophylaxis for the whole period at risk of ALL.
    assert items_of(plan, "prophylaxis", drug="co-trimoxazole")
    assert "no chemotherapy is ongoing" not in decisions_text(plan)
    # IDSA 2013 rec. 73: no PPSV23 or boosters during chemotherapy; influenza only.
    given = {d.vaccine for d in items_of(plan, "vaccine_dose")}  # type: ignore[attr-defined]
    assert given <= {"IIV"}
    assert _deferral(plan, "MMR") is not None


def test_a_known_non_cytotoxic_antimetabolite_in_cancer_keeps_its_class() -> None:
    """§2.8: mycophenolate for an oncology diagnosis is not read as chemotherapy; an
    antimetabolite the protocol does not know by name is (cautious)."""
    for drug, chemo in (("mycophenolate", False), ("Purinethol-X", True)):
        referral = make_referral(
            category="oncology",
            label="acute lymphoblastic leukaemia",
            treatments=[treatment(drug, "antimetabolite", MAINTENANCE_START)],
        )
        assert facts_for(referral).chemotherapy_ongoing is chemo, drug


NOT_CHEMO_CASES: list[tuple[str, str, Doc]] = [
    (
        "§2.8 JIA methotrexate referred as antimetabolite, uncoded: low-level",
        "juvenile idiopathic arthritis",
        treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.3),
    ),
    (
        "§2.8 JIA methotrexate coded L04AX03 (immunosuppressant): low-level",
        "juvenile idiopathic arthritis",
        _coded(
            treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.3),
            "L04AX03",
        ),
    ),
]


@pytest.mark.parametrize(
    ("label", "entry"), [pytest.param(lb, e, id=case) for case, lb, e in NOT_CHEMO_CASES]
)
def test_an_antimetabolite_outside_cancer_is_not_chemotherapy(label: str, entry: Doc) -> None:
    referral = make_referral(category="immune_mediated", label=label, treatments=[entry])
    facts = facts_for(referral)
    assert not facts.chemotherapy_ongoing
    assert facts.chemotherapy_readings == ()
    assert plan_for(referral).grading.level == "low"


# ------------------------------------------------- §2.9 prednisone equivalents

STEROID_CASES: list[tuple[str, str, float, float, str, float | None, str | None]] = [
    # (case, drug, mg/day, weight, expected level, prednisone-equivalent mg/day, code)
    (
        "§2.9 dexamethasone 6 mg/day = 40 mg prednisone: high",
        "dexamethasone",
        6,
        20,
        "high",
        40,
        None,
    ),
    (
        "§2.9 dexametasona 3 mg/day = 20 mg prednisone: high",
        "dexametasona",
        3,
        20,
        "high",
        20,
        None,
    ),
    (
        "§2.9 dexamethasone 2 mg/day = 13.3 mg prednisone: low",
        "dexamethasone",
        2,
        20,
        "low",
        13.33,
        None,
    ),
    (
        "§2.9 methylprednisolone 16 mg/day = 20 mg: high",
        "methylprednisolone",
        16,
        30,
        "high",
        20,
        None,
    ),
    ("§2.9 metilprednisolona 12 mg/day = 15 mg: low", "metilprednisolona", 12, 30, "low", 15, None),
    ("§2.9 hydrocortisone 80 mg/day = 20 mg: high", "hydrocortisone", 80, 30, "high", 20, None),
    ("§2.9 hydrocortisone 60 mg/day = 15 mg: low", "hydrocortisone", 60, 30, "low", 15, None),
    ("§2.9 prednisolone 20 mg/day: high, no conversion", "prednisolone", 20, 30, "high", 20, None),
    (
        "§2.9 a brand coded H02AB02 (dexamethasone) 6 mg/day: high",
        "Decadron",
        6,
        20,
        "high",
        40,
        "H02AB02",
    ),
    (
        "§2.9 under 10 kg: dexamethasone 0.3 mg/kg/day = 2 mg/kg/day: high",
        "dexamethasone",
        2.7,
        9,
        "high",
        18,
        None,
    ),
    (
        "§2.9 budesonide: no equivalence, graded high (cautious)",
        "budesonide",
        9,
        30,
        "high",
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("drug", "mg_day", "weight", "level", "equivalent", "code"),
    [pytest.param(d, m, w, lv, e, c, id=case) for case, d, m, w, lv, e, c in STEROID_CASES],
)
def test_corticosteroids_are_graded_on_their_prednisone_equivalent(
    drug: str, mg_day: float, weight: float, level: str, equivalent: float | None, code: str | None
) -> None:
    entry = treatment(drug, "corticosteroid", ago(days=35), dose_mg_day=mg_day)
    if code is not None:
        entry = _coded(entry, code)
    referral = make_referral(category="immune_mediated", weight_kg=weight, treatments=[entry])
    t = referral.treatments[0]
    got = steroid_mg_day(t, weight, PROTOCOL)
    if equivalent is None:
        assert got is None
    else:
        assert got == pytest.approx(equivalent, abs=0.01)
    grading = plan_for(referral).grading
    assert grading.level == level
    reasons = " ".join(grading.reasons)
    if equivalent is not None and equivalent != mg_day:
        assert "prednisone-equivalent" in reasons  # the conversion is named
    if equivalent is None:
        assert "no prednisone equivalence" in reasons


def test_dexamethasone_course_waits_like_the_equivalent_prednisolone() -> None:
    """§2.9, §4.3: dexamethasone 6 mg/day for 5 weeks in 20 kg waits as long as
    prednisolone 40 mg/day before MMR (c33 vs c33b)."""
    end = ago(days=5)
    plans = [
        plan_for(
            make_referral(
                category="immune_mediated",
                weight_kg=20,
                treatments=[treatment(drug, "corticosteroid", ago(days=42), end, dose_mg_day=dose)],
            )
        )
        for drug, dose in (("dexamethasone", 6), ("prednisolone", 40))
    ]
    wait = add_months(
        date.fromisoformat(end), PROTOCOL.vaccination.after_high_dose_steroid_live_months
    )
    for plan in plans:
        mmr = _vaccines(plan, "MMR")
        assert mmr
        assert mmr[0].due >= wait
    assert [d.due for d in _vaccines(plans[0], "MMR")] == [
        d.due for d in _vaccines(plans[1], "MMR")
    ]


# ------------------------------------------------- §2.10 CAR-T by name; low CD19

CAR_T_CASES: list[tuple[str, str, str | None, bool]] = [
    ("§2.10 Kymriah referred as other biologic", "Kymriah", None, False),
    ("§2.10 Yescarta", "Yescarta", None, False),
    ("§2.10 Tecartus", "Tecartus", None, False),
    ("§2.10 Breyanzi", "Breyanzi", None, False),
    ("§2.10 tisagenlecleucel", "tisagenlecleucel", None, False),
    ("§2.10 axicabtagene ciloleucel", "axicabtagene ciloleucel", None, False),
    ("§2.10 brexucabtagene autoleucel", "brexucabtagene autoleucel", None, False),
    ("§2.10 lisocabtagene maraleucel", "lisocabtagene maraleucel", None, False),
    ("§2.10 obecabtagene autoleucel", "obecabtagene autoleucel", None, False),
    ("§2.10 a product coded L01XL only", "product X", "L01XL03", False),
    ("§2.10 Carvykti (BCMA-directed)", "Carvykti", None, True),
    ("§2.10 Abecma (BCMA-directed)", "Abecma", None, True),
]


@pytest.mark.parametrize(
    ("drug", "code", "bcma"),
    [pytest.param(d, c, b, id=case) for case, d, c, b in CAR_T_CASES],
)
def test_car_t_is_recognised_by_its_names(drug: str, code: str | None, bcma: bool) -> None:
    infusion = ago(months=3)
    entry = treatment(drug, "other_biologic", infusion, infusion)
    if code is not None:
        entry = _coded(entry, code)
    referral = make_referral(
        category="oncology",
        label="LAL-B refractaria",
        treatments=[entry],
        labs=[lab(ago(days=5), igg_g_l=3.0, cd19_per_ul=0, cd4_per_ul=300)],
    )
    facts = facts_for(referral)
    assert facts.after_car_t
    assert facts.b_cell_depletion is not None
    assert drug not in " ".join(facts.unrecognised_drugs)
    plan = plan_for(referral)
    assert plan.grading.level == "high"
    # EBMT/JACIE 2020: Pneumocystis prophylaxis after CAR-T.
    assert items_of(plan, "prophylaxis", drug="co-trimoxazole")
    deferral = _deferral(plan, "MMR")
    assert deferral is not None
    assert deferral.until is None
    assert any("B cells have recovered" in r for r in deferral.reasons)
    if bcma:  # graded and followed as CAR-T (EBMT/JACIE 2022), read by its name
        assert drug_is(referral.treatments[0], PROTOCOL.grading.bcma_car_t_drugs, PROTOCOL)


def test_bcma_car_t_is_named_apart_without_a_count() -> None:
    """§2.10: BCMA CAR-T, no CD19 since the infusion: named as BCMA-directed."""
    infusion = ago(months=2)
    referral = make_referral(
        category="oncology",
        label="multiple myeloma",
        treatments=[treatment("Carvykti", "other_biologic", infusion, infusion)],
    )
    depletion = facts_for(referral).b_cell_depletion
    assert depletion is not None
    assert "BCMA-directed" in depletion.reason


LOW_CD19_CASES: list[tuple[str, str, str, Doc, bool]] = [
    (
        "§2.10 unrecognised biologic, CD19 0: depletion",
        "drug-X",
        "other_biologic",
        lab(ago(days=5), cd19_per_ul=0),
        True,
    ),
    (
        "§2.10 recognised other biologic (tocilizumab), CD19 below the lab's limit",
        "tocilizumab",
        "other_biologic",
        lab(ago(days=5), cd19_per_ul=30, cd19_lower_limit_per_ul=90),
        True,
    ),
    (
        "§2.10 unrecognised drug of another class, CD19 below 20/uL (Hill 2019)",
        "zzz-mab",
        "jak_inhibitor",
        lab(ago(days=5), cd19_per_ul=5),
        True,
    ),
    (
        "§2.10 other biologic, CD19 within the lab's range: no depletion",
        "drug-X",
        "other_biologic",
        lab(ago(days=5), cd19_per_ul=300, cd19_lower_limit_per_ul=90),
        False,
    ),
]


@pytest.mark.parametrize(
    ("drug", "cls", "count", "depleted"),
    [pytest.param(d, c, n, x, id=case) for case, d, c, n, x in LOW_CD19_CASES],
)
def test_a_low_cd19_after_any_biologic_is_depletion(
    drug: str, cls: str, count: Doc, depleted: bool
) -> None:
    referral = make_referral(
        category="immune_mediated",
        label="autoimmune disease",
        treatments=[treatment(drug, cls, ago(months=4), ago(months=2))],
        labs=[count],
    )
    depletion = facts_for(referral).b_cell_depletion
    assert (depletion is not None) is depleted
    plan = plan_for(referral)
    if depleted:
        assert depletion is not None
        assert drug in depletion.reason
        assert "CD19" in depletion.reason
        assert any("CD19" in r for r in plan.grading.reasons)
        assert not _vaccines(plan, "MMR")
        deferral = _deferral(plan, "MMR")
        assert deferral is not None
        assert any("B cells have recovered" in r for r in deferral.reasons)


# ------------------------------------------------- §4.12 live vaccines wait for a CD19

CD19_RECOVERY_CASES: list[tuple[str, list[Doc], bool]] = [
    ("§4.12 anti-CD20 8 months ago, no CD19 ever: live deferred", [], False),
    (
        "§4.12 a CD19 before the last dose does not show recovery",
        [lab(ago(months=9), cd19_per_ul=200, cd19_lower_limit_per_ul=90)],
        False,
    ),
    (
        "§4.12 a CD19 with no lab limit does not show recovery",
        [lab(ago(days=10), cd19_per_ul=200)],
        False,
    ),
    (
        "§4.12 a stale recovered CD19 does not show recovery (§6.6)",
        [lab(ago(months=5), cd19_per_ul=200, cd19_lower_limit_per_ul=90)],
        False,
    ),
    (
        "§4.12 a fresh CD19 at or above the lab's limit: live given",
        [lab(ago(days=10), cd19_per_ul=200, cd19_lower_limit_per_ul=90)],
        True,
    ),
]


@pytest.mark.parametrize(
    ("labs", "given"), [pytest.param(lb, g, id=case) for case, lb, g in CD19_RECOVERY_CASES]
)
def test_live_vaccines_after_anti_cd20_wait_for_cd19_recovery(labs: list[Doc], given: bool) -> None:
    referral = make_referral(
        category="immune_mediated",
        label="ANCA vasculitis",
        treatments=[
            _coded(treatment("MabThera", "other_biologic", ago(months=9), ago(months=8)), "L01FA01")
        ],
        labs=labs,
    )
    plan = plan_for(referral)
    assert bool(_vaccines(plan, "MMR")) is given
    if not given:
        deferral = _deferral(plan, "MMR")
        assert deferral is not None
        # Dated "not before" by the other blocks (the label's window), lifted by a count.
        assert deferral.until is None or deferral.until >= START
        assert any("no fresh CD19 count since shows B-cell recovery" in r for r in deferral.reasons)
        # The CD19 is checked at the reassessments after anti-CD20 (§6.1).
        assert any("CD19" in i.panel for i in items_of(plan, "reassessment"))  # type: ignore[attr-defined]


# ------------------------------------------------- §4.13 complete the conjugate series first

BIRTH = date(2020, 1, 1)


def _at(months: int) -> date:
    return add_months(BIRTH, months)


PCV_CASES: list[tuple[str, int, list[int], int]] = [
    # (case, age in months on the plan's first day, PCV doses at these ages, doses needed)
    ("§4.13 ACIP: 12-23 months, none: 2", 15, [], 2),
    ("§4.13 ACIP: 12-23 months, 1 before 12 months: 2", 15, [2], 2),
    ("§4.13 ACIP: 12-23 months, 2 before 12 months: 1", 13, [2, 4], 1),
    ("§4.13 ACIP: 12-23 months, 1 from 12 months: 1", 16, [12], 1),
    ("§4.13 ACIP: 12-23 months, 2 infant + 1 from 12 months: complete", 20, [2, 4, 12], 0),
    ("§4.13 ACIP: 24-71 months, 2 doses: 2 before PPSV23 (c19, c28)", 30, [2, 4], 2),
    ("§4.13 ACIP: 24-71 months, none: 2", 48, [], 2),
    ("§4.13 ACIP: 24-71 months, 3 infant doses: 1", 36, [2, 4, 6], 1),
    ("§4.13 ACIP: 24-71 months, 4 doses: complete", 36, [2, 4, 6, 12], 0),
    ("§4.13 ACIP: 6-18 years, none: 1", 100, [], 1),
    ("§4.13 ACIP: 6-18 years, documented (read as PCV13+): none", 100, [2, 4], 0),
]


@pytest.mark.parametrize(
    ("age", "doses", "needed"),
    [pytest.param(a, d, n, id=case) for case, a, d, n in PCV_CASES],
)
def test_pcv_doses_needed_before_ppsv23(age: int, doses: list[int], needed: int) -> None:
    assert pcv_needed(BIRTH, _at(age), [_at(m) for m in doses])[0] == needed


PCV_PLAN_CASES: list[tuple[str, str, list[str], int]] = [
    ("§4.13 4 years, 2 infant PCV (c19): 2 PCV then PPSV23", born(years=4), ["PCV", "PCV"], 2),
    ("§4.13 2 years 4 months, 2 infant PCV (c28)", born(years=2, months=4), ["PCV", "PCV"], 2),
    ("§4.13 13 months, 2 infant PCV (c23): 1 PCV now", born(months=13), ["PCV", "PCV"], 1),
    ("§4.13 10 years, no PCV: 1 PCV then PPSV23", born(years=10), [], 1),
]


@pytest.mark.parametrize(
    ("birth", "given", "needed"),
    [pytest.param(b, g, n, id=case) for case, b, g, n in PCV_PLAN_CASES],
)
def test_the_plan_completes_the_conjugate_series_before_ppsv23(
    birth: str, given: list[str], needed: int
) -> None:
    born_on = date.fromisoformat(birth)
    vaccinations = [vaccination(v, add_months(born_on, 2 * (i + 1))) for i, v in enumerate(given)]
    referral = make_referral(
        category="immune_mediated",
        label="idiopathic nephrotic syndrome",
        birth_date=birth,
        weight_kg=15,
        treatments=[
            treatment("prednisolone", "corticosteroid", ago(days=40), ago(days=20), dose_mg_day=10)
        ],
        vaccinations=vaccinations,
    )
    plan = plan_for(referral)
    pcv = _vaccines(plan, "PCV")
    assert len(pcv) == needed
    assert pcv[0].due >= START
    for a, b in itertools.pairwise(pcv):
        assert b.due - a.due >= timedelta(weeks=8)
    for ppsv in _vaccines(plan, "PPSV23"):
        assert ppsv.due - pcv[-1].due >= timedelta(weeks=8)
        assert ppsv.due >= add_months(born_on, 24)
