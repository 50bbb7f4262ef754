"""The fifth specialist review's vaccination fixes, as tables of cases.

Every case's id cites the section of docs/clinical-reference.md it follows: §4.15 HPV and
MenACWY after HSCT (IDSA 2013 table 4, rec. 80 and 84; ECIL-7) and for immunocompromised
adolescents (ACIP, Meites MMWR 2016;65:1405); §4.5 influenza on schedule on rituximab
(ACR 2022, Bass, Arthritis Care Res 2023;75:449; IDSA 2013's "skip" the alternative);
§4.16 the reinforcement for a risk condition only, the routine catch-up for every child
(ACIP; Kobayashi MMWR 2022;71:1174; CDSi); §4.13 PCV for high-risk children 24-71 months
(ACIP, Nuorti MMWR Recomm Rep 2010;59(RR-11)).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    HORIZON_END,
    PROTOCOL,
    START,
    TODAY,
    ago,
    ahead,
    born,
    context_for,
    decisions_text,
    ig_dose,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
    with_protocol,
)
from hypothesis import HealthCheck, given, settings
from test_properties import referral_docs

from sidflows.calendar import add_months, add_years
from sidflows.referral import validate_referral
from sidflows.rules.model import Plan, VaccineDose
from sidflows.rules.vaccination import inactivated_blocks, is_live
from sidflows.rules.vaccination.risk import risk_conditions

NORMAL_IGG = [lab(ago(days=10), igg_g_l=8.0)]
MTX = treatment("methotrexate", "antimetabolite", ago(months=6), dose_mg_per_kg_week=0.3)
TOCILIZUMAB = treatment("tocilizumab", "other_biologic", ago(months=4))
FLU_SKIP = with_protocol(PROTOCOL, "vaccination.influenza_on_anti_cd20", "skip")


def _doses(plan: Plan, *names: str) -> list[VaccineDose]:
    found = [d for d in items_of(plan, "vaccine_dose") if d.vaccine in names]  # type: ignore[attr-defined]
    return sorted(found, key=lambda d: (d.due, d.dose_number))  # type: ignore[attr-defined]


def _plan(**fields: Any) -> Plan:
    fields.setdefault("labs", NORMAL_IGG)
    return plan_for(make_referral(**fields))


def _hsct(months_ago: int, years: int, **fields: Any) -> Plan:
    return _plan(
        category="hsct",
        label="acute myeloid leukaemia, HSCT",
        birth_date=born(years=years),
        hsct={"date": ago(months=months_ago), "type": "allogeneic", "active_gvhd": False},
        **fields,
    )


def _hsct_day(months_ago: int) -> date:
    return date.fromisoformat(ago(months=months_ago))


# ------------------------------------------------------- §4.15 HPV and MenACWY after HSCT

# (id, months since HSCT, age in years, HPV doses planned, MenACWY doses planned)
HSCT_CASES: list[tuple[str, int, int, int, int]] = [
    ("§4.15 12 years, 8 months after HSCT: HPV 3, MenACWY 2", 8, 12, 3, 2),
    ("§4.15 15 years, 8 months after HSCT: HPV 3, MenACWY 2 + booster at 16", 8, 15, 3, 3),
    ("§4.15 16 years, 8 months after HSCT: HPV 3, MenACWY 2, no booster", 8, 16, 3, 2),
    ("§4.15 12 years, 2 months after HSCT: HPV 3 from 6 months, MenACWY 2", 2, 12, 3, 2),
    ("§4.15 9 years after HSCT: HPV 3 (licensed from 9), no MenACWY (under 11)", 8, 9, 3, 0),
    ("§4.15 7 years after HSCT: no HPV, no MenACWY in the horizon", 8, 7, 0, 0),
]


@pytest.mark.parametrize(
    ("months", "years", "hpv", "acwy"),
    [pytest.param(m, y, h, a, id=case) for case, m, y, h, a in HSCT_CASES],
)
def test_hpv_and_menacwy_after_hsct(months: int, years: int, hpv: int, acwy: int) -> None:
    """§4.15 (IDSA 2013 table 4, rec. 80 and 84): HPV 3 doses, MenACWY 2 doses from 6
    months after HSCT, a booster at 16 when the series ends before it."""
    plan = _hsct(months, years)
    hsct = _hsct_day(months)
    hpv_doses, acwy_doses = _doses(plan, "HPV"), _doses(plan, "MenACWY")
    assert len(hpv_doses) == hpv
    assert len(acwy_doses) == acwy
    for d in (*hpv_doses, *acwy_doses):
        assert d.due >= add_months(hsct, 6)
        assert not d.live
    if hpv:
        first, second, third = hpv_doses
        assert first.due >= add_years(date.fromisoformat(born(years=years)), 9)
        assert second.due >= add_months(first.due, 1)
        assert third.due >= add_months(first.due, 6)
        assert "IDSA 2013 table 4" in decisions_text(plan)
    if acwy >= 2:
        assert acwy_doses[1].due - acwy_doses[0].due >= timedelta(weeks=8)
        assert "rec. 80" in decisions_text(plan)
    if acwy == 3:
        sixteen = add_years(date.fromisoformat(born(years=years)), 16)
        assert acwy_doses[2].due >= sixteen
    if years == 12 and months == 8:
        assert "MenACWY booster at 16 years" in decisions_text(plan)


def test_doses_before_hsct_do_not_count() -> None:
    """§4.6, §4.15: an HPV series and a MenACWY dose before the transplant restart after it."""
    plan = _hsct(
        8,
        14,
        vaccinations=[
            vaccination("HPV", ago(years=2)),
            vaccination("HPV", ago(years=1, months=6)),
            vaccination("MenACWY", ago(years=2)),
        ],
    )
    assert [d.dose_number for d in _doses(plan, "HPV")] == [1, 2, 3]
    assert [d.dose_number for d in _doses(plan, "MenACWY")][:2] == [1, 2]


def test_hsct_live_blocks_unchanged_by_hpv_and_menacwy() -> None:
    """§4.15: both inactivated; MMR still waits 24 months after HSCT (§4.6)."""
    plan = _hsct(8, 12)
    assert not _doses(plan, "MMR")
    assert any(d.vaccine == "MMR" for d in plan.deferred)


# --------------------------------------------- §4.15 HPV for immunocompromised adolescents

# (id, birth date, treatments, HPV doses documented, HPV doses planned, first due on/after)
HPV_CASES: list[tuple[str, str, list[dict[str, Any]], list[str], int, str]] = [
    (
        "§4.15 12 years on tocilizumab: 3 doses",
        born(years=12),
        [TOCILIZUMAB],
        [],
        3,
        START.isoformat(),
    ),
    (
        "§4.15 9 years on methotrexate: 3 doses from 9",
        born(years=9),
        [MTX],
        [],
        3,
        START.isoformat(),
    ),
    (
        "§4.15 8 years 6 months on methotrexate: from the 9th birthday",
        born(years=8, months=6),
        [MTX],
        [],
        3,
        ahead(months=6),
    ),
    (
        "§4.15 13 years, 2-dose series done: dose 3 (immunocompromised get 3)",
        born(years=13),
        [MTX],
        [ago(years=2), ago(years=1, months=6)],
        1,
        START.isoformat(),
    ),
    (
        "§4.15 12 years, 3 doses documented: none",
        born(years=12),
        [MTX],
        [ago(years=1, months=8), ago(years=1, months=7), ago(years=1, months=2)],
        0,
        START.isoformat(),
    ),
]


@pytest.mark.parametrize(
    ("birth", "treatments", "given", "planned", "first"),
    [pytest.param(b, t, g, p, f, id=case) for case, b, t, g, p, f in HPV_CASES],
)
def test_hpv_three_doses_when_immunocompromised(
    birth: str, treatments: list[dict[str, Any]], given: list[str], planned: int, first: str
) -> None:
    """§4.15 (ACIP, Meites MMWR 2016;65:1405): 3 doses at 0, 1-2, 6 months from 9 years."""
    plan = _plan(
        category="immune_mediated",
        birth_date=birth,
        treatments=treatments,
        vaccinations=[vaccination("HPV", g) for g in given],
    )
    doses = _doses(plan, "HPV")
    assert len(doses) == planned
    assert [d.dose_number for d in doses] == list(range(len(given) + 1, len(given) + 1 + planned))
    if doses:
        assert doses[0].due >= date.fromisoformat(first)
        assert "Meites, MMWR 2016;65:1405" in decisions_text(plan)


def test_hpv_not_immunocompromised_is_the_routine_series() -> None:
    """§4.16: a 12-year-old without a risk condition gets CDSi's routine 2-dose series."""
    plan = _plan(
        category="immune_mediated",
        label="Kawasaki disease",
        birth_date=born(years=12),
        immunoglobulin_doses=[ig_dose(ago(months=1), 2.0)],
    )
    doses = _doses(plan, "HPV")
    assert len(doses) == 2
    assert doses[1].due - doses[0].due >= timedelta(days=150)  # 6-12 months apart
    assert "HPV: routine catch-up" in decisions_text(plan)


