"""No change is lost after its run was made: an intent whose run died is carried out again.

An intent is done once its run exists on the server (flows/intents.py), but the
run can still die before it has done its work: ``serve`` killed mid-run (Crashed
by the heartbeat automation), the store down during it (Failed), cancelled in the
UI, or lost with Prefect's database. Before the fix a re-plan that died so was
never run again: the child's treatment change stayed unplanned with nothing to
say so. Now serve's every-minute pass and the sweep read the runs of the intents
carried out in the last days and write a dead one's next attempt (``#2``, ``#3``);
after three the intent is marked failed and the pass says so.

On the session's real Prefect server; the dead states are set as Prefect's
services or an operator set them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Cancelled, Completed, Crashed, Failed
from processes import PREDNISOLONE_CHANGE
from sqlmodel import select
from test_recovery import children_on_active_plans
from test_stalled_streams import read_run, set_state

from flows import runtime
from flows.intents import acarry_out, arecover, carry_out_intents
from sidflows import service
from sidflows.service.worklist import worklist
from sidflows.store import db
from sidflows.store import intents as intents_store
from sidflows.store.models import Intent, IntentStatus
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
ONE = ("all-after-maintenance",)
CHANGE = PREDNISOLONE_CHANGE


def intents_of(ref: str, kind: str = "replan") -> list[Intent]:
    with db.session_scope() as session:
        rows = session.exec(
            select(Intent).where(Intent.ref == ref, Intent.kind == kind).order_by(Intent.id)  # type: ignore[arg-type]
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def delete(run_id: Any) -> None:
    with get_client(sync_client=True) as client:
        client.delete_flow_run(run_id)


def one_pass() -> dict[str, Any]:
    """serve's every-minute pass (the sweep runs the same task first)."""
    return asyncio.run(carry_out_intents())


def changed(ref: str) -> Intent:
    """The treatment change, stored with its re-plan intent, and the re-plan's run made
    (as the command does); the run is left scheduled (no serve in this test)."""
    service.record_treatment_change(ref, json.dumps(CHANGE), actor="t")
    carried = asyncio.run(acarry_out(ref=ref))
    assert carried.result("replan") is not None
    (intent,) = intents_of(ref)
    assert intent.status == IntentStatus.done
    assert intent.run_id
    return intent


DEATHS = {
    "crashed": lambda run_id: set_state(run_id, Crashed(message="serve was killed")),
    "failed": lambda run_id: set_state(run_id, Failed(message="the store did not answer")),
    "cancelled by hand": lambda run_id: set_state(run_id, Cancelled(message="cancelled in the UI")),
    "lost with Prefect's database": delete,
}


@pytest.mark.parametrize("death", list(DEATHS))
def test_a_replan_whose_run_died_is_run_again_once(
    prefect_server: str, store: str, death: str
) -> None:
    (ref,) = children_on_active_plans(f"DEADRP-{list(DEATHS).index(death)}", ONE)
    first = changed(ref)
    assert one_pass().get("runs_died") is None, "a scheduled run is left alone"
    assert [i.key for i in intents_of(ref)] == [first.key]

    DEATHS[death](first.run_id)
    summary = one_pass()
    assert summary["runs_died"] == 1
    assert summary["given_up"] == 0
    old, new = intents_of(ref)
    assert old.status == IntentStatus.replaced
    assert new.key == f"{first.key}#2"
    assert new.status == IntentStatus.done
    assert new.parameters == first.parameters
    fresh = read_run(new.run_id)
    assert fresh.state_type == StateType.SCHEDULED
    assert fresh.idempotency_key == new.key
    assert fresh.parameters["ref"] == ref
    assert fresh.name == f"replan-{ref}"

    assert one_pass().get("runs_died") is None, "the pass after it writes nothing"
    assert len(intents_of(ref)) == 2


