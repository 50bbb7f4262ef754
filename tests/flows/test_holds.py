"""Safety holds on a real Prefect server: a live vaccine held while v2 waits (§4.8)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any
from uuid import UUID

import pendulum
import pytest
from conftest_rules import ago, lab, make_doc, treatment, vaccination
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow
from prefect.states import Scheduled
from sqlmodel import col, select

from flows import item as item_flow
from flows.artifacts import plan_markdown
from flows.deployments import register
from flows.item import run_item, wake_released
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from sidflows import service
from sidflows.store import db
from sidflows.store.models import AuditEntry, CarePlan, PlanItem
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)
MMR = "vaccine_dose:MMR:2"


@pytest.fixture(scope="module", autouse=True)
def deployments(prefect_server: str) -> None:
    register()


def refer_child(ref: str) -> str:
    doc = make_doc(
        ref=ref,
        category="immune_mediated",
        label="juvenile idiopathic arthritis",
        labs=[lab(ago(days=10), igg_g_l=9.0, cd19_per_ul=300, cd4_per_ul=900)],
        vaccinations=[vaccination("MMR", "2017-06-20"), vaccination("VAR", "2017-06-20")],
    )
    ref = service.refer(json.dumps(doc), unit=Unit(), actor="test").ref
    run_pathway(ref, today=TODAY)
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    service.consent(ref, unit=Unit(), by="coordinator")
    assert run_activate(ref) == "activated"
    return ref


def new_immunosuppressant(ref: str) -> None:
    change = {
        "date": TODAY.isoformat(),
        "treatments": [
            treatment("methotrexate", "antimetabolite", TODAY, None, dose_mg_per_kg_week=0.3)
        ],
    }
    service.record_treatment_change(ref, json.dumps(change), actor="Dr Test")
    assert run_replan(ref, "treatment change", TODAY).startswith("v2")


def run_of(ref: str, key: str) -> FlowRun:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"ref:{ref}", "step:item"])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )
    found = [r for r in runs if r.idempotency_key == key]
    assert len(found) == 1, [r.idempotency_key for r in runs]
    return found[0]


def execute_scheduled(run: FlowRun) -> None:
    """The item's own deployment run, executed here now (as a worker would on its day)."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=pendulum.now("UTC")), force=True)
        fresh = client.read_flow_run(run.id)
    with contextlib.suppress(Pause):  # suspended: the run waits for the answer
        asyncio.run(run_flow(item_flow.item, flow_run=fresh, parameters=fresh.parameters))  # type: ignore[arg-type]


def state_of(run_id: UUID) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def v1_item(ref: str, key: str) -> PlanItem:
    with db.session_scope() as session:
        return session.exec(
            select(PlanItem)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .where(CarePlan.version == 1, PlanItem.key == key)
        ).one()


def test_live_vaccine_held_while_v2_waits_then_cancelled(prefect_server: str, store: str) -> None:
    """Acceptance: a treatment change holds the scheduled MMR; approving v2 cancels it."""
    ref = refer_child("HOLD-E2E-1")
    run = run_of(ref, f"{ref}:v1:{MMR}")
    assert run.state_type == StateType.SCHEDULED
    new_immunosuppressant(ref)
    held = {h["key"]: h for h in service.held(ref)}
    assert MMR in held
    assert "methotrexate" in held[MMR]["reason"]
    markdown = plan_markdown({**service_document(ref), "held": service.held(ref)})
    assert "Held while plan v2 waits" in markdown
    assert "live vaccine blocked" in markdown
    # Its day: the run does not mark it due and shows no form; it waits, suspended on the hold.
    execute_scheduled(run)
    state = state_of(run.id)
    assert state.type == StateType.PAUSED
    assert str(state.state_details.pause_key).startswith("held-v2")
    assert not state.state_details.run_input_keyset  # no nurse's form
    item = v1_item(ref, MMR)
    assert item.status == "scheduled"
    assert item.hold_reason
    with db.session_scope() as session:
        actions = [
            a.action
            for a in session.exec(select(AuditEntry).where(AuditEntry.entity_id == item.id))
        ]
    assert "day came while held" in actions
    assert "due" not in actions
    # Run here, outside the deployment, it ends as held.
    assert run_item(ref, 1, MMR, "vaccine_dose", today=dt.date(2026, 12, 1)) == "held"
    assert wake_released(ref) == 0  # still held: nothing resumes
    # The clinician approves v2 (no live dose in it): the held dose and its run are cancelled.
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    assert run_activate(ref) == "activated"
    assert v1_item(ref, MMR).status == "cancelled"
    assert state_of(run.id).type == StateType.CANCELLED
    assert service.held(ref) == []


def test_rejecting_v2_resumes_the_held_run(prefect_server: str, store: str) -> None:
    """Rejected v2: the dose is released and its suspended run resumes (to ask the nurse)."""
    ref = refer_child("HOLD-E2E-2")
    run = run_of(ref, f"{ref}:v1:{MMR}")
    new_immunosuppressant(ref)
    execute_scheduled(run)
    assert state_of(run.id).type == StateType.PAUSED
    service.decide(ref, unit=Unit(), decision="reject", by="Dr Test", note="keep v1")
    assert v1_item(ref, MMR).hold_reason is None
    assert wake_released(ref) == 1
    assert state_of(run.id).type == StateType.SCHEDULED


def service_document(ref: str) -> dict[str, Any]:
    from sidflows.store.patients import get_patient
    from sidflows.store.views import show_document

    with db.session_scope() as session:
        document = show_document(session=session, patient=get_patient(session=session, ref=ref))
    assert document is not None
    return document
