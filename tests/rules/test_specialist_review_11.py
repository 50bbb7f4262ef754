"""The fourth specialist review (2026-12-06): 15 new referrals, each error a class.

Each case's id cites the section of docs/clinical-reference.md it follows. The expected
values come from the sources cited there (the rituximab label and IDSA 2013 for the
anti-CD20 windows; ACIP's minimum intervals; the product information of each brand), not
from what the code gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    TODAY,
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
    with_protocol,
)

from sidflows.calendar import add_months
from sidflows.referral import ReferralDocument
from sidflows.rules.model import Plan, VaccineDose

SIDFLOWS = str(Path(sys.executable).with_name("sidflows"))


def live_days(plan: Plan) -> list[date]:
    return sorted(
        i.due for i in items_of(plan, "vaccine_dose") if isinstance(i, VaccineDose) and i.live
    )


def nephrotic_after(
    drug: str, cls: str, *, ended_weeks: int = 7, cd19_before: bool = True
) -> tuple[ReferralDocument, date]:
    """A 10-year-old with nephrotic syndrome given ``drug`` for a week, ended
    ``ended_weeks`` ago; one MMR and one varicella dose, so dose 2 of each is due."""
    end = date.fromordinal(TODAY.toordinal() - 7 * ended_weeks)
    start = date.fromordinal(end.toordinal() - 7)
    labs = [lab(ago(months=3) if cd19_before else TODAY, cd19_per_ul=350, igg_g_l=7.0)]
    return make_referral(
        birth_date=born(years=10),
        label="frequently relapsing nephrotic syndrome",
        treatments=[treatment(drug, cls, start, end)],
        labs=labs,
        received=TODAY,
        vaccinations=[vaccination("MMR", born(years=9)), vaccination("VAR", born(years=9))],
    ), end


# (id, brand as written, class the referral gives, the generic the plan names)
BRANDS = [
    ("§8.2 EMA EPAR: Truxima is a rituximab biosimilar", "Truxima", "other_biologic", "rituximab"),
    ("§8.2 EMA EPAR: MabThera is rituximab", "MabThera", "other_biologic", "rituximab"),
    ("§8.2 FDA label: Rituxan is rituximab", "Rituxan 375 mg/m2", "other_biologic", "rituximab"),
    ("§8.2 EMA EPAR: Ruxience is a rituximab biosimilar", "Ruxience", "chemotherapy", "rituximab"),
    ("§8.2 EMA EPAR: Ocrevus is ocrelizumab", "Ocrevus", "other_biologic", "ocrelizumab"),
]


@pytest.mark.parametrize(("case", "drug", "cls", "generic"), BRANDS, ids=[b[0] for b in BRANDS])
def test_a_brand_of_an_anti_cd20_is_read_as_the_anti_cd20(
    case: str, drug: str, cls: str, generic: str
) -> None:
    referral, end = nephrotic_after(drug, cls)
    plan = plan_for(referral)
    assert plan.grading.level == "high", plan.grading.reasons
    assert f"is a brand of {generic}, an anti-CD20 antibody" in decisions_text(plan) or (
        cls == "anti_cd20"
    )
    assert "drug not recognised" not in decisions_text(plan)
    # §4.12, rituximab label: no live vaccine within 6 months of the last dose.
    assert all(d >= add_months(end, 6) for d in live_days(plan)), live_days(plan)


def test_a_brand_of_a_small_molecule_is_graded_by_its_generic_ceiling() -> None:
    """§2.1, IDSA 2013: azathioprine <= 3 mg/kg/day is low-level; Imuran is azathioprine."""
    referral = make_referral(
        weight_kg=30,
        label="autoimmune hepatitis",
        treatments=[treatment("Imuran", "antimetabolite", ago(months=6), dose_mg_day=60)],
    )
    plan = plan_for(referral)
    assert plan.grading.level == "low", plan.grading.reasons
    assert any("2 mg/kg/day" in r and "<= 3" in r for r in plan.grading.reasons)


def test_an_unrecognised_biologic_that_ended_holds_live_vaccines_for_six_months() -> None:
    """§8.2 (unit policy, IDSA 2013 rec. 73): a biologic the tables do not know, ended 7
    weeks ago, is graded high and holds MMR and varicella 6 months after its end."""
    referral, end = nephrotic_after("Zorbalimab", "other_biologic")
    plan = plan_for(referral)
    assert plan.grading.level == "high"
    assert any("not recognised" in r and str(add_months(end, 6)) in r for r in plan.grading.reasons)
    assert "drug not recognised: Zorbalimab" in decisions_text(plan)
    live = live_days(plan)
    assert live
    assert all(d >= add_months(end, 6) for d in live), live


def test_an_unrecognised_biologic_ended_long_ago_holds_nothing() -> None:
    """§8.2: the hold ends 6 months after the drug; a drug stopped 8 months ago does not
    grade or block (still named as not recognised)."""
    referral, _ = nephrotic_after("Zorbalimab", "other_biologic", ended_weeks=35)
    plan = plan_for(referral)
    assert not any("not recognised" in r for r in plan.grading.reasons)
    assert "drug not recognised: Zorbalimab" in decisions_text(plan)
    assert live_days(plan)
    assert live_days(plan)[0] < add_months(TODAY, 1)


def test_a_cd19_drawn_before_the_drug_is_not_the_b_cells_now() -> None:
    """§2.13: a count drawn before rituximab says nothing of depletion after it."""
    referral, _ = nephrotic_after("rituximab", "anti_cd20", cd19_before=True)
    text = decisions_text(plan_for(referral), "reassessment")
    assert "a CD19 count after rituximab (the newest, CD19 350/uL" in text
    assert "was drawn before it" in text


def test_a_recovered_count_inside_the_anti_cd20_window_is_not_below_range() -> None:
    """§2.6, §2.13: CD19 120/uL against the lab's 100/uL five months after ocrelizumab is at
    or above the limit; what is still to show is the end of the label's window."""
    last = ago(months=5)
    referral = make_referral(
        birth_date=born(years=15),
        label="paediatric multiple sclerosis",
        treatments=[treatment("ocrelizumab", "other_biologic", last, last)],
        labs=[lab(ago(days=10), cd19_per_ul=120, cd19_lower_limit_per_ul=100, igg_g_l=8.5)],
    )
    text = decisions_text(plan_for(referral), "reassessment")
    assert "below range" not in text
    assert "CD19 120/uL" in text
    assert "at or above the limit" in text
    assert "the end of the depletion window" in text


