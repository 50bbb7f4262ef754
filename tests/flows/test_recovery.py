"""Prefect loses runs; the store does not: the sweep's reconciliation recreates them.

The store is the source of truth and Prefect's scheduled runs are its
projection. A deleted and re-created ``item`` deployment (which deletes its
scheduled runs), a Prefect server killed and restarted, or one started on a new
empty database must lose no item: after the sweep every open item that is next
in its stream has exactly one waiting run again, and no item has two.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES
from prefect import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Suspended
from processes import free_port, wait_for
from sqlmodel import select

from flows import projection, runtime
from flows.deployments import register
from flows.sweep import run_sweep
from flows.tasks import schedule
from sidflows import service
from sidflows.settings import get_settings
from sidflows.store import db
from sidflows.store.models import ItemStatus, PlanItem
from sidflows.store.sweep import expected_runs
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)
SAMPLES = ("all-after-maintenance", "lupus-on-rituximab", "after-autologous-transplant")


def children_on_active_plans(prefix: str = "REC", samples: tuple[str, ...] = SAMPLES) -> list[str]:
    """The sample children on active plans; each stream's next item has its run.

    Under refs of their own: the session's server keeps other tests' runs, and an
    idempotency key once used (ref, version, item) returns that run again.
    """
    register()  # the deployments the runs go into, as `sidflows serve` makes them
    refs = []
    protocol, calendar = runtime.protocol(), runtime.calendar()
    for n, name in enumerate(samples, start=1):
        document = json.loads((EXAMPLES / f"{name}.json").read_text())
        document["patient"]["ref"] = f"{prefix}-{n}"
        ref = service.refer(json.dumps(document), unit=Unit(), actor="test").ref
        service.propose(
            ref,
            unit=Unit(protocol=protocol, calendar=calendar),
            today=TODAY,
            reason="referral",
            actor="t",
        )
        service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
        service.consent(ref, unit=Unit(), by="coordinator")
        activation = service.activate(ref, unit=Unit(calendar=calendar), actor="test")
        assert activation.status == "activated"
        schedule.fn(activation.runs, activation.cancelled, ref)  # the activate flow's step
        refs.append(ref)
    return refs


def expected_keys(day: dt.date = TODAY, *, until: dt.date | None = None) -> set[str]:
    """The keys of the runs the store says Prefect must hold on ``day`` (its look-ahead).

    With ``until``, every open item next in its stream and due by then.
    """
    with db.session_scope() as session:
        rows = expected_runs(
            session=session,
            # The sweep's reach: from the later of its day and the clock's (flows/sweep.py).
            until=until or projection.lookahead(max(day, projection.reference_day())),
            after_plan_id=0,
            limit=100_000,
        )
    return {runtime.idempotency_key(ref, version, key) for _, ref, version, key, _, _ in rows}


def item_deployment_id() -> Any:
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(runtime.ITEM_DEPLOYMENT).id


def waiting_item_runs(*, of_deployment: bool = True) -> list[FlowRun]:
    """Waiting runs of the item deployment as it is now (or of the item flow, any deployment)."""
    waiting = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=projection.WAITING_STATES)  # type: ignore[arg-type]
        )
    )
    deployment = (
        DeploymentFilter(id=DeploymentFilterId(any_=[item_deployment_id()]))
        if of_deployment
        else None
    )
    found: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_run_filter=waiting,
                flow_filter=FlowFilter(name=FlowFilterName(any_=["item"])),
                deployment_filter=deployment,
                sort=FlowRunSort.ID_DESC,
                limit=projection.PAGE,
                offset=len(found),
            )
            found += page
            if len(page) < projection.PAGE:
                return found


def assert_one_run_per_open_item(refs: list[str], day: dt.date = TODAY) -> None:
    """Each expected key has exactly one waiting run of the current deployment, and no other.

    Runs beyond the look-ahead may wait too, for items next in their stream only.
    """
    wanted = expected_keys(day)
    assert {k.split(":v")[0] for k in wanted} == set(refs), "every child has runs to expect"
    runs = [r for r in waiting_item_runs() if r.parameters["ref"] in refs]
    keys = Counter(r.idempotency_key for r in runs)
    assert wanted <= set(keys), "an open item has no waiting run"
    assert set(keys) <= expected_keys(until=dt.date.max), "a run waits for no open item"
    assert set(keys.values()) == {1}, "an item has two waiting runs"
    anywhere = Counter(
        r.idempotency_key
        for r in waiting_item_runs(of_deployment=False)
        if r.parameters["ref"] in refs
    )
    assert anywhere == keys, "a waiting run of a deleted deployment still holds an item's key"
    with db.session_scope() as session:
        recorded = {i.flow_run_id for i in session.exec(select(PlanItem)) if i.flow_run_id}
    assert {str(r.id) for r in runs} <= recorded, "the store knows which run stands for each item"


def test_a_deleted_and_recreated_item_deployment_loses_no_item(
    prefect_server: str, store: str
) -> None:
    """Deleting the item deployment deletes its runs; re-created, the sweep makes them again."""
    refs = children_on_active_plans()
    first = run_sweep(TODAY)["reconciliation"]
    assert_one_run_per_open_item(refs)
    assert first["created"] == 0
    # One item is under way: its run is suspended, waiting for the nurse's outcome.
    # (this test's children: the session's server holds other tests' waiting runs too)
    under_way = next(r for r in waiting_item_runs() if r.parameters["ref"] in refs)
    ref, version, key = (under_way.parameters[k] for k in ("ref", "plan_version", "item_key"))
    service.item_due(ref, plan_version=version, item_key=key, actor="test")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(under_way.id, Suspended(timeout_seconds=3600), force=True)
        client.delete_deployment(item_deployment_id())
    left = [r.id for r in waiting_item_runs(of_deployment=False) if r.parameters["ref"] in refs]
    assert left == [under_way.id], "the deployment's scheduled runs went with it, not that one"

    register()
    assert waiting_item_runs() == []
    summary = run_sweep(TODAY)["reconciliation"]
    assert summary["existing"] == 0
    assert summary["created"] == summary["expected"] == len(expected_keys())
    assert_one_run_per_open_item(refs)
    with db.session_scope() as session:
        due = session.exec(select(PlanItem).where(PlanItem.status == ItemStatus.due)).all()
    assert [i.key for i in due] == [key], "the item under way is still due in the store"
    again = run_sweep(TODAY)["reconciliation"]
    assert (again["created"], again["cancelled"]) == (0, 0), "a second sweep changes nothing"


def test_a_run_prefect_lost_is_made_again_by_the_sweep(prefect_server: str, store: str) -> None:
    """A run deleted through Prefect's API (a vacuum, an operator, a lost row): the store still
    holds the item, so the next sweep gives it a run again, under the same key, and the store
    records the new run."""
    refs = children_on_active_plans("LOST")
    run_sweep(TODAY)
    lost = next(r for r in waiting_item_runs() if r.parameters["ref"] == refs[0])
    with get_client(sync_client=True) as client:
        client.delete_flow_run(lost.id)
    assert lost.idempotency_key not in {r.idempotency_key for r in waiting_item_runs()}
    summary = run_sweep(TODAY)["reconciliation"]
    assert (summary["created"], summary["cancelled"]) == (1, 0)
    assert_one_run_per_open_item(refs)
    again = [r for r in waiting_item_runs() if r.idempotency_key == lost.idempotency_key]
    assert len(again) == 1
    assert again[0].id != lost.id
    with db.session_scope() as session:
        item = session.exec(
            select(PlanItem).where(PlanItem.key == lost.parameters["item_key"])
        ).all()
    assert str(again[0].id) in {i.flow_run_id for i in item}, "the store knows the new run"


@pytest.fixture
def short_lookahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The unit's calendar with runs made only for items due within 30 days."""
    days = 30
    calendar = tmp_path / "calendar.toml"
    text = (Path(runtime.__file__).parents[1] / "config" / "calendar.toml").read_text()
    calendar.write_text(
        re.sub(r"(?m)^prefect_lookahead_days = \d+$", f"prefect_lookahead_days = {days}", text)
    )
    monkeypatch.setenv("SIDFLOWS_CALENDAR", str(calendar))
    get_settings.cache_clear()
    runtime.unit.cache_clear()
    assert projection.lookahead(TODAY) == TODAY + dt.timedelta(days=days)
    yield days
    monkeypatch.undo()
    get_settings.cache_clear()
    runtime.unit.cache_clear()


