"""The fifth specialist review's remaining findings (2026-12-07), each error a class.

Each case's id cites the section of docs/clinical-reference.md it follows. The expected
values come from the sources cited there (IDSA 2013 on influenza during intensive
chemotherapy; ACIP's catch-up schedule for the final dose of a 3-dose series; Lehrnbecher
2020 on antifungal prophylaxis in GVHD), not from what the code gives.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    TODAY,
    ago,
    ahead,
    born,
    decisions_text,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
    with_protocol,
)

from sidflows.calendar import add_months
from sidflows.rules.model import Plan, VaccineDose


def propose(**fields: Any) -> Plan:
    """The plan proposed on TODAY for a referral received that day (:func:`make_doc`'s
    fields)."""
    return plan_for(make_referral(received=TODAY, **fields))


def doses_of(plan: Plan, vaccine: str) -> list[date]:
    return sorted(
        i.due
        for i in items_of(plan, "vaccine_dose")
        if isinstance(i, VaccineDose) and i.vaccine == vaccine
    )


def induction(end: str | None) -> Plan:
    """A 5-year-old with ALL, in induction since 4 days ago (``end``: its end, if recorded)."""
    return propose(
        birth_date=born(years=5),
        category="oncology",
        label="acute lymphoblastic leukaemia",
        treatments=[
            treatment(
                "ALL induction (vincristine, dexamethasone)", "chemotherapy", ago(days=4), end
            )
        ],
        labs=[lab(ago(days=2), igg_g_l=6.0, cd4_per_ul=600, anc_per_ul=900)],
        vaccinations=[vaccination("DTaP", born(years=4, months=10))],
    )


def test_an_induction_with_no_end_date_holds_influenza_once_and_says_what_lifts_it() -> None:
    """§4.5 (IDSA 2013): no influenza vaccine during intensive chemotherapy; given once the
    intensive phase ends. With no end date the plan says so once, not season after season."""
    plan = induction(None)
    assert doses_of(plan, "IIV") == []
    held = [d for d in plan.decisions if d.decision.startswith("IIV")]
    assert len(held) == 1, [d.decision for d in held]
    assert "held while the intensive phase" in held[0].decision
    assert "ALL induction" in held[0].rationale
    assert "ask the oncology team when the phase ends" in held[0].rationale
    assert "no dose possible" not in decisions_text(plan)
    assert "IDSA 2013" in held[0].source


def test_an_induction_with_an_end_date_gets_influenza_after_it() -> None:
    """§4.5 (IDSA 2013; ACIP two doses 4 weeks apart under 9 years in the first season):
    the doses follow the recorded end of the intensive phase, in the season."""
    end = ahead(days=30)
    plan = induction(end)
    days = doses_of(plan, "IIV")
    first_season = [d for d in days if d <= date(2027, 3, 31)]
    assert len(first_season) == 2, days
    assert first_season[0] > date.fromisoformat(end)
    assert first_season[1] - first_season[0] >= timedelta(weeks=4)


def allogeneic(
    *, gvhd: bool, hsct_months: int = 4, kind: str = "allogeneic", **extra: object
) -> Plan:
    """A 9-year-old transplanted ``hsct_months`` ago after busulfan/fludarabine conditioning
    (ended 2 days before), on ciclosporin since."""
    hsct = date.fromisoformat(ago(months=hsct_months))
    treatments = [
        treatment(
            "busulfan/fludarabine",
            "chemotherapy",
            hsct - timedelta(days=8),
            hsct - timedelta(days=2),
        ),
        treatment("ciclosporin", "calcineurin_inhibitor", hsct - timedelta(days=1)),
        *extra.pop("more", []),  # type: ignore[misc]
    ]
    return propose(
        birth_date=born(years=9),
        category="hsct",
        label="AML, allogeneic HSCT",
        treatments=treatments,
        labs=[lab(ago(days=10), igg_g_l=6.5, cd4_per_ul=400, cd19_per_ul=80)],
        hsct={"date": hsct.isoformat(), "type": kind, "active_gvhd": gvhd},
    )


def test_conditioning_is_not_read_as_the_end_of_chemotherapy() -> None:
    """§4.6 and §6.3: after HSCT the revaccination and the reassessment count from the
    transplant; the conditioning before it does not start the post-chemotherapy windows
    (IDSA rec. 73's live vaccines 3-6 months after it) nor the UKALL2003 cadence (§6.2)."""
    plan = allogeneic(gvhd=False)
    assert not any("chemotherapy ended" in r for r in plan.grading.reasons), plan.grading.reasons
    reasons = [getattr(i, "reason", "") for i in items_of(plan, "reassessment")]
    assert reasons, "no reassessment"
    assert not any("after the end of chemotherapy" in r for r in reasons), reasons
    assert any("while the deficiency lasts" in r for r in reasons), reasons


def test_chemotherapy_after_the_transplant_still_counts() -> None:
    """§6.2: chemotherapy given after the HSCT (a relapse) is chemotherapy; its end starts
    the 3/6/12-month reassessments."""
    relapse = treatment("relapse chemotherapy (FLAG)", "chemotherapy", ago(months=5), ago(months=2))
    plan = allogeneic(gvhd=False, hsct_months=14, more=[relapse])
    reasons = [getattr(i, "reason", "") for i in items_of(plan, "reassessment")]
    assert any("after the end of chemotherapy" in r for r in reasons), reasons


def test_treated_gvhd_after_an_allogeneic_transplant_names_antifungal_prophylaxis() -> None:
    """§5.10 (Lehrnbecher, J Clin Oncol 2020;38:3205): mould-active antifungal prophylaxis
    while GVHD is treated with systemic immunosuppression; the transplant team's."""
    plan = allogeneic(gvhd=True)
    found = [d for d in plan.decisions if "antifungal" in d.decision and "transplant" in d.decision]
    assert len(found) == 1, decisions_text(plan)
    assert "ciclosporin" in found[0].rationale
    assert "Lehrnbecher" in found[0].source


@pytest.mark.parametrize(
    ("case", "gvhd", "kind"),
    [
        ("§5.10 no GVHD: no statement", False, "allogeneic"),
        ("§5.10 autologous: no GVHD to treat", False, "autologous"),
    ],
)
def test_no_antifungal_statement_without_gvhd(case: str, gvhd: bool, kind: str) -> None:
    plan = allogeneic(gvhd=gvhd, kind=kind)
    assert not any("mould-active antifungal" in d.decision for d in plan.decisions), case


def revaccinated(years: int) -> Plan:
    """A child of ``years`` transplanted 7 months ago (autologous, no GVHD, off treatment):
    the 3-dose revaccination series (§4.6) are due now."""
    hsct = date.fromisoformat(ago(months=7))
    return propose(
        birth_date=born(years=years),
        category="hsct",
        label="neuroblastoma, autologous HSCT",
        treatments=[
            treatment(
                "busulfan/melphalan",
                "chemotherapy",
                hsct - timedelta(days=9),
                hsct - timedelta(days=2),
            )
        ],
        labs=[lab(ago(days=10), igg_g_l=7.0, cd4_per_ul=500, cd19_per_ul=200)],
        hsct={"date": hsct.isoformat(), "type": "autologous", "active_gvhd": False},
    )


# (id, age in years, vaccine, whether dose 3 waits 6 months after dose 2)
FINAL_DOSE = [
    (
        "§4.6 ACIP catch-up: IPV dose 3 from 4 years is the final dose, 6 months after dose 2",
        6,
        "IPV",
        True,
    ),
    ("§4.6 ACIP catch-up: under 4 years IPV dose 3 is 4 weeks after dose 2", 2, "IPV", False),
    (
        "§4.6 ACIP catch-up: from 7 years, series begun at >= 12 months: dose 3 6 months after",
        10,
        "DTaP",
        True,
    ),
    ("§4.6 ACIP catch-up: under 7 years DTaP dose 3 is 4 weeks after dose 2", 5, "DTaP", False),
]


@pytest.mark.parametrize(
    ("case", "years", "vaccine", "waits"), FINAL_DOSE, ids=[c[0] for c in FINAL_DOSE]
)
def test_the_final_dose_of_a_revaccination_series_keeps_acip_s_catch_up_interval(
    case: str, years: int, vaccine: str, waits: bool
) -> None:
    plan = revaccinated(years)
    days = doses_of(plan, vaccine)
    assert len(days) >= 3, (case, days)
    first, second, third = days[:3]
    assert second - first >= timedelta(weeks=4)
    six_months = add_months(second, 6)
    if waits:
        assert six_months <= third <= six_months + timedelta(days=7), (case, days)
        assert "ACIP's catch-up schedule" in decisions_text(plan)
    else:
        assert third < six_months, (case, days)
    assert first > TODAY


def reassessment_panels(plan: Plan) -> list[tuple[date, tuple[str, ...], str]]:
    return [
        (i.due, tuple(getattr(i, "panel", ())), getattr(i, "reason", ""))
        for i in items_of(plan, "reassessment")
    ]


def test_the_nephrotic_plan_books_the_tests_its_ig_decision_asks_for() -> None:
    """§3.1 (AAAAI work group 2022: losses excluded, a specific antibody response measured
    before replacement in a protein-losing state): the first reassessment carries
    proteinuria, albumin and the pneumococcal titres the decision names."""
    plan = propose(
        birth_date=born(years=5, months=5),
        weight_kg=18,
        label="steroid-dependent nephrotic syndrome",
        treatments=[treatment("tacrolimus", "calcineurin_inhibitor", ago(months=9))],
        labs=[lab(ago(days=10), igg_g_l=3.2, cd19_per_ul=500, cd4_per_ul=900)],
        infections=[{"date": ago(months=10), "kind": "pneumococcal peritonitis", "serious": True}],
    )
    assert "protein-losing" in decisions_text(plan, "immunoglobulin")
    first = reassessment_panels(plan)[0]
    assert {"urine protein:creatinine ratio", "albumin", "pneumococcal serotype titres"} <= set(
        first[1]
    ), first
    assert "the IG decision asks for them" in first[2]


def test_a_response_the_ig_decision_would_decide_on_is_booked() -> None:
    """§3.1 (EMA core SmPC: a rise below 2-fold is a specific antibody failure): IgG low
    with recurrent infections and no response measured: pneumococcal titres are booked."""
    plan = propose(
        labs=[lab(ago(days=10), igg_g_l=4.3, cd19_per_ul=300)],
        treatments=[treatment("mycophenolate", "antimetabolite", ago(months=8))],
        infections=[
            {"date": ago(months=m), "kind": "otitis media", "serious": False} for m in (1, 3, 5, 7)
        ],
    )
    assert "no specific antibody response measured" in decisions_text(plan, "immunoglobulin")
    panels = reassessment_panels(plan)
    assert any("pneumococcal serotype titres" in p for _, p, _ in panels), panels


def test_no_titres_are_booked_when_the_response_is_known() -> None:
    plan = propose(
        labs=[lab(ago(days=10), igg_g_l=4.3, cd19_per_ul=300, pneumococcal_fold_rise=4.0)],
        treatments=[treatment("mycophenolate", "antimetabolite", ago(months=8))],
        infections=[
            {"date": ago(months=m), "kind": "otitis media", "serious": False} for m in (1, 3, 5, 7)
        ],
    )
    panels = reassessment_panels(plan)
    assert not any("pneumococcal serotype titres" in p for _, p, _ in panels), panels


def on_ocrelizumab(cd19: float, end: str | None = None) -> Plan:
    """A 15-year-old with multiple sclerosis on ocrelizumab every 6 months since 18 months
    ago, the regimen referred as one entry (no infusion dates)."""
    return propose(
        birth_date=born(years=15),
        weight_kg=55,
        label="relapsing multiple sclerosis",
        treatments=[
            treatment("ocrelizumab 600 mg every 6 months", "anti_cd20", ago(months=18), end)
        ],
        labs=[lab(ago(days=10), igg_g_l=7.5, cd19_per_ul=cd19, cd4_per_ul=800)],
    )


def test_an_anti_cd20_regimen_with_no_end_is_not_transient() -> None:
    """§2.14: a cause that goes on with no planned end is not time-limited."""
    plan = on_ocrelizumab(60)
    assert plan.grading.transient is False
    assert any("not transient while ocrelizumab" in r for r in plan.grading.reasons)


@pytest.mark.parametrize(
    ("case", "cd19", "says"),
    [
        ("§4.3 B cells present: the clinician may vaccinate now", 60, "B cells present"),
        ("§4.3 B cells depleted: no response expected", 2, "B cells depleted"),
    ],
)
def test_an_anti_cd20_regimen_with_no_dates_says_how_to_vaccinate(
    case: str, cd19: float, says: str
) -> None:
    """§4.3 (ACR 2022; rituximab label): inactivated vaccines >= 6 months after the last
    dose and >= 28 days before the next; without the doses' dates the plan says so once,
    with the B cells now, instead of only "no dose possible"."""
    plan = on_ocrelizumab(cd19)
    found = [d for d in plan.decisions if "anti-CD20 regimen with no end date" in d.decision]
    assert len(found) == 1, case
    assert says in found[0].rationale
    assert ">= 6 months after the last dose and >= 28 days before the next" in found[0].rationale
    assert "ACR 2022" in found[0].source


def test_a_dated_anti_cd20_course_needs_no_such_statement() -> None:
    plan = on_ocrelizumab(60, end=ago(months=12))
    assert not any("anti-CD20 regimen" in d.decision for d in plan.decisions)
    assert plan.grading.transient is True


@pytest.mark.parametrize(
    ("case", "drug", "cls"),
    [
        (
            "§2.1 ALL maintenance: methotrexate read as chemotherapy",
            "methotrexate",
            "antimetabolite",
        ),
        ("§2.1 methotrexate referred as chemotherapy", "methotrexate (oral)", "chemotherapy"),
    ],
)
def test_a_daily_methotrexate_in_maintenance_is_flagged_whatever_its_grading(
    case: str, drug: str, cls: str
) -> None:
    """§2.1 (a daily methotrexate is a known fatal prescribing error): in ALL maintenance
    the drug is graded as chemotherapy, yet 16 mg a day is still asked about."""
    plan = propose(
        birth_date=born(years=6),
        weight_kg=20,
        category="oncology",
        label="B-ALL",
        treatments=[
            treatment(drug, cls, ago(months=10), ahead(months=7), dose_mg_day=16),
            treatment("mercaptopurine", "antimetabolite", ago(months=10), ahead(months=7)),
        ],
        labs=[lab(ago(days=10), igg_g_l=5.0, anc_per_ul=1100)],
    )
    found = [d for d in plan.decisions if "methotrexate written as a daily dose" in d.decision]
    assert len(found) == 1, (case, decisions_text(plan, "grading"))
    assert "16 mg/day" in found[0].decision
    assert plan.grading.level == "high"


def test_a_child_already_on_eculizumab_is_told_the_cover_must_run_now() -> None:
    """§5.7 (eculizumab SmPC 4.4; ACIP 2020): antibiotic cover from the inhibitor's first
    dose; a child on it for weeks cannot wait for the plan's first booking day."""
    plan = propose(
        birth_date=born(years=5),
        weight_kg=19,
        label="atypical haemolytic uraemic syndrome",
        treatments=[treatment("eculizumab", "other_biologic", ago(days=9))],
        labs=[lab(ago(days=5), igg_g_l=7.0, cd4_per_ul=1200)],
    )
    cover = [d for d in plan.decisions if "against meningococcus" in d.decision]
    assert len(cover) == 1, decisions_text(plan, "prophylaxis")
    assert "confirm today that the cover is running" in cover[0].decision
    assert "if not start it today" in cover[0].rationale


def test_cover_for_an_inhibitor_not_yet_started_is_not_urgent() -> None:
    plan = propose(
        birth_date=born(years=5),
        weight_kg=19,
        label="atypical haemolytic uraemic syndrome",
        treatments=[treatment("eculizumab", "other_biologic", ahead(days=20))],
        labs=[lab(ago(days=5), igg_g_l=7.0, cd4_per_ul=1200)],
    )
    cover = [d for d in plan.decisions if "against meningococcus" in d.decision]
    assert cover
    assert "confirm today" not in cover[0].decision


def after_car_t_on_ivig(last_dose_days_ago: int, route: str = "iv") -> Plan:
    """A 3-year-old 6 months after CD19 CAR-T, B cells absent, on IG every 28 days (IV) or
    weekly (SC), the last dose ``last_dose_days_ago`` days ago."""
    last = date.fromordinal(TODAY.toordinal() - last_dose_days_ago)
    step = 28 if route == "iv" else 7
    doses = [
        {
            "date": date.fromordinal(last.toordinal() - step * k).isoformat(),
            "g_per_kg": 0.4 if route == "iv" else 0.1,
            "route": route,
        }
        for k in range(4)
    ]
    return propose(
        birth_date=born(years=3),
        weight_kg=14,
        category="oncology",
        label="B-ALL",
        treatments=[treatment("tisagenlecleucel", "car_t", ago(months=6), ago(months=6))],
        labs=[lab(ago(days=12), igg_g_l=8.0, cd19_per_ul=0, cd4_per_ul=400)],
        immunoglobulin_doses=doses,
        preferences={"ig_route": route},
    )


def test_an_overdue_iv_session_is_said_overdue() -> None:
    """§3.2 (EMA core SmPC: every 3-4 weeks): a session due before the plan's first booking
    day is said overdue, to be brought forward, not silently booked a week or more late."""
    plan = after_car_t_on_ivig(35)
    found = [d for d in plan.decisions if "overdue" in d.decision and d.topic == "immunoglobulin"]
    assert len(found) == 1, decisions_text(plan, "immunoglobulin")
    assert "give it as soon as possible" in found[0].decision


@pytest.mark.parametrize(
    ("case", "days", "route"),
    [
        ("§3.2 an IV session not yet due", 10, "iv"),
        ("§3.8 a home SC log a few weeks behind is not an overdue session", 20, "sc"),
    ],
)
def test_no_overdue_statement_where_none_is_due(case: str, days: int, route: str) -> None:
    plan = after_car_t_on_ivig(days, route)
    assert not any("overdue since" in d.decision for d in plan.decisions), case


def test_sessions_before_a_trial_off_keep_their_troughs_and_the_early_review() -> None:
    """§3.5 and §3.7: a trial off proposed for the season's start leaves sessions until
    then; a trough below the target still books the early review, and the troughs go on
    every 3 months until the stop."""
    chemo_end = ago(months=8)
    last = date.fromordinal(TODAY.toordinal() - 5)
    doses = [
        {
            "date": date.fromordinal(last.toordinal() - 7 * k).isoformat(),
            "g_per_kg": 0.1,
            "route": "sc",
        }
        for k in range(12)
    ]
    plan = propose(
        birth_date=born(years=10),
        weight_kg=30,
        category="oncology",
        label="Burkitt lymphoma",
        treatments=[treatment("R-COPADM", "chemotherapy", ago(months=14), chemo_end)],
        labs=[lab(ago(days=3), igg_g_l=6.1, cd19_per_ul=300, cd4_per_ul=700)],
        immunoglobulin_doses=doses,
        preferences={"ig_route": "sc"},
    )
    trial = [d for d in plan.decisions if d.decision.startswith("propose a trial off IG from")]
    assert len(trial) == 1, decisions_text(plan, "immunoglobulin")
    sessions = [i.due for i in items_of(plan, "ig_session")]
    assert sessions
    stop = max(sessions) + timedelta(days=7)
    troughs = [i.due for i in items_of(plan, "ig_trough")]
    assert troughs, "the sessions until the stop have their troughs"
    assert all(d < stop for d in troughs)
    reviews = [getattr(i, "reason", "") for i in items_of(plan, "plan_review")]
    assert any("below target" in r for r in reviews), reviews


def live_completion(treatments: list[dict[str, object]]) -> Plan:
    """A 5-year-old with one MMR dose and a moderately low CD4 (900/uL: CDC 2014 stage 2 at
    1-5 years), graded low on it."""
    return propose(
        birth_date=born(years=5, months=6),
        weight_kg=19,
        label="atypical haemolytic uraemic syndrome",
        treatments=treatments,
        labs=[lab(ago(days=5), igg_g_l=7.0, cd4_per_ul=900, cd19_per_ul=400)],
        vaccinations=[vaccination("MMR", born(years=4))],
    )


def test_a_moderately_low_cd4_alone_says_why_it_holds_no_live_vaccine() -> None:
    """§2.3 and §4.3: the CD4 bands are HIV staging (CDC 2014), and IDSA 2013 and ACIP give
    MMR and varicella in HIV without severe immunosuppression: the live dose the plan books
    says so instead of only 'contraindicated under high- and low-level'."""
    plan = live_completion([treatment("eculizumab", "other_biologic", ago(days=30))])
    assert plan.grading.level == "low", plan.grading.reasons
    assert doses_of(plan, "MMR"), "MMR dose 2 booked"
    mmr = [d for d in plan.decisions if d.decision.startswith("MMR")]
    assert "a moderately low CD4 alone" in mmr[0].rationale


def test_under_low_level_treatment_the_live_dose_is_held() -> None:
    """§4.3 (IDSA 2013 table 6): under a low-level immunosuppressive treatment MMR waits."""
    plan = live_completion(
        [treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.3)]
    )
    assert doses_of(plan, "MMR") == []
    assert "a moderately low CD4 alone" not in decisions_text(plan)