def infant_after_chemotherapy(birth: str, chemo: tuple[str, str], given: list[str]) -> Plan:
    """An infant after neuroblastoma chemotherapy, with PCV given on the days ``given``."""
    return plan_for(
        make_referral(
            birth_date=birth,
            weight_kg=7.0,
            category="oncology",
            label="neuroblastoma",
            treatments=[treatment("carboplatin/etoposide", "chemotherapy", *chemo)],
            vaccinations=[vaccination("PCV", d) for d in given],
        )
    )


def pcv_days(plan: Plan) -> list[date]:
    return sorted(
        i.due
        for i in items_of(plan, "vaccine_dose")
        if isinstance(i, VaccineDose) and i.vaccine == "PCV"
    )


# (id, birth, chemotherapy, PCV given before it, PCV days expected), ACIP catch-up
# schedule 2025 (table 2, PCV): dose 1 to 2 4 weeks before 12 months; after a dose at
# 7-11 months the next is the final one, from 12 months and >= 8 weeks later.
INFANT_PCV = [
    (
        "§4.13 ACIP: none, first at 6.6 months: dose 2 at 4 weeks, the final from 12 months",
        "2026-08-03",
        ("2026-09-07", "2026-11-20"),
        [],
        [date(2027, 2, 22), date(2027, 3, 22), date(2027, 8, 3)],
    ),
    (
        "§4.13 ACIP: the 9-week dose counts; dose 2 at 7 months, so the final from 12 months",
        "2026-05-01",
        ("2026-07-15", "2026-09-01"),
        ["2026-07-05"],
        [date(2026, 12, 1), date(2027, 5, 3)],
    ),
]


@pytest.mark.parametrize(
    ("case", "birth", "chemo", "given", "expected"), INFANT_PCV, ids=[c[0] for c in INFANT_PCV]
)
def test_an_infant_after_chemotherapy_gets_the_whole_conjugate_series(
    case: str, birth: str, chemo: tuple[str, str], given: list[str], expected: list[date]
) -> None:
    plan = infant_after_chemotherapy(birth, chemo, given)
    days = pcv_days(plan)
    assert days == expected, (days, decisions_text(plan, "vaccination"))
    assert "PPSV23" not in {
        i.vaccine for i in items_of(plan, "vaccine_dose") if isinstance(i, VaccineDose)
    }, "PPSV23 from 2 years only (CDSi minimum age)"


