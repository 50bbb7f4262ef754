"""The sweep's own process in ``sidflows benchmark sweep``: the sweep flow, timed once.

``python -m flows.bench.sweep_measure URL DAY`` starts Prefect with a flow of
nothing (not timed), then runs the sweep flow on DAY once, in full but for the
outbox's sending and the reconciliation, and prints one JSON line: what it found
and queued, its wall time, its store work per phase, the Prefect task runs it
used and the process's peak memory (its own: nothing else ran in it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from typing import Any

from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from flows.bench.common import peak_rss_mib
from flows.sweep import sweep


@flow(name="bench-prefect-start")
def _nothing() -> None:
    """A flow of nothing: Prefect's start (its client, an embedded server) is not the sweep's."""


def measure_sweep(url: str, day: dt.date) -> dict[str, Any]:
    """The sweep flow once (it writes the day's notifications: a second run adds nothing)."""
    os.environ["SIDFLOWS_DATABASE_URL"] = url
    started = time.perf_counter()
    _nothing()
    prefect_start = time.perf_counter() - started
    started = time.perf_counter()
    state: Any = asyncio.run(
        sweep(day=day, reconcile=False, dispatch=False, return_state=True)  # type: ignore[arg-type]
    )
    wall = time.perf_counter() - started
    summary = state.result()
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
            sort=TaskRunSort.ID_DESC,
            limit=200,
        )
    return {
        "due": summary["due"],
        "overdue": summary["overdue"],
        "queued": summary.get("notifications", {}),
        "sweep_wall_s": wall,
        "prefect_start_s": prefect_start,
        "store_s": summary["store_seconds_by_phase"],
        "task_runs": len(task_runs),
        "peak_rss_mib": peak_rss_mib(),
    }


if __name__ == "__main__":
    print(json.dumps(measure_sweep(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))))
