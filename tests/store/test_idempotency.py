"""Idempotency in the store: each step of the pathway, repeated with the same arguments,
leaves every table exactly as the first call left it (every column, timestamps too)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import store_changes, store_snapshot
from sqlmodel import select

from sidflows import service
from sidflows.store import db, sweep, versions
from sidflows.store.census import unit_census
from sidflows.store.models import AuditEntry, Lab
from sidflows.store.patients import get_patient
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, example

RELAPSE = json.dumps(
    {
        "date": "2026-11-23",
        "treatments": [
            {"drug": "relapse induction", "class": "chemotherapy", "start": "2026-11-22"}
        ],
    }
)
LABS = json.dumps({"labs": [{"date": "2026-11-23", "igg_g_l": 6.1, "cd19_per_ul": 12}]})


def _without_consent() -> str:
    """EX-0001 (IV immunoglobulin, vaccines) without the consent, so consent is a step."""
    document = json.loads(example("all-after-maintenance"))
    del document["consent"]
    return json.dumps(document)


def _first_ig_session(ref: str) -> str:
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=ref)
        plan = versions.latest_plan(session=session, patient=patient)
        assert plan is not None
        return next(i["key"] for i in plan.document["items"] if i["kind"] == "ig_session")


def _sweep_reads() -> Any:
    with db.session_scope() as session:
        return (
            sweep.read_due(session=session, on=TODAY),
            sweep.expected_runs(session=session, until=TODAY, after_plan_id=0, limit=100),
            unit_census(session=session, on=TODAY),
        )


def _steps(ref: str) -> dict[str, Callable[[], Any]]:
    """The pathway's store steps, in the order a child meets them."""
    return {
        "refer": lambda: service.refer(_without_consent(), unit=Unit(), actor="intake"),
        "propose": lambda: service.propose(
            ref,
            unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
            today=TODAY,
            reason="referral",
            actor="t",
        ),
        "approve": lambda: service.decide(ref, unit=Unit(), decision="approve", by="dr.approver"),
        "consent": lambda: service.consent(ref, unit=Unit(), by="family liaison"),
        "activate": lambda: service.activate(ref, unit=Unit(calendar=CALENDAR), actor="t"),
        "record run ids": lambda: service.record_run_ids(
            {(ref, 1, _first_ig_session(ref)): "00000000-0000-0000-0000-000000000001"}
        ),
        "item due": lambda: service.item_due(
            ref, plan_version=1, item_key=_first_ig_session(ref), actor="t"
        ),
        "item outcome": lambda: service.item_outcome(
            ref,
            unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
            plan_version=1,
            item_key=_first_ig_session(ref),
            outcome={"result": "given", "dose_g": 10.0, "lot": "LOT-7"},
            actor="nurse",
            on=TODAY,
        ),
        "treatment change": lambda: service.record_treatment_change(ref, RELAPSE, actor="dr.onc"),
        "lab result": lambda: service.record_lab_result(ref, LABS, actor="lab"),
        "re-plan": lambda: service.propose(
            ref,
            unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
            today=TODAY,
            reason="lab result",
            actor="t",
        ),
        "sweep reads": _sweep_reads,
    }


STEPS = list(_steps("EX-0001"))


@pytest.mark.parametrize("step", STEPS)
def test_a_step_repeated_leaves_the_store_as_the_first_call_left_it(
    database_url: str, step: str
) -> None:
    """Each step of the pathway run twice with the same arguments: the second writes nothing."""
    steps = _steps("EX-0001")
    for name, earlier in steps.items():
        if name == step:
            break
        earlier()
    steps[step]()
    after_first = store_snapshot(database_url)
    steps[step]()
    assert store_changes(after_first, store_snapshot(database_url)) == {}


def test_the_same_referral_twice_leaves_every_row_as_it_was(database_url: str) -> None:
    """The same referral again is a duplicate: no row added or touched (updated_at included)."""
    first = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake")
    before = store_snapshot(database_url)
    again = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert (again.ref, again.sha256) == (first.ref, first.sha256)
    assert store_changes(before, store_snapshot(database_url)) == {}


def _audited(action: str) -> int:
    with db.session_scope() as session:
        return len(session.exec(select(AuditEntry).where(AuditEntry.action == action)).all())


def test_the_same_treatment_change_twice_is_recorded_once(database_url: str) -> None:
    """A treatment change sent again reports nothing changed and is audited once."""
    ref = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake").ref
    first = service.record_treatment_change(ref, RELAPSE, actor="dr.onc")
    again = service.record_treatment_change(ref, RELAPSE, actor="dr.onc")
    assert [c["action"] for c in first] == ["added"]
    assert again == []
    assert _audited("treatment change") == 1


def test_the_same_lab_result_twice_is_recorded_once(database_url: str) -> None:
    """A lab report sent again adds no result row and no audit entry."""
    ref = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake").ref
    with db.session_scope() as session:
        labs_before = len(session.exec(select(Lab)).all())
    assert service.record_lab_result(ref, LABS, actor="lab") == 1
    assert service.record_lab_result(ref, LABS, actor="lab") == 0
    with db.session_scope() as session:
        assert len(session.exec(select(Lab)).all()) == labs_before + 1
    assert _audited("lab result") == 1


def test_the_sweeps_store_work_writes_nothing(database_url: str) -> None:
    """Reading what is due, what Prefect should hold and the census writes no row at all."""
    steps = _steps("EX-0001")
    for name in ("refer", "propose", "approve", "consent", "activate"):
        steps[name]()
    before = store_snapshot(database_url)
    _sweep_reads()
    _sweep_reads()
    assert store_changes(before, store_snapshot(database_url)) == {}