def test_an_asplenic_child_s_pneumococcal_check_counts_the_documented_doses() -> None:
    """§5.12: 4 infant PCV doses are documented; CDSi's risk series from 6 years counts none
    of them, and the check says both, never "PCV 0"."""
    infant = ["2012-08-01", "2012-10-01", "2012-12-01", "2013-09-01"]
    plan = plan_for(
        make_referral(
            birth_date="2012-06-01",
            weight_kg=50,
            label="Hodgkin lymphoma",
            risk_conditions=["asplenia"],
            vaccinations=[vaccination(v, d) for v in ("PCV", "Hib") for d in infant],
        )
    )
    text = decisions_text(plan, "vaccination")
    assert "documented: Hib 4, PCV 4 (0 counted by CDSi toward its current series)" in text


def test_two_daily_doses_that_disagree_grade_the_higher_and_ask_the_clinician() -> None:
    """§6.7: prednisolone 10 mg/day and 2 mg/kg/day (50 mg/day at 25 kg) in one entry for 6
    months: the higher is graded (IDSA 2013: >= 20 mg/day for >= 14 days is high) and it
    indicates Pneumocystis prophylaxis (§5.9: high dose for >= 4 weeks)."""
    plan = plan_for(
        make_referral(
            weight_kg=25,
            label="juvenile dermatomyositis",
            treatments=[
                treatment(
                    "prednisolone",
                    "corticosteroid",
                    ago(months=6),
                    dose_mg_day=10,
                    dose_mg_per_kg_day=2,
                )
            ],
        )
    )
    assert plan.grading.level == "high"
    assert "conflicting doses: prednisolone: clinician to decide" in decisions_text(plan)
    assert "co-trimoxazole for Pneumocystis" in decisions_text(plan, "prophylaxis")


def test_two_daily_doses_that_agree_are_one_dose() -> None:
    """§6.7: 20 mg/day and 0.8 mg/kg/day at 25 kg are the same dose: no conflict raised."""
    plan = plan_for(
        make_referral(
            weight_kg=25,
            treatments=[
                treatment(
                    "prednisolone",
                    "corticosteroid",
                    ago(months=1),
                    dose_mg_day=20,
                    dose_mg_per_kg_day=0.8,
                )
            ],
        )
    )
    assert "conflicting doses" not in decisions_text(plan)


def test_a_record_received_after_the_plan_s_day_is_refused(tmp_path: Path) -> None:
    """docs/formats.md: `propose FILE --today DAY` with a day before `received` is refused
    in one line naming the field (a plan cannot read results from its own future)."""
    doc = make_doc(received=TODAY, labs=[lab(TODAY, igg_g_l=3.0)])
    path = tmp_path / "referral.json"
    path.write_text(json.dumps(doc))
    day = date.fromordinal(TODAY.toordinal() - 1).isoformat()
    done = subprocess.run(
        [SIDFLOWS, "propose", str(path), "--today", day],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith(
        "sidflows: invalid input: received: after the plan's day"
    ), done.stderr
    assert not done.stdout


def test_a_dose_of_zero_is_refused_naming_the_field() -> None:
    from sidflows.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"treatments\[0\]\.dose_mg_day: must be greater than 0"):
        make_referral(
            treatments=[treatment("prednisolone", "corticosteroid", ago(months=1), dose_mg_day=0)]
        )


def test_rotavirus_is_not_offered_when_the_chemotherapy_block_outlasts_its_window() -> None:
    """§4.1, §4.17: an infant 16 days after chemotherapy: no live vaccine for 6 months
    (IDSA 2013 rec. 73), past the rotavirus last-dose age of 8 months (ACIP): not to be
    given, never a "precaution"; the rotavirus dose given during chemotherapy is a vaccine
    error of its own, and the grading names the chemotherapy and its windows."""
    plan = plan_for(
        make_referral(
            birth_date="2026-08-03",
            weight_kg=7.0,
            category="oncology",
            label="neuroblastoma",
            treatments=[
                treatment("carboplatin/etoposide", "chemotherapy", "2026-09-07", "2026-11-20")
            ],
            vaccinations=[vaccination("DTaP", "2026-10-05"), vaccination("ROTA", "2026-10-05")],
        ),
        today=date(2026, 12, 6),
    )
    text = decisions_text(plan, "vaccination")
    assert "rotavirus: not to be given (a live-vaccine block outlasts the window)" in text
    assert "precaution" not in text
    assert "live vaccine given during chemotherapy: not counted, check the child" in text
    assert "1 dose(s) given during chemotherapy not counted" in text  # the DTaP only
    assert any(
        "chemotherapy ended 2026-11-20: inactivated vaccines from 2027-02-20, live from "
        "2027-05-20" in r
        for r in plan.grading.reasons
    )