def test_after_three_dead_runs_the_intent_is_given_up_and_said(
    prefect_server: str, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    (ref,) = children_on_active_plans("DEADRP-3X", ONE)
    first = changed(ref)
    for attempt in (2, 3):
        set_state(intents_of(ref)[-1].run_id, Crashed(message="serve was killed"))
        assert one_pass()["runs_died"] == 1
        assert intents_of(ref)[-1].key == f"{first.key}#{attempt}"
    set_state(intents_of(ref)[-1].run_id, Crashed(message="serve was killed"))
    summary = one_pass()
    assert (summary["runs_died"], summary["given_up"]) == (1, 1)
    statuses = [i.status for i in intents_of(ref)]
    assert statuses == [IntentStatus.replaced, IntentStatus.replaced, IntentStatus.failed]
    assert "crashed" in (intents_of(ref)[-1].last_error or "")
    assert "not tried again" in caplog.text
    assert one_pass().get("runs_died") is None, "said once"
    # The coordinators' worklist shows it among what is stuck, until a person acts.
    stuck = worklist(unit=Unit(), role="coordinator")["stuck"]["pending_intents"]["items"]
    assert [(i["ref"], i["kind"], i["status"]) for i in stuck if i["ref"] == ref] == [
        (ref, "replan", "failed")
    ]


def test_a_completed_run_and_a_pathway_that_did_its_work_are_not_run_again(
    prefect_server: str, store: str
) -> None:
    (ref,) = children_on_active_plans("DEADRP-OK", ONE)
    first = changed(ref)
    set_state(first.run_id, Crashed(message="killed"))  # a run that died ...
    # ... and the pathway of a child already on an active plan, its run lost
    with db.session_scope() as session:
        session.add(
            Intent(
                key=f"pathway:{ref}:lost",
                kind="pathway",
                ref=ref,
                parameters={"ref": ref},
                status=IntentStatus.done,
                run_id="00000000-0000-0000-0000-000000000000",
                done_at=dt.datetime.now(dt.UTC),
            )
        )
    recovered = asyncio.run(arecover())
    assert recovered.again == [f"{first.key}#2"], "only the re-plan"
    lost = [i for i in intents_of(ref, "pathway") if i.key.endswith(":lost")]
    assert [i.status for i in lost] == [IntentStatus.done]

    asyncio.run(acarry_out(ref=ref))
    newest = intents_of(ref)[-1]
    set_state(newest.run_id, Completed())
    assert asyncio.run(arecover()).again == [], "a completed run did its work"
    # an old intent is not looked at: its window has passed
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4)
    set_state(newest.run_id, Crashed(message="long after"))
    assert asyncio.run(arecover(now=later)).again == []


def test_a_pathway_whose_answer_was_lost_is_done_with_the_run_it_made(
    prefect_server: str, store: str
) -> None:
    """A `refer` on a busy server: its run was made but the answer timed out, the intent
    stayed pending, and the run took the child out of `referred`. The next pass finds
    that run under the intent's key and names it (so a later death is seen); no second
    run is made."""
    (ref,) = children_on_active_plans("DEADRP-ANS", ONE)
    key = f"pathway:{ref}:answer-lost"
    made = asyncio.run(
        arun_deployment(
            runtime.PATHWAY_DEPLOYMENT,
            parameters={"ref": ref},
            idempotency_key=key,
            timeout=0,
            as_subflow=False,
        )
    )
    with db.session_scope() as session:
        session.add(
            Intent(key=key, kind="pathway", ref=ref, parameters={"ref": ref}, status="pending")
        )
    assert asyncio.run(acarry_out(ref=ref)).done == 2  # with the referral's own
    runs = {i.key: (i.status, i.run_id) for i in intents_of(ref, "pathway")}
    assert runs.pop(key) == (IntentStatus.done, str(made.id))
    # the referral's own pathway ran in this process (the test's setup): no run to name
    assert list(runs.values()) == [(IntentStatus.done, None)]
    with get_client(sync_client=True) as client:
        under_key = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])),
            sort=FlowRunSort.ID_DESC,
            limit=10,
        )
    assert [r.id for r in under_key] == [made.id]


def test_an_intent_whose_run_completed_is_not_read_again(prefect_server: str, store: str) -> None:
    """Each pass asks Prefect about the runs of the intents carried out in the last three
    days; one seen completed is settled and left out of the next passes' reads (at
    100,000 children that is thousands of runs a minute otherwise)."""
    (ref,) = children_on_active_plans("DEADRP-SET", ONE)
    first = changed(ref)

    def watched() -> set[str]:
        with db.session_scope() as session:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
            return {i.key for i in intents_store.carried_since(session=session, since=since)}

    assert first.key in watched()
    assert asyncio.run(arecover()).settled == 0, "a scheduled run is still watched"
    assert first.key in watched()
    set_state(first.run_id, Completed())
    assert asyncio.run(arecover()).settled == 1
    assert first.key not in watched()
    assert intents_of(ref)[-1].settled_at is not None
    assert intents_of(ref)[-1].status == IntentStatus.done, "still done: settled is a mark"
    set_state(first.run_id, Crashed(message="after its work"))  # not looked at any more
    assert asyncio.run(arecover()).again == []
