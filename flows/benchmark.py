"""``sidflows benchmark sweep``: the daily sweep over a large synthetic registry.

Builds a registry of N children with 12 months of active-plan items each (not
timed), then measures, in a fresh process so that its peak memory is the
sweep's own:

- the bare indexed query that selects the rows due that day;
- the sweep flow on Prefect (mark due in batches with audit rows, overdue,
  census): wall time, peak memory, task runs used, and the ratio of its store
  work to the bare query.

Registries are built from a pool of distinct synthetic plans, replicated with
their own refs (planning 100,000 children one by one would dominate the run).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import insert, text

from sidflows.benchmark import BENCH_TODAY, fresh_store, peak_rss_mib
from sidflows.calendar import load_calendar
from sidflows.cohort import synthetic_referrals
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import validate_referral
from sidflows.store import db
from sidflows.store.models import CarePlan, Patient, PlanItem, PlanStatus
from sidflows.store.plans import stream_of

DISTINCT_PLANS = 2000
CHUNK = 20_000


def _plans(count: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    protocol, calendar = load_protocol(), load_calendar()
    out = []
    for document in synthetic_referrals(count, seed=seed, prefix="BENCH"):
        referral = validate_referral(document)
        plan = propose_plan(referral, today=BENCH_TODAY, protocol=protocol, calendar=calendar)
        out.append((document, plan_document(plan)))
    return out


def build_registry(url: str, children: int, seed: int) -> int:
    """A fresh store holding ``children`` active plans. Returns the number of items."""
    fresh_store(url)
    engine = db.get_engine(url)
    pool = _plans(min(children, DISTINCT_PLANS), seed)
    items_total = 0
    for start in range(0, children, CHUNK):
        stop = min(children, start + CHUNK)
        with engine.begin() as conn:
            conn.execute(
                insert(Patient),
                [
                    {
                        "ref": f"BENCH-{i:07d}",
                        "birth_date": dt.date.fromisoformat(
                            pool[i % len(pool)][0]["patient"]["birth_date"]
                        ),
                        "sex": "unknown",
                        "weight_kg": 20.0,
                        "diagnosis_category": "other",
                        "diagnosis_label": "benchmark",
                        "referrer_service": "benchmark",
                        "state": "active",
                    }
                    for i in range(start, stop)
                ],
            )
            ids: dict[str, int] = dict(
                conn.execute(
                    text("SELECT ref, id FROM patient WHERE ref >= :a AND ref <= :b"),
                    {"a": f"BENCH-{start:07d}", "b": f"BENCH-{stop - 1:07d}"},
                ).all()
            )
            conn.execute(
                insert(CarePlan),
                [
                    {
                        "patient_id": ids[f"BENCH-{i:07d}"],
                        "version": 1,
                        "status": PlanStatus.active,
                        "as_of": BENCH_TODAY,
                        "protocol_version": "bench",
                        "reason": "referral",
                        "document": {"items": []},
                    }
                    for i in range(start, stop)
                ],
            )
            plan_ids: dict[int, int] = dict(
                conn.execute(
                    text(
                        "SELECT patient_id, id FROM careplan "
                        "WHERE patient_id >= :a AND patient_id <= :b"
                    ),
                    {"a": min(ids.values()), "b": max(ids.values())},
                ).all()
            )
            rows = []
            for i in range(start, stop):
                pid = ids[f"BENCH-{i:07d}"]
                for item in pool[i % len(pool)][1]["items"]:
                    rows.append(
                        {
                            "plan_id": plan_ids[pid],
                            "patient_id": pid,
                            "key": item["key"],
                            "kind": item["kind"],
                            "stream": stream_of(item),
                            "due": dt.date.fromisoformat(item["due"]),
                            "hospital": item["hospital"],
                            "status": "planned",
                            "details": item,
                        }
                    )
            conn.execute(insert(PlanItem), rows)
            items_total += len(rows)
    if url.startswith("postgresql"):
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return items_total


_BARE_SQL = (
    "SELECT id FROM planitem WHERE status IN ('planned', 'scheduled', 'due') AND due <= :day"
)


def measure_bare(url: str, day: dt.date) -> dict[str, Any]:
    """In a fresh process: the bare indexed query, once to warm up, then timed."""
    engine = db.get_engine(url)
    with engine.connect() as conn:
        conn.execute(text(_BARE_SQL), {"day": day}).fetchall()
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = len(conn.execute(text(_BARE_SQL), {"day": day}).fetchall())
    return {"due_rows": rows, "bare_query_s": time.perf_counter() - started}


def measure_sweep(url: str, day: dt.date) -> dict[str, Any]:
    """In a fresh process: the sweep flow, once to warm up (it only reads), then timed."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    from flows.pathway import sweep

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


def _measure_in_fresh_process(url: str, day: dt.date) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for what in ("bare", "sweep"):
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": "ERROR"}
        done = subprocess.run(
            [sys.executable, "-m", "flows.benchmark", what, url, day.isoformat()],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"{what} measurement failed: {done.stderr[-2000:]}")
        figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


def _record_the_past(url: str, day: dt.date) -> None:
    """Items before ``day`` were given (2 % left open: the overdue a unit really has)."""
    with db.get_engine(url).begin() as conn:
        conn.execute(
            text("UPDATE planitem SET status = 'done' WHERE due < :day AND id % 50 <> 0"),
            {"day": day},
        )
        if url.startswith("postgresql"):
            conn.execute(text("ANALYZE planitem"))


def benchmark_sweep(*, children: int, seed: int, database_url: str | None) -> None:
    url = database_url or f"sqlite:///{os.path.abspath('.sidflows/bench-sweep.db')}"
    os.makedirs(".sidflows", exist_ok=True)
    print(f"sweep benchmark: {children} children, store {url.split('@')[-1]}")
    started = time.perf_counter()
    items = build_registry(url, children, seed)
    print(
        f"  registry built    {items} items of active plans "
        f"in {time.perf_counter() - started:.0f} s (not timed)"
    )
    calendar = load_calendar()
    day = calendar.next_working_day(BENCH_TODAY + dt.timedelta(days=30))
    before = calendar.add_working_days(day, -1)
    catch_up = _measure_in_fresh_process(url, before)  # a first sweep over a month
    _record_the_past(url, day)
    daily = _measure_in_fresh_process(url, day)  # then an ordinary day
    for label, f in (
        ("first sweep (a month of items, none recorded yet)", catch_up),
        ("daily sweep (the past recorded, 2 % overdue)", daily),
    ):
        print(f"  {label}:")
        print(f"    rows due          {f['due_rows']:>9}  (the sweep read {f['swept_due']})")
        print(f"    bare query        {f['bare_query_s']:9.3f} s")
        print(
            f"    sweep store work  {f['store_work_s']:9.3f} s  "
            f"({f['store_work_s'] / max(f['bare_query_s'], 1e-6):.1f}x the bare query)"
        )
        print(
            f"    sweep flow wall   {f['sweep_wall_s']:9.3f} s  "
            "(Prefect run included; reconciliation off)"
        )
        print(f"    Prefect task runs {f['task_runs']:>9}")
        print(f"    peak memory       {f['peak_rss_mib']:9.1f} MiB (the sweep's own process)")


if __name__ == "__main__":
    measured = {"bare": measure_bare, "sweep": measure_sweep}[sys.argv[1]]
    print(json.dumps(measured(sys.argv[2], dt.date.fromisoformat(sys.argv[3]))))
