"""Out of one process: a Prefect server on PostgreSQL, the process work pool, a worker.

What config/prefect.yaml sets up for a network (``prefect work-pool create``, the
deployments in the pool, ``prefect worker start`` on each worker machine), with
the store on PostgreSQL too: the pathway, an item run and a re-plan run as the
worker's subprocesses, and the store holds what they did.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES
from processes import BIN, PrefectServer, Unit, postgres_database, wait_for
from sqlalchemy import make_url

from flows import runtime
from flows.deployments import WORK_POOL, prefect_server_settings

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

ROOT = Path(__file__).resolve().parents[2]
YAML = ROOT / "config" / "prefect.yaml"
REF = "EX-0001"
DEPLOY = "from flows.deployments import deploy_to_work_pool; deploy_to_work_pool()"
FAST_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}


class Worker:
    """`prefect worker start --pool sidflows` in a session of its own, stopped afterwards."""

    def __init__(self, unit: Unit, name: str) -> None:
        self.unit, self.name = unit, name
        self.log_path = unit.tmp / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", WORK_POOL, "--name", self.name],
                env={**self.unit.env, **FAST_WORKER},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.unit.tmp,
                start_new_session=True,
            )
        wait_for("the worker online", self.online, every=0.5)

    def online(self) -> bool:
        workers = self.unit.post(f"/work_pools/{WORK_POOL}/workers/filter", {"limit": 10})
        return any(w["name"] == self.name and w["status"] == "ONLINE" for w in workers)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=30)


@contextmanager
def pooled_unit(tmp: Path) -> Iterator[tuple[Unit, Worker]]:
    """Server and store on PostgreSQL, the work pool, the deployments in it, one worker."""
    with postgres_database() as prefect_db, postgres_database() as store_db:
        asyncpg = make_url(prefect_db).set(drivername="postgresql+asyncpg")
        server = PrefectServer(
            tmp,
            database_url=asyncpg.render_as_string(hide_password=False),
            settings=prefect_server_settings(),  # the unit's retention (config/prefect-server.env)
        )
        unit = Unit(tmp, server, {"SIDFLOWS_DATABASE_URL": store_db, "SIDFLOWS_HOME": str(ROOT)})
        worker = Worker(unit, "worker-1")
        try:
            server.start()
            unit.upgrade_store()
            for command in (
                [str(BIN / "prefect"), "work-pool", "create", WORK_POOL, "--type", "process"],
                [str(BIN / "python"), "-c", DEPLOY],
            ):
                done = subprocess.run(
                    command, env=unit.env, cwd=ROOT, capture_output=True, text=True, check=False
                )
                assert done.returncode == 0, done.stdout + done.stderr
            worker.start()
            yield unit, worker
        finally:
            worker.stop()
            unit.stop()
            server.stop()


def runs(unit: Unit, flow: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = unit.post(
        "/flow_runs/filter",
        {
            "flows": {"name": {"any_": [flow]}},
            "flow_runs": {"tags": {"all_": [f"ref:{REF}"]}},
            "sort": "ID_DESC",
            "limit": 50,
        },
    )
    return found


def by_the_worker(run: dict[str, Any]) -> bool:
    """A run of the pool that the worker started (a worker sets its process id)."""
    return run["work_pool_name"] == WORK_POOL and bool(run.get("infrastructure_pid"))


def test_a_worker_runs_the_pathway_an_item_and_a_replan(tmp_path: Path) -> None:
    with pooled_unit(tmp_path) as (unit, worker):
        yaml_says = {d["name"]: d for d in yaml.safe_load(YAML.read_text())["deployments"]}
        deployed = {d["name"]: d for d in unit.post("/deployments/filter", {})}
        assert set(deployed) == set(yaml_says)
        pull = yaml.safe_load(YAML.read_text())["pull"]
        for name, d in deployed.items():
            assert d["work_pool_name"] == yaml_says[name]["work_pool"]["name"] == WORK_POOL
            assert d["job_variables"] == yaml_says[name]["work_pool"]["job_variables"]
            assert d["entrypoint"] == yaml_says[name]["entrypoint"]
            assert d["pull_steps"] == pull
        # Referred ten days ago: the first items' days have come, so their runs start at once.
        referred_on = runtime.calendar().today() - dt.timedelta(days=10)
        sample = EXAMPLES / "all-after-maintenance.json"
        done = unit.cli("refer", str(sample), "--today", referred_on.isoformat())
        assert done.returncode == 0, done.stderr
        wait_for("the pathway waiting for the clinician", lambda: unit.paused(REF))
        done = unit.cli("approve", REF, "--by", "Dr Test")
        assert done.returncode == 0, done.stderr
        wait_for("plan v1 active", lambda: unit.peek(REF).get("plan_status") == "active")
        pathway = wait_for(
            "the pathway completed",
            lambda: [r for r in runs(unit, "pathway") if r["state_type"] == "COMPLETED"],
        )
        assert by_the_worker(pathway[0])

        # An item run: the worker starts it on its day; it marks the item due and waits.
        def waiting_vaccine() -> dict[str, Any] | None:
            for run in runs(unit, "item"):
                if run["parameters"]["kind"] == "vaccine_dose" and run["state_type"] == "PAUSED":
                    return run
            return None

        run = wait_for("a vaccine's item run waiting for its outcome", waiting_vaccine)
        key = run["parameters"]["item_key"]
        statuses = {i["key"]: i["status"] for i in unit.show(REF)["items"]}
        assert statuses[key] == "due"
        done = unit.cli("record", REF, key, "given", "--lot", "LOT-W1", "--by", "Dr Test")
        assert done.returncode == 0, done.stderr
        finished = wait_for(
            "the item run completed",
            lambda: unit.get(f"/flow_runs/{run['id']}")["state_type"] == "COMPLETED" or None,
        )
        assert finished
        assert by_the_worker(unit.get(f"/flow_runs/{run['id']}"))
        statuses = {i["key"]: i["status"] for i in unit.show(REF)["items"]}
        assert statuses[key] == "done"

        # A re-plan: a treatment change's event reaches the trigger, the worker runs it.
        change = tmp_path / "change.json"
        start = runtime.calendar().today().isoformat()
        treatment = {"drug": "prednisolone", "class": "corticosteroid", "start": start}
        change.write_text(
            json.dumps({"date": start, "treatments": [{**treatment, "dose_mg_day": 40}]})
        )
        done = unit.cli("treatment-change", REF, str(change))
        assert done.returncode == 0, done.stderr
        wait_for("plan v2 proposed", lambda: unit.peek(REF).get("proposed_version") == 2)
        replan = wait_for(
            "the re-plan completed",
            lambda: [r for r in runs(unit, "replan") if r["state_type"] == "COMPLETED"],
        )
        assert by_the_worker(replan[0])
        assert "Traceback" not in worker.log_path.read_text(errors="replace")
