"""The third specialist review's live-vaccine and revaccination fixes, as tables of cases.

Every case's id cites the section of docs/clinical-reference.md it follows: §4.6.1 MMR and
varicella after HSCT by the 2-1-8 rule (ECIL-7, EBMT, AGIHO; IDSA 2013 rec. 86-87 the
alternative); §4.17 rotavirus and BCG in infancy (ACIP 2009 age limits; SCID, MMWR
2010;59:687; Australian Immunisation Handbook 2025 for in-utero biologics); §4.6.2 DTaP at
every age after HSCT (IDSA 2013 table 4); §4.18 low-dose and alternate-day steroids (IDSA
2013 table 6; ACIP general best practice); §4.19 cytotoxic drugs in immune-mediated disease
(ACR 2022; EULAR 2019).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    TODAY,
    ago,
    born,
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
from hypothesis import given, settings
from hypothesis import strategies as st

from sidflows.calendar import add_months
from sidflows.rules.model import Plan


def _vaccines(plan: Plan, *names: str) -> list[Any]:
    return sorted(
        (d for d in items_of(plan, "vaccine_dose") if d.vaccine in names),  # type: ignore[attr-defined]
        key=lambda d: d.due,
    )


def _deferred(plan: Plan, vaccine: str) -> list[Any]:
    return [d for d in plan.deferred if d.vaccine == vaccine]


def _decision(plan: Plan, starts: str) -> list[Any]:
    return [d for d in plan.decisions if d.decision.startswith(starts)]


# ------------------------------------------ §4.6.1 MMR and varicella: the 2-1-8 rule


def _allo(
    *, hsct_months: int, ended_months: int | None, ivig_months: int | None = None, **kw: Any
) -> Any:
    hsct = ago(months=hsct_months)
    end = None if ended_months is None else ago(months=ended_months)
    return make_referral(
        birth_date=born(years=8),
        weight_kg=25.0,
        category="hsct",
        label="allogeneic HSCT for severe aplastic anaemia",
        treatments=[treatment("ciclosporin", "calcineurin_inhibitor", hsct, end)],
        labs=[lab(ago(days=14), igg_g_l=7.0, cd4_per_ul=600, cd19_per_ul=300)],
        immunoglobulin_doses=[] if ivig_months is None else [ig_dose(ago(months=ivig_months))],
        hsct={"date": hsct, "type": "allogeneic", "active_gvhd": False},
        **kw,
    )


# (id, months since HSCT, months since ciclosporin stopped (None: ongoing), months since
#  IVIG 0.4 g/kg (None: none), protocol months off immunosuppression, MMR in the horizon)
HSCT_LIVE_CASES: list[tuple[str, int, int | None, int | None, int, bool]] = [
    ("§4.6.1 26 months, off 3 months: not before 12 months off (R19)", 26, 3, None, 12, True),
    ("§4.6.1 30 months, off 13 months: given", 30, 13, None, 12, True),
    ("§4.6.1 30 months, ciclosporin ongoing: deferred", 30, None, None, 12, False),
    ("§4.6.1 IDSA alternative 0: 3 months off is enough", 26, 3, None, 0, True),
    ("§4.6.1 off 14 months, IVIG 6 months ago: 8 months after it", 30, 14, 6, 12, True),
]


@pytest.mark.parametrize(
    ("hsct_months", "ended", "ivig", "off_months", "in_horizon"),
    [pytest.param(*c[1:], id=c[0]) for c in HSCT_LIVE_CASES],
)
def test_mmr_varicella_after_hsct_by_the_2_1_8_rule(
    hsct_months: int, ended: int | None, ivig: int | None, off_months: int, in_horizon: bool
) -> None:
    protocol = with_protocol(
        PROTOCOL, "vaccination.hsct.live_months_off_immunosuppression", off_months
    )
    referral = _allo(hsct_months=hsct_months, ended_months=ended, ivig_months=ivig)
    plan = plan_for(referral, protocol=protocol)
    live = _vaccines(plan, "MMR", "VAR")
    assert bool(live) is in_horizon
    hsct = referral.hsct
    assert hsct is not None
    for dose in live:
        assert dose.due >= add_months(hsct.date, 24)
        if ended is not None:
            assert dose.due >= add_months(date.fromisoformat(ago(months=ended)), off_months)
        if ivig is not None:
            assert dose.due >= add_months(date.fromisoformat(ago(months=ivig)), 8)
    if not in_horizon:
        assert _deferred(plan, "MMR")
        assert _deferred(plan, "VAR")
    if off_months and ended is not None and ended < off_months:
        reasons = " ".join(r for d in plan.deferred for r in d.reasons)
        assert "2-1-8" in reasons + decisions_text(plan)


@settings(max_examples=40, deadline=None)
@given(
    hsct_months=st.integers(min_value=1, max_value=60),
    ended=st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
)
def test_property_no_live_vaccine_before_24_months_and_12_off(
    hsct_months: int, ended: int | None
) -> None:
    """§4.6.1: whatever the dates, no MMR or varicella dose before 24 months after the
    allogeneic HSCT, nor before 12 months off all systemic immunosuppression."""
    if ended is not None:
        ended = min(ended, hsct_months)  # stopped after the transplant
    referral = _allo(hsct_months=hsct_months, ended_months=ended)
    plan = plan_for(referral)
    hsct = referral.hsct
    assert hsct is not None
    for dose in _vaccines(plan, "MMR", "VAR", "MMRV"):
        assert dose.due >= add_months(hsct.date, 24)
        assert ended is not None
        assert dose.due >= add_months(date.fromisoformat(ago(months=ended)), 12)


# ------------------------------------------------ §4.6.2 DTaP at every age after HSCT


@pytest.mark.parametrize(
    ("years", "series", "expected"),
    [
        pytest.param(10, "DTaP", ["DTaP"] * 3, id="§4.6.2 10 years: DTaP x3 (IDSA table 4)"),
        pytest.param(16, "DTaP", ["DTaP"] * 3, id="§4.6.2 16 years: DTaP x3"),
        pytest.param(4, "DTaP", ["DTaP"] * 3, id="§4.6.2 4 years: DTaP x3, as before"),
        pytest.param(
            10, "Tdap_then_Td", ["Tdap", "Td", "Td"], id="§4.6.2 alternative: Tdap then 2 Td"
        ),
    ],
)
def test_post_hsct_tetanus_series(years: int, series: str, expected: list[str]) -> None:
    protocol = with_protocol(PROTOCOL, "vaccination.hsct.tetanus_series", series)
    hsct = ago(months=5)
    referral = make_referral(
        birth_date=born(years=years),
        weight_kg=30.0,
        category="hsct",
        label="allogeneic HSCT for Fanconi anaemia (R25)",
        treatments=[treatment("ciclosporin", "calcineurin_inhibitor", hsct)],
        labs=[lab(ago(days=10), igg_g_l=6.0, cd4_per_ul=300, cd19_per_ul=100)],
        hsct={"date": hsct, "type": "allogeneic", "active_gvhd": False},
    )
    plan = plan_for(referral, protocol=protocol)
    doses = _vaccines(plan, "DTaP", "Tdap", "Td")
    assert [d.vaccine for d in doses] == expected
    if series == "DTaP" and years >= 7:
        assert "IDSA 2013 table 4" in decisions_text(plan, "vaccination")


# ------------------------------------------------ §4.17 rotavirus and BCG in infancy


def _infant(*, weeks: int, **kw: Any) -> Any:
    kw.setdefault("label", "infant")
    return make_referral(
        birth_date=ago(days=weeks * 7),
        weight_kg=5.0,
        vaccinations=[vaccination("HepB", ago(days=weeks * 7 - 1))],
        **kw,
    )


SCID_LABS = [lab(ago(days=5), igg_g_l=2.5, cd4_per_ul=90, cd4_percent=8, cd19_per_ul=700)]

# (id, referral fields, the rotavirus decision, BCG contraindicated, "no live vaccine of
#  any kind", the decision names the high-level reasons)
ROTA_CASES: list[tuple[str, dict[str, Any], str, bool, bool, bool]] = [
    (
        "§4.17 SCID-like: CD4 90, no cause (R15): contraindicated, no live vaccine at all",
        {"weeks": 10, "labs": SCID_LABS, "label": "failure to thrive, thrush, lymphopenia"},
        "rotavirus: contraindicated",
        True,
        True,
        True,
    ),
    (
        "§4.17 high-dose steroids at 7 weeks (R11): contraindicated",
        {
            "weeks": 7,
            "treatments": [
                treatment("prednisolone", "corticosteroid", ago(days=30), dose_mg_per_kg_day=3.0)
            ],
            "label": "infantile haemangioma",
        },
        "rotavirus: contraindicated",
        True,
        False,
        True,
    ),
    (
        "§4.17 graded low (methotrexate 0.3 mg/kg/week): precaution, clinician decision",
        {
            "weeks": 10,
            "category": "immune_mediated",
            "label": "infantile-onset inflammatory disease",
            "treatments": [
                treatment("methotrexate", "antimetabolite", ago(days=30), dose_mg_per_kg_week=0.3)
            ],
        },
        "rotavirus: precaution",
        True,
        False,
        False,
    ),
    (
        "§4.17 in utero infliximab (R24): rotavirus may be given, no BCG before 6 months",
        {
            "weeks": 9,
            "label": "infant born to mother on infliximab for Crohn disease",
        },
        "rotavirus: may be given",
        True,
        False,
        False,
    ),
    (
        "§4.17 in utero rituximab: contraindicated (AIH 2025)",
        {"weeks": 9, "label": "infant exposed in utero to rituximab (maternal lupus)"},
        "rotavirus: contraindicated",
        True,
        False,
        True,
    ),
    (
        "§4.17 in utero, drug not recognised: clinician decision",
        {"weeks": 9, "label": "born to mother on an unnamed trial drug"},
        "rotavirus: precaution",
        True,
        False,
        False,
    ),
    (
        "§4.17 immunocompetent 10 weeks: the routine schedule",
        {"weeks": 10},
        "rotavirus: on the routine schedule",
        False,
        False,
        False,
    ),
    (
        "§4.17 17 weeks, no dose: dose 1 not started after 14 weeks 6 days",
        {"weeks": 17},
        "rotavirus: not given",
        False,
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("fields", "decision", "bcg", "no_live", "deferred"),
    [pytest.param(*c[1:], id=c[0]) for c in ROTA_CASES],
)
def test_rotavirus_and_bcg_in_infancy(
    fields: dict[str, Any], decision: str, bcg: bool, no_live: bool, deferred: bool
) -> None:
    plan = plan_for(_infant(**fields))
    found = [d for d in plan.decisions if d.decision.startswith("rotavirus:")]
    assert len(found) == 1, found
    assert found[0].decision.startswith(decision)
    assert "8 months 0 days" in found[0].rationale
    assert bool(_decision(plan, "BCG (where the setting gives it): contraindicated")) is bcg
    assert bool(_decision(plan, "no live vaccine of any kind")) is no_live
    # No ROTA deferral (the window closes; the deferred list dates when a vaccine may be
    # given) and no rotavirus or BCG dose: primary care gives them.
    assert not _deferred(plan, "ROTA")
    assert ("contraindicate rotavirus" in found[0].rationale) is deferred
    assert not _vaccines(plan, "ROTA", "BCG")


def test_a_rotavirus_dose_given_counts_and_the_window_is_named() -> None:
    """§4.17: a child on chemotherapy with one dose recorded: dose 2 contraindicated, the
    last-dose date named."""
    referral = _infant(
        weeks=20,
        category="oncology",
        label="infant ALL",
        treatments=[treatment("Interfant-21 induction", "chemotherapy", ago(days=14))],
    )
    referral = referral.model_copy(
        update={
            "vaccinations": (
                *referral.vaccinations,
                *make_referral(vaccinations=[vaccination("ROTA", ago(days=70))]).vaccinations,
            )
        }
    )
    plan = plan_for(referral)
    (found,) = _decision(plan, "rotavirus:")
    assert found.decision == "rotavirus: contraindicated"
    assert "1 dose(s) recorded" in found.rationale
    assert not _decision(plan, "no live vaccine of any kind")  # a recorded cause: not SCID-like


def test_no_rotavirus_decision_after_8_months() -> None:
    """§4.17: past 8 months 0 days there is no rotavirus dose at all."""
    plan = plan_for(_infant(weeks=40))
    assert not _decision(plan, "rotavirus:")


@settings(max_examples=40, deadline=None)
@given(days=st.integers(min_value=6, max_value=400), scid=st.booleans())
def test_property_rotavirus_only_inside_the_acip_ages(days: int, scid: bool) -> None:
    """§4.17: no rotavirus item outside the ACIP ages (dose 1 from 6 weeks to 14 weeks 6
    days, the last by 8 months 0 days), and a rotavirus decision for every infant inside
    the window, none after it."""
    birth = TODAY - timedelta(days=days)
    referral = make_referral(
        birth_date=birth.isoformat(),
        weight_kg=5.0,
        labs=SCID_LABS if scid else [],
        received=max(birth, TODAY - timedelta(days=4)).isoformat(),
    )
    plan = plan_for(referral)
    first_from = birth + timedelta(weeks=6)
    first_by = birth + timedelta(days=104)
    last_by = add_months(birth, 8)
    for dose in _vaccines(plan, "ROTA"):
        assert dose.due <= last_by
        assert dose.dose_number > 1 or first_from <= dose.due <= first_by
    rota = _decision(plan, "rotavirus:")
    assert bool(rota) is (last_by >= TODAY)
    assert not _deferred(plan, "ROTA")


# -------------------------------------- §4.18 low-dose and alternate-day corticosteroids


def _nephrotic(protocol: Any = PROTOCOL) -> Plan:
    referral = make_referral(
        birth_date=born(years=6),
        weight_kg=18.0,
        category="immune_mediated",
        label="steroid-sensitive nephrotic syndrome (R22)",
        treatments=[
            treatment(
                "prednisolone alternate days",
                "corticosteroid",
                ago(months=4),
                dose_mg_per_kg_day=0.25,
            )
        ],
        labs=[lab(ago(days=4), igg_g_l=5.0)],
        vaccinations=[vaccination("MMR", ago(years=5))],
    )
    return plan_for(referral, protocol=protocol)


def test_low_dose_steroid_holds_live_vaccines_naming_both_sources() -> None:
    """§4.18: the cautious default (IDSA 2013 table 6) holds them; the reason names ACIP's
    view, the configured alternative."""
    plan = _nephrotic()
    reasons = " ".join(r for d in _deferred(plan, "VAR") for r in d.reasons)
    assert "prednisolone alternate days" in reasons
    assert "IDSA 2013 table 6" in reasons
    assert "ACIP general best practice" in reasons


def test_low_dose_steroid_acip_alternative_does_not_block() -> None:
    """§4.18: with ``live_on_low_dose_steroids = "allow"`` the steroid is no block."""
    protocol = with_protocol(PROTOCOL, "vaccination.live_on_low_dose_steroids", "allow")
    plan = _nephrotic(protocol)
    reasons = " ".join(r for d in plan.deferred for r in d.reasons)
    assert "prednisolone alternate days (since" not in reasons


# ----------------------------------- §4.19 cytotoxic drugs in immune-mediated disease


@pytest.mark.parametrize(
    ("category", "label", "waits"),
    [
        pytest.param(
            "immune_mediated",
            "lupus nephritis class IV (R13)",
            False,
            id="§4.19 lupus on cyclophosphamide: vaccines during treatment (ACR 2022)",
        ),
        pytest.param(
            "oncology",
            "Ewing sarcoma",
            True,
            id="§4.19 cancer chemotherapy: boosters after the end (IDSA rec. 73)",
        ),
    ],
)
def test_cyclophosphamide_wait_is_an_oncology_rule(category: str, label: str, waits: bool) -> None:
    referral = make_referral(
        birth_date=born(years=15),
        weight_kg=50.0,
        category=category,
        label=label,
        treatments=[treatment("cyclophosphamide", "chemotherapy", ago(months=2))],
        labs=[lab(ago(days=5), igg_g_l=7.0, cd4_per_ul=500)],
    )
    plan = plan_for(referral)
    assert bool(_decision(plan, "inactivated vaccines during the cytotoxic")) is (not waits)
    # Cancer chemotherapy: no booster while it continues; lupus: the pneumococcal series now.
    assert bool(_vaccines(plan, "PCV", "PPSV23")) is (not waits)
