"""§4.7: a visit of many injections is said to the clinician; the doses keep their days.

ACIP's General Best Practice Guidelines give every vaccine due at one visit with no upper
limit; the number that is flagged (5, the most of a routine childhood visit) is unit
policy. Expected values from docs/clinical-reference.md §4.7.
"""

from __future__ import annotations

from collections import Counter

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

FLAG = "injections: combination vaccines, or the visit split, is the clinician's choice"


def after_chemotherapy(years: int) -> dict[str, object]:
    """A child of ``years`` whose chemotherapy ended 7 months ago, no vaccine counted."""
    return {
        "received": TODAY,
        "birth_date": born(years=years),
        "weight_kg": 35,
        "category": "oncology",
        "label": "acute lymphoblastic leukaemia",
        "treatments": [treatment("ALL maintenance", "chemotherapy", ago(years=3), ago(months=7))],
    }


def injections_per_day(plan: object) -> Counter[object]:
    return Counter(
        i.due
        for i in items_of(plan, "vaccine_dose")  # type: ignore[arg-type]
        if getattr(i, "vaccine", "") not in ("ROTA", "LAIV")
    )


@pytest.mark.parametrize(
    ("case", "flag", "said"),
    [
        ("§4.7 a heavy first visit, the flag at 5: said, naming each heavy day", 5, True),
        ("§4.7 the flag at 0: nothing said", 0, False),
        ("§4.7 the flag at 20: no day reaches it", 20, False),
    ],
)
def test_a_heavy_visit_is_said_and_its_doses_keep_their_day(
    case: str, flag: int, said: bool
) -> None:
    protocol = with_protocol(PROTOCOL, "vaccination.injections_per_visit_flag", flag)
    plan = plan_for(make_referral(**after_chemotherapy(11)), protocol=protocol)
    per_day = injections_per_day(plan)
    heaviest, most = per_day.most_common(1)[0]
    assert most > 5, per_day  # the case is a heavy visit (the catch-up of §4.2, §4.16)
    text = decisions_text(plan, "vaccination")
    assert (FLAG in text) is said, (case, text)
    if said:
        assert f"{heaviest}: {most} (" in text
        assert "ACIP" in text
        days = [d for d, n in per_day.items() if n > flag]
        assert all(f"{d}: {per_day[d]} (" in text for d in days)
    # The doses are where the schedule put them, whatever the flag (nothing moved).
    assert per_day == injections_per_day(plan_for(make_referral(**after_chemotherapy(11))))


def test_a_visit_of_exactly_the_flag_is_not_said() -> None:
    """ "More than" the flag: a heaviest day of exactly the flag's number says nothing."""
    plan = plan_for(make_referral(**after_chemotherapy(11)))
    most = injections_per_day(plan).most_common(1)[0][1]
    protocol = with_protocol(PROTOCOL, "vaccination.injections_per_visit_flag", most)
    assert FLAG not in decisions_text(
        plan_for(make_referral(**after_chemotherapy(11)), protocol=protocol)
    )
    protocol = with_protocol(PROTOCOL, "vaccination.injections_per_visit_flag", most - 1)
    assert FLAG in decisions_text(
        plan_for(make_referral(**after_chemotherapy(11)), protocol=protocol)
    )