def test_hpv_and_menacwy_held_by_anti_cd20() -> None:
    """§4.15: inactivated blocks unchanged: ongoing rituximab holds HPV and MenACWY."""
    plan = _plan(
        category="immune_mediated",
        birth_date=born(years=12),
        treatments=[treatment("rituximab", "anti_cd20", ago(months=1))],
    )
    assert not _doses(plan, "HPV", "MenACWY")
    text = decisions_text(plan)
    assert "HPV: no dose possible in the horizon" in text
    assert "held back by: rituximab" in text


# (id, age in years, MenACWY doses documented, doses planned, the first on/after)
ACWY_CASES: list[tuple[str, int, list[str], int, str]] = [
    ("§4.15/§4.16 12 years, none: dose 1 now (ACIP 11-12)", 12, [], 1, START.isoformat()),
    (
        "§4.16 15 years 11 months, one at 11: the booster at 16",
        15,
        [ago(years=4)],
        1,
        ahead(months=1),
    ),
    ("§4.16 17 years, none: 1 catch-up dose", 17, [], 1, START.isoformat()),
    ("§4.16 9 years: none in the horizon", 9, [], 0, START.isoformat()),
]


@pytest.mark.parametrize(
    ("years", "given", "planned", "first"),
    [pytest.param(y, g, p, f, id=case) for case, y, g, p, f in ACWY_CASES],
)
def test_menacwy_routine_for_adolescents(
    years: int, given: list[str], planned: int, first: str
) -> None:
    """§4.16 (ACIP routine MenACWY through CDSi): 11-12 years, a booster at 16."""
    birth = born(years=years, months=11 if years == 15 else 0)
    plan = _plan(
        category="immune_mediated",
        birth_date=birth,
        treatments=[MTX],
        vaccinations=[vaccination("MenACWY", g) for g in given],
    )
    doses = _doses(plan, "MenACWY")
    assert len(doses) == planned
    if years == 15:
        assert doses[0].due >= add_years(date.fromisoformat(birth), 16)
    elif doses:
        assert doses[0].due >= date.fromisoformat(first)
        assert "MenACWY: routine catch-up" in decisions_text(plan)


