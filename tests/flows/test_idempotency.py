"""Idempotency on a real Prefect server: the same input twice has one effect.

The same referral twice is one child and one pathway run; approving twice on the
command line activates once; a sweep run twice on one day changes nothing; and
any flow run again with the same parameters leaves the store as the first run
left it (every row of every table, timestamps included) and Prefect's waiting
runs as they were.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, store_changes, store_snapshot
from prefect.client.schemas.objects import StateType
from test_pathway import approved_and_active, document, runs_of

from flows import orchestrator
from flows.cli import main
from flows.deployments import register
from flows.item import run_item
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from flows.sweep import run_sweep
from sidflows import service
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)
WAITING = (StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED)


@pytest.fixture(scope="module", autouse=True)
def deployments(prefect_server: str) -> None:
    """The deployments on the test server, as `sidflows serve` makes them (runs go into them;
    `refer` starts a run of the pathway deployment)."""
    register()


def referral(ref: str, name: str = "all-after-maintenance") -> str:
    """A sample referral under a ref of this test's own (the Prefect server is shared)."""
    doc = json.loads((EXAMPLES / f"{name}.json").read_text())
    doc["patient"]["ref"] = ref
    return json.dumps(doc)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line in-process; it must succeed. Returns what it printed."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def waiting_runs(ref: str) -> set[tuple[str, str | None, str]]:
    """The child's runs that have not run yet: (id, idempotency key, state)."""
    return {
        (str(r.id), r.idempotency_key, str(r.state_type))
        for r in runs_of(ref)
        if r.state_type in WAITING
    }


def active_child(ref: str) -> str:
    service.refer(referral(ref), unit=Unit(), actor="test")
    run_pathway(ref, today=TODAY)
    approved_and_active(ref)
    return ref


def test_the_same_referral_twice_starts_one_pathway_run(
    deployments: None, store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`refer` twice (a unit's server): one child, one referral, one pathway run, no new row."""
    path = tmp_path / "referral.json"
    path.write_text(referral("IDEM-REFER-1"))
    cli(capsys, "refer", str(path), "--today", TODAY.isoformat())
    before = store_snapshot(store)
    again = cli(capsys, "refer", str(path), "--today", TODAY.isoformat())
    assert "already stored" in again
    assert store_changes(before, store_snapshot(store)) == {}
    assert (len(before["patient"]), len(before["referral"])) == (1, 1)
    assert len(runs_of("IDEM-REFER-1", "step:pathway")) == 1


def test_the_same_referral_twice_runs_the_pathway_here_once(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`refer` twice with no unit server (the pathway runs in the process): one pathway run."""
    monkeypatch.setattr(orchestrator, "server_configured", lambda: False)
    path = tmp_path / "referral.json"
    path.write_text(referral("IDEM-REFER-2"))
    assert "awaiting approval" in cli(capsys, "refer", str(path), "--today", TODAY.isoformat())
    before = store_snapshot(store)
    again = cli(capsys, "refer", str(path), "--today", TODAY.isoformat())
    assert "no new run" in again
    assert store_changes(before, store_snapshot(store)) == {}
    assert len(runs_of("IDEM-REFER-2", "step:pathway")) == 1


def test_approving_twice_on_the_command_line_activates_once(
    prefect_server: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sidflows approve` twice: one activation, the same runs, and not a row more."""
    ref = "IDEM-APPROVE"
    service.refer(
        referral(ref), unit=Unit(), actor="test"
    )  # the family's consent is in the referral
    run_pathway(ref, today=TODAY)
    assert "activated" in cli(capsys, "approve", ref, "--by", "dr.one")
    before, runs = store_snapshot(store), waiting_runs(ref)
    again = cli(capsys, "approve", ref, "--by", "dr.two")
    assert "already active" in again
    assert store_changes(before, store_snapshot(store)) == {}
    assert waiting_runs(ref) == runs
    assert len(runs_of(ref, "step:activate")) == 1
    assert document(ref)["approved_by"] == "dr.one"


def test_the_sweep_twice_on_one_day_writes_nothing(prefect_server: str, store: str) -> None:
    """The sweep only reads the store; run again the same day it changes nothing in Prefect."""
    ref = active_child("IDEM-SWEEP")
    before = store_snapshot(store)
    first = run_sweep(TODAY)
    after_first, runs = store_snapshot(store), waiting_runs(ref)
    second = run_sweep(TODAY)
    assert store_changes(before, after_first) == {}  # not even the first sweep writes a row
    assert store_changes(after_first, store_snapshot(store)) == {}
    assert waiting_runs(ref) == runs
    assert (second["reconciliation"]["created"], second["reconciliation"]["cancelled"]) == (0, 0)
    read = ("day", "due", "overdue", "by_kind", "census")
    assert {k: second[k] for k in read} == {k: first[k] for k in read}


def _pathway(ref: str) -> Callable[[], Any]:
    service.refer(referral(ref), unit=Unit(), actor="test")
    return lambda: run_pathway(ref, today=TODAY)


def _activate(ref: str) -> Callable[[], Any]:
    service.refer(referral(ref), unit=Unit(), actor="test")
    run_pathway(ref, today=TODAY)
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    return lambda: run_activate(ref)


def _replan(ref: str) -> Callable[[], Any]:
    active_child(ref)
    change = {
        "date": TODAY.isoformat(),
        "treatments": [
            {"drug": "relapse induction", "class": "chemotherapy", "start": "2026-11-22"}
        ],
    }
    service.record_treatment_change(ref, json.dumps(change), actor="Dr Test")
    return lambda: run_replan(ref, "treatment change", TODAY)


def _first_ig_session(ref: str) -> dict[str, Any]:
    return next(i for i in document(ref)["items"] if i["kind"] == "ig_session")


def _item_due(ref: str) -> Callable[[], Any]:
    session = _first_ig_session(active_child(ref))
    return lambda: run_item(ref, 1, session["key"], "ig_session")


def _item_outcome(ref: str) -> Callable[[], Any]:
    session = _first_ig_session(active_child(ref))
    outcome = {"result": "given", "dose_g": session["dose_g"], "lot": "LOT-IDEM"}
    day = dt.date.fromisoformat(session["due"])
    return lambda: run_item(ref, 1, session["key"], "ig_session", outcome=outcome, today=day)


def _sweep(ref: str) -> Callable[[], Any]:
    active_child(ref)
    return lambda: run_sweep(TODAY)


RERUNS: dict[str, Callable[[str], Callable[[], Any]]] = {
    "pathway": _pathway,
    "activate": _activate,
    "replan": _replan,
    "item on its day": _item_due,
    "item with an outcome": _item_outcome,
    "sweep": _sweep,
}


@pytest.mark.parametrize("flow", list(RERUNS))
def test_a_flow_run_again_with_the_same_parameters_changes_nothing(
    prefect_server: str, store: str, flow: str
) -> None:
    """Each flow run again with the same parameters: the store and Prefect's waiting runs stay."""
    ref = f"IDEM-{flow.upper().replace(' ', '-')}"
    run = RERUNS[flow](ref)
    run()
    before, runs = store_snapshot(store), waiting_runs(ref)
    run()
    assert store_changes(before, store_snapshot(store)) == {}
    assert waiting_runs(ref) == runs