def test_a_shorter_lookahead_loses_no_item(
    prefect_server: str, store: str, short_lookahead: int
) -> None:
    """No run is made beyond the look-ahead, none waiting is cancelled; each item has its
    run when its day comes in reach."""
    refs = children_on_active_plans("AHEAD")
    made = {r.idempotency_key for r in waiting_item_runs() if r.parameters["ref"] in refs}
    reach = projection.lookahead(runtime.calendar().today())
    far = expected_keys(until=dt.date.max) - expected_keys(until=reach)
    assert far, "some items are due beyond the look-ahead"
    assert not far & made, "an activation made runs beyond the look-ahead"
    beyond = expected_keys(until=dt.date.max) - expected_keys(TODAY)
    run_sweep(TODAY)
    assert_one_run_per_open_item(refs)
    mine = {r.idempotency_key for r in waiting_item_runs() if r.parameters["ref"] in refs}
    assert beyond & made <= mine, "the sweep cancelled runs of open items beyond the look-ahead"
    later = TODAY + dt.timedelta(days=3 * short_lookahead)
    assert expected_keys(later) & beyond, "items came within reach"
    run_sweep(later)
    assert_one_run_per_open_item(refs, later)


class PrefectServer:
    """`prefect server start` as a process of its own, on a SQLite file, killed with SIGKILL."""

    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.api = f"http://127.0.0.1:{port}/api"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process of the unit needs to talk to this server (and only to it)."""
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }

    def start(self, database: Path) -> None:
        env = {
            **os.environ,
            **self.env,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}",
        }
        log = (self.home / f"server-{database.stem}.log").open("ab")
        command = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--no-ui"]
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            start_new_session=True,  # its own process group: SIGKILL reaches every process
        )
        log.close()
        wait_for(
            "the Prefect server",
            lambda: httpx.get(f"{self.api}/health", timeout=5).status_code == 200,
            timeout=90,
        )

    def kill(self) -> None:
        """SIGKILL, no shutdown: whatever the server had not written is lost."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def own_server(tmp_path: Path, store: str) -> Iterator[PrefectServer]:
    """A Prefect server process for this test alone; the test's flows and clients use it."""
    home = tmp_path / "prefect"
    home.mkdir()
    server = PrefectServer(home, free_port())
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api}):
            yield server
    finally:
        if server.process is not None:
            server.kill()