def hepb_two_doses(treatments: list[dict[str, object]]) -> Plan:
    """An 11-year-old with two hepatitis B doses, so the routine catch-up completes it."""
    return propose(
        birth_date=born(years=11),
        weight_kg=35,
        label="Crohn's disease",
        treatments=treatments,
        labs=[lab(ago(days=10), igg_g_l=8.0, cd4_per_ul=800, cd19_per_ul=300)],
        vaccinations=[
            vaccination("HepB", ago(years=10, months=11)),
            vaccination("HepB", ago(years=10, months=9)),
        ],
    )


def test_an_immunocompromised_child_completing_hepatitis_b_gets_anti_hbs() -> None:
    """§4.4 (ACIP, Schillie MMWR 2018;67(RR-1): testing of immunocompromised persons 1-2
    months after the last dose; IDSA 2013: < 10 mIU/mL, the series again)."""
    plan = hepb_two_doses(
        [
            treatment("infliximab", "anti_tnf", ago(months=10)),
            treatment("azathioprine", "antimetabolite", ago(months=10), dose_mg_per_kg_day=2.5),
        ]
    )
    last = max(doses_of(plan, "HepB"))
    panels = reassessment_panels(plan)
    anti_hbs = [d for d, p, _ in panels if "anti-HBs" in p]
    assert anti_hbs, panels
    assert add_months(last, 1) <= anti_hbs[0] <= add_months(last, 2) + timedelta(days=7)
    assert "check anti-HBs after the series" in decisions_text(plan, "vaccination")


