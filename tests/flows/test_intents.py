"""Nothing the unit decides is lost on its way to Prefect: intents, carried out exactly once.

A referral, a treatment change or a result stores, in its own transaction, the
intent of what must follow in Prefect (a pathway run, a re-plan run). With the
Prefect server down the command says so and exits 0; once the server answers
the next pass (``sidflows sweep`` here, ``serve``'s every-minute pass in a unit)
carries each intent out as a run under the intent's key: one run per intent,
and a pass run again creates nothing more. Twenty referrals at once against a
SQLite-backed server: every child gets its one pathway run, none stranded.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from tests.flows.processes import BIN, PREDNISOLONE_CHANGE, Unit, running_unit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

CHANGE = PREDNISOLONE_CHANGE


def referral(unit: Unit, ref: str) -> Path:
    document = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    document["patient"]["ref"] = ref
    path = unit.tmp / f"referral-{ref}.json"
    path.write_text(json.dumps(document))
    return path


def intents(unit: Unit) -> list[tuple[str, str, str, str | None]]:
    """Every intent in the unit's store: (kind, ref, status, run id)."""
    with sqlite3.connect(unit.tmp / "store.db") as conn:
        rows = conn.execute("SELECT kind, ref, status, run_id FROM intent ORDER BY id").fetchall()
    return [tuple(row) for row in rows]


def live_pathways(unit: Unit, ref: str) -> list[dict[str, Any]]:
    """The child's pathway runs that are not dead (crashed, failed, cancelled)."""
    return [
        r
        for r in unit.runs(f"ref:{ref}", "step:pathway")
        if r["state"]["type"] not in ("CRASHED", "FAILED", "CANCELLED")
    ]


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def sweep(unit: Unit) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(ok(unit.cli("sweep", timeout=240)))
    return summary


def test_what_is_stored_while_the_server_is_down_reaches_it_once(tmp_path: Path) -> None:
    """Server down: refer and treatment-change say so honestly, exit 0; back up: one run each."""
    with running_unit(tmp_path) as unit:
        first = ok(unit.cli("refer", str(referral(unit, "INT-A"))))
        assert "INT-A: pathway run " in first, first
        unit.server.stop()

        (unit.tmp / "change.json").write_text(json.dumps(CHANGE))
        changed = unit.cli("treatment-change", "INT-A", str(unit.tmp / "change.json"))
        assert "INT-A: stored; the re-plan will run when the Prefect server answers" in ok(
            changed
        ), changed.stdout
        referred = ok(unit.cli("refer", str(referral(unit, "INT-B"))))
        assert "INT-B: referral stored" in referred
        assert "INT-B: stored; the pathway will start when the Prefect server answers" in referred
        assert "Traceback" not in changed.stderr + referred, changed.stderr
        pending = {(kind, ref) for kind, ref, status, _ in intents(unit) if status == "pending"}
        assert pending == {("replan", "INT-A"), ("pathway", "INT-B")}

        unit.server.start()  # the same home, database and port
        # serve's every-minute pass, once the intents' wait after the failure has run out.
        # INT-A's pathway run may have been under way when the server went: then it is
        # Crashed, and the pass carries its intent out again (replaced, then #2).
        wait_for(
            "the intents carried out by serve's pass",
            lambda: all(status in ("done", "replaced") for _, _, status, _ in intents(unit)),
            timeout=150,
            every=2,
            explain=lambda: f"{intents(unit)}\n{unit.timeline('ref:INT-A')}",
        )
        assert all(run for _, _, _, run in intents(unit))
        assert len(unit.runs("ref:INT-A", "step:replan")) == 1
        assert len(unit.runs("ref:INT-B", "step:pathway")) == 1
        pathways = unit.runs("ref:INT-A", "step:pathway")
        dead = [r for r in pathways if r["state"]["type"] in ("CRASHED", "FAILED", "CANCELLED")]
        assert len(pathways) - len(dead) == 1, unit.timeline("ref:INT-A")
        replaced = [i for i in intents(unit) if i[2] == "replaced"]
        assert len(replaced) == len(dead), "each dead run was carried out again, once"

        again = sweep(unit)  # a pass again: nothing more
        assert (again["intents"]["done"], again["intents"]["pending"]) == (0, 0)
        assert len(unit.runs("ref:INT-A", "step:replan")) == 1
        assert len(unit.runs("ref:INT-B", "step:pathway")) == 1