# ------------------------------------------------------ §4.5 influenza on anti-CD20


# (id, protocol choice, rituximab start, end, first IIV on or after)
FLU_CASES: list[tuple[str, str, str, str | None, date]] = [
    (
        "§4.5 ACR 2022: ongoing rituximab, IIV at the campaign start",
        "on_schedule",
        ago(months=2),
        None,
        START,
    ),
    (
        "§4.5 ACR 2022: last dose last month, IIV now",
        "on_schedule",
        ago(months=3),
        ago(months=1),
        START,
    ),
    (
        "§4.5 IDSA 'skip': last dose last month, IIV after depletion",
        "skip",
        ago(months=3),
        ago(months=1),
        add_months(date.fromisoformat(ago(months=1)), 6),
    ),
    (
        "§4.5 IDSA 'skip': ongoing, no IIV in the horizon",
        "skip",
        ago(months=2),
        None,
        HORIZON_END + timedelta(days=1),
    ),
]


@pytest.mark.parametrize(
    ("choice", "start", "end", "first"),
    [pytest.param(c, s, e, f, id=case) for case, c, s, e, f in FLU_CASES],
)
def test_influenza_on_rituximab(choice: str, start: str, end: str | None, first: date) -> None:
    """§4.5: influenza on schedule on rituximab (ACR 2022), or IDSA 2013's skip."""
    protocol = with_protocol(PROTOCOL, "vaccination.influenza_on_anti_cd20", choice)
    plan = plan_for(
        make_referral(
            labs=NORMAL_IGG,
            category="immune_mediated",
            label="systemic lupus erythematosus",
            treatments=[treatment("rituximab", "anti_cd20", start, end)],
        ),
        protocol=protocol,
    )
    iiv = _doses(plan, "IIV")
    text = decisions_text(plan)
    if first > HORIZON_END:
        assert not iiv
    else:
        assert iiv
        assert iiv[0].due >= first
    if choice == "on_schedule":
        assert iiv[0].due == START
        assert "influenza vaccine on schedule on rituximab (not deferred)" in text
        assert "ACR 2022 (Bass, Arthritis Care Res 2023;75:449)" in text
        assert ">= 2 weeks after the vaccine" in text
    else:
        assert "influenza vaccine on schedule on rituximab (not deferred)" not in text
        assert "no influenza vaccine during anti-B-cell antibodies" in text


