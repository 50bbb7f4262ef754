"""The whole plan: order, horizon, funding, consent, determinism, protocol version."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest_rules import (
    CALENDAR,
    HORIZON_END,
    PROTOCOL,
    START,
    TODAY,
    ago,
    document_for,
    infection,
    lab,
    make_referral,
    plan_for,
    treatment,
    with_protocol,
)

from sidflows.calendar import add_months
from sidflows.plan_document import plan_document
from sidflows.planning import plan_changes, propose_plan
from sidflows.referral import ReferralDocument, parse_referral, validate_referral
from sidflows.rules.model import Plan
from sidflows.testing.cohort import synthetic_referrals

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "referrals").glob("*.json"))
KIND_ORDER = [
    "ig_session",
    "ig_trough",
    "vaccine_dose",
    "prophylaxis",
    "reassessment",
    "plan_review",
]
UNFUNDED = {"ig_session", "ig_trough", "vaccine_dose", "prophylaxis"}


def _cohort() -> list[ReferralDocument]:
    return [validate_referral(doc) for doc in synthetic_referrals(44, seed=3)]


def _examples() -> list[ReferralDocument]:
    return [parse_referral(p.read_bytes()) for p in EXAMPLES]


RICH = {
    "category": "oncology",
    "label": "acute lymphoblastic leukaemia",
    "treatments": [treatment("ALL maintenance", "chemotherapy", "2024-06-01", "2026-10-15")],
    "labs": [lab(ago(days=10), igg_g_l=3.2, cd4_per_ul=420)],
    "infections": [infection(ago(months=2), serious=True), infection(ago(months=5))],
}


def _all_plans() -> list[Plan]:
    return [plan_for(r) for r in (*_examples(), *_cohort(), make_referral(**RICH))]


def test_examples_are_present() -> None:
    """The four shipped sample referrals are found (guards the tests that use them)."""
    assert len(EXAMPLES) == 4


@pytest.mark.parametrize("plan", _all_plans(), ids=lambda p: p.patient_ref)
def test_items_sorted_within_the_horizon(plan: Plan) -> None:
    """Items are sorted by date (then kind), between the first item day and as_of + 12 months."""
    assert plan.as_of == TODAY
    assert plan.horizon_end == add_months(TODAY, 12) == HORIZON_END
    keys = [(i.due, KIND_ORDER.index(i.kind), i.key) for i in plan.items]
    assert keys == sorted(keys)
    for item in plan.items:
        assert START <= item.due <= plan.horizon_end, item
        if item.hospital:
            assert CALENDAR.is_working_day(item.due), item


@pytest.mark.parametrize("plan", _all_plans(), ids=lambda p: p.patient_ref)
def test_item_keys_unique(plan: Plan) -> None:
    """Every item's key is unique in its plan (keys identify items across plan versions)."""
    keys = [i.key for i in plan.items]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


@pytest.mark.parametrize("plan", _all_plans(), ids=lambda p: p.patient_ref)
def test_every_decision_is_explained(plan: Plan) -> None:
    """Every decision carries a rationale and a source."""
    for d in plan.decisions:
        assert d.decision.strip(), d
        assert d.rationale.strip(), d
        assert d.source.strip(), d


def test_funding_flags_none_of_the_three_treatments_publicly_funded() -> None:
    """§1: IG, vaccines and prophylaxis are not covered by public health; each item says so."""
    doc = document_for(make_referral(**RICH))
    kinds = {i["kind"] for i in doc["items"]}
    assert kinds >= UNFUNDED  # the case exercises all three treatments
    for item in doc["items"]:
        assert item["publicly_funded"] is (item["kind"] not in UNFUNDED), item
    assert doc["funding"]["not_publicly_funded"] == sorted(UNFUNDED)
    assert doc["funding"]["consent_required"] is True


def test_shipped_funding_table() -> None:
    """§1: the shipped protocol marks the three treatments as not publicly funded."""
    funded = PROTOCOL.funding.publicly_funded
    assert not any(funded[k] for k in UNFUNDED)  # type: ignore[index]


@pytest.mark.parametrize(
    ("consent", "recorded"),
    [
        pytest.param({"cost_accepted": True}, True, id="§1 consent to the cost recorded"),
        pytest.param({"cost_accepted": False}, False, id="§1 consent refused"),
        pytest.param(None, False, id="§1 no consent given"),
    ],
)
def test_consent_flag(consent: dict[str, bool] | None, recorded: bool) -> None:
    """§1: a plan with unfunded items records whether the family consented to the cost."""
    plan = plan_for(make_referral(**RICH, consent=consent))
    assert plan.consent_recorded is recorded
    doc = plan_document(plan)
    assert doc["funding"]["consent_recorded"] is recorded
    funding = [d for d in plan.decisions if d.topic == "funding"]
    assert len(funding) == 1
    wanted = "recorded" if recorded else "needed before the plan can be activated"
    assert funding[0].decision == f"family consent to the cost {wanted}"


