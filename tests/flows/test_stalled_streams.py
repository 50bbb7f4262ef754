"""No stream stalls: an item run that ended without recording its item is replaced, once.

An item's run is keyed by ``ref:vN:item`` and Prefect returns the run already
made under a key. A run that crashed, was killed and then marked Crashed by the
heartbeat automation, was cancelled by hand, or timed out waiting for the
nurse's outcome (Prefect fails a suspended run whose timeout passed) still
holds that key. Before the fix every sweep reported ``created: 1`` for it and
created nothing, and the item never had a run again. Now the next sweep makes
a fresh run under the next attempt's key (``#2``, ``#3``), reports what it
really did, and tells the coordinators once; a second sweep changes nothing.

On the session's real Prefect server, the dead states reached as they are in
a unit: the states an operator or Prefect's own services set (the timeout by
the server's pause-expiration service itself).
"""

from __future__ import annotations

from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelled, Crashed, Failed, Running, Suspended
from sqlmodel import select
from test_recovery import TODAY, children_on_active_plans, expected_keys, waiting_item_runs

from flows import runtime
from flows.sweep import run_sweep
from sidflows import service
from sidflows.store import db
from sidflows.store.models import ItemStatus, Notification, PlanItem

pytestmark = pytest.mark.prefect
ONE = ("all-after-maintenance",)  # one child on IV IG: every kind of item, fewer runs


def read_run(run_id: Any) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def set_state(run_id: Any, state: Any) -> None:
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, state, force=True)


def under_way(refs: list[str]) -> FlowRun:
    """One child's first item run, on its day: the item is due in the store (as the run
    marks it) and the run is suspended for the nurse's outcome."""
    run = sorted(
        (r for r in waiting_item_runs() if r.parameters["ref"] in refs),
        key=lambda r: str(r.idempotency_key),
    )[0]
    p = run.parameters
    service.item_due(p["ref"], plan_version=p["plan_version"], item_key=p["item_key"], actor="t")
    set_state(run.id, Suspended(timeout_seconds=3600))
    return run


def item_of(run: FlowRun) -> PlanItem:
    with db.session_scope() as session:
        return session.exec(
            select(PlanItem).where(
                PlanItem.key == run.parameters["item_key"],
                PlanItem.flow_run_id.is_not(None),  # type: ignore[union-attr]
            )
        ).one()


def replaced_notices() -> list[Notification]:
    with db.session_scope() as session:
        return list(
            session.exec(select(Notification).where(Notification.event == "item_run_replaced"))
        )


def waiting_for(key: str) -> list[FlowRun]:
    return [r for r in waiting_item_runs() if runtime.item_of_key(str(r.idempotency_key))[0] == key]


def fail_by_timeout(run: FlowRun) -> None:
    """The nurse never answered: Prefect fails the suspended run, as its server's
    pause-expiration service does (the session's test server runs no services; the
    process tests in test_zombies.py have the real one)."""
    set_state(run.id, Failed(message="The flow was paused and never resumed."))


DEATHS = {
    "crashed": lambda run: set_state(run.id, Crashed(message="process died")),
    "cancelled by hand": lambda run: set_state(run.id, Cancelled(message="cancelled in the UI")),
    "timed out waiting for the outcome": fail_by_timeout,
}


@pytest.mark.parametrize("death", list(DEATHS))
def test_a_dead_item_run_is_replaced_once_and_the_coordinators_told(
    prefect_server: str, store: str, death: str
) -> None:
    refs = children_on_active_plans(f"STALL-{list(DEATHS).index(death)}", ONE)
    assert run_sweep(TODAY)["reconciliation"]["created"] == 0
    run = under_way(refs)
    key = str(run.idempotency_key)
    DEATHS[death](run)
    assert read_run(run.id).state_type in (StateType.CRASHED, StateType.CANCELLED, StateType.FAILED)
    assert waiting_for(key) == [], "the dead run holds the key and waits for nothing"

    summary = run_sweep(TODAY)["reconciliation"]
    assert (summary["created"], summary["replaced"], summary["cancelled"]) == (1, 1, 0)
    fresh = waiting_for(key)
    assert [r.idempotency_key for r in fresh] == [f"{key}#2"]
    assert fresh[0].parameters == run.parameters
    assert item_of(run).flow_run_id == str(fresh[0].id), "the store knows the new run"
    assert item_of(run).status == ItemStatus.due, "the item is still due, nothing recorded"
    told = replaced_notices()
    assert [n.route for n in told] == ["coordinators"]
    assert run.parameters["ref"] in told[0].subject
    mine = [str(r.idempotency_key) for r in waiting_item_runs() if r.parameters["ref"] in refs]
    assert {runtime.item_of_key(k)[0] for k in mine} == {
        k for k in expected_keys() if k.split(":v")[0] in refs
    }, "every open item next in its stream has its run, the replaced one included"

    again = run_sweep(TODAY)["reconciliation"]
    assert (again["created"], again["replaced"], again["cancelled"]) == (0, 0, 0)
    assert len(waiting_for(key)) == 1
    assert len(replaced_notices()) == 1, "the coordinators are told once"

    # The second attempt dies too: the third replaces it, and they are told again.
    set_state(fresh[0].id, Crashed(message="process died again"))
    third = run_sweep(TODAY)["reconciliation"]
    assert (third["created"], third["replaced"]) == (1, 1)
    assert [r.idempotency_key for r in waiting_for(key)] == [f"{key}#3"]
    assert len(replaced_notices()) == 2


def test_a_running_run_is_left_alone_until_it_is_marked_crashed(
    prefect_server: str, store: str
) -> None:
    """Killed between its start and its suspension, a run stays Running: the sweep says so
    (``running: 1``, not ``created: 1``) and makes no second run beside a live one; once
    the heartbeat automation marks it Crashed, the next sweep replaces it."""
    refs = children_on_active_plans("STALL-RUN", ONE)
    run_sweep(TODAY)
    run = under_way(refs)
    key = str(run.idempotency_key)
    set_state(run.id, Running())
    summary = run_sweep(TODAY)["reconciliation"]
    assert (summary["created"], summary["running"], summary["replaced"]) == (0, 1, 0)
    assert waiting_for(key) == []
    assert replaced_notices() == []

    set_state(run.id, Crashed(message="no heartbeat for 180 s: its process died"))
    summary = run_sweep(TODAY)["reconciliation"]
    assert (summary["created"], summary["running"], summary["replaced"]) == (1, 0, 1)
    assert [r.idempotency_key for r in waiting_for(key)] == [f"{key}#2"]


def test_a_completed_run_is_not_replaced(prefect_server: str, store: str) -> None:
    """A run that completed recorded its item (or found it superseded): the store no longer
    expects a run for it, and nothing is replaced even if the sweep read it a moment before."""
    refs = children_on_active_plans("STALL-DONE", ONE)
    run_sweep(TODAY)
    run = under_way(refs)
    p = run.parameters
    service.item_outcome(
        p["ref"],
        unit=runtime.unit(),
        plan_version=p["plan_version"],
        item_key=p["item_key"],
        outcome={"result": "given"},
        actor="t",
        on=TODAY,
    )
    set_state(run.id, Running())
    set_state(run.id, Crashed(message="its process died after the outcome was recorded"))
    summary = run_sweep(TODAY)["reconciliation"]
    assert summary["replaced"] == 0
    assert waiting_for(str(run.idempotency_key)) == []
    assert replaced_notices() == []
