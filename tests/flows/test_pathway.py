"""The pathway on a real Prefect server: referral, approval, items, re-plan, sweep."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from sqlmodel import select

from flows import projection
from flows.deployments import register
from flows.item import run_item
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from flows.sweep import run_sweep
from sidflows import service
from sidflows.store import db
from sidflows.store.models import IgDose, PlanItem, PlanStatus
from sidflows.store.patients import get_patient
from sidflows.store.versions import latest_plan
from sidflows.store.views import show_document
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module", autouse=True)
def deployments(prefect_server: str) -> None:
    """The deployments on the test server, as `sidflows serve` makes them (runs go into them)."""
    register()


def runs_of(ref: str, *tags: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"ref:{ref}", *tags])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )


def api(base: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST to the Prefect API directly (the sync client sends null sorts here)."""
    response = httpx.post(f"{base}{path}", json={"limit": 200, **body}, timeout=30)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def refer_sample(name: str) -> str:
    return service.refer((EXAMPLES / name).read_bytes(), unit=Unit(), actor="test").ref


def approved_and_active(ref: str) -> None:
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    service.consent(ref, unit=Unit(), by="coordinator")
    assert run_activate(ref) == "activated"


def document(ref: str) -> dict[str, Any]:
    with db.session_scope() as session:
        doc = show_document(session=session, patient=get_patient(session=session, ref=ref))
    assert doc is not None
    return doc


def test_referral_waits_for_a_clinician(prefect_server: str, store: str) -> None:
    """A referral proposes plan v1, publishes it as an artifact and waits for approval."""
    ref = refer_sample("all-after-maintenance.json")
    assert run_pathway(ref, today=TODAY) == "awaiting_approval"
    runs = runs_of(ref, "step:pathway")
    assert runs
    assert all(r.name == f"pathway-{ref}" for r in runs)
    keys = {a["key"] for a in api(prefect_server, "/artifacts/latest/filter", {"sort": "KEY_ASC"})}
    assert "plan-ex-0001" in keys
    assert "upcoming-ex-0001" in keys
    assert document(ref)["plan_status"] == "proposed"


def test_activation_schedules_one_run_per_stream_once(prefect_server: str, store: str) -> None:
    """Approving twice activates once; each stream's next item has exactly one scheduled run."""
    ref = refer_sample("lupus-on-rituximab.json")
    run_pathway(ref, today=TODAY)
    approved_and_active(ref)
    first = [r for r in runs_of(ref, "step:item") if r.state_type == StateType.SCHEDULED]
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    run_activate(ref)
    again = [r for r in runs_of(ref, "step:item") if r.state_type == StateType.SCHEDULED]
    assert {r.id for r in first} == {r.id for r in again}
    items = document(ref)["items"]
    next_due: dict[str, str] = {}
    for i in items:
        next_due[scheduling_stream(i)] = min(i["due"], next_due.get(scheduling_stream(i), i["due"]))
    # Only streams whose next item is due within the look-ahead (from today) have a run yet.
    reach = projection.lookahead(projection.reference_day())
    in_reach = {s for s, due in next_due.items() if dt.date.fromisoformat(due) <= reach}
    assert in_reach
    assert len(first) == len(in_reach)
    assert all(r.idempotency_key and r.idempotency_key.startswith(f"{ref}:v1:") for r in first)
    assert all(r.name.endswith(f"-{ref}") for r in first)


def scheduling_stream(item: dict[str, Any]) -> str:
    from sidflows.store.views import stream_of

    return stream_of(item)


def test_item_outcome_is_recorded_and_the_next_occurrence_scheduled(
    prefect_server: str, store: str
) -> None:
    """An IG session given records the dose and schedules the next session of the stream."""
    ref = refer_sample("all-after-maintenance.json")
    run_pathway(ref, today=TODAY)
    approved_and_active(ref)
    doc = document(ref)
    sessions = [i for i in doc["items"] if i["kind"] == "ig_session"]
    first, second = sessions[0], sessions[1]
    day = dt.date.fromisoformat(first["due"])
    outcome = {"result": "given", "dose_g": first["dose_g"], "lot": "LOT-1"}
    status = run_item(ref, 1, first["key"], "ig_session", outcome=outcome, today=day)
    assert status == "done"
    keys = {r.idempotency_key for r in runs_of(ref, "kind:ig_session")}
    assert f"{ref}:v1:{second['key']}" in keys
    with db.session_scope() as session:
        doses = session.exec(select(IgDose).where(IgDose.lot == "LOT-1")).all()
    assert [(d.date, d.grams) for d in doses] == [(day, first["dose_g"])]
    # The same outcome again changes nothing.
    again = run_item(ref, 1, first["key"], "ig_session", outcome=outcome, today=day)
    assert again == "done"
    with db.session_scope() as session:
        assert len(session.exec(select(IgDose).where(IgDose.lot == "LOT-1")).all()) == 1


