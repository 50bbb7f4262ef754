"""The vaccination plan on CDC's CDSi forecast, with the unit's protocol on top (§4.9).

Each table row names its source: ACIP / the CDC immunization schedule, the CDSi
supporting data 4.64, or the protocol section of docs/clinical-reference.md.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, get_args

import pytest
from conftest_rules import (
    CALENDAR,
    START,
    TODAY,
    ago,
    born,
    context_for,
    decisions_text,
    ig_dose,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
)
from hypothesis import HealthCheck, given, settings
from test_properties import referral_docs

from sidflows.calendar import add_months, add_years
from sidflows.cdsi.data import load
from sidflows.referral import VaccineCode, validate_referral
from sidflows.rules.immunoglobulin import decide_immunoglobulin
from sidflows.rules.model import Decision, Plan, VaccineDose
from sidflows.rules.vaccination import cdsi_history, vaccine_groups_needed
from sidflows.rules.vaccination.cvx import code_table

NORMAL_IGG = [lab(ago(days=10), igg_g_l=8.0)]


def _plan(**fields: Any) -> Plan:
    fields.setdefault("labs", NORMAL_IGG)
    return plan_for(make_referral(**fields))


def _doses(plan: Plan, vaccine: str) -> list[VaccineDose]:
    return [i for i in plan.items if isinstance(i, VaccineDose) and i.vaccine == vaccine]


def _decision(plan: Plan, starts: str) -> Decision:
    found = [d for d in plan.decisions if d.decision.startswith(starts)]
    assert found, decisions_text(plan, "vaccination")
    return found[0]


def _hsct(when: str, **fields: Any) -> Plan:
    return _plan(
        category="hsct",
        label="neuroblastoma, HSCT",
        hsct={"date": when, "type": "autologous", "active_gvhd": False},
        **fields,
    )


# ----------------------------------------------------------------------------- the code table


def test_every_format_code_has_a_cvx_in_the_cdsi_data() -> None:
    """CDC CVX code set; CDSi 4.64 CVX-to-antigen map: each format code (and alias) maps to
    the vaccine groups of its series (BCG, 19, is not in CDSi)."""
    table, data = code_table(), load()
    assert set(get_args(VaccineCode)) <= set(table.codes)
    for cvx, row in table.by_cvx.items():
        groups = {data.antigen_to_group[a.antigen] for a in data.cvx_map.get(cvx, ())}
        assert groups == {table.groups[s] for s in row.series}, (cvx, row.code)
    bcg = table.lookup("19")
    assert bcg is not None
    assert not bcg.series
    assert table.lookup("08") is table.lookup("HepB")  # CVX codes compare as numbers


# ----------------------------------------------------------------------------- bookkeeping

# (id, fields, vaccine, dose numbers planned)
SERIES_CASES: list[tuple[str, dict[str, Any], str, list[int]]] = [
    (
        "ACIP/CDC schedule: the DTP series counted by antigen (HSCT at 7: dose 3 is DTaP at "
        "every age, §4.6.2, IDSA 2013 table 4)",
        {
            "category": "hsct",
            "birth_date": "2019-10-01",
            "weight_kg": 22.0,
            "hsct": {"date": "2026-01-10", "type": "autologous", "active_gvhd": False},
            "vaccinations": [vaccination("DTaP", "2026-07-15"), vaccination("DTaP", "2026-08-17")],
        },
        "DTaP",
        [3],
    ),
    (
        "ACIP/CDC schedule: a DTaP booster after chemotherapy is the booster a 7-year-old's "
        "Tdap would be (§4.2: one booster of the series)",
        {
            "category": "oncology",
            "birth_date": born(years=7, months=1),
            "weight_kg": 22.0,
            "treatments": [treatment("vincristine", "chemotherapy", "2025-10-01", "2026-06-01")],
            "vaccinations": [vaccination("DTaP", "2026-10-01")],
        },
        "Tdap",
        [],
    ),
    (
        "CDSi 4.2: the same MMR recorded twice on one day is one dose (dose 2 still due)",
        {
            "category": "immune_mediated",
            "vaccinations": [vaccination("MMR", "2017-10-01"), vaccination("MMR", "2017-10-01")],
        },
        "MMR",
        [2],
    ),
    (
        "CDSi MMR/Varicella groups: MMRV and MMR on one day are one measles dose",
        {
            "category": "immune_mediated",
            "vaccinations": [vaccination("MMR", "2017-10-01"), vaccination("MMRV", "2017-10-01")],
        },
        "MMR",
        [2],
    ),
    (
        "ACIP minimum age (CDSi MMR 12 months - 4 days): an MMR at 9 months does not count",
        {
            "category": "immune_mediated",
            "vaccinations": [vaccination("MMR", "2017-03-15"), vaccination("MMR", "2017-10-01")],
        },
        "MMR",
        [2],
    ),
    (
        "ACIP minimum interval (CDSi MMR 4 weeks): a dose 10 days after the first does not count",
        {
            "category": "immune_mediated",
            "vaccinations": [vaccination("MMR", "2017-10-01"), vaccination("MMR", "2017-10-11")],
        },
        "MMR",
        [2],
    ),
]


@pytest.mark.parametrize(
    ("fields", "vaccine", "numbers"),
    [pytest.param(f, v, n, id=case) for case, f, v, n in SERIES_CASES],
)
def test_doses_counted_by_series(fields: dict[str, Any], vaccine: str, numbers: list[int]) -> None:
    plan = _plan(**fields)
    assert [d.dose_number for d in _doses(plan, vaccine)] == numbers


def test_duplicate_same_day_dose_is_flagged() -> None:
    """CDSi 4.2 (history by antigen): a same-day duplicate counts once and the plan says so."""
    plan = _plan(
        category="immune_mediated",
        vaccinations=[vaccination("DTaP", "2017-10-01"), vaccination("Tdap", "2017-10-01")],
    )
    decision = _decision(plan, "Tdap recorded twice on 2017-10-01 (with DTaP): counted once")
    assert "CDSi" in decision.source


def test_dose_not_counted_names_the_cdsi_reason() -> None:
    """CDSi 6.4: a dose too young is Not Valid; the series' decision says which and why."""
    plan = _plan(
        category="immune_mediated",
        vaccinations=[vaccination("MMR", "2017-03-15"), vaccination("MMR", "2017-10-01")],
    )
    text = _decision(plan, "MMR:").rationale
    assert "MMR on 2017-03-15 not counted (CDSi Not Valid: Age: Too Young" in text