def test_influenza_given_during_chemotherapy_is_not_called_uncounted() -> None:
    """§4.1, §4.5: influenza doses count by season; the "not counted" decision leaves them."""
    plan = plan_for(
        make_referral(
            birth_date=born(years=6),
            category="oncology",
            label="B-ALL",
            treatments=[treatment("ALL maintenance", "chemotherapy", ago(months=18))],
            vaccinations=[vaccination("IIV", ago(months=12))],
        )
    )
    assert "given during chemotherapy not counted" not in decisions_text(plan, "vaccination")


# (id, grading cause, varicella doses, the advice expected), IDSA 2013 and ACIP VariZIG 2013
VARICELLA = [
    ("§4.20 high-dose prednisolone, one VAR dose: susceptible", 1, True),
    ("§4.20 two valid VAR doses: evidence of immunity, no advice", 2, False),
]


@pytest.mark.parametrize(("case", "doses", "advised"), VARICELLA, ids=[c[0] for c in VARICELLA])
def test_a_susceptible_immunocompromised_child_gets_the_post_exposure_plan(
    case: str, doses: int, advised: bool
) -> None:
    plan = plan_for(
        make_referral(
            birth_date=born(years=7, months=6),
            weight_kg=22,
            label="autoimmune hepatitis",
            treatments=[
                treatment("prednisolone", "corticosteroid", ago(days=47), dose_mg_per_kg_day=2)
            ],
            vaccinations=[vaccination("VAR", born(years=6 - 5 * i)) for i in range(doses)],
        )
    )
    text = decisions_text(plan, "vaccination")
    assert ("varicella: no evidence of immunity" in text) is advised
    if advised:
        assert "VariZIG as soon as possible, within 10 days" in text
        assert "household contacts without immunity are vaccinated" in text
        assert "ACIP VariZIG (MMWR 2013;62:574)" in text


def test_no_varicella_advice_without_immunosuppression() -> None:
    """§4.20 applies to a child graded low or high only."""
    plan = plan_for(make_referral(birth_date=born(years=7)))
    assert plan.grading.level == "none"
    assert "varicella: no evidence of immunity" not in decisions_text(plan)


def nephrotic_child(igg: float, **extra: Any) -> Plan:
    """A 5-year-old with steroid-dependent nephrotic syndrome on tacrolimus, one serious
    pneumococcal peritonitis in the year, IgG ``igg``, B cells normal."""
    return plan_for(
        make_referral(
            birth_date=born(years=5, months=5),
            weight_kg=18,
            label="steroid-dependent nephrotic syndrome",
            treatments=[treatment("tacrolimus", "calcineurin_inhibitor", ago(months=9))],
            labs=[lab(ago(days=10), igg_g_l=igg, cd19_per_ul=500, cd4_per_ul=900, **extra)],
            infections=[
                {"date": ago(months=10), "kind": "pneumococcal peritonitis", "serious": True}
            ],
        )
    )


def test_a_low_igg_in_nephrotic_syndrome_is_the_clinician_s_not_the_rule_s() -> None:
    """§3.1 (AAAAI work group 2022, Otani: losses excluded before replacement): IgG 3.2 g/L
    with a serious infection does not start IG in nephrotic syndrome."""
    plan = nephrotic_child(3.2)
    assert not items_of(plan, "ig_session")
    text = decisions_text(plan, "immunoglobulin")
    assert "IG replacement not started by the rule: a low IgG in a protein-losing state" in text
    assert "check proteinuria and albumin" in text


def test_a_very_low_igg_in_nephrotic_syndrome_still_starts_ig() -> None:
    """§3.1: below 1.5 g/L IG is indicated whatever the cause (AAAAI 2022), cautious."""
    plan = nephrotic_child(1.2)
    assert items_of(plan, "ig_session")
    assert "start IG replacement" in decisions_text(plan, "immunoglobulin")