def test_treatment_change_replans_and_cancels_the_old_runs(prefect_server: str, store: str) -> None:
    """A treatment change proposes v2; once active, v1's waiting runs are cancelled."""
    ref = refer_sample("lupus-on-rituximab.json")
    run_pathway(ref, today=TODAY)
    approved_and_active(ref)
    change = {
        "date": "2026-11-24",
        "treatments": [
            {
                "drug": "mycophenolate",
                "class": "antimetabolite",
                "start": "2026-03-01",
                "end": "2026-11-24",
            }
        ],
    }
    service.record_treatment_change(ref, json.dumps(change), actor="Dr Test")
    assert run_replan(ref, "treatment change", TODAY).startswith("v2")
    approved_and_active(ref)
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=ref)
        assert latest_plan(session=session, patient=patient, status=PlanStatus.active).version == 2  # type: ignore[union-attr]
    runs = runs_of(ref, "step:item")
    v1 = [r for r in runs if "plan:v1" in r.tags]
    v2 = [r for r in runs if "plan:v2" in r.tags]
    assert v1
    assert all(r.state_type == StateType.CANCELLED for r in v1)
    assert v2
    assert all(r.state_type == StateType.SCHEDULED for r in v2)


def test_sweep_reconciles_prefect_with_the_store(prefect_server: str, store: str) -> None:
    """A deleted scheduled run is recreated; a run with no open item is cancelled."""
    ref = refer_sample("after-autologous-transplant.json")
    run_pathway(ref, today=TODAY)
    approved_and_active(ref)
    scheduled = [r for r in runs_of(ref, "step:item") if r.state_type == StateType.SCHEDULED]
    lost = scheduled[0]
    with get_client(sync_client=True) as client:
        client.delete_flow_run(lost.id)
    orphan = service.RunSpec(ref, 99, "vaccine_dose:XYZ:1", "vaccine_dose", TODAY)
    projection.schedule_runs([orphan])
    summary = run_sweep(TODAY)
    assert summary["reconciliation"]["created"] >= 1
    assert summary["reconciliation"]["cancelled"] >= 1
    keys = {r.idempotency_key: r for r in runs_of(ref, "step:item")}
    assert keys[lost.idempotency_key].state_type == StateType.SCHEDULED
    assert keys[f"{ref}:v99:vaccine_dose:XYZ:1"].state_type == StateType.CANCELLED
    # A second sweep on the same day changes nothing.
    second = run_sweep(TODAY)
    assert second["reconciliation"]["created"] == 0
    assert second["reconciliation"]["cancelled"] == 0
    assert second["due"] == summary["due"]  # the sweep reads; running it twice changes nothing
    with db.session_scope() as session:
        assert session.exec(select(PlanItem)).first() is not None


def test_sweep_activates_a_plan_approved_but_left_inactive(prefect_server: str, store: str) -> None:
    """An approval whose activation died: the sweep activates it once and schedules its runs."""
    sample = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())  # consent given
    sample["patient"]["ref"] = "EX-LEFT-1"  # keys of its own on the session's server
    ref = service.refer(json.dumps(sample), unit=Unit(), actor="test").ref
    run_pathway(ref, today=TODAY)
    service.decide(
        ref, unit=Unit(), decision="approve", by="Dr Test"
    )  # the run that would activate dies
    summary = run_sweep(TODAY)
    assert summary["activations_finished"] == 1
    assert document(ref)["plan_status"] == "active"
    scheduled = [r for r in runs_of(ref, "step:item") if r.state_type == StateType.SCHEDULED]
    assert len(scheduled) == summary["reconciliation"]["expected"]
    assert run_sweep(TODAY)["activations_finished"] == 0
