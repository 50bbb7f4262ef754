"""§4.5: influenza vaccine on methotrexate for an immune-mediated disease.

ACR 2022 (Bass et al., Arthritis Care Res 2023;75:449) conditionally recommends holding
methotrexate for 2 weeks after influenza vaccination, if disease activity allows (the
randomised trial: Park et al., Ann Rheum Dis 2018;77:898); EULAR 2019 gives no hold (the
protocol's alternative, 0). Methotrexate as chemotherapy (ALL maintenance) is not the
guideline's: the oncology protocol keeps it. Expected values from docs/clinical-reference.md
§4.5, not from what the code gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest_rules import (
    PROTOCOL,
    TODAY,
    ago,
    born,
    decisions_text,
    items_of,
    make_referral,
    plan_for,
    treatment,
    with_protocol,
)

HOLD = "hold it 2 weeks after each dose if disease activity allows"


def jia(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "received": TODAY,
        "birth_date": born(years=8),
        "weight_kg": 25,
        "category": "immune_mediated",
        "label": "juvenile idiopathic arthritis",
        "treatments": [
            treatment(
                "methotrexate", "antimetabolite", ago(months=6), None, dose_mg_per_kg_week=0.4
            )
        ],
    }
    return {**fields, **overrides}


CASES: list[tuple[str, dict[str, Any], int, bool]] = [
    ("§4.5 JIA on weekly methotrexate: the 2-week hold after each dose (ACR 2022)", jia(), 2, True),
    (
        "§4.5 Spanish name (metotrexato): the same",
        jia(
            treatments=[
                treatment(
                    "metotrexato", "antimetabolite", ago(months=6), None, dose_mg_per_kg_week=0.4
                )
            ]
        ),
        2,
        True,
    ),
    ("§4.5 the protocol's alternative (EULAR 2019: no hold): nothing said", jia(), 0, False),
    (
        "§4.5 methotrexate stopped a year ago: nothing said",
        jia(
            treatments=[
                treatment(
                    "methotrexate",
                    "antimetabolite",
                    ago(months=18),
                    ago(months=12),
                    dose_mg_per_kg_week=0.4,
                )
            ]
        ),
        2,
        False,
    ),
    (
        "§4.5 ALL maintenance (methotrexate as chemotherapy): not the ACR's, nothing said",
        jia(
            category="oncology",
            label="acute lymphoblastic leukaemia",
            treatments=[
                treatment(
                    "methotrexate", "antimetabolite", ago(months=6), None, dose_mg_per_kg_week=0.4
                )
            ],
        ),
        2,
        False,
    ),
]


@pytest.mark.parametrize(
    ("fields", "weeks", "said"), [pytest.param(f, w, s, id=case) for case, f, w, s in CASES]
)
def test_the_methotrexate_hold_after_influenza_vaccine(
    fields: dict[str, Any], weeks: int, said: bool
) -> None:
    protocol = with_protocol(PROTOCOL, "vaccination.influenza_methotrexate_hold_weeks", weeks)
    plan = plan_for(make_referral(**fields), protocol=protocol)
    text = decisions_text(plan, "vaccination")
    flu = [i for i in items_of(plan, "vaccine_dose") if getattr(i, "vaccine", "") == "IIV"]
    assert (HOLD in text) is said, text
    if said:
        assert flu, "influenza is planned, not delayed"
        assert "ACR 2022" in text
        for dose in flu:
            assert str(dose.due) in text  # each dose the hold follows is named
