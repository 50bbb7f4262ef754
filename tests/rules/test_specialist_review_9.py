"""The third specialist review's W6 (asplenia has no referral field), as tables of cases.

Every case's id cites the section of docs/clinical-reference.md it follows: §5.12 asplenia
and functional hyposplenism (the referral's ``risk_conditions``): penicillin V by the BNF for
Children bands of §5.6 (lifelong offered: BCSH, Davies, Br J Haematol 2011;155:308);
MenACWY and MenB as §5.7 plans them (ACIP MMWR 2020;69(RR-9), Table 5); the pneumococcal
reinforcement of §4.16; CDSi observation 160; not graded, no live-vaccine block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_rules import (
    ago,
    born,
    decisions_text,
    items_of,
    lab,
    make_doc,
    make_referral,
    plan_for,
    treatment,
    vaccination,
)

from sidflows.errors import InvalidInput
from sidflows.referral import validate_referral
from sidflows.rules.model import Plan

PEN = "phenoxymethylpenicillin"
ASPLENIA = {"risk_conditions": ["asplenia"]}


def _vaccines(plan: Plan, name: str) -> list[Any]:
    return sorted(
        (d for d in items_of(plan, "vaccine_dose") if d.vaccine == name),  # type: ignore[attr-defined]
        key=lambda d: d.due,
    )


def _penicillin(plan: Plan) -> list[Any]:
    return [p for p in items_of(plan, "prophylaxis") if p.drug == PEN]  # type: ignore[attr-defined]


# ------------------------------------------------------ §5.12 penicillin V by age, lifelong

# (id, birth date, mg a dose: BNF for Children, the bands of §5.6)
PENICILLIN_CASES: list[tuple[str, str, float]] = [
    ("§5.12 6 months: 62.5 mg", born(months=6), 62.5),
    ("§5.12 3 years: 125 mg", born(years=3), 125),
    ("§5.12 16 years (R09): 250 mg", born(years=16, months=8), 250),
]


@pytest.mark.parametrize(
    ("birth", "mg"), [pytest.param(b, m, id=case) for case, b, m in PENICILLIN_CASES]
)
def test_penicillin_v_by_age_in_asplenia(birth: str, mg: float) -> None:
    plan = plan_for(make_referral(birth_date=birth, **ASPLENIA))
    (item,) = _penicillin(plan)
    assert item.regimen.startswith(f"{mg:g} mg 2 times a day")
    assert "asplenia" in item.indication
    text = decisions_text(plan, "prophylaxis")
    assert "in asplenia" in text
    assert "lifelong" in text
    assert "BCSH" in text


def test_no_penicillin_without_the_field() -> None:
    """§5.12: the control: the same child without risk_conditions gets none."""
    plan = plan_for(make_referral(birth_date=born(years=3)))
    assert _penicillin(plan) == []
    assert _vaccines(plan, "MenB") == []


def test_one_penicillin_item_with_a_complement_inhibitor_too() -> None:
    """§5.12 with §5.7: one item covers asplenia and the inhibitor."""
    referral = make_referral(
        birth_date=born(years=12),
        treatments=[treatment("eculizumab", "other_biologic", ago(months=2), None)],
        **ASPLENIA,
    )
    plan = plan_for(referral)
    assert len(_penicillin(plan)) == 1
    assert "already planned against encapsulated bacteria" in decisions_text(plan, "prophylaxis")


# ----------------------------------------------------- §5.12 meningococcal, as §5.7 plans them

# (id, birth date, MenACWY doses planned, MenB doses planned, a clinician decision expected)
MENINGOCOCCAL_CASES: list[tuple[str, str, int, int, str | None]] = [
    ("§5.12 12 years: MenACWY 2 doses and MenB 2 doses", born(years=12), 2, 2, None),
    ("§5.12 5 years: MenACWY 2 doses, MenB under 10 the clinician's", born(years=5), 2, 0, "MenB"),
    ("§5.12 1 year: both the clinician's", born(years=1), 0, 0, "MenACWY under 2 years"),
]


@pytest.mark.parametrize(
    ("birth", "acwy", "menb", "clinician"),
    [pytest.param(b, a, m, c, id=case) for case, b, a, m, c in MENINGOCOCCAL_CASES],
)
def test_meningococcal_series_in_asplenia(
    birth: str, acwy: int, menb: int, clinician: str | None
) -> None:
    plan = plan_for(make_referral(birth_date=birth, **ASPLENIA))
    doses = _vaccines(plan, "MenACWY")
    assert len([d for d in doses if d.dose_number <= 2]) == acwy
    if acwy == 2:
        assert doses[1].due - doses[0].due >= timedelta(weeks=8)
    assert len(_vaccines(plan, "MenB")) == menb
    text = decisions_text(plan, "vaccination")
    assert "asplenia" in text
    assert "Table 5" in " ".join(d.source for d in plan.decisions)
    if clinician is not None:
        assert clinician in text
    # No inhibitor: no timing against a first dose.
    assert "before the complement inhibitor starts" not in text


# ------------------------------------------ §5.12 pneumococcal reinforcement, CDSi, grading


def test_asplenia_is_a_risk_condition_ppsv23_follows() -> None:
    """§5.12 and §4.16: a 5-year-old with PCV complete gets PPSV23 (a risk condition)."""
    pcv = [vaccination("PCV", ago(years=y, months=m)) for y, m in ((4, 10), (4, 8), (4, 0))]
    with_spleen = plan_for(make_referral(birth_date=born(years=5), vaccinations=pcv, **ASPLENIA))
    without = plan_for(make_referral(birth_date=born(years=5), vaccinations=pcv))
    assert _vaccines(with_spleen, "PPSV23")
    assert not _vaccines(without, "PPSV23")
    assert "anatomical or functional asplenia" in decisions_text(with_spleen, "vaccination")


def test_asplenia_is_not_immunosuppression() -> None:
    """§5.12: not graded, no live-vaccine block; CDSi observation 160 given to the engine."""
    referral = make_referral(birth_date=born(years=5), **ASPLENIA)
    plan = plan_for(referral)
    assert plan.grading.level == "none"
    assert "160 Anatomical or functional asplenia" in decisions_text(plan, "vaccination")
    assert [d for d in plan.deferred if "asplenia" in str(d)] == []
    # A live vaccine the child lacks is planned, not held back (MMR catch-up at 5 years).
    assert [d for d in _vaccines(plan, "MMR") if d.live]


# ------------------------------------------------------------- the field: closed vocabulary


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param(["sickle cell"], "risk_conditions[0]", id="§5.12 unknown value"),
        pytest.param(["asplenia", "hyposplenism"], "risk_conditions[1]", id="§5.12 second"),
        pytest.param("asplenia", "risk_conditions", id="§5.12 not a list"),
    ],
)
def test_unknown_risk_condition_is_refused(value: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_referral(make_doc(risk_conditions=value))
    assert raised.value.field == field


def test_unknown_risk_condition_exits_2_naming_the_field(tmp_path: Path) -> None:
    """§5.12 at the command line: exit 2, one line naming the field, no traceback."""
    path = tmp_path / "referral.json"
    path.write_text(json.dumps(make_doc(risk_conditions=["splenomegaly"])))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sidflows"), "propose", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "SIDFLOWS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"},
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "risk_conditions[0]" in lines[0]
    assert "Traceback" not in done.stderr


def test_the_field_is_optional_and_a_plan_without_it_is_unchanged() -> None:
    """Extend, never break: a document without the field validates with it empty."""
    referral = make_referral()
    assert referral.risk_conditions == ()


# ------------------------------- W11 §2.14 absent B cells, agammaglobulinaemia, no cause

REFER = "refer for primary immunodeficiency work-up (e.g. BTK)"

# (id, CD19 /uL, IgG g/L, treatments, a referral decision and high grading expected)
ABSENT_B_CELL_CASES: list[tuple[str, float, float, list[Any], bool]] = [
    ("§2.14 R14: CD19 1, IgG 0.8, no cause: refer, high", 1, 0.8, [], True),
    ("§2.14 CD19 19 (below 20), IgG 3.0 below the limit: refer", 19, 3.0, [], True),
    ("§2.14 CD19 20, at the aplasia threshold: no", 20, 0.8, [], False),
    ("§2.14 IgG 8 within range: no", 1, 8.0, [], False),
    (
        "§2.14 rituximab: an acquired cause, not this",
        1,
        0.8,
        [treatment("rituximab", "anti_cd20", ago(months=3), ago(months=2))],
        False,
    ),
    (
        "§2.10 an other_biologic with a low CD19 is read as depletion first, not this",
        1,
        0.8,
        [treatment("tocilizumab", "other_biologic", ago(months=6), None)],
        False,
    ),
    (
        "§2.10, §2.11 hydroxychloroquine (not immunosuppressive) explains no absent B cells",
        1,
        0.8,
        [treatment("hydroxychloroquine", "other_biologic", ago(months=6), None)],
        True,
    ),
]


@pytest.mark.parametrize(
    ("cd19", "igg", "treatments", "expected"),
    [pytest.param(c, i, t, e, id=case) for case, c, i, t, e in ABSENT_B_CELL_CASES],
)
def test_absent_b_cells_without_a_cause(
    cd19: float, igg: float, treatments: list[Any], expected: bool
) -> None:
    referral = make_referral(
        birth_date=born(years=3),
        sex="male",
        labs=[lab(ago(days=10), cd19_per_ul=cd19, igg_g_l=igg)],
        treatments=treatments,
    )
    plan = plan_for(referral)
    assert (REFER in decisions_text(plan, "grading")) is expected
    if expected:
        assert plan.grading.level == "high"
        assert any("agammaglobulinaemia" in m for m in plan.grading.markers)
        # No live vaccines (ACIP: severe antibody deficiency).
        assert not [d for d in items_of(plan, "vaccine_dose") if d.live]  # type: ignore[attr-defined]