def test_a_child_with_no_risk_condition_gets_no_anti_hbs() -> None:
    plan = hepb_two_doses([])
    assert doses_of(plan, "HepB")
    assert not any("anti-HBs" in p for _, p, _ in reassessment_panels(plan))


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("§4.20 ACIP 2007: a diagnosed herpes zoster is evidence of immunity", "herpes zoster"),
        ("§4.20 ACIP 2007: a diagnosed varicella, in Spanish", "varicela"),
    ],
)
def test_a_recorded_varicella_or_zoster_is_taken_as_evidence_to_confirm(
    case: str, kind: str
) -> None:
    plan = propose(
        birth_date=born(years=13),
        weight_kg=45,
        label="polyarticular juvenile idiopathic arthritis",
        treatments=[treatment("tofacitinib", "jak_inhibitor", ago(months=8))],
        labs=[lab(ago(days=10), igg_g_l=9.0, cd4_per_ul=700)],
        infections=[{"date": ago(months=3), "kind": kind, "serious": False}],
    )
    text = decisions_text(plan, "vaccination")
    assert "evidence of immunity if a clinician diagnosed it: confirm" in text, case
    assert "no evidence of immunity" not in text


def test_no_recorded_varicella_keeps_the_post_exposure_plan() -> None:
    plan = propose(
        birth_date=born(years=13),
        weight_kg=45,
        label="polyarticular juvenile idiopathic arthritis",
        treatments=[treatment("tofacitinib", "jak_inhibitor", ago(months=8))],
        labs=[lab(ago(days=10), igg_g_l=9.0, cd4_per_ul=700)],
        infections=[{"date": ago(months=3), "kind": "herpes simplex", "serious": False}],
    )
    assert "no evidence of immunity" in decisions_text(plan, "vaccination")


