"""`sidflows record` on the session's real Prefect server: a suspended item run resumed with
the outcome, or, when none waits, the outcome recorded here and the next run scheduled;
once either way (docs/formats.md §13)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any

import pendulum
import pytest
from conftest import EXAMPLES, store_snapshot
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow
from prefect.states import Scheduled
from sqlmodel import col, select

from flows import item as item_flow
from flows import projection
from flows.cli import main
from flows.deployments import register
from flows.orchestrator import InProcess
from flows.referral import run_activate, run_pathway
from sidflows import service
from sidflows.service.items import outcome_target
from sidflows.store import db
from sidflows.store.models import AuditEntry, IgDose, Lab, PlanItem
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)
SESSION, NEXT_SESSION = "ig_session:2026-12-01", "ig_session:2026-12-29"


@pytest.fixture(scope="module", autouse=True)
def deployments(prefect_server: str) -> None:
    register()


def active_child(ref: str) -> str:
    """EX-0001 (IV immunoglobulin, consent given) under ``ref``: plan v1 active, runs scheduled."""
    sample = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    sample["patient"]["ref"] = ref
    ref = service.refer(json.dumps(sample), unit=Unit(), actor="test").ref
    run_pathway(ref, today=TODAY)
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    assert run_activate(ref) == "activated"
    return ref


def runs_of(ref: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"ref:{ref}", "step:item"])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )


def run_for(ref: str, key: str) -> FlowRun:
    found = [r for r in runs_of(ref) if r.idempotency_key == f"{ref}:v1:{key}"]
    assert len(found) == 1, [r.idempotency_key for r in runs_of(ref)]
    return found[0]


def read(run_id: Any) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def execute(run: FlowRun, *, now: bool = True) -> Any:
    """The deployment run executed here, as a worker would (on its day, or resumed)."""
    if now:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                run.id, Scheduled(scheduled_time=pendulum.now("UTC")), force=True
            )
    fresh = read(run.id)
    with contextlib.suppress(Pause):  # suspended: the run waits for the nurse's form
        return asyncio.run(run_flow(item_flow.item, flow_run=fresh, parameters=fresh.parameters))  # type: ignore[arg-type]
    return None


def record(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["record", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def audited(ref: str, key: str) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        item = session.exec(select(PlanItem).where(PlanItem.key == key)).one()
        return [
            (a.action, a.actor)
            for a in session.exec(
                select(AuditEntry)
                .where(AuditEntry.entity == "item", AuditEntry.entity_id == item.id)
                .order_by(col(AuditEntry.id))
            )
        ]


def states(ref: str) -> dict[str | None, tuple[StateType | None, str | None]]:
    return {r.idempotency_key: (r.state_type, r.state_name) for r in runs_of(ref)}


def test_record_resumes_the_suspended_run_once(
    prefect_server: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session's run waits on the nurse's form; `record` resumes it with the outcome, the
    run records it and completes; the same call again (while it runs, and after) changes nothing."""
    ref = active_child("REC-RUN-1")
    run = run_for(ref, SESSION)
    execute(run)
    paused = read(run.id)
    assert paused.state_type == StateType.PAUSED
    assert paused.state is not None
    assert paused.state.state_details.run_input_keyset
    argv = [ref, SESSION, "given", "--dose-g", "11", "--lot", "LOT-R1", "--by", "nurse test"]

    said = record(capsys, *argv)
    assert f"{ref}: {SESSION} given by Nurse Test: sent to its waiting Prefect run {run.id}" in said
    assert read(run.id).state_name == "Resuming"
    # Again before the run has recorded it: it has the outcome already; nothing is sent twice.
    assert "already recorded: its Prefect run" in record(capsys, *argv)
    assert audited(ref, SESSION)[-1] == ("due", "sidflows")

    assert execute(run, now=False) == "done"  # the worker runs the resumed run
    assert read(run.id).state_type == StateType.COMPLETED
    with db.session_scope() as session:
        doses = session.exec(select(IgDose).where(IgDose.lot == "LOT-R1")).all()
        assert [(d.grams, d.lot) for d in doses] == [(11.0, "LOT-R1")]
    assert ("done", "Nurse Test") in audited(ref, SESSION)
    assert run_for(ref, NEXT_SESSION).state_type == StateType.SCHEDULED

    before, runs = store_snapshot(store), states(ref)
    again = record(capsys, *argv)
    assert again.startswith(f"{ref}: {SESSION} already recorded as done by Nurse Test on ")
    assert again.endswith("(nothing changed)\n")
    assert store_snapshot(store) == before
    assert states(ref) == runs
    # Another outcome for it is refused: the item keeps its first.
    assert main(["record", ref, SESSION, "given", "--dose-g", "12", "--by", "Nurse Test"]) == 2
    assert "an item keeps its first outcome" in capsys.readouterr().err
    assert store_snapshot(store) == before