def test_antiviral_prophylaxis_after_car_t_is_said_to_be_the_car_t_team_s() -> None:
    """§5.10 (EBMT/JACIE 2020): aciclovir or valaciclovir >= 1 year after CAR-T and until CD4
    > 200/uL; the plan does not prescribe it and says so."""
    infused = ago(months=3)
    plan = plan_for(
        make_referral(
            category="oncology",
            label="relapsed B-ALL",
            treatments=[treatment("tisagenlecleucel", "car_t", infused, infused)],
            labs=[lab(ago(days=7), cd19_per_ul=0, cd19_lower_limit_per_ul=100, cd4_per_ul=150)],
        )
    )
    text = decisions_text(plan, "prophylaxis")
    assert "HSV/VZV antiviral prophylaxis per the transplant or CAR-T protocol" in text
    assert "until CD4 > 200/uL (CD4 150/uL)" in text


@pytest.mark.parametrize(
    ("case", "months_ago", "protocol_months", "said"),
    [
        ("§5.10 autologous HSCT 3 months ago: VZV cover for a year (Tomblyn 2009)", 3, 12, True),
        ("§5.10 autologous HSCT 11 months ago: still within the year", 11, 12, True),
        ("§5.10 autologous HSCT 14 months ago: past the year, nothing said", 14, 12, False),
        ("§5.10 autologous HSCT 8 months ago, the NCCN alternative (6 months)", 8, 6, False),
    ],
)
def test_the_antiviral_statement_after_an_autologous_transplant(
    case: str, months_ago: int, protocol_months: int, said: bool
) -> None:
    """§5.10: after an autologous HSCT, Tomblyn 2009 gives VZV prophylaxis for a year to a
    seropositive recipient (NCCN 6-12 months); the plan says it is the transplant team's."""
    protocol = with_protocol(
        PROTOCOL, "prophylaxis.outside_scope.antiviral_after_autologous_months", protocol_months
    )
    plan = plan_for(
        make_referral(
            category="hsct",
            label="Hodgkin lymphoma",
            hsct={"date": ago(months=months_ago), "type": "autologous"},
        ),
        protocol=protocol,
    )
    text = decisions_text(plan, "prophylaxis")
    assert ("HSV/VZV antiviral prophylaxis per the transplant" in text) is said, (case, text)
    if said:
        assert "autologous HSCT on" in text
        assert "if the child is VZV-seropositive" in text
        assert "Tomblyn 2009" in text


def test_asplenia_s_penicillin_carries_the_fever_emergency_advice() -> None:
    """§5.12 (BCSH 2011): a standby antibiotic, same-day review, an alert card."""
    plan = plan_for(
        make_referral(birth_date=born(years=14), weight_kg=50, risk_conditions=["asplenia"])
    )
    text = decisions_text(plan, "prophylaxis")
    assert "fever is an emergency: a standby therapeutic antibiotic at home" in text


# ----------------------------------------------------------------------------- the fifth review


def test_a_low_igg_in_nephrotic_syndrome_with_absent_b_cells_starts_ig() -> None:
    """§3.1: the protein-losing exception needs B cells present. Four months after
    obinutuzumab (Gazyvaro), CD19 0, IgG 3.0 with a serious pneumonia: IG is started
    (EMA core SmPC: IgG < 4 g/L with severe infections)."""
    given = ago(months=4)
    plan = plan_for(
        make_referral(
            birth_date=born(years=12, months=7),
            weight_kg=40,
            label="steroid-dependent nephrotic syndrome",
            treatments=[treatment("Gazyvaro", "other_biologic", given, given)],
            labs=[lab(ago(days=10), igg_g_l=3.0, cd19_per_ul=0, cd19_lower_limit_per_ul=100)],
            infections=[{"date": ago(months=2), "kind": "lobar pneumonia", "serious": True}],
        )
    )
    assert "start IG replacement" in decisions_text(plan, "immunoglobulin")
    assert items_of(plan, "ig_session")


def eculizumab_child(menb: bool) -> Plan:
    """A 6-year-old starting eculizumab for aHUS, MenACWY x2 before it (the series complete
    before 7 years), and one MenB-4C dose when ``menb``."""
    doses = [vaccination("MenACWY", ago(months=5)), vaccination("MenACWY", ago(months=3))]
    if menb:
        doses.append(vaccination("MenB", ago(months=3)))
    return plan_for(
        make_referral(
            birth_date=born(years=6, months=6),
            weight_kg=20,
            label="atypical haemolytic uraemic syndrome",
            treatments=[treatment("eculizumab", "other_biologic", ago(months=2))],
            vaccinations=doses,
        )
    )