def infant_on_steroids(end_days_ahead: int) -> Plan:
    """A 4-month-old (6 kg) with one rotavirus dose at 2 months, on prednisolone 6.7
    mg/kg/day for infantile spasms since 2 weeks ago, ending ``end_days_ahead`` ahead."""
    return propose(
        birth_date=born(months=4),
        weight_kg=6,
        label="infantile epileptic spasms",
        treatments=[
            treatment(
                "prednisolone",
                "corticosteroid",
                ago(days=14),
                ahead(days=end_days_ahead),
                dose_mg_day=40,
            )
        ],
        labs=[lab(ago(days=5), igg_g_l=4.0, cd4_per_ul=2500)],
        vaccinations=[vaccination("ROTA", born(months=2))],
    )


def test_rotavirus_after_a_steroid_course_ending_inside_the_window_is_possible() -> None:
    """§4.17 (ACIP, Cortese 2009: the last dose by 8 months 0 days) and §4.3 (3 months
    after high-dose steroids): a wait that ends before the last permitted day leaves the
    remaining doses possible, said with the dates, not 'contraindicated'."""
    plan = infant_on_steroids(28)
    rota = [d for d in plan.decisions if d.decision.startswith("rotavirus")]
    assert len(rota) == 1, decisions_text(plan, "vaccination")
    assert "contraindicated until" in rota[0].decision
    assert "then possible until" in rota[0].decision


