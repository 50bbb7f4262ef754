"""End to end: `prefect server start` and `sidflows serve` as processes, driven by the CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES
from processes import BIN, PREDNISOLONE_CHANGE, Unit, running_unit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Unit]:
    """A Prefect server and `sidflows serve`, each its own process, on free loopback ports."""
    with running_unit(tmp_path) as started:
        yield started


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the caller checks the exit code
        [str(BIN / "sidflows"), *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=env["TMP"],
    )


def show(env: dict[str, str], ref: str) -> dict[str, Any]:
    done = cli(env, "show", ref, "--json")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_refer_approve_change_treatment_and_see_the_replan(running: Unit) -> None:
    """Refer, approve through the suspended run, change treatment: the trigger re-plans."""
    unit = running.env
    sample = EXAMPLES / "all-after-maintenance.json"
    referred = cli(unit, "refer", str(sample), "--today", "2026-11-24")
    assert referred.returncode == 0, referred.stderr
    wait_for("plan v1 proposed", lambda: running.peek("EX-0001").get("plan_status") == "proposed")
    assert show(unit, "EX-0001")["plan_status"] == "proposed"
    api = unit["PREFECT_API_URL"]

    def pathway_paused() -> bool:
        runs = httpx.post(
            f"{api}/flow_runs/filter",
            json={
                "flow_runs": {"tags": {"all_": ["ref:EX-0001", "step:pathway"]}},
                "sort": "ID_DESC",
                "limit": 5,
            },
            timeout=10,
        ).json()
        return any(r["state"]["type"] == "PAUSED" for r in runs)

    wait_for("the pathway run waiting for the clinician", pathway_paused)
    approved = cli(unit, "approve", "EX-0001", "--by", "Dr End-to-End")
    assert approved.returncode == 0, approved.stderr
    wait_for("plan v1 active", lambda: running.peek("EX-0001").get("plan_status") == "active")
    assert show(unit, "EX-0001")["plan_status"] == "active"
    again = cli(unit, "approve", "EX-0001", "--by", "Dr End-to-End")
    assert again.returncode == 0
    assert "already" in again.stdout
    change = Path(unit["TMP"]) / "change.json"
    change.write_text(json.dumps(PREDNISOLONE_CHANGE))
    changed = cli(unit, "treatment-change", "EX-0001", str(change))
    assert changed.returncode == 0, changed.stderr
    assert "re-plan requested" in changed.stdout
    replanned = wait_for(
        "the re-plan through the event trigger",
        lambda: running.peek("EX-0001").get("proposed_version") == 2,
        timeout=300,  # a replan run that died is run again by serve's next pass
        every=2,
        explain=lambda: running.timeline("ref:EX-0001"),
    )
    assert replanned
    assert show(unit, "EX-0001")["proposed_version"] == 2

    def replan_completed() -> bool:
        runs = httpx.post(
            f"{api}/flow_runs/filter",
            json={
                "flow_runs": {"name": {"any_": ["replan-EX-0001"]}},
                "sort": "ID_DESC",
                "limit": 20,
            },
            timeout=10,
        ).json()
        return any(r["state"]["type"] == "COMPLETED" for r in runs)

    wait_for(
        "the replan run completed",
        replan_completed,
        timeout=60,
        explain=lambda: running.timeline("ref:EX-0001"),
    )
    unknown = cli(unit, "show", "NOPE-1")
    assert unknown.returncode == 3