# ----------------------------------- §4.16 reinforcement for risk, routine catch-up for all


def _kawasaki(g_per_kg: float = 2.0, **fields: Any) -> Plan:
    return _plan(
        category="immune_mediated",
        label="Kawasaki disease",
        birth_date=born(years=4),
        weight_kg=16,
        immunoglobulin_doses=[ig_dose(ago(months=1), g_per_kg)],
        vaccinations=[
            vaccination("DTaP", ago(years=3, months=10)),
            vaccination("DTaP", ago(years=3, months=8)),
            vaccination("PCV", ago(years=3, months=10)),
        ],
        **fields,
    )


def test_kawasaki_after_ivig_no_ppsv23_but_routine_catch_up() -> None:
    """§4.16 (ACIP; Kobayashi MMWR 2022;71:1174): IVIG 2 g/kg for Kawasaki disease is not a
    risk condition: no PPSV23, the routine catch-up of the missing doses planned."""
    plan = _kawasaki()
    assert not _doses(plan, "PPSV23")
    assert len(_doses(plan, "PCV")) == 1  # healthy 24-59 months, incomplete: 1 dose
    assert [d.dose_number for d in _doses(plan, "DTaP")] == [3, 4]
    for vaccine in ("IPV", "Hib", "HepB", "HepA"):
        assert _doses(plan, vaccine), vaccine
    text = decisions_text(plan)
    assert "no reinforcement beyond the routine schedule: no PPSV23" in text
    assert "Kobayashi, MMWR 2022;71:1174" in text
    assert "DTaP: routine catch-up" in text


# (id, IVIG g/kg, months before MMR)
KAWASAKI_LIVE: list[tuple[str, float, int]] = [
    ("§4.7/§4.16 Kawasaki IVIG 2 g/kg: MMR after 11 months", 2.0, 11),
    ("§4.7/§4.16 ITP IVIG 1 g/kg: MMR after 10 months", 1.0, 10),
]


@pytest.mark.parametrize(
    ("g_per_kg", "months"), [pytest.param(g, m, id=case) for case, g, m in KAWASAKI_LIVE]
)
def test_live_vaccines_wait_the_antibody_interval(g_per_kg: float, months: int) -> None:
    """§4.7 (ACIP antibody-live vaccine table): MMR and varicella wait after the IVIG."""
    plan = _kawasaki(g_per_kg)
    ivig = date.fromisoformat(ago(months=1))
    mmr = _doses(plan, "MMR")
    assert mmr
    assert mmr[0].due >= add_months(ivig, months)
    assert all(d.due >= add_months(ivig, months) for d in _doses(plan, "VAR"))


# (id, treatments / facts, PPSV23 planned)
RISK_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("§4.16 on methotrexate: PPSV23", {"treatments": [MTX]}, True),
    (
        "§4.16 on IG replacement: PPSV23",
        {
            "labs": [lab(ago(days=10), igg_g_l=3.0)],
            "immunoglobulin_doses": [ig_dose(ago(days=20))],
        },
        True,
    ),
    (
        "§4.16 Kawasaki IVIG only: no PPSV23",
        {"immunoglobulin_doses": [ig_dose(ago(months=1), 2.0)]},
        False,
    ),
    ("§4.16 no treatment, no marker: no PPSV23", {}, False),
]