def test_rotavirus_after_a_wait_past_the_window_stays_contraindicated() -> None:
    plan = infant_on_steroids(120)
    rota = [d for d in plan.decisions if d.decision.startswith("rotavirus")]
    assert rota
    assert rota[0].decision == "rotavirus: contraindicated", rota[0].decision


def test_series_titres_are_not_drawn_in_the_weeks_after_the_plan_s_boosters() -> None:
    """§6.2 and §6.3 (titres 6-8 weeks after a dose; ACIP: anti-HBs 1-2 months after): the
    6-month check after chemotherapy falls 2 weeks after the boosters the plan gives on its
    first day; its vaccine titres move to 6 weeks after them, the rest stays."""
    end = date.fromordinal(add_months(TODAY, -6).toordinal() + 20)
    plan = propose(
        birth_date=born(years=9),
        category="oncology",
        label="acute lymphoblastic leukaemia",
        treatments=[treatment("ALL maintenance", "chemotherapy", ago(years=2), end)],
        labs=[lab(ago(days=10), igg_g_l=7.0, cd4_per_ul=700, cd19_per_ul=300)],
        vaccinations=[vaccination("DTaP", born(years=4))],
    )
    boosters = sorted({i.due for i in items_of(plan, "vaccine_dose")})
    assert boosters, "boosters after chemotherapy"
    first = boosters[0]
    panels = reassessment_panels(plan)
    six_months = [p for p in panels if "CD19" in p[1] and first < p[0] < first + timedelta(weeks=6)]
    assert six_months, panels
    assert "vaccine titres" not in six_months[0][1]
    moved = [p for p in panels if p[1] == ("vaccine titres",)]
    assert moved, panels
    assert moved[0][0] >= first + timedelta(weeks=6)


