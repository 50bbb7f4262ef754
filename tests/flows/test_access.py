"""Who may approve: the `approve` command and the Prefect form, both checked against the roster."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import pytest
from conftest import EXAMPLES
from prefect import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow
from prefect.flow_runs import aresume_flow_run
from prefect.input import RunInput
from pydantic import Field
from sqlmodel import col, select

from flows import approval, referral, runtime
from flows.deployments import register
from sidflows import service
from sidflows.store import db
from sidflows.store.models import AuditEntry
from sidflows.store.patients import get_patient
from sidflows.store.views import show_document
from sidflows.unit import Unit

TODAY = dt.date(2026, 11, 24)
SIDFLOWS = str(Path(sys.executable).parent / "sidflows")


def _proposed(sample: str = "all-after-maintenance.json") -> str:
    ref = service.refer((EXAMPLES / sample).read_bytes(), unit=Unit(), actor="test").ref
    protocol, calendar = runtime.protocol(), runtime.calendar()
    service.propose(
        ref,
        unit=Unit(protocol=protocol, calendar=calendar),
        today=TODAY,
        reason="referral",
        actor="test",
    )
    return ref


def _trail(ref: str) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        entries = session.exec(
            select(AuditEntry).where(AuditEntry.patient_ref == ref).order_by(col(AuditEntry.id))
        ).all()
    return [(e.actor, e.action) for e in entries]


def _plan(ref: str) -> dict[str, Any]:
    with db.session_scope() as session:
        document = show_document(session=session, patient=get_patient(session=session, ref=ref))
    assert document is not None
    return document


# ----------------------------------------------------------------------------- command line


def _sidflows(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in its own process, on the test's store, with no Prefect server set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(  # the tests check the exit code
        [SIDFLOWS, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


@pytest.mark.parametrize(
    ("command", "who", "message", "action"),
    [
        (
            "approve",
            "Nurse Test",
            "--by: 'Nurse Test' is not a clinician in the staff roster (",
            "approval refused",
        ),
        ("approve", "Dr Nobody", "--by: 'Dr Nobody' is not a clinician", "approval refused"),
        ("approve", "", "--by: empty: give your name as in the staff roster", "approval refused"),
        ("consent", "Uncle Bob", "--by: 'Uncle Bob' is not listed in the staff", "consent refused"),
    ],
    ids=["nurse approves", "stranger approves", "empty name", "stranger consents"],
)
def test_refused_on_the_command_line_exits_2_and_is_audited(
    store: str, command: str, who: str, message: str, action: str
) -> None:
    """`approve`/`consent --by` someone the roster does not allow: exit 2, one line, audited."""
    ref = _proposed("lupus-on-rituximab.json")
    done = _sidflows(command, ref, "--by", who)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"sidflows: invalid input: {message}")
    assert "config/staff.toml)" in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert _trail(ref)[-1] == (who or "(no name)", action)
    plan = _plan(ref)
    assert (plan["plan_status"], plan.get("approved_by")) == ("proposed", None)


def test_a_bad_roster_stops_the_command_with_exit_1(store: str, tmp_path: Path) -> None:
    """A roster that does not parse: exit 1 and one line naming the file and field."""
    ref = _proposed("lupus-on-rituximab.json")
    roster = tmp_path / "staff.toml"
    roster.write_text('[[staff]]\nname = "Dr A"\nroles = ["surgeon"]\n')
    env = {**os.environ, "SIDFLOWS_STAFF": str(roster)}
    done = subprocess.run(  # the test checks the exit code
        [SIDFLOWS, "approve", ref, "--by", "Dr A"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in env.items() if not k.startswith("PREFECT_API")},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"configuration: {roster}: staff[0].roles[0]: Input should be" in lines[0]


# ----------------------------------------------------------------------------- the Prefect form


def _suspended_pathway(ref: str) -> UUID:
    """The pathway as a deployment run, executed here as a worker would: it suspends."""
    register()
    run = run_deployment(
        runtime.PATHWAY_DEPLOYMENT,
        parameters={"ref": ref, "today": TODAY},
        tags=runtime.tags("pathway", ref),
        timeout=0,
        as_subflow=False,
    )
    assert isinstance(run, FlowRun)
    _execute(run.id)
    return run.id


def _execute(run_id: UUID) -> None:
    """Run (or re-run, once resumed) the pathway's deployment run in this process."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    parameters = {"ref": run.parameters["ref"], "today": TODAY}
    with contextlib.suppress(Pause):  # suspended: the run waits for its next answer
        asyncio.run(run_flow(referral.pathway, flow_run=run, parameters=parameters))  # type: ignore[arg-type]