def test_ppsv23_not_before_two_years() -> None:
    """ACIP / CDSi 4.64 (PPSV23, CVX 33, from 2 years): at 13 months PCV now, PPSV23 at 2."""
    birth = date(2025, 10, 24)
    plan = _plan(
        category="immune_mediated",
        birth_date=birth,
        weight_kg=10.0,
        # A risk condition (§4.16): the pneumococcal reinforcement applies.
        treatments=[
            treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.3)
        ],
    )
    assert _doses(plan, "PCV")[0].due == START
    ppsv = _doses(plan, "PPSV23")
    assert ppsv[0].earliest == add_years(birth, 2)
    assert f"CDSi minimum age of PPSV23: not before {add_years(birth, 2)}" in (
        _decision(plan, "PPSV23").rationale
    )


# (id, birth, doses before, doses planned in the 2026-27 season)
FLU_CASES: list[tuple[str, str, list[str], int]] = [
    ("ACIP: 4 years, never vaccinated -> 2 doses 4 weeks apart", born(years=4), [], 2),
    ("ACIP: 4 years, one dose before 1 July -> 2 doses", born(years=4), ["2025-10-15"], 2),
    (
        "ACIP: 4 years, two doses before 1 July -> 1 dose",
        born(years=4),
        ["2024-10-15", "2025-10-15"],
        1,
    ),
    ("ACIP: 8 years 11 months, never vaccinated -> 2 doses", born(years=8, months=11), [], 2),
    ("ACIP: 9 years and older -> 1 dose", born(years=9), [], 1),
    (
        "ACIP: a same-day duplicate is one dose (CDSi 4.2) -> still 2",
        born(years=4),
        ["2025-10-15", "2025-10-15"],
        2,
    ),
]