@pytest.mark.parametrize(
    ("case", "cd4", "prophylaxis"),
    [
        (
            "§5.1, §6.6: a stale severe CD4 % keeps Pneumocystis prophylaxis",
            {"cd4_percent": 12},
            True,
        ),
        ("§6.6: a stale normal CD4 % asks for nothing", {"cd4_percent": 35}, False),
    ],
)
def test_a_stale_severe_cd4_keeps_pneumocystis_prophylaxis(
    case: str, cd4: dict[str, float], prophylaxis: bool
) -> None:
    """§6.6: a stale result is not used to grade, and lifts no restriction: the last CD4,
    severe after ATG, keeps co-trimoxazole until a fresh one is above the threshold."""
    plan = propose(
        birth_date=born(years=3),
        weight_kg=14,
        label="severe aplastic anaemia",
        treatments=[treatment("ciclosporin", "calcineurin_inhibitor", ago(months=6))],
        labs=[
            lab(ago(months=5), **cd4),
            lab(ago(days=10), igg_g_l=6.0, anc_per_ul=900),
        ],
    )
    pjp = [i for i in items_of(plan, "prophylaxis") if getattr(i, "drug", "") == "co-trimoxazole"]
    assert bool(pjp) is prophylaxis, (case, decisions_text(plan, "prophylaxis"))
    if prophylaxis:
        assert "stale" in decisions_text(plan, "prophylaxis")


@pytest.mark.parametrize(
    ("case", "others", "cd4_in_panel"),
    [
        ("§6.1, §6.3: rituximab with mycophenolate: the CD4 is repeated", True, True),
        ("§6.1: rituximab alone: IgG, IgA, IgM, CD19", False, False),
    ],
)
def test_the_anti_cd20_series_keeps_the_cd4_another_cause_needs(
    case: str, others: bool, cd4_in_panel: bool
) -> None:
    """§6.1 (after rituximab: IgG, IgA, IgM, CD19 every 3 months) stands in for §6.3's
    default panel; with another cause continuing (and the CD4 grading it), the CD4 stays."""
    treatments = [treatment("rituximab", "anti_cd20", ago(months=3), ago(months=3))]
    if others:
        treatments.append(treatment("mycophenolate", "antimetabolite", ago(months=12)))
    plan = propose(
        birth_date=born(years=15),
        weight_kg=50,
        category="immune_mediated",
        label="lupus nephritis",
        treatments=treatments,
        labs=[lab(ago(days=10), igg_g_l=7.0, cd19_per_ul=0, cd4_per_ul=900)],
    )
    series = [p for _, p, why in reassessment_panels(plan) if "last anti-CD20 dose" in why]
    assert series, reassessment_panels(plan)
    assert all(("CD4" in p) is cd4_in_panel for p in series), (case, series)


def test_an_infant_on_steroids_only_is_not_told_about_chemotherapy() -> None:
    """§4.2's wording is for the series after chemotherapy; an infant on steroids alone
    continues the routine infant series (ACIP), said as such."""
    plan = infant_on_steroids(28)
    text = decisions_text(plan, "vaccination")
    assert "before chemotherapy" not in text
    assert "the routine series continued" in text


@pytest.mark.parametrize(
    ("case", "beside", "warned"),
    [
        ("§5.4 hydroxychloroquine SmPC 4.5: azithromycin beside it prolongs QT", True, True),
        ("§5.4 no QT-prolonging drug: no warning", False, False),
    ],
)
def test_azithromycin_beside_hydroxychloroquine_asks_for_the_qt(
    case: str, beside: bool, warned: bool
) -> None:
    treatments = [treatment("mycophenolate", "antimetabolite", ago(months=12))]
    if beside:
        treatments.append(treatment("hydroxychloroquine", "other_biologic", ago(months=12)))
    plan = propose(
        birth_date=born(years=15),
        weight_kg=50,
        category="immune_mediated",
        label="systemic lupus erythematosus",
        treatments=treatments,
        labs=[lab(ago(days=10), igg_g_l=4.5, cd19_per_ul=200, cd4_per_ul=700)],
        infections=[
            {"date": ago(months=m), "kind": "pneumonia", "serious": True} for m in (2, 5, 8)
        ],
    )
    azithro = [d for d in plan.decisions if d.decision.startswith("azithromycin")]
    assert azithro, decisions_text(plan, "prophylaxis")
    assert ("check the QT" in azithro[0].decision) is warned, case


def test_the_unit_s_qt_list_is_the_protocol_s() -> None:
    """§5.4: the QT-prolonging drugs are the protocol's list: a unit that adds one (here a
    drug the shipped list does not name) gets the QT check beside it; the shipped
    protocol does not."""
    treatments = [
        treatment("mycophenolate", "antimetabolite", ago(months=12)),
        treatment("ondansetron", "other_biologic", ago(months=12)),
    ]
    fields: dict[str, Any] = {
        "birth_date": born(years=15),
        "weight_kg": 50,
        "category": "immune_mediated",
        "label": "systemic lupus erythematosus",
        "treatments": treatments,
        "labs": [lab(ago(days=10), igg_g_l=4.5, cd19_per_ul=200, cd4_per_ul=700)],
        "infections": [
            {"date": ago(months=m), "kind": "pneumonia", "serious": True} for m in (2, 5, 8)
        ],
    }
    listed = ("hydroxychloroquine", "ondansetron")
    unit = with_protocol(PROTOCOL, "prophylaxis.antibacterial.qt_prolonging_drugs", listed)
    referral = make_referral(received=TODAY, **fields)
    for protocol, warned in ((PROTOCOL, False), (unit, True)):
        plan = plan_for(referral, protocol=protocol)
        azithro = [d for d in plan.decisions if d.decision.startswith("azithromycin")]
        assert azithro, decisions_text(plan, "prophylaxis")
        assert ("with ondansetron: check the QT" in azithro[0].decision) is warned