def _state(run_id: UUID) -> StateType | None:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state_type


def _question(run_id: UUID, number: int) -> str:
    """The text above the form of the run's n-th question."""
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run_input(run_id, f"suspended-{number}-description")
    text = json.loads(stored)
    assert isinstance(text, str)
    return text


def _answer(run_id: UUID, answer: dict[str, Any]) -> None:
    asyncio.run(aresume_flow_run(run_id, run_input=answer))


@pytest.mark.prefect
def test_the_form_keeps_waiting_until_a_clinician_answers(prefect_server: str, store: str) -> None:
    """Form answers by a nurse, a blank name or with unknown items leave the run waiting, each
    refusal said on the next form and audited once; then a clinician's answer approves."""
    ref = _proposed()
    run_id = _suspended_pathway(ref)
    assert _state(run_id) == StateType.PAUSED
    assert "**The last answer was refused**" not in _question(run_id, 1)

    refused = [
        ({"decision": "approve", "approver": "Nurse Test"}, "approver: 'Nurse Test' is not a"),
        ({"decision": "reject", "approver": "   "}, "approver: empty: give your name"),
        (
            {"decision": "modify", "approver": "Dr Test", "remove_items": ["no_such:item"]},
            "remove_items: not in plan v1: no_such:item",
        ),
    ]
    for number, (answer, reason) in enumerate(refused, start=2):
        _answer(run_id, answer)
        _execute(run_id)
        assert _state(run_id) == StateType.PAUSED
        question = _question(run_id, number)
        assert question.startswith("**The last answer was refused**")
        assert reason in question
    assert _plan(ref)["plan_status"] == "proposed"
    assert [a for a in _trail(ref) if "refused" in a[1]] == [
        ("Nurse Test", "approval refused"),
        ("(no name)", "rejection refused"),
    ]

    _answer(run_id, {"decision": "approve", "approver": "dr test"})
    _execute(run_id)
    assert _state(run_id) == StateType.COMPLETED
    plan = _plan(ref)
    assert (plan["plan_status"], plan["approved_by"]) == ("active", "Dr Test")
    assert len([a for a in _trail(ref) if "refused" in a[1]]) == 2  # none replayed


@pytest.mark.prefect
@pytest.mark.parametrize(
    "answer",
    [{"decision": "approve"}, {"decision": "approve", "approver": ""}, {"approver": 7}],
    ids=["no approver", "empty approver", "approver not text"],
)
def test_a_malformed_form_answer_is_refused_and_the_run_keeps_waiting(
    prefect_server: str, store: str, answer: dict[str, Any]
) -> None:
    """An answer that does not fit the form is refused by the server with the reason; the run
    stays suspended on the same question."""
    ref = _proposed()
    run_id = _suspended_pathway(ref)
    with pytest.raises(RuntimeError, match=r"Cannot resume this run: Reason: .*approver"):
        _answer(run_id, answer)
    assert _state(run_id) == StateType.PAUSED
    assert _plan(ref)["plan_status"] == "proposed"


class _OlderPlanDecision(RunInput):
    """The form as an earlier release asked it: no length limit on the approver."""

    decision: Literal["approve", "modify", "reject"] = "approve"
    approver: str
    note: str | None = None
    remove_items: list[str] = Field(default_factory=list)


@pytest.mark.prefect
def test_an_answer_the_current_form_refuses_keeps_the_run_waiting(
    prefect_server: str, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run suspended under an older form, answered in a way the current one refuses after an
    upgrade, asks again saying which field is wrong (it does not fail)."""
    ref = _proposed()
    monkeypatch.setattr(approval, "PlanDecision", _OlderPlanDecision)
    run_id = _suspended_pathway(ref)
    monkeypatch.undo()
    _answer(run_id, {"approver": "Dr " + "x" * 300})
    _execute(run_id)
    assert _state(run_id) == StateType.PAUSED
    assert "(approver: String should have at most 200 characters)" in _question(run_id, 2)
    _answer(run_id, {"approver": "Dr Test"})
    _execute(run_id)
    assert _plan(ref)["approved_by"] == "Dr Test"