@pytest.mark.parametrize(
    ("fields", "ppsv"), [pytest.param(f, p, id=case) for case, f, p in RISK_CASES]
)
def test_reinforcement_only_with_a_risk_condition(fields: dict[str, Any], ppsv: bool) -> None:
    """§4.16: PPSV23 (and the risk-table conjugate doses) for a risk condition only; the
    routine catch-up for every child."""
    plan = _plan(
        category="immune_mediated",
        birth_date=born(years=6),
        vaccinations=[vaccination("PCV", ago(years=5, months=n)) for n in (10, 8, 6)]
        + [vaccination("PCV", ago(years=4, months=10))],
        **fields,
    )
    assert bool(_doses(plan, "PPSV23")) is ppsv
    if ppsv:
        assert "PPSV23 >= 8 weeks after the conjugate" in decisions_text(plan)


# ---------------------------------------------------- §4.13 PCV, high risk, 24-71 months

# (id, PCV doses documented (months ago), PCV planned)
PCV_CASES: list[tuple[str, list[int], int]] = [
    ("§4.13 24-71 months, 0 doses: 2 PCV 8 weeks apart, then PPSV23", [], 2),
    ("§4.13 24-71 months, 1 dose: 2 PCV", [46], 2),
    ("§4.13 24-71 months, 2 doses: 2 PCV", [46, 44], 2),
    ("§4.13 24-71 months, 3 infant doses: 1 PCV", [46, 44, 42], 1),
    ("§4.13 24-71 months, 3 doses, one from 12 months: 1 PCV (any 3)", [46, 44, 34], 1),
    ("§4.13 24-71 months, 4 doses: complete, PPSV23 only", [46, 44, 42, 34], 0),
]


@pytest.mark.parametrize(
    ("given", "planned"), [pytest.param(g, p, id=case) for case, g, p in PCV_CASES]
)
def test_pcv_high_risk_24_to_71_months(given: list[int], planned: int) -> None:
    """§4.13 (ACIP, Nuorti MMWR Recomm Rep 2010;59(RR-11)): < 3 doses, 2; 3 doses, 1; then
    PPSV23 >= 8 weeks after the last."""
    plan = _plan(
        category="immune_mediated",
        birth_date=born(years=4),
        weight_kg=16,
        treatments=[MTX],
        vaccinations=[vaccination("PCV", ago(months=m)) for m in given],
    )
    pcv = _doses(plan, "PCV")
    assert len(pcv) == planned
    if planned == 2:
        assert pcv[1].due - pcv[0].due >= timedelta(weeks=8)
    ppsv = _doses(plan, "PPSV23")
    assert len(ppsv) == 1
    last = pcv[-1].due if pcv else date.fromisoformat(ago(months=given[-1]))
    assert ppsv[0].due >= last + timedelta(weeks=8)
    assert "ACIP" in decisions_text(plan)
    if planned == 0:
        assert "PCV20" in decisions_text(plan)


def test_today_is_the_plan_day() -> None:
    """The tables above read TODAY as the plan's day (a guard for the helpers)."""
    assert TODAY < START <= HORIZON_END


# ------------------------------------------------------------------------- properties


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(referral_docs())
def test_ppsv23_only_with_a_risk_condition_and_no_dose_on_a_blocked_day(doc: Any) -> None:
    """§4.16: no PPSV23 for a child without a risk condition; §4.15/§4.16: no inactivated
    dose (HPV, MenACWY, the routine catch-up included) on a day an inactivated block holds."""
    referral = validate_referral(doc)
    today = referral.received
    plan = plan_for(referral, today=today)
    ctx = context_for(referral, today=today)
    doses = [i for i in plan.items if isinstance(i, VaccineDose)]
    if not risk_conditions(ctx, plan.grading):
        assert not [d for d in doses if d.vaccine == "PPSV23"], doses
    blocks = inactivated_blocks(ctx)
    for d in doses:
        if d.vaccine == "IIV" or is_live(d.vaccine):
            continue
        assert not [b.reason for b in blocks if b.holds_on(d.due)], d