@pytest.mark.parametrize(
    ("birth", "before", "doses"),
    [pytest.param(b, x, n, id=case) for case, b, x, n in FLU_CASES],
)
def test_influenza_first_season_two_doses(birth: str, before: list[str], doses: int) -> None:
    plan = _plan(
        birth_date=birth, weight_kg=18.0, vaccinations=[vaccination("IIV", d) for d in before]
    )
    season = [d for d in _doses(plan, "IIV") if d.due <= date(2027, 3, 31)]
    assert len(season) == doses
    if doses == 2:
        assert season[1].due >= season[0].due + timedelta(weeks=4)
        assert "ACIP" in _decision(plan, "IIV").source
    # The next season: one dose once two have been given (ACIP).
    assert len([d for d in _doses(plan, "IIV") if d.due >= date(2027, 10, 1)]) == 1


# ----------------------------------------------------------------------------- the unit's layer


def test_post_hsct_hepb_dose_3_keeps_acip_minimum_intervals() -> None:
    """§4.6: the protocol's month between post-HSCT doses never goes below ACIP's minimum
    intervals (General Best Practice Guidelines table 3-1): HepB dose 3 >= 8 weeks after
    dose 2 and >= 16 after dose 1, here 2026-12-22 (16 weeks after 2026-09-01), the day
    CDSi's HepB series gives too (IDSA 2013 table 4 gives 3 doses, no interval)."""
    plan = _hsct(
        "2026-03-01",
        vaccinations=[vaccination("HepB", "2026-09-01"), vaccination("HepB", "2026-10-01")],
    )
    hepb = _doses(plan, "HepB")
    assert [d.dose_number for d in hepb] == [3]
    assert hepb[0].due == date(2026, 12, 22)
    text = _decision(plan, "HepB").rationale
    assert "CDSi HepB: Not Complete, dose 3 from 2026-12-22" in text
    assert "dose 3 no earlier than 16 weeks after dose 1" in text


def test_post_hsct_doses_before_the_transplant_do_not_count() -> None:
    """§4.6: revaccination restarts every series: 3 doses although 3 were given before."""
    given = [vaccination("IPV", d) for d in ("2016-08-15", "2016-10-15", "2017-06-15")]
    plan = _hsct("2026-06-01", vaccinations=given)
    assert [d.dose_number for d in _doses(plan, "IPV")] == [1, 2, 3]
    assert "004 Recipient of a hematopoietic stem cell transplant" in decisions_text(plan)
    assert "171 Date of hematopoietic stem cell transplant (2026-06-01)" in decisions_text(plan)


def test_post_hsct_cdsi_aged_out_pneumococcal_the_protocol_wins() -> None:
    """§4.6: PCV after HSCT at 10 years, where CDSi has the childhood series aged out."""
    plan = _hsct("2026-06-01")
    assert [d.dose_number for d in _doses(plan, "PCV")] == [1, 2, 3]
    assert "the protocol wins over CDSi" in _decision(plan, "PCV").rationale


def test_post_chemotherapy_booster_on_top_of_a_complete_series() -> None:
    """§4.2 (IDSA rec. 73): one booster 3 months after the end even when CDSi's DTP series
    has its next routine dose years ahead; the rationale says the protocol wins."""
    end = date(2026, 10, 15)
    childhood = [
        vaccination("DTaP", d)
        for d in ("2016-08-15", "2016-10-15", "2016-12-15", "2017-09-15", "2020-07-01")
    ]
    plan = _plan(
        category="oncology",
        treatments=[treatment("vincristine", "chemotherapy", "2026-01-10", end)],
        vaccinations=childhood,
    )
    tdap = _doses(plan, "Tdap")
    assert tdap[0].earliest == add_months(end, 3)
    text = _decision(plan, "Tdap").rationale
    assert "CDSi DTaP/Tdap/Td: Not Complete" in text
    assert "the protocol wins over CDSi's earliest date" in text
    assert "one booster of each after the end of chemotherapy" in text


def test_during_anti_cd20_inactivated_deferred_per_protocol() -> None:
    """§4.3 (ACR 2022; rituximab label): no PCV while rituximab continues, whatever CDSi
    forecasts; the CDSi observations include immunosuppressive therapy (158)."""
    plan = _plan(
        category="immune_mediated",
        label="nephrotic syndrome",
        treatments=[treatment("rituximab", "anti_cd20", "2026-10-01")],
    )
    assert not _doses(plan, "PCV")
    assert _decision(plan, "PCV: no dose possible in the horizon")
    assert "158 Immunosuppressive therapy" in _decision(plan, "CDSi observations").decision