def test_record_with_no_run_waiting_records_here_and_schedules_the_next(
    prefect_server: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No run waits on the form (the item's run is scheduled for its day): the item flow
    records it here, the stream's next run is scheduled and the early run cancelled; once."""
    ref = active_child("REC-RUN-2")
    early = run_for(ref, SESSION)
    assert early.state_type == StateType.SCHEDULED
    argv = [ref, SESSION, "given", "--lot", "LOT-R2", "--by", "Dr Test", "--date", "2026-12-01"]

    said = record(capsys, *argv)
    assert said.startswith(
        f"{ref}: {SESSION} given by Dr Test: recorded here by the item flow (done)"
    )
    assert f"its run {early.id} cancelled" in said
    assert read(early.id).state_type == StateType.CANCELLED
    with db.session_scope() as session:
        doses = session.exec(select(IgDose).where(IgDose.lot == "LOT-R2")).all()
        assert [(d.date, d.grams) for d in doses] == [(dt.date(2026, 12, 1), 11.0)]  # planned
    assert ("done", "Dr Test") in audited(ref, SESSION)
    assert run_for(ref, NEXT_SESSION).state_type == StateType.SCHEDULED

    before, runs = store_snapshot(store), states(ref)
    assert "already recorded as done by Dr Test" in record(capsys, *argv)
    assert store_snapshot(store) == before
    assert states(ref) == runs


def test_results_from_a_run_suspended_on_the_older_form(
    prefect_server: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run suspended before the typed fields (its form a free `values` dict, no name): the
    outcome is recorded here with who recorded it, and the old run resumed to end."""
    with projection.simulating(TODAY + dt.timedelta(days=366)):  # the trough's run made too
        ref = active_child("REC-RUN-3")
    trough = next(k for k in keys(ref) if k.startswith("ig_trough:"))
    run = run_for(ref, trough)
    execute(run)
    older = read(run.id)
    assert older.state is not None
    keyset = older.state.state_details.run_input_keyset
    assert keyset
    older_schema = {
        "title": "ItemOutcome",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "result": {"type": "string"},
            "dose_g": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "lot": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "values": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    }
    with get_client(sync_client=True) as client:  # the form as a run suspended before saved it
        client.delete_flow_run_input(run.id, keyset["schema"])
        client.create_flow_run_input(run.id, keyset["schema"], json.dumps(older_schema))

    said = record(capsys, ref, trough, "done", "--value", "IgG=8.2", "--by", "Nurse Test")
    assert "recorded here by the item flow (done)" in said
    assert f"its run {run.id} (an older form) resumes and ends" in said
    assert execute(run, now=False) == "done"
    assert read(run.id).state_type == StateType.COMPLETED
    with db.session_scope() as session:
        labs = session.exec(select(Lab).where(col(Lab.item_id).is_not(None))).all()
        assert [lab.values for lab in labs] == [{"igg_g_l": 8.2}]
    assert [a for a in audited(ref, trough) if a[0] == "done"] == [("done", "Nurse Test")]


def test_in_process_executes_the_scheduled_run_with_the_outcome(
    prefect_server: str, store: str
) -> None:
    """Without a unit's server (InProcess) the item's scheduled run runs here with it."""
    ref = active_child("REC-RUN-4")
    run = run_for(ref, SESSION)
    outcome = {"result": "missed", "dose_g": None, "lot": None, "values": {}}
    target = outcome_target(ref, item_key=SESSION, outcome=outcome, on=TODAY, unit=Unit())
    said = InProcess().record_outcome(target, outcome, by="coordinator", on=None)
    assert said == f"recorded here by its run {run.id} (missed)"
    assert read(run.id).state_type == StateType.COMPLETED
    assert ("missed", "coordinator") in audited(ref, SESSION)


def keys(ref: str) -> list[str]:
    with db.session_scope() as session:
        return [i.key for i in session.exec(select(PlanItem).order_by(col(PlanItem.due)))]
