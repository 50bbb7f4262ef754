"""``sidflows benchmark workers``: a burst of item runs through a process work pool.

For each worker count (1 and 2 by default): a fresh Prefect server on a
PostgreSQL database of its own (the unit's retention settings), a store on
PostgreSQL with a synthetic registry (not timed), the ``sidflows`` process work
pool with the unit's deployments in it (flows/deployments.py
``deploy_to_work_pool``, what config/prefect.yaml deploys), and a burst of item
runs of the ``item`` deployment all due at once (a unit's 07:30). Then the
workers start, each ``prefect worker start --pool sidflows`` pinned to a core of
its own (a worker machine of one core), and the clock runs until every run has
done its day's work: marked its item due and suspended for the nurse's outcome.

It prints runs per second for each count, and where the time goes: the CPU the
flow-run processes used (read from the workers' reaped children), the CPU of
starting one (Python, Prefect and the flow's imports), and the time from a run's
start to its suspension.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from flows.bench.prefect_share import ADMIN_URL, _admin, prefect_on_postgres
from sidflows import service
from sidflows.store import db
from sidflows.store.sweep import expected_runs

WORKER_LIMIT = 4  # flow-run processes a worker runs at once
TIMEOUT_S = 3600


def _store_database(admin_url: str) -> tuple[str, str]:
    name = f"sidflows_bench_workers_{uuid.uuid4().hex[:12]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def _specs(url: str, runs: int) -> list[Any]:
    """``runs`` items next in their stream, from a registry built for them."""
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows.bench.sweep import build_registry

    build_registry(url, max(1, runs // 3 + 1), seed=1)
    with db.session_scope(url) as session:
        rows = expected_runs(session=session, until=dt.date.max, after_plan_id=0, limit=runs)
    specs = [service.RunSpec(r, v, k, kind, due) for _, r, v, k, kind, due in rows][:runs]
    if len(specs) < runs:
        raise RuntimeError(f"the registry holds {len(specs)} items next in their stream")
    return specs


def _setup_pool(env: dict[str, str]) -> None:
    """The process work pool, the deployments in it (as config/prefect.yaml deploys them)."""
    root = Path(__file__).resolve().parents[2]
    deploy = "from flows.deployments import deploy_to_work_pool; deploy_to_work_pool()"
    bin_dir = Path(sys.executable).parent
    for command in (
        [str(bin_dir / "prefect"), "work-pool", "create", "sidflows", "--type", "process"],
        [sys.executable, "-c", deploy],
    ):
        done = subprocess.run(
            command, env=env, cwd=root, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{command[1]}: {(done.stdout + done.stderr)[-2000:]}")


def _burst(specs: Sequence[Any]) -> None:
    """Every item's run of the item deployment, all due now (no idempotency key: a burst)."""
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from prefect import get_client

    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from prefect.states import Scheduled

    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows import projection, runtime

    now = dt.datetime.now(dt.UTC)
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(runtime.ITEM_DEPLOYMENT).id
        for spec in specs:
            client.create_flow_run_from_deployment(
                deployment_id,
                parameters=projection.item_parameters(spec),
                state=Scheduled(scheduled_time=now),
                name=runtime.run_name(spec.kind, spec.ref),
                tags=runtime.tags("item", spec.ref, spec.kind),
            )


def _count(api: str, states: list[str]) -> int:
    body = {
        "flow_runs": {"state": {"type": {"any_": states}}},
        "flows": {"name": {"any_": ["item"]}},
    }
    response = httpx.post(f"{api}/flow_runs/count", json=body, timeout=60)
    response.raise_for_status()
    count: int = response.json()
    return count


def _children_cpu(pid: int) -> float:
    """CPU seconds of the reaped children of ``pid`` (its flow-run processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[13]) + int(fields[14])) / ticks  # cutime, cstime


def _start_cpu() -> float:
    """CPU seconds of a process that only imports what a flow-run process imports."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-c", "import prefect.flow_engine, flows.item"],
        check=True,
        capture_output=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _run_seconds(api: str) -> float:
    """Mean time from a run's start to its suspension, over the suspended item runs."""
    body = {
        "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}},
        "flows": {"name": {"any_": ["item"]}},
        "limit": 200,
    }
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=60).json()
    spans = [
        (
            dt.datetime.fromisoformat(r["state"]["timestamp"])
            - dt.datetime.fromisoformat(r["start_time"])
        ).total_seconds()
        for r in runs
        if r.get("start_time")
    ]
    return sum(spans) / max(len(spans), 1)