def test_twenty_referrals_at_once_each_get_one_pathway_run(tmp_path: Path) -> None:
    """20 parallel `sidflows refer` against a SQLite-backed server: one pathway run each."""
    refs = [f"PAR-{i:02d}" for i in range(20)]
    with running_unit(tmp_path) as unit:
        paths = [referral(unit, ref) for ref in refs]
        started = [
            subprocess.Popen(
                [str(BIN / "sidflows"), "refer", str(path)],
                env=unit.env,
                cwd=unit.tmp,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for path in paths
        ]
        for process in started:
            # 20 processes on 2 cores, each retrying Prefect's busy SQLite: slow, not wrong
            _, err = process.communicate(timeout=480)
            assert process.returncode == 0, err[-3000:]
        stored = {ref for _, ref, _, _ in intents(unit)}
        assert stored == set(refs)

        # Whatever a command could not start, serve's every-minute pass carries out; a run
        # the zombie automation marked Crashed (its heartbeats lost on two loaded cores) is
        # replaced by a later pass: wait for every child to have its one live run.
        def settled() -> bool:
            done = all(status in ("done", "replaced") for _, _, status, _ in intents(unit))
            return done and all(len(live_pathways(unit, ref)) == 1 for ref in refs)

        wait_for(
            "every intent carried out, one live pathway run each",
            settled,
            timeout=240,
            every=3,
            explain=lambda: str(intents(unit)),
        )
        # an intent done without its answer (a timeout) names the run Prefect made for it
        assert all(run for _, _, _, run in intents(unit)), intents(unit)
        for ref in refs:
            assert len(live_pathways(unit, ref)) == 1, unit.timeline(f"ref:{ref}")


def test_a_consent_stored_while_the_server_is_down_activates_the_plan_once(
    tmp_path: Path,
) -> None:
    """The family's consent written with its activate intent: the server down, `consent`
    says so and exits 0; back up, serve's pass activates the plan with one run."""
    with running_unit(tmp_path) as unit:
        path = referral(unit, "INT-C")
        document = json.loads(path.read_text())
        document.pop("consent", None)  # the family has not yet agreed to the cost
        path.write_text(json.dumps(document))
        ok(unit.cli("refer", str(path)))
        wait_for("the pathway waiting", lambda: unit.paused("INT-C"), 120, 0.5)
        ok(unit.cli("approve", "INT-C", "--by", "Dr Test"))
        wait_for(
            "the plan waiting for the family's consent",
            lambda: unit.peek("INT-C")["patient_state"] == "awaiting_consent",
            120,
            1,
        )
        assert [k for k, _, _, _ in intents(unit)].count("activate") == 0, "nothing to activate"
        unit.server.stop()

        consented = unit.cli("consent", "INT-C", "--by", "coordinator")
        said = ok(consented)
        assert "INT-C: stored; the activation will run when the Prefect server answers" in said
        assert "Traceback" not in consented.stderr, consented.stderr[-3000:]
        pending = [(k, r) for k, r, status, _ in intents(unit) if status == "pending"]
        assert pending == [("activate", "INT-C")]

        unit.server.start()
        wait_for(
            "the activation carried out by serve's pass",
            lambda: unit.peek("INT-C")["patient_state"] == "active",
            timeout=180,
            every=2,
        )
        wait_for(
            "the activate intent done",
            lambda: all(status == "done" for _, _, status, _ in intents(unit)),
            timeout=60,
            every=1,
        )
        assert len(unit.runs("ref:INT-C", "step:activate")) == 1
        sweep(unit)
        assert len(unit.runs("ref:INT-C", "step:activate")) == 1
        assert unit.show("INT-C")["patient_state"] == "active"