def test_the_unit_s_varicella_words_are_the_protocol_s() -> None:
    """§4.20 (ACIP 2007): an infection the unit's list names as varicella (a word of its
    own) is evidence of immunity to confirm; with the shipped list it is not read so."""
    fields: dict[str, Any] = {
        "birth_date": born(years=6),
        "category": "immune_mediated",
        "label": "juvenile idiopathic arthritis",
        "treatments": [
            treatment("methotrexate", "antimetabolite", ago(months=12), dose_mg_per_kg_week=0.4)
        ],
        "labs": [lab(ago(days=10), igg_g_l=7.0, cd19_per_ul=300, cd4_per_ul=900)],
        "infections": [{"date": ago(years=3), "kind": "herpes varicela-zoster", "serious": False}],
    }
    referral = make_referral(received=TODAY, **fields)
    assert "evidence of immunity" in decisions_text(plan_for(referral), "vaccination")
    fields["infections"] = [{"date": ago(years=3), "kind": "viruela loca", "serious": False}]
    referral = make_referral(received=TODAY, **fields)
    shipped = decisions_text(plan_for(referral), "vaccination")
    words = (*PROTOCOL.vaccination.varicella_infection_words, "viruela loca")
    unit = with_protocol(PROTOCOL, "vaccination.varicella_infection_words", words)
    own = decisions_text(plan_for(referral, protocol=unit), "vaccination")
    assert "viruela loca on" not in shipped
    assert "viruela loca on" in own


def test_the_moved_word_lists_cite_their_sections() -> None:
    """The four curated lists the rules used to keep in code are protocol parameters,
    each citing its section of the clinical reference."""
    for path, section in [
        ("grading.single_day_methotrexate_words", "§2.1"),
        ("vaccination.varicella_infection_words", "§4.20"),
        ("vaccination.salicylate_drugs", "§4.14"),
        ("vaccination.salicylate_atc", "§4.14"),
        ("prophylaxis.antibacterial.qt_prolonging_drugs", "§5.4"),
    ]:
        assert PROTOCOL.source(path).endswith(section), path


def test_a_planned_end_of_maintenance_dates_the_boosters_in_the_decision() -> None:
    """§4.2 (IDSA 2013 rec. 73: inactivated boosters 3 months after the end; AIEOP: live at
    6): a recorded planned end gives the dates, not only "chemotherapy is ongoing"."""
    end = ahead(months=7)
    plan = propose(
        birth_date=born(years=6),
        weight_kg=20,
        category="oncology",
        label="B-ALL",
        treatments=[treatment("mercaptopurine", "antimetabolite", ago(months=10), end)],
        labs=[lab(ago(days=10), igg_g_l=5.0, anc_per_ul=1100)],
    )
    found = [d for d in plan.decisions if d.decision == "boosters after the end of chemotherapy"]
    assert len(found) == 1
    planned = date.fromisoformat(end)
    assert f"planned to end on {planned}" in found[0].rationale
    assert f"inactivated boosters from {add_months(planned, 3)}" in found[0].rationale
    assert f"live from {add_months(planned, 6)}" in found[0].rationale


def kawasaki_on(drug: str | None) -> Plan:
    """A 14-month-old with Kawasaki disease and a coronary aneurysm, IVIG 2 g/kg 6 weeks
    ago (immunomodulatory), no MMR or varicella yet; ``drug``: the long-term antiplatelet."""
    treatments = [] if drug is None else [treatment(drug, "other_biologic", ago(days=42))]
    return propose(
        birth_date=born(months=14),
        weight_kg=10,
        category="immune_mediated",
        label="Kawasaki disease",
        treatments=treatments,
        labs=[lab(ago(days=10), igg_g_l=9.0)],
        immunoglobulin_doses=[{"date": ago(days=40), "g_per_kg": 2.0, "route": "iv"}],
    )


def test_aspirin_is_recordable_graded_none_and_carries_the_reye_precaution() -> None:
    """§2.11 (aspirin, not immunosuppressive: graded none, not 'not recognised') and §4.14
    (the varicella vaccine label: no salicylates for 6 weeks after a dose; ACIP: no LAIV
    with aspirin)."""
    plan = kawasaki_on("aspirin")
    assert plan.grading.level == "none", plan.grading.reasons
    assert "not recognised" not in decisions_text(plan, "grading")
    found = [d for d in plan.decisions if "varicella vaccine is a precaution (Reye" in d.decision]
    assert len(found) == 1, decisions_text(plan, "vaccination")
    assert "6 weeks" in found[0].rationale


def test_no_reye_precaution_without_aspirin() -> None:
    plan = kawasaki_on(None)
    assert "Reye" not in decisions_text(plan, "vaccination")