def test_no_consent_needed_when_everything_is_funded() -> None:
    """§1: a plan with only funded items (labs, reviews) needs no consent."""
    # Ongoing rituximab holds every vaccine back (influenza too, with IDSA 2013's "skip",
    # §4.5); IgG normal, no prophylaxis indication.
    referral = make_referral(
        labs=[lab(ago(days=10), igg_g_l=8.0)],
        treatments=[treatment("rituximab", "anti_cd20", "2026-11-01")],
    )
    plan = plan_for(
        referral, protocol=with_protocol(PROTOCOL, "vaccination.influenza_on_anti_cd20", "skip")
    )
    assert {i.kind for i in plan.items} == {"reassessment", "plan_review"}
    doc = plan_document(plan)
    assert doc["funding"] == {
        "not_publicly_funded": [],
        "consent_required": False,
        "consent_recorded": False,
    }
    assert [d.decision for d in plan.decisions if d.topic == "funding"] == [
        "every item is publicly funded"
    ]


@pytest.mark.parametrize("referral", [*_examples(), *_cohort()[:11]], ids=lambda r: r.ref)
def test_deterministic(referral: ReferralDocument) -> None:
    """The same referral on the same day gives the same document, byte for byte."""
    first = json.dumps(document_for(referral), sort_keys=False)
    again = json.dumps(document_for(referral), sort_keys=False)
    assert first == again


def test_deterministic_across_parses() -> None:
    """Parsing the same JSON text twice gives identical plans."""
    text = EXAMPLES[0].read_bytes()
    plans = [
        plan_document(
            propose_plan(parse_referral(text), today=TODAY, protocol=PROTOCOL, calendar=CALENDAR)
        )
        for _ in range(2)
    ]
    assert plans[0] == plans[1]


def test_protocol_version_recorded() -> None:
    """Each plan records the protocol version it was made under."""
    referral = make_referral(**RICH)
    assert plan_for(referral).protocol_version == PROTOCOL.version == "2026.12"
    other = with_protocol(PROTOCOL, "version", "2027.1-test")
    assert plan_document(plan_for(referral, protocol=other))["protocol_version"] == "2027.1-test"


def test_plan_document_shape() -> None:
    """The document has the fields of docs/formats.md in plain JSON types."""
    doc = document_for(make_referral(**RICH, consent={"cost_accepted": True}))
    assert list(doc)[:7] == [
        "patient_ref",
        "protocol_version",
        "as_of",
        "horizon_end",
        "grading",
        "decisions",
        "items",
    ]
    assert doc["patient_ref"] == "T-0001"
    assert doc["as_of"] == "2026-11-24"
    assert doc["horizon_end"] == "2027-11-24"
    assert set(doc["grading"]) == {"level", "transient", "reasons"}
    assert all(set(d) == {"topic", "decision", "rationale", "source"} for d in doc["decisions"])
    for item in doc["items"]:
        assert {"kind", "key", "due", "hospital", "publicly_funded"} <= set(item)
        date.fromisoformat(item["due"])
    for d in doc["deferred"]:
        assert set(d) == {"vaccine", "until", "reasons"}
        assert d["reasons"]
    assert json.loads(json.dumps(doc)) == doc


def test_plan_depends_on_today_not_the_clock() -> None:
    """The rules read no clock: another `today` moves the whole plan with it."""
    referral = make_referral(labs=[lab("2026-11-10", igg_g_l=1.0)])
    later = date(2026, 12, 10)
    plan = plan_for(referral, today=later)
    assert plan.as_of == later
    assert min(i.due for i in plan.items) >= date(2026, 12, 17)


def test_first_items_wait_for_the_lead_days() -> None:
    """Items start no earlier than first_item_lead_days (7) after as_of: time to approve."""
    plan = plan_for(make_referral(**RICH))
    lead = CALENDAR.config.first_item_lead_days
    assert min(i.due for i in plan.items) == CALENDAR.next_working_day(
        date.fromordinal(TODAY.toordinal() + lead)
    )


def test_starting_then_continuing_ig_is_no_change_of_plan() -> None:
    """§3: "start" and "continue IG replacement" are one course: the first result on IG
    does not ask a clinician to approve the same plan again; stopping it does."""

    def document(ig: str, level: str = "high") -> dict[str, Any]:
        return {
            "decisions": [{"topic": "immunoglobulin", "decision": ig}],
            "grading": {"level": level},
            "items": [],
            "deferred": [],
        }

    assert plan_changes(document("start IG replacement"), document("continue IG replacement")) == []
    assert (
        plan_changes(
            document("start IG replacement (after CAR-T)"), document("continue IG replacement")
        )
        == []
    )
    assert plan_changes(
        document("continue IG replacement"), document("IG replacement not indicated")
    ) == ["immunoglobulin: now IG replacement not indicated; no longer IG replacement given"]
