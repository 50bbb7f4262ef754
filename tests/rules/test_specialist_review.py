"""The second specialist review's classes of error, each as a table of cases.

Every case's id cites the section of docs/clinical-reference.md it follows:
§8.3 regimens map to their drugs (R-CHOP contains rituximab); §2.7 anti-CD20 is a class
(the vaccine windows of §4.3 and §4.5); §5.3 Pneumocystis in lymphoblastic lymphoma and
after CAR-T; §4.10 inactivated vaccines wait during B-cell depletion; §4.11 no DTaP from
the 7th birthday (ACIP); §5.4 every prophylaxis dose capped; §6.7 conflicting entries are
the clinician's; §3.9 an IgG after an immunomodulatory course is not the child's own.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    START,
    ago,
    born,
    context_for,
    decisions_text,
    facts_for,
    ig_dose,
    infection,
    items_of,
    lab,
    make_referral,
    plan_for,
    treatment,
    vaccination,
    with_protocol,
)

from sidflows.calendar import add_months, add_years
from sidflows.rules.drugs import drug_is, is_anti_cd20, regimen_of
from sidflows.rules.grading import grade
from sidflows.rules.immunoglobulin import decide_immunoglobulin
from sidflows.rules.vaccination import inactivated_blocks, influenza_blocks

Doc = dict[str, Any]
ATC = "http://www.whocc.no/atc"


def _entry(drug: str, cls: str = "chemotherapy", **extra: Any) -> Any:
    doc = treatment(drug, cls, ago(months=5), ago(months=2))
    doc.update(extra)
    return make_referral(treatments=[doc]).treatments[0]


def _vaccines(plan: Any) -> list[Any]:
    return items_of(plan, "vaccine_dose")


# ------------------------------------------------------------------ §8.3 regimens

REGIMEN_CASES: list[tuple[str, str, dict[str, Any], bool, str | None]] = [
    ("§8.3 R-CHOP contains rituximab", "R-CHOP", {}, True, "R-CHOP"),
    ("§8.3 lower case and cycle count: r-chop x 6", "r-chop x 6", {}, True, "R-CHOP"),
    ("§8.3 R-CHOP-14", "R-CHOP-14", {}, True, "R-CHOP"),
    ("§8.3 R-CVP contains rituximab", "R-CVP", {}, True, "R-CVP"),
    ("§8.3 R-ICE contains rituximab", "R-ICE", {}, True, "R-ICE"),
    ("§8.3 DA-EPOCH-R contains rituximab", "DA-EPOCH-R", {}, True, "DA-EPOCH-R"),
    ("§8.3 FCR contains rituximab", "FCR", {}, True, "FCR"),
    ("§8.3 paediatric R-COPADM contains rituximab", "R-COPADM 1", {}, True, "R-COPADM"),
    ("§2.7 'rituximab + CHOP' names rituximab", "rituximab + CHOP", {}, True, "CHOP"),
    ("§2.7 'Rituximab-CHOP' names rituximab", "Rituximab-CHOP", {}, True, "CHOP"),
    ("§8.3 unlisted R-GDP: the R- convention, read as rituximab", "R-GDP", {}, True, None),
    ("§8.3 CHOP alone has no rituximab", "CHOP", {}, False, "CHOP"),
    ("§8.3 ABVD has no rituximab", "ABVD", {}, False, "ABVD"),
    ("§8.3 CAR-T is not 'R-'", "CAR-T", {"cls": "car_t"}, False, None),
    ("§8.3 6-MP is not a regimen with rituximab", "6-MP", {}, False, None),
]


@pytest.mark.parametrize(
    ("drug", "extra", "anti_cd20", "regimen"),
    [pytest.param(d, e, a, r, id=case) for case, d, e, a, r in REGIMEN_CASES],
)
def test_regimen_acronyms_map_to_their_drugs(
    drug: str, extra: dict[str, Any], anti_cd20: bool, regimen: str | None
) -> None:
    t = _entry(drug, extra.get("cls", "chemotherapy"))
    assert is_anti_cd20(t, PROTOCOL) is anti_cd20
    found = regimen_of(t, PROTOCOL)
    if regimen is not None:
        assert found is not None
        assert regimen in found.names, found
    assert t.drug == drug  # the free text is kept


@pytest.mark.parametrize(
    ("drug", "indicates"),
    [
        pytest.param("FLAG-IDA", True, id="§8.3/§5.1 FLAG-IDA contains fludarabine"),
        pytest.param("FCR", True, id="§8.3/§5.1 FCR contains fludarabine"),
        pytest.param("Flu-Bu conditioning", True, id="§8.3/§5.1 Flu-Bu contains fludarabine"),
        pytest.param("R-CHOP", False, id="§8.3/§5.1 R-CHOP has no fludarabine"),
    ],
)
def test_regimen_drugs_feed_the_rules_that_name_them(drug: str, indicates: bool) -> None:
    t = _entry(drug)
    assert drug_is(t, PROTOCOL.prophylaxis.pjp.indicating_drugs, PROTOCOL) is indicates


def test_a_regimen_is_a_known_drug_and_says_what_was_read() -> None:
    """§8.3: R-CVP is not "drug not recognised"; the plan names the rituximab it read."""
    referral = make_referral(
        category="oncology",
        label="follicular lymphoma",
        treatments=[treatment("R-CVP", "chemotherapy", ago(months=5), ago(months=2))],
    )
    text = decisions_text(plan_for(referral))
    assert "drug not recognised" not in text
    assert "regimen R-CVP contains rituximab" in text
    assert facts_for(referral).anti_cd20_last == date.fromisoformat(ago(months=2))


# ------------------------------------------------------------------ §2.7 anti-CD20 is a class

ENDED = ago(months=2)  # last dose 2 months ago: inside the 6-month anti-CD20 windows
CD20_CASES = [
    ("§2.7 rituximab (anti_cd20)", "rituximab", "anti_cd20", None),
    ("§2.7 obinutuzumab referred as chemotherapy", "obinutuzumab", "chemotherapy", None),
    ("§2.7 ofatumumab referred as another biologic", "ofatumumab", "other_biologic", None),
    ("§2.7 ocrelizumab referred as another biologic", "ocrelizumab", "other_biologic", None),
    ("§2.7 a CD20 antibody by its ATC code (L01FA03)", "Gazyvaro", "chemotherapy", "L01FA03"),
    ("§2.7/§8.3 R-CHOP referred as chemotherapy", "R-CHOP", "chemotherapy", None),
    ("§2.7/§8.3 R-ICE referred as chemotherapy", "R-ICE", "chemotherapy", None),
]


def _cd20_referral(drug: str, cls: str, code: str | None, **fields: Any) -> Any:
    doc = treatment(drug, cls, ago(months=4), ENDED)
    if code is not None:
        doc.update(code=code, system=ATC)
    return make_referral(
        category="immune_mediated", label="nephrotic syndrome", treatments=[doc], **fields
    )


@pytest.mark.parametrize(
    ("drug", "cls", "code"), [pytest.param(d, c, k, id=case) for case, d, c, k in CD20_CASES]
)
def test_the_anti_cd20_windows_apply_to_the_class(drug: str, cls: str, code: str | None) -> None:
    """§4.3: no inactivated vaccine until 6 months after the last dose; §4.5: influenza on
    schedule (ACR 2022), or with IDSA 2013's "skip" none during anti-B-cell antibodies
    (until the depletion window ends); whatever the drug."""
    referral = _cd20_referral(drug, cls, code)
    ctx = context_for(referral)
    window_end = add_months(date.fromisoformat(ENDED), 6)
    assert any(b.holds_on(START) and b.until == window_end for b in inactivated_blocks(ctx))
    assert not any("anti-B-cell" in b.reason for b in influenza_blocks(ctx))
    skip = context_for(
        referral,
        protocol=with_protocol(PROTOCOL, "vaccination.influenza_on_anti_cd20", "skip"),
    )
    assert any(b.holds_on(START) for b in influenza_blocks(skip) if "anti-B-cell" in b.reason)
    plan = plan_for(referral)
    for item in _vaccines(plan):
        if item.vaccine != "IIV":  # type: ignore[attr-defined]
            assert item.due >= window_end, (item.key, item.due)  # type: ignore[attr-defined]
    assert plan.grading.level == "high"
    assert any("B-cell depletion" in r for r in plan.grading.reasons)


def test_a_chemotherapy_regimen_with_rituximab_waits_six_months_for_boosters() -> None:
    """§4.2 (IDSA rec. 73): boosters 6 months after a regimen with anti-B-cell antibodies."""
    end = ago(months=2)
    referral = make_referral(
        category="oncology",
        label="Burkitt lymphoma",
        treatments=[treatment("R-CHOP", "chemotherapy", ago(months=5), end)],
    )
    plan = plan_for(referral)
    earliest = add_months(date.fromisoformat(end), 6)
    boosters = [i for i in _vaccines(plan) if i.vaccine != "IIV"]  # type: ignore[attr-defined]
    assert boosters
    assert all(i.due >= earliest for i in boosters), boosters


# ------------------------------------------------------------------ §5.3 Pneumocystis

PJP_CASES: list[tuple[str, dict[str, Any], bool, str]] = [
    (
        "§5.3 T-LBL on chemotherapy -> co-trimoxazole",
        {"label": "T-LBL", "treatments": [treatment("maintenance", "chemotherapy", ago(months=5))]},
        True,
        "lymphoblastic lymphoma",
    ),
    (
        "§5.3 'linfoma linfoblástico B' on chemotherapy -> co-trimoxazole",
        {
            "label": "linfoma linfoblástico B",
            "treatments": [treatment("quimioterapia", "chemotherapy", ago(months=5))],
        },
        True,
        "lymphoblastic lymphoma",
    ),
    (
        "§5.3 ICD-10 C83.5 with an unhelpful label -> co-trimoxazole",
        {
            "diagnosis": {
                "category": "oncology",
                "label": "lymphoma",
                "code": "C83.5",
                "system": "http://hl7.org/fhir/sid/icd-10",
            },
            "treatments": [treatment("induction", "chemotherapy", ago(months=1))],
        },
        True,
        "lymphoblastic lymphoma",
    ),
    (
        "§5.3 B-ALL after CD19 CAR-T 8 months ago, no CD4 since -> co-trimoxazole",
        {
            "label": "B-ALL",
            "treatments": [
                treatment("induction", "chemotherapy", ago(years=2), ago(years=1)),
                treatment("tisagenlecleucel", "car_t", ago(months=8), ago(months=8)),
            ],
        },
        True,
        "CAR-T",
    ),
    (
        "§5.3 B-ALL after CAR-T 3 months ago, CD4 recovered -> co-trimoxazole until 6 months",
        {
            "label": "B-ALL",
            "treatments": [treatment("tisagenlecleucel", "car_t", ago(months=3), ago(months=3))],
            "labs": [lab(ago(days=5), cd4_per_ul=450)],
        },
        True,
        "CAR-T",
    ),
    (
        "§5.3 after CAR-T 8 months ago, CD4 150 -> co-trimoxazole (below 200)",
        {
            "label": "diffuse large B-cell lymphoma",
            "treatments": [treatment("axicabtagene", "car_t", ago(months=8), ago(months=8))],
            "labs": [lab(ago(days=5), cd4_per_ul=150)],
        },
        True,
        "CAR-T",
    ),
    (
        "§5.3 after CAR-T 8 months ago, fresh CD4 450 -> no CAR-T indication",
        {
            "label": "diffuse large B-cell lymphoma",
            "treatments": [treatment("axicabtagene", "car_t", ago(months=8), ago(months=8))],
            "labs": [lab(ago(days=5), cd4_per_ul=450)],
        },
        False,
        "",
    ),
    (
        "§5.3 Hodgkin lymphoma (not lymphoblastic) off treatment -> none",
        {"label": "Hodgkin lymphoma"},
        False,
        "",
    ),
]


@pytest.mark.parametrize(
    ("fields", "given", "why"), [pytest.param(f, g, w, id=case) for case, f, g, w in PJP_CASES]
)
def test_pneumocystis_in_lymphoblastic_lymphoma_and_after_car_t(
    fields: dict[str, Any], given: bool, why: str
) -> None:
    fields = dict(fields)
    label = fields.pop("label", None)
    if label is not None:
        fields["label"] = label
        fields["category"] = "oncology"
    plan = plan_for(make_referral(**fields))
    drugs = [i.drug for i in items_of(plan, "prophylaxis")]  # type: ignore[attr-defined]
    assert ("co-trimoxazole" in drugs) is given, decisions_text(plan, "prophylaxis")
    if given:
        text = decisions_text(plan, "prophylaxis")
        assert why in text
        assert "§5.3" in text


def test_car_t_prophylaxis_is_reviewed_at_the_end_of_the_minimum_when_cd4_has_recovered() -> None:
    infusion = ago(months=3)
    referral = make_referral(
        category="oncology",
        label="B-ALL",
        treatments=[treatment("tisagenlecleucel", "car_t", infusion, infusion)],
        labs=[lab(ago(days=5), cd4_per_ul=450)],
    )
    (item,) = items_of(plan_for(referral), "prophylaxis")
    assert item.review >= add_months(date.fromisoformat(infusion), 6)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ §4.10 B-cell depletion

AFTER_CAR_T = {
    "birth_date": born(years=9),
    "weight_kg": 28.0,
    "category": "oncology",
    "label": "B-ALL",
    "treatments": [treatment("tisagenlecleucel", "car_t", ago(months=8), ago(months=8))],
    "immunoglobulin_doses": [ig_dose(ago(days=20))],
}
APLASIA_CASES: list[tuple[str, dict[str, Any], bool]] = [
    (
        "§4.10 CAR-T, CD19 0, on IG -> no PCV, PPSV23 or other inactivated dose",
        {**AFTER_CAR_T, "labs": [lab(ago(days=10), cd19_per_ul=0, igg_g_l=8.0)]},
        False,
    ),
    (
        "§4.10 CAR-T, no CD19 since (aplasia expected), on IG -> deferred",
        {**AFTER_CAR_T, "labs": [lab(ago(days=10), igg_g_l=8.0)]},
        False,
    ),
    (
        "§4.10 CAR-T with chemotherapy before, CD19 0 -> boosters deferred too",
        {
            **AFTER_CAR_T,
            "treatments": [
                treatment("induction", "chemotherapy", ago(years=2), ago(years=1)),
                treatment("tisagenlecleucel", "car_t", ago(months=8), ago(months=8)),
            ],
            "labs": [lab(ago(days=10), cd19_per_ul=0, igg_g_l=8.0)],
        },
        False,
    ),
    (
        "§4.10 rituximab 11 months ago, CD19 still below the lab's limit -> deferred",
        {
            "category": "immune_mediated",
            "label": "nephrotic syndrome",
            "treatments": [treatment("rituximab", "anti_cd20", ago(months=12), ago(months=11))],
            "labs": [lab(ago(days=5), cd19_per_ul=5, cd19_lower_limit_per_ul=100, igg_g_l=6.0)],
        },
        False,
    ),
    (
        "§4.10 CAR-T, B cells recovered (CD19 at the lab's limit) -> PCV given",
        {
            **AFTER_CAR_T,
            "immunoglobulin_doses": [],
            "labs": [lab(ago(days=10), cd19_per_ul=150, cd19_lower_limit_per_ul=100, igg_g_l=8.0)],
        },
        True,
    ),
]


@pytest.mark.parametrize(
    ("fields", "given"), [pytest.param(f, g, id=case) for case, f, g in APLASIA_CASES]
)
def test_inactivated_vaccines_wait_for_b_cell_recovery(fields: dict[str, Any], given: bool) -> None:
    plan = plan_for(make_referral(**fields))
    inactivated = [
        i
        for i in _vaccines(plan)
        if not i.live and i.vaccine != "IIV"  # type: ignore[attr-defined]
    ]
    if given:
        assert any(i.vaccine == "PCV" for i in inactivated), inactivated  # type: ignore[attr-defined]
        return
    assert not inactivated, inactivated
    text = decisions_text(plan, "vaccination")
    assert "no dose possible in the horizon" in text
    assert "raise no antibodies during B-cell depletion" in text
    assert "docs/clinical-reference.md §4.10" in text


def test_influenza_keeps_its_own_rule_in_aplasia() -> None:
    """§4.10/§4.5: influenza is still given every season after CAR-T."""
    fields = {**AFTER_CAR_T, "labs": [lab(ago(days=10), cd19_per_ul=0, igg_g_l=8.0)]}
    plan = plan_for(make_referral(**fields))
    assert any(i.vaccine == "IIV" for i in _vaccines(plan))  # type: ignore[attr-defined]


# ------------------------------------------------------------------ §4.11 no DTaP from 7 years

DTAP_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "§4.11 after HSCT at 6 y 10 m: the dose after the 7th birthday is Tdap",
        {
            "birth_date": born(years=6, months=10),
            "hsct": {"date": ago(months=7), "type": "autologous"},
            "category": "oncology",
            "label": "neuroblastoma",
        },
    ),
    (
        "§4.11 after HSCT at 6 y 11 m 20 d: doses 2 and 3 are Tdap",
        {
            "birth_date": born(years=6, months=11, days=20),
            "hsct": {"date": ago(months=7), "type": "allogeneic"},
            "category": "oncology",
            "label": "AML",
        },
    ),
    (
        "§4.11 booster after chemotherapy at 6 y 11 m, due after the birthday: Tdap",
        {
            "birth_date": born(years=6, months=11),
            "category": "oncology",
            "label": "Wilms tumour",
            "treatments": [treatment("vincristine", "chemotherapy", ago(months=8), ago(months=1))],
        },
    ),
    (
        "§4.11 after HSCT at 4 years: every dose DTaP (under 7 throughout)",
        {
            "birth_date": born(years=4),
            "hsct": {"date": ago(months=7), "type": "autologous"},
            "category": "oncology",
            "label": "neuroblastoma",
        },
    ),
]


@pytest.mark.parametrize("fields", [pytest.param(f, id=case) for case, f in DTAP_CASES])
def test_no_dtap_on_or_after_the_7th_birthday(fields: dict[str, Any]) -> None:
    referral = make_referral(**fields)
    # After HSCT the default is DTaP at every age (§4.6.2, IDSA 2013 table 4; tested in
    # test_specialist_review_8.py); §4.11's Tdap then Td is the configured alternative.
    protocol = (
        with_protocol(PROTOCOL, "vaccination.hsct.tetanus_series", "Tdap_then_Td")
        if "hsct" in fields
        else PROTOCOL
    )
    plan = plan_for(referral, protocol=protocol)
    seventh = add_years(referral.patient.birth_date, 7)
    doses = [i for i in _vaccines(plan) if i.vaccine in ("DTaP", "Tdap", "Td")]  # type: ignore[attr-defined]
    assert doses
    # Protocol 2026.6 (§4.11, ACIP): from the 7th birthday Tdap once, then Td (the referral
    # format now has Td); before it DTaP.
    tdap_seen = False
    for i in sorted(doses, key=lambda x: x.due):
        if i.due < seventh:
            expected = "DTaP"
        else:
            expected = "Td" if tdap_seen else "Tdap"
            tdap_seen = True
        assert i.vaccine == expected, (i.key, i.due, seventh)  # type: ignore[attr-defined]
        assert i.key.startswith(f"vaccine_dose:{expected}:")
    if any(i.vaccine != "DTaP" for i in doses) and any(i.vaccine == "DTaP" for i in doses):  # type: ignore[attr-defined]
        text = decisions_text(plan, "vaccination")
        assert "DTaP is not given: Tdap once" in text
        assert "Td or Tdap" in text
        assert "MMWR 2020;69:77" in text


# ------------------------------------------------------------------ §5.4 maximum doses

AZITHRO_CASES = [
    ("§5.4 30 kg: 300 mg (10 mg/kg, under the cap)", 30.0, 300, False),
    ("§5.4 50 kg: 500 mg (10 mg/kg, at the cap)", 50.0, 500, False),
    ("§5.4 70 kg: 500 mg (capped, not 700)", 70.0, 500, True),
    ("§5.4 120 kg: 500 mg (capped, not 1200)", 120.0, 500, True),
]


@pytest.mark.parametrize(
    ("weight", "mg", "capped"),
    [pytest.param(w, m, c, id=case) for case, w, m, c in AZITHRO_CASES],
)
def test_azithromycin_is_capped_at_the_protocol_maximum(
    weight: float, mg: int, capped: bool
) -> None:
    referral = make_referral(
        birth_date=born(years=16),
        weight_kg=weight,
        labs=[lab(ago(days=5), igg_g_l=3.0)],
        infections=[infection(ago(months=2)), infection(ago(months=4))],
    )
    (item,) = items_of(plan_for(referral), "prophylaxis", drug="azithromycin")
    assert item.regimen.startswith(f"{mg} mg once weekly"), item.regimen  # type: ignore[attr-defined]
    assert ("capped at the maximum 500 mg a dose" in item.regimen) is capped  # type: ignore[attr-defined]


def test_every_prophylaxis_drug_has_a_maximum() -> None:
    """§5.4: each drug the protocol prescribes carries its maximum and its source."""
    assert PROTOCOL.prophylaxis.pjp.tmp_max_mg_day > 0
    assert PROTOCOL.prophylaxis.antibacterial.max_mg_per_dose == 500.0
    assert "§5.4" in PROTOCOL.source("prophylaxis.antibacterial.max_mg_per_dose")


# ------------------------------------------------------------------ §6.7 conflicting entries

CONFLICT_CASES: list[tuple[str, list[Doc], bool]] = [
    (
        "§6.7 methotrexate weekly and metotrexato daily, overlapping -> flagged",
        [
            treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.3),
            treatment("metotrexato", "antimetabolite", ago(months=1), dose_mg_day=10),
        ],
        True,
    ),
    (
        "§6.7 MTX weekly (ATC L04AX03) and methotrexate mg/kg/day -> flagged",
        [
            {
                **treatment("MTX", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.4),
                "code": "L04AX03",
                "system": ATC,
            },
            treatment("methotrexate", "antimetabolite", ago(months=2), dose_mg_per_kg_day=0.4),
        ],
        True,
    ),
    (
        "§6.7 one entry giving a weekly and a daily dose -> flagged",
        [
            treatment(
                "methotrexate",
                "antimetabolite",
                ago(months=3),
                dose_mg_per_kg_week=0.3,
                dose_mg_day=7.5,
            )
        ],
        True,
    ),
    (
        "§6.7 weekly then daily, not overlapping -> not flagged (a change of dose)",
        [
            treatment(
                "methotrexate",
                "antimetabolite",
                ago(months=6),
                ago(months=4),
                dose_mg_per_kg_week=0.3,
            ),
            treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_day=10),
        ],
        False,
    ),
    (
        "§6.7 two weekly entries (a dose change that overlaps a day) -> not flagged",
        [
            treatment(
                "methotrexate",
                "antimetabolite",
                ago(months=6),
                ago(months=3),
                dose_mg_per_kg_week=0.3,
            ),
            treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.4),
        ],
        False,
    ),
    (
        "§6.7 azathioprine daily with methotrexate weekly (two drugs) -> not flagged",
        [
            treatment("azathioprine", "antimetabolite", ago(months=3), dose_mg_per_kg_day=2),
            treatment("methotrexate", "antimetabolite", ago(months=3), dose_mg_per_kg_week=0.3),
        ],
        False,
    ),
]


@pytest.mark.parametrize(
    ("treatments", "flagged"),
    [pytest.param(t, f, id=case) for case, t, f in CONFLICT_CASES],
)
def test_conflicting_dose_entries_are_the_clinicians(treatments: list[Doc], flagged: bool) -> None:
    referral = make_referral(
        category="immune_mediated", label="juvenile idiopathic arthritis", treatments=treatments
    )
    plan = plan_for(referral)
    found = [d for d in plan.decisions if d.decision.startswith("conflicting doses")]
    assert bool(found) is flagged, [d.decision for d in plan.decisions]
    if flagged:
        assert "methotrexate" in found[0].decision
        assert "does not pick one" in found[0].rationale
        assert "§6.7" in found[0].source
        # Every entry is still graded: none silently dropped.
        reasons = " ".join(grade(context_for(referral)).reasons)
        assert reasons.count("mg/kg/week") >= len(treatments)


# ------------------------------------------------------------------ §3.9 confounded IgG

KAWASAKI = {"birth_date": born(years=4), "weight_kg": 16.0, "label": "Kawasaki disease"}
CONFOUND_CASES: list[tuple[str, dict[str, Any], bool, str | None]] = [
    (
        "§3.9 2 g/kg 40 days ago, IgG 14 g/L 5 days ago -> confounded, no IG decision",
        {
            **KAWASAKI,
            "immunoglobulin_doses": [ig_dose(ago(days=40), 2.0)],
            "labs": [lab(ago(days=5), igg_g_l=14.0)],
        },
        True,
        "no_data",
    ),
    (
        "§3.9 1 g/kg on two days (a 2 g/kg course), IgG during the washout -> confounded",
        {
            **KAWASAKI,
            "immunoglobulin_doses": [ig_dose(ago(days=61), 1.0), ig_dose(ago(days=60), 1.0)],
            "labs": [lab(ago(days=20), igg_g_l=12.0)],
        },
        True,
        "no_data",
    ),
    (
        "§3.9 ITP 1 g/kg, IgG 9 g/L in the washout; an own IgG 3.0 before it -> the own one",
        {
            **KAWASAKI,
            "label": "immune thrombocytopenia",
            "immunoglobulin_doses": [ig_dose(ago(days=30), 1.0)],
            "labs": [lab(ago(days=35), igg_g_l=3.0), lab(ago(days=10), igg_g_l=9.0)],
            "infections": [infection(ago(months=2), serious=True)],
        },
        True,
        "start",
    ),
    (
        "§3.9 2 g/kg 5 months ago, IgG now -> past the washout: the child's own",
        {
            **KAWASAKI,
            "immunoglobulin_doses": [ig_dose(ago(months=5), 2.0)],
            "labs": [lab(ago(days=5), igg_g_l=7.0)],
        },
        False,
        "not_indicated",
    ),
    (
        "§3.9 replacement 0.4 g/kg (not immunomodulatory) -> not a confounded IgG",
        {
            **KAWASAKI,
            "immunoglobulin_doses": [ig_dose(ago(days=90), 0.4)],
            "labs": [lab(ago(days=5), igg_g_l=7.0)],
        },
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "confounded", "status"),
    [pytest.param(f, c, s, id=case) for case, f, c, s in CONFOUND_CASES],
)
def test_an_igg_after_an_immunomodulatory_course_is_not_the_childs_own(
    fields: dict[str, Any], confounded: bool, status: str | None
) -> None:
    referral = make_referral(**fields)
    facts = facts_for(referral)
    assert bool(facts.confounded_igg) is confounded
    plan = plan_for(referral)
    flagged = [d for d in plan.decisions if "confounded by an immunomodulatory" in d.decision]
    assert bool(flagged) is confounded
    if confounded:
        assert "§3.9" in flagged[0].source
        for c in facts.confounded_igg:
            assert facts.latest_igg is not c.lab  # never used as the child's IgG
            # Repeated after the washout.
            assert (
                any(
                    i.due >= c.until and "washout" in i.reason  # type: ignore[attr-defined]
                    for i in items_of(plan, "reassessment")
                )
                or c.until > plan.horizon_end
            )
        recovery = next(d for d in plan.decisions if "recover" in d.decision)
        assert "IgG 14" not in recovery.rationale
        assert "IgG 12" not in recovery.rationale
    if status is not None:
        assert decide_immunoglobulin(context_for(referral)).status == status


def test_a_confounded_igg_never_shows_recovery() -> None:
    """§3.9/§6.4: a normal IgG inside the washout is not offered as recovery data."""
    referral = make_referral(
        **KAWASAKI,
        immunoglobulin_doses=[ig_dose(ago(days=40), 2.0)],
        labs=[
            lab(
                ago(days=5),
                igg_g_l=14.0,
                cd19_per_ul=500,
                cd19_lower_limit_per_ul=100,
                cd4_per_ul=1200,
            )
        ],
        vaccinations=[vaccination("MMR", ago(years=3))],
    )
    recovery = next(d for d in plan_for(referral).decisions if "recover" in d.decision)
    assert recovery.decision == "not yet recovered"
    assert "IgG off IG replacement" in recovery.rationale