def test_a_brand_coded_as_acetylsalicylic_acid_carries_the_reye_precaution() -> None:
    """§4.14: a salicylate the name list does not know ("Adiro", a Spanish brand) is found
    by its ATC code (B01AC06, WHO ATC index); with a unit's ATC list that leaves the code
    out, it is not."""
    fields: dict[str, Any] = {
        "birth_date": born(months=14),
        "weight_kg": 10,
        "category": "immune_mediated",
        "label": "Kawasaki disease",
        "treatments": [
            {
                **treatment("Adiro", "other_biologic", ago(days=42)),
                "code": "B01AC06",
                "system": "http://www.whocc.no/atc",
            }
        ],
        "labs": [lab(ago(days=10), igg_g_l=9.0)],
        "immunoglobulin_doses": [{"date": ago(days=40), "g_per_kg": 2.0, "route": "iv"}],
    }
    referral = make_referral(received=TODAY, **fields)
    reye = "varicella vaccine is a precaution (Reye"
    assert reye in decisions_text(plan_for(referral), "vaccination")
    unit = with_protocol(PROTOCOL, "vaccination.salicylate_atc", ("N02BA01",))
    assert reye not in decisions_text(plan_for(referral, protocol=unit), "vaccination")


# Review 7 (the day's diff read against the sources): each a case the first fix missed.


def test_a_later_phase_of_chemotherapy_dates_the_boosters_after_it() -> None:
    """§4.2: an intensification ending soon, maintenance recorded after it: the planned end
    is the maintenance's, not the intensification's."""
    plan = propose(
        birth_date=born(years=6),
        weight_kg=20,
        category="oncology",
        label="B-ALL",
        treatments=[
            treatment("delayed intensification", "chemotherapy", ago(months=1), ahead(days=30)),
            treatment("maintenance", "chemotherapy", ahead(days=45), ahead(years=2)),
        ],
        labs=[lab(ago(days=10), igg_g_l=5.0, anc_per_ul=1100)],
    )
    found = [d for d in plan.decisions if d.decision == "boosters after the end of chemotherapy"]
    assert f"planned to end on {ahead(years=2)}" in found[0].rationale


def test_a_cd4_percent_below_15_holds_the_live_vaccines_whatever_the_band() -> None:
    """§2.3 (ACIP MMR 2013, varicella 2007: CD4 >= 15 %): 14.5 % at 8 years is the staging's
    moderate band, yet below ACIP's floor: no MMR or varicella."""
    plan = propose(
        birth_date=born(years=8),
        weight_kg=25,
        label="secondary immunodeficiency",
        labs=[lab(ago(days=5), igg_g_l=8.0, cd4_per_ul=450, cd4_percent=14.5)],
        vaccinations=[vaccination("MMR", born(years=1)), vaccination("VAR", born(years=1))],
    )
    assert doses_of(plan, "MMR") == []
    assert doses_of(plan, "VAR") == []
    assert any("below the 15 %" in r for d in plan.deferred for r in d.reasons)


def test_cover_for_an_inhibitor_starting_before_the_first_booking_day_starts_with_it() -> None:
    plan = propose(
        birth_date=born(years=5),
        weight_kg=19,
        label="atypical haemolytic uraemic syndrome",
        treatments=[treatment("eculizumab", "other_biologic", ahead(days=2))],
        labs=[lab(ago(days=5), igg_g_l=7.0, cd4_per_ul=1200)],
    )
    cover = [d for d in plan.decisions if "against meningococcus" in d.decision]
    assert "confirm today" not in cover[0].decision
    assert "from the inhibitor's first dose" in cover[0].decision


def test_intrathecal_methotrexate_is_not_asked_about_a_weekly_dose() -> None:
    """§2.1: intrathecal and high-dose IV methotrexate are single-day courses."""
    plan = propose(
        birth_date=born(years=6),
        weight_kg=20,
        category="oncology",
        label="B-ALL",
        treatments=[
            treatment(
                "intrathecal methotrexate",
                "chemotherapy",
                ago(months=1),
                ahead(months=3),
                dose_mg_day=12,
            )
        ],
        labs=[lab(ago(days=10), igg_g_l=5.0, anc_per_ul=1100)],
    )
    assert "methotrexate written as a daily dose" not in decisions_text(plan)


def test_anti_hbs_is_for_the_immunocompromised_not_for_asplenia_alone() -> None:
    """§4.4 (ACIP 2018 tests immunocompromised persons): asplenia alone is a risk condition,
    not immunocompromise."""
    plan = propose(
        birth_date=born(years=11),
        weight_kg=35,
        label="hereditary spherocytosis, splenectomy",
        labs=[lab(ago(days=10), igg_g_l=9.0, cd4_per_ul=800)],
        vaccinations=[
            vaccination("HepB", ago(years=10, months=11)),
            vaccination("HepB", ago(years=10, months=9)),
        ],
        risk_conditions=["asplenia"],
    )
    assert doses_of(plan, "HepB")
    assert not any("anti-HBs" in p for _, p, _ in reassessment_panels(plan))


@pytest.mark.parametrize(
    ("case", "transfused", "advised"),
    [
        ("§4.7 ACIP (bleeding disorders): platelets last week: IM technique said", 7, True),
        ("§4.7 platelets a year ago: nothing said", 365, False),
    ],
)
def test_intramuscular_vaccines_on_platelet_transfusions_carry_acip_s_technique(
    case: str, transfused: int, advised: bool
) -> None:
    plan = propose(
        birth_date=born(years=3),
        weight_kg=14,
        label="severe aplastic anaemia",
        treatments=[treatment("ciclosporin", "calcineurin_inhibitor", ago(months=6))],
        labs=[lab(ago(days=10), igg_g_l=6.0, cd4_per_ul=900, anc_per_ul=900)],
        blood_products=[{"date": ago(days=transfused), "product": "platelets"}],
    )
    assert any(i.kind == "vaccine_dose" for i in plan.items), case
    said = "intramuscular vaccines shortly after a transfusion" in decisions_text(plan)
    assert said is advised, case
