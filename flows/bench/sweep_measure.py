"""The sweep's own process in ``sidflows benchmark sweep``: the sweep flow, timed.

``python -m flows.bench.sweep_measure URL DAY`` prints one JSON line: the rows
the sweep read, its wall time, its store work, the Prefect task runs it used and
the process's peak memory (its own: nothing else ran in it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from flows.bench.common import peak_rss_mib
from flows.sweep import sweep


def measure_sweep(url: str, day: dt.date) -> dict[str, Any]:
    """The sweep flow, once to warm up (it only reads), then timed."""
    os.environ["SIDFLOWS_DATABASE_URL"] = url
    asyncio.run(sweep(day=day, reconcile=False))
    started = time.perf_counter()
    state: Any = asyncio.run(sweep(day=day, reconcile=False, return_state=True))  # type: ignore[arg-type]
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
        "swept_due": summary["due"],
        "sweep_wall_s": wall,
        "store_work_s": summary["store_seconds"],
        "task_runs": len(task_runs),
        "peak_rss_mib": peak_rss_mib(),
    }


if __name__ == "__main__":
    print(json.dumps(measure_sweep(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))))