def one_burst(runs: int, workers: int, admin_url: str) -> dict[str, Any]:
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    store_name, store_url = _store_database(admin_url)
    try:
        specs = _specs(store_url, runs)
        with prefect_on_postgres(admin_url=admin_url, label="bench_workers") as (api, _):
            env = {
                **os.environ,
                "PREFECT_API_URL": api,
                "SIDFLOWS_DATABASE_URL": store_url,
                "SIDFLOWS_HOME": str(Path(__file__).resolve().parents[2]),
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            }
            _setup_pool(env)
            with temporary_settings(updates={PREFECT_API_URL: api}):
                _burst(specs)
            return _work_through(api, env, runs, workers)
    finally:
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{store_name}" WITH (FORCE)')


def _pinned(core: int) -> Callable[[], None]:
    """Run the worker, and every flow-run process it starts, on ``core`` only."""

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


def _work_through(api: str, env: dict[str, str], runs: int, workers: int) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    processes = []
    logs = []
    started = time.perf_counter()
    for n in range(workers):
        core = cores[n % len(cores)]
        log = open(os.devnull, "wb")  # noqa: SIM115 (closed below)
        logs.append(log)
        prefect = str(Path(sys.executable).parent / "prefect")
        options = ["--pool", "sidflows", "--name", f"bench-{n + 1}", "--limit", str(WORKER_LIMIT)]
        processes.append(
            subprocess.Popen(
                [prefect, "worker", "start", *options],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_pinned(core),  # noqa: PLW1509 (no threads in this process)
            )
        )
    try:
        first = None
        while True:
            done = _count(api, ["PAUSED", "COMPLETED"])
            dead = _count(api, ["FAILED", "CRASHED", "CANCELLED"])
            if first is None and done:
                first = time.perf_counter() - started
            if done + dead >= runs or time.perf_counter() - started > TIMEOUT_S:
                break
            time.sleep(0.5)
        wall = time.perf_counter() - started
        span = _run_seconds(api)
        cpu = sum(_children_cpu(p.pid) for p in processes)
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=30)
        for log in logs:
            log.close()
    return {
        "workers": workers,
        "runs": runs,
        "done": done,
        "failed": dead,
        "wall_s": wall,
        "first_s": first or 0.0,
        "runs_per_s": done / max(wall - (first or 0.0), 1e-6),
        "run_to_suspend_s": span,
        "cpu": cpu,
    }


def benchmark_workers(
    *, runs: int, workers: Sequence[int], admin_url: str = ADMIN_URL
) -> list[dict[str, Any]]:
    load = os.getloadavg()
    print(
        f"workers benchmark: {runs} item runs due at once; workers {', '.join(map(str, workers))}"
        f", each on a core of its own, {WORKER_LIMIT} flow runs at a time; "
        f"{os.cpu_count()} cores, load {load[0]:.1f}"
    )
    start_cpu = _start_cpu()
    print(
        f"  a flow-run process's start (Python, Prefect, flows.item imports): {start_cpu:.2f} s CPU"
    )
    found = []
    for count in workers:
        f = one_burst(runs, count, admin_url)
        found.append(f)
        print(
            f"  {count} worker{'s' if count > 1 else ' '}: {f['runs_per_s']:6.2f} runs/s "
            f"({f['done']} of {runs} suspended for their outcome, {f['failed']} failed; "
            f"{f['wall_s']:.0f} s from the workers' start, the first after {f['first_s']:.1f} s); "
            f"a run {f['run_to_suspend_s']:.1f} s from its start to its suspension, "
            f"{f['cpu'] / max(f['done'], 1):.2f} s CPU in its process"
        )
    if len(found) > 1:
        base = found[0]["runs_per_s"]
        print(
            "  scale: "
            + ", ".join(f"{f['workers']} workers {f['runs_per_s'] / base:.2f}x" for f in found[1:])
            + f" the rate of {found[0]['workers']} (load now {os.getloadavg()[0]:.1f})"
        )
    return found
