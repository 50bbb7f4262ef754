"""Runs whose process died, runs that timed out, and a serve that must stop: as processes.

A real `prefect server start`, a real `sidflows serve` (heartbeats every 30 s,
the zombie automation installed at its start), the store on PostgreSQL:

- serve killed with SIGKILL while an item run executes (caught provably between
  its start and its suspension: it waits on a table lock the test holds). The
  run stays Running; it sends no more heartbeats; the automation serve installed
  marks it Crashed; the next sweep gives the item a fresh run (attempt 2) and
  the coordinators are told, once.
- an item run suspended for the nurse whose timeout passes is failed by the
  server's own pause-expiration service, and the next sweep replaces it.
- serve stopped with SIGTERM or SIGINT after the Prefect server has gone away:
  it exits within its grace period, saying so, instead of hanging.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from processes import (
    BIN,
    POSTGRES_URL,
    PrefectServer,
    Unit,
    _admin,
    postgres_database,
    wait_for,
)
from sqlalchemy import make_url
from sqlmodel import select
from test_crashes import referral

from flows.serving import STOP_GRACE_S
from sidflows.store import db
from sidflows.store.models import Notification

pytestmark = [pytest.mark.slow, pytest.mark.prefect, pytest.mark.postgres]

HEARTBEAT_S = 30  # Prefect's minimum


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    server = PrefectServer(
        tmp_path_factory.mktemp("prefect-server"),
        settings={"PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "2"},
    )
    try:
        yield server.start()
    finally:
        server.stop()


class Zombie:
    def __init__(self, unit: Unit, url: str) -> None:
        self.unit, self.url = unit, url
        self.ref = f"ZB-{uuid.uuid4().hex[:8].upper()}"

    @property
    def conninfo(self) -> str:
        return self.url.replace("postgresql+psycopg://", "postgresql://")

    def active_plan(self) -> None:
        done = self.unit.cli("refer", str(referral(self.unit.tmp / "referral.json", self.ref)))
        assert done.returncode == 0, done.stderr
        wait_for("the pathway waiting", lambda: self.unit.paused(self.ref), 120, 0.5)
        assert self.unit.cli("approve", self.ref, "--by", "Dr Test").returncode == 0
        # Every item run made, not only the first: a serve killed while the activation
        # still creates them would leave one for the sweep to make (a second "created").
        wait_for("the activation completed", self.activated, 120, 0.5)
        assert self.item_runs(), "the activation made the item runs"

    def activated(self) -> bool:
        """The run that activates the approved plan (the resumed pathway, or an activate
        run) has completed."""
        runs = [
            *self.unit.runs(f"ref:{self.ref}", "step:pathway"),
            *self.unit.runs(f"ref:{self.ref}", "step:activate"),
        ]
        return any(r["state"]["type"] == "COMPLETED" for r in runs)

    def item_runs(self, *states: str) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"tags": {"all_": [f"ref:{self.ref}", "step:item"]}}
        if states:
            body["state"] = {"type": {"any_": list(states)}}
        found: list[dict[str, Any]] = self.unit.post(
            "/flow_runs/filter", {"flow_runs": body, "sort": "ID_DESC", "limit": 200}
        )
        return found

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.unit.get(f"/flow_runs/{run_id}")
        return found

    def state(self, run_id: str) -> str:
        return str(self.run(run_id)["state_type"])

    def waiting_keys(self, key: str) -> list[str]:
        """The keys of the waiting runs of the item whose first run had ``key``."""
        waiting = self.item_runs("SCHEDULED", "PENDING", "PAUSED")
        return [r["idempotency_key"] for r in waiting if r["idempotency_key"].startswith(key)]

    def first_item_run(self) -> dict[str, Any]:
        waiting = self.item_runs("SCHEDULED")
        return min(waiting, key=lambda r: r["expected_start_time"])

    def start_now(self, run_id: str) -> None:
        """What "Start now" in the UI does: the run is due at once, and serve picks it up."""
        now = dt.datetime.now(dt.UTC).isoformat()
        self.unit.post(
            f"/flow_runs/{run_id}/set_state",
            {
                "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": now}},
                "force": True,
            },
        )

    def heartbeats(self, run_id: str) -> int:
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
        page = self.unit.post(
            "/events/filter",
            {
                "filter": {
                    "event": {"name": ["prefect.flow-run.heartbeat"]},
                    "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                    "occurred": {"since": since},
                },
                "limit": 50,
            },
        )
        return len(page.get("events", []))

    def sweep(self) -> dict[str, Any]:
        done = self.unit.cli("sweep")
        assert done.returncode == 0, done.stderr[-3000:]
        summary: dict[str, Any] = json.loads(done.stdout)
        return summary

    def replaced_notices(self) -> list[Notification]:
        with db.session_scope(self.url) as session:
            return list(
                session.exec(select(Notification).where(Notification.event == "item_run_replaced"))
            )


@pytest.fixture
def zombie(prefect_server: PrefectServer, tmp_path: Path) -> Iterator[Zombie]:
    with postgres_database() as url:
        env = {
            "SIDFLOWS_DATABASE_URL": url,
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        }
        unit = Unit(tmp_path, prefect_server, env)
        try:
            unit.upgrade_store()
            unit.start_serve()
            yield Zombie(unit, url)
        finally:
            unit.stop()
            db.dispose_engines()


def test_serve_installs_the_zombie_automation(zombie: Zombie) -> None:
    found = zombie.unit.post("/automations/filter", {})
    mine = [a for a in found if a["name"].startswith("sidflows: mark flow runs")]
    assert len(mine) == 1, "installed once, whatever the restarts"
    trigger = mine[0]["trigger"]
    assert trigger["posture"] == "Proactive"
    assert trigger["within"] == 3 * HEARTBEAT_S
    assert "prefect.flow-run.Suspended" in trigger["expect"], (
        "a run waiting for a nurse is no zombie"
    )
    assert mine[0]["actions"][0]["state"] == "CRASHED"
    zombie.unit.kill_serve()
    zombie.unit.start_serve()
    again = zombie.unit.post("/automations/filter", {})
    assert len([a for a in again if a["name"] == mine[0]["name"]]) == 1


def test_a_run_killed_before_its_suspension_is_crashed_and_replaced(zombie: Zombie) -> None:
    zombie.active_plan()
    run = zombie.first_item_run()
    key = run["idempotency_key"]
    with psycopg.connect(zombie.conninfo) as holder:
        holder.execute("LOCK TABLE planitem IN ACCESS EXCLUSIVE MODE")
        zombie.start_now(run["id"])
        wait_for(
            "the item run executing",
            lambda: zombie.run(run["id"])["state_type"] == "RUNNING",
            120,
            0.5,
        )
        wait_for("its first heartbeat", lambda: zombie.heartbeats(run["id"]) > 0, 90, 1)
        zombie.unit.kill_serve()
        holder.rollback()
    assert zombie.state(run["id"]) == "RUNNING", "nothing tells Prefect it died"
    # No heartbeat for 3 x 30 s: the automation serve installed marks it Crashed.
    started = time.monotonic()
    wait_for(
        "the automation to mark the run Crashed",
        lambda: zombie.state(run["id"]) == "CRASHED",
        6 * HEARTBEAT_S,
        2,
    )
    crashed_after = time.monotonic() - started
    summary = zombie.sweep()["reconciliation"]
    assert (summary["created"], summary["replaced"]) == (1, 1), summary
    fresh = [
        r
        for r in zombie.item_runs("SCHEDULED", "PENDING", "PAUSED")
        if r["idempotency_key"].startswith(key)
    ]
    assert [r["idempotency_key"] for r in fresh] == [f"{key}#2"]
    assert len(zombie.replaced_notices()) == 1
    again = zombie.sweep()["reconciliation"]
    assert (again["created"], again["replaced"]) == (0, 0)
    assert len(zombie.replaced_notices()) == 1
    print(f"crashed by the automation {crashed_after:.0f} s after the kill")


def test_a_run_that_timed_out_waiting_for_the_nurse_is_replaced(zombie: Zombie) -> None:
    """Prefect's own pause-expiration service fails it; the sweep gives the item a new run."""
    zombie.active_plan()
    run = zombie.first_item_run()
    key = run["idempotency_key"]
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    zombie.unit.post(
        f"/flow_runs/{run['id']}/set_state",
        {
            "state": {
                "type": "PAUSED",
                "name": "Suspended",
                "state_details": {"pause_timeout": soon, "pause_reschedule": True},
            },
            "force": True,
        },
    )
    wait_for(
        "the server to fail the expired pause",
        lambda: zombie.state(run["id"]) == "FAILED",
        60,
        1,
    )
    summary = zombie.sweep()["reconciliation"]
    assert (summary["created"], summary["replaced"]) == (1, 1), summary
    assert [
        r["idempotency_key"]
        for r in zombie.item_runs("SCHEDULED")
        if r["idempotency_key"].startswith(key)
    ] == [f"{key}#2"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_on_a_signal_when_the_server_is_gone(
    tmp_path: Path, signum: signal.Signals
) -> None:
    (tmp_path / "prefect").mkdir()
    server = PrefectServer(tmp_path / "prefect").start()
    unit = Unit(tmp_path, server, {})
    try:
        unit.upgrade_store()
        unit.start_serve()
        server.stop()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.api}/health", timeout=2)
        assert unit.serve is not None
        unit.serve.send_signal(signum)
        started = time.monotonic()
        unit.serve.wait(timeout=STOP_GRACE_S + 20)
        took = time.monotonic() - started
        assert took < STOP_GRACE_S + 15, f"serve took {took:.0f} s to stop"
        assert unit.serve.returncode in (0, 130)
        log = (tmp_path / "serve.log").read_text()
        print(log[-3000:])
        assert "stopped" in log.splitlines()[-1], log[-3000:]
    finally:
        unit.stop()


def test_the_store_going_away_during_a_sweep_is_one_line_and_the_next_sweep_does_the_work(
    zombie: Zombie,
) -> None:
    """The store refuses every connection once the sweep has opened its own: the command
    ends with one line (Prefect's logged tracebacks kept off the console) and exit 1;
    with the store back, the next sweep does the day's work."""
    zombie.active_plan()
    name = zombie.url.rsplit("/", 1)[-1]
    sweep = subprocess.Popen(
        [str(BIN / "sidflows"), "sweep"],
        env=zombie.unit.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=zombie.unit.tmp,
    )

    def connected() -> bool:
        assert sweep.poll() is None, "the sweep ended before the store went away"
        return bool(_admin_rows(f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}'"))

    try:
        wait_for("the sweep connected to the store", connected, 120, 0.05)
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        out, err = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert sweep.returncode == 1, out + err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("sidflows: error: "), last
    assert "SIDFLOWS_DEBUG=1" in last, last
    again = zombie.sweep()
    assert again["intents"]["pending"] == 0
    assert "reconciliation" in again


def _admin_rows(statement: str) -> list[Any]:
    conninfo = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(
        conninfo.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
    ) as conn:
        return list(conn.execute(statement).fetchall())
