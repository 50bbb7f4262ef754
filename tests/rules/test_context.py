"""The one context every rule takes: built as planning builds it, frozen, consistent.

And the citations it gives: a decision that prints a protocol threshold cites
that parameter's source as the protocol records it (``Protocol.source``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from datetime import date, timedelta
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
    context_for,
    lab,
    make_referral,
    plan_for,
    with_protocol,
)

import sidflows.rules
from sidflows.calendar import add_months
from sidflows.referral import validate_referral
from sidflows.rules.context import HORIZON_MONTHS, PlanContext
from sidflows.rules.facts import derive_facts
from sidflows.rules.grading import grade
from sidflows.rules.ig_schedule import ig_schedule
from sidflows.rules.immunoglobulin import decide_immunoglobulin
from sidflows.rules.model import Plan
from sidflows.rules.prophylaxis import plan_prophylaxis
from sidflows.rules.reassessment import plan_reassessments, plan_reviews
from sidflows.rules.vaccination import (
    inactivated_blocks,
    influenza_blocks,
    is_live,
    live_vaccine_blocks,
    plan_vaccination,
)
from sidflows.testing.cohort import synthetic_referrals

RULES: list[Callable[..., Any]] = [
    grade,
    decide_immunoglobulin,
    ig_schedule,
    plan_vaccination,
    plan_reviews,
    plan_prophylaxis,
    plan_reassessments,
    live_vaccine_blocks,
    inactivated_blocks,
    influenza_blocks,
]


def test_build_computes_facts_start_and_horizon() -> None:
    """Start is today plus the unit's lead time; the horizon ends 12 months after today."""
    referral = make_referral()
    ctx = PlanContext.build(referral, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR)
    assert ctx.referral is referral
    assert ctx.protocol is PROTOCOL
    assert ctx.calendar is CALENDAR
    assert ctx.today == TODAY
    assert ctx.start == START == TODAY + timedelta(days=CALENDAR.config.first_item_lead_days)
    assert ctx.horizon_end == HORIZON_END == add_months(TODAY, HORIZON_MONTHS)
    assert ctx.facts == derive_facts(referral, today=TODAY, protocol=PROTOCOL)
    assert context_for(referral) == ctx


def test_the_context_is_frozen() -> None:
    ctx = context_for(make_referral())
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.today = date(2030, 1, 1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.facts.weight_kg = 1.0  # type: ignore[misc]


def test_facts_of_another_day_are_refused() -> None:
    """``today`` has one value in a context: facts derived on another day do not fit."""
    ctx = context_for(make_referral())
    with pytest.raises(ValueError, match="facts derived on"):
        dataclasses.replace(ctx, today=TODAY + timedelta(days=1))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_each_rule_takes_the_context_first_and_the_rest_by_keyword(
    rule: Callable[..., Any],
) -> None:
    params = list(inspect.signature(rule).parameters.values())
    assert params[0].name == "ctx"
    assert params[0].annotation in ("PlanContext", PlanContext)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), params


def test_the_rules_are_pure_functions_of_the_context() -> None:
    """The same context gives the same decisions, called twice."""
    ctx = context_for(make_referral())
    ig = decide_immunoglobulin(ctx)
    assert decide_immunoglobulin(ctx) == ig
    grading = grade(ctx)
    assert grade(ctx) == grading
    assert plan_vaccination(ctx, ig=ig, grading=grading) == plan_vaccination(
        ctx, ig=ig, grading=grading
    )
    assert is_live("MMR")
    assert not is_live("PCV")


def test_no_rule_module_is_over_450_lines() -> None:
    root = Path(sidflows.rules.__file__).parent
    sizes = {
        str(p.relative_to(root)): len(p.read_text("utf-8").splitlines()) for p in root.rglob("*.py")
    }
    assert "vaccination/__init__.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 450} == {}


# ----------------------------------------------------------------------------- citations

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "referrals").glob("*.json"))


def _cohort_plans() -> list[Plan]:
    documents = [json.loads(p.read_text("utf-8")) for p in EXAMPLES]
    documents += list(synthetic_referrals(60, seed=3))
    return [plan_for(validate_referral(d)) for d in documents]


def test_every_cited_parameter_has_its_source_in_the_shipped_protocol() -> None:
    """No decision of the examples or the cohort falls back to a missing citation."""
    sources = {d.source for plan in _cohort_plans() for d in plan.decisions}
    assert sources
    assert not [s for s in sources if "records no source" in s]
    assert not [s for s in sources if "REFERENCE.md" in s]


def test_cite_joins_distinct_citations_in_order() -> None:
    ctx = context_for(make_referral())
    a = PROTOCOL.source("vaccination.influenza_season_start")
    b = PROTOCOL.source("vaccination.influenza_min_age_months")
    assert PROTOCOL.source("vaccination.influenza_season_end") == a  # cited once below
    assert (
        ctx.cite(
            "vaccination.influenza_season_start",
            "vaccination.influenza_season_end",
            "vaccination.influenza_min_age_months",
        )
        == f"{a}; {b}"
    )


def test_a_decision_cites_what_the_unit_protocol_records() -> None:
    """The source beside a decision is the protocol's entry, exactly as the unit wrote it."""
    own = "our unit's IG criteria 2027, docs/clinical-reference.md §3.1"
    sources = dict(PROTOCOL.immunoglobulin.sources, start_below_g_l_any=own)
    protocol = with_protocol(PROTOCOL, "immunoglobulin.sources", sources)
    referral = make_referral(labs=[lab(ago(days=5), igg_g_l=1.0)])
    start = plan_for(referral, protocol=protocol).decisions[0]
    assert start.decision == "start IG replacement"
    assert start.source == own
    assert plan_for(referral).decisions[0].source == PROTOCOL.source(
        "immunoglobulin.start_below_g_l_any"
    )


def test_a_missing_citation_is_named_not_a_failure_to_plan() -> None:
    """A unit protocol with no entry for a parameter still plans; the gap shows as the source."""
    protocol = with_protocol(PROTOCOL, "funding.sources", {})
    funding = plan_for(make_referral(), protocol=protocol).decisions[-1]
    assert funding.topic == "funding"
    assert funding.source == (
        f"protocol {PROTOCOL.version} records no source for funding.publicly_funded"
    )