def test_after_anti_cd20_inactivated_six_months_after_the_last_dose() -> None:
    """§4.3: PCV >= 6 months after the last rituximab dose (CDSi would give it now)."""
    last = date(2026, 8, 15)
    plan = _plan(
        category="immune_mediated",
        treatments=[treatment("rituximab", "anti_cd20", "2026-08-01", last)],
    )
    assert _doses(plan, "PCV")[0].earliest == add_months(last, 6)


def test_after_ig_live_vaccines_wait_the_ig_interval() -> None:
    """§4.7 (ACIP antibody-live vaccine table): MMR 8 months after 0.4 g/kg IVIG although
    CDSi (which has no interval after a past IG dose) has it due now."""
    ig_day = date(2026, 9, 1)
    plan = _plan(immunoglobulin_doses=[ig_dose(ig_day, 0.4)])
    mmr = _doses(plan, "MMR")
    assert mmr[0].earliest == add_months(ig_day, 8)
    assert "CDSi MMR: Not Complete, dose 1" in _decision(plan, "MMR").rationale


def test_on_ig_replacement_cdsi_contraindicates_live_vaccines() -> None:
    """§4.7; CDSi 4.64 Measles contraindication 137 (IGIV replacement): MMR deferred."""
    plan = _plan(
        labs=[lab(ago(days=10), igg_g_l=6.0)], immunoglobulin_doses=[ig_dose(ago(days=20))]
    )
    assert not _doses(plan, "MMR")
    assert "137 IGIV - Replacement therapy" in _decision(plan, "CDSi observations").decision
    assert "CDSi MMR: Contraindicated" in _decision(plan, "MMR").rationale


def test_cdsi_runs_only_for_the_groups_the_plan_needs() -> None:
    """The engine runs once per plan and vaccine group, only for the plan's groups and only
    when a rule reads one (planning stays fast)."""
    ctx = context_for(make_referral(category="immune_mediated", labs=NORMAL_IGG))
    # The reinforcement's groups and the routine catch-up's (§4.16).
    assert vaccine_groups_needed(ctx) == {
        "Pneumococcal", "MMR", "Varicella", "Influenza", "DTaP/Tdap/Td", "Polio", "Hib",
        "HepB", "HepA", "Meningococcal", "HPV",
    }  # fmt: skip
    history = cdsi_history(ctx, ig=decide_immunoglobulin(ctx), groups=vaccine_groups_needed(ctx))
    assert history.today == TODAY
    assert history.forecast("MenB") is None  # Meningococcal B is not a group of this plan
    mmr = history.forecast("MMR")
    assert mmr is not None
    assert history.forecast("MMRV") is mmr  # assessed once


# ----------------------------------------------------------------------------- the property


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(referral_docs())
def test_no_dose_before_the_cdsi_earliest_date_unless_the_protocol_says_so(doc: Any) -> None:
    """The first planned dose of a series is not before CDSi's earliest date for its group,
    unless the series' decision names the protocol rule that wins over CDSi."""
    referral = validate_referral(doc)
    today = referral.received
    plan = plan_for(referral, today=today)
    ctx = context_for(referral, today=today)
    history = cdsi_history(ctx, ig=decide_immunoglobulin(ctx), groups=vaccine_groups_needed(ctx))
    firsts: dict[str, VaccineDose] = {}
    for item in plan.items:
        if isinstance(item, VaccineDose) and item.vaccine != "IIV":
            firsts.setdefault(item.vaccine, item)
    for vaccine, dose in firsts.items():
        earliest = history.earliest(vaccine)
        min_age = history.min_age_date(vaccine)
        assert min_age is None or dose.earliest >= min_age, (vaccine, dose)
        if earliest is None or dose.earliest >= earliest:
            continue
        rationale = " ".join(
            d.rationale for d in plan.decisions if d.decision.startswith(f"{vaccine}:")
        )
        assert "the protocol wins over CDSi" in rationale, (vaccine, dose, earliest, rationale)
    assert CALENDAR is not None