def daily_sweep(server: PrefectServer) -> dict[str, int]:
    """`sidflows sweep` in a process of its own, as the deployed daily run; its reconciliation."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sidflows"), "sweep", "--date", TODAY.isoformat()],
        env={**os.environ, **server.env},
        cwd=server.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reconciliation: dict[str, int] = json.loads(done.stdout)["reconciliation"]
    return reconciliation


@pytest.mark.slow
def test_a_killed_server_restarted_on_its_database_keeps_every_run(
    own_server: PrefectServer, tmp_path: Path
) -> None:
    """SIGKILL and restart on the same database: the sweep finds every run, recreates none."""
    own_server.start(tmp_path / "prefect.db")
    register()
    refs = children_on_active_plans()
    assert_one_run_per_open_item(refs)
    own_server.kill()
    own_server.start(tmp_path / "prefect.db")
    summary = daily_sweep(own_server)
    assert (summary["created"], summary["cancelled"]) == (0, 0)
    assert summary["existing"] == summary["expected"] == len(expected_keys())
    assert_one_run_per_open_item(refs)


@pytest.mark.slow
def test_a_server_on_a_new_empty_database_gets_every_run_back(
    own_server: PrefectServer, tmp_path: Path
) -> None:
    """A lost Prefect database: on a new one, registered again, the sweep remakes every run."""
    own_server.start(tmp_path / "prefect.db")
    register()
    refs = children_on_active_plans()
    assert_one_run_per_open_item(refs)
    own_server.kill()
    own_server.start(tmp_path / "prefect-new.db")
    register()
    assert waiting_item_runs() == []
    summary = daily_sweep(own_server)
    assert summary["existing"] == 0
    assert summary["created"] == summary["expected"] == len(expected_keys())
    assert_one_run_per_open_item(refs)