def test_the_menacwy_booster_after_a_series_before_7_years_is_at_3_years() -> None:
    """§5.7, ACIP 2020 (MMWR Recomm Rep 69(RR-9)): persons at continued risk whose primary
    series was completed before 7 years get the first booster 3 years later."""
    text = decisions_text(eculizumab_child(menb=False), "vaccination")
    last = date.fromisoformat(ago(months=3))
    assert f"MenACWY booster due {last.replace(year=last.year + 3)}" in text
    assert "the series completed before 7 years: the first booster 3 years after it" in text


def test_a_recorded_menb_dose_under_10_years_is_named() -> None:
    """§5.7: a MenB dose given before the inhibitor is in the decision, never "first dose"."""
    text = decisions_text(eculizumab_child(menb=True), "vaccination")
    assert "MenB recorded: " + ago(months=3) in text


def test_a_low_cd19_on_belimumab_does_not_hold_inactivated_vaccines() -> None:
    """§2.10 (Chatham 2012; ACR 2022): belimumab lowers naive B cells, responses are kept:
    HPV and PPSV23 are given; hydroxychloroquine is never named as a cause of depletion."""
    plan = plan_for(
        make_referral(
            birth_date=born(years=14, months=7),
            weight_kg=45,
            label="systemic lupus erythematosus",
            treatments=[
                treatment("belimumab", "other_biologic", ago(months=9)),
                treatment("hydroxychloroquine", "other_biologic", ago(months=9)),
            ],
            labs=[lab(ago(days=14), cd19_per_ul=80, cd19_lower_limit_per_ul=100, igg_g_l=7.2)],
            vaccinations=[vaccination("HPV", born(years=3))],
        )
    )
    assert "B-cell depletion" not in decisions_text(plan)
    assert items_of(plan, "vaccine_dose", vaccine="HPV")


def test_high_level_immunosuppression_carries_the_household_and_measles_advice() -> None:
    """§4.20: IDSA 2013 (household influenza vaccine each season); ACIP MMR 2013 (IGIV
    0.4 g/kg within 6 days of a measles exposure, whatever the doses)."""
    plan = plan_for(
        make_referral(
            birth_date=born(years=3, months=3),
            weight_kg=14,
            category="oncology",
            label="B-ALL",
            treatments=[treatment("ALL induction", "chemotherapy", ago(days=16))],
        )
    )
    text = decisions_text(plan, "vaccination")
    assert "influenza vaccine for the household each season" in text
    assert "IGIV 0.4 g/kg within 6 days whatever the MMR doses recorded" in text


def test_no_household_advice_under_low_level_immunosuppression() -> None:
    plan = plan_for(
        make_referral(
            weight_kg=30,
            treatments=[
                treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.3)
            ],
        )
    )
    assert plan.grading.level == "low"
    assert "measles exposure is an emergency" not in decisions_text(plan)


def test_the_next_replacement_session_counts_from_an_immunomodulatory_course() -> None:
    """§3.1, §3.8: the case a property found: replacement 0.2 g/kg on 2025-12-19, then an
    immunomodulatory 1 g/kg on 2025-12-27: the next session no sooner than the route's
    shortest interval (28 - 7 days) after the newest dose, not after the replacement one."""
    referral = make_referral(
        birth_date="2025-12-19",
        weight_kg=1.0,
        received="2026-01-01",
        category="immune_mediated",
        label="nephrotic syndrome",
        immunoglobulin_doses=[
            {"date": "2025-12-19", "g_per_kg": 0.1, "route": "iv"},
            {"date": "2025-12-19", "g_per_kg": 0.1, "route": "iv"},
            {"date": "2025-12-27", "g_per_kg": 1.0, "route": "iv"},
        ],
    )
    sessions = sorted(
        i.due for i in items_of(plan_for(referral, today=date(2026, 1, 1)), "ig_session")
    )
    assert sessions
    assert sessions[0] >= date(2026, 1, 17)


def test_a_live_dose_held_by_plasma_says_why_with_the_dose() -> None:
    """§4.7 (ACIP antibody-live vaccine table: plasma 7 months): a child graded none whose
    MMR dose 2 waits for plasma given 3 months ago is told so, not "immunosuppression"."""
    plasma = ago(months=3)
    plan = plan_for(
        make_referral(
            birth_date=born(years=6, months=6),
            weight_kg=20,
            vaccinations=[vaccination("MMR", born(years=5, months=6))],
            blood_products=[{"date": plasma, "product": "plasma"}],
        )
    )
    text = decisions_text(plan, "vaccination")
    assert f"plasma on {plasma}: 7 months before MMR or varicella" in text
    assert "not before " in text
