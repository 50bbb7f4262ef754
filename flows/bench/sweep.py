"""``sidflows benchmark sweep``: the daily sweep over a large synthetic registry.

Builds a registry of N children with 12 months of active-plan items each (not
timed), then measures, in a fresh process so that its peak memory is the
sweep's own:

- the bare indexed query that selects the rows due that day;
- the sweep flow on Prefect (mark due in batches with audit rows, overdue,
  census): wall time, peak memory, task runs used, and the ratio of its store
  work to the bare query (flows/bench/sweep_measure.py: this module never
  loads Prefect, so ``sidflows demo`` can set Prefect up before it does).

Registries are built from a pool of distinct synthetic plans, replicated with
their own refs (planning 100,000 children one by one would dominate the run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

from flows.bench.common import BENCH_TODAY, fresh_store
from sidflows.calendar import load_calendar
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import validate_referral
from sidflows.store import bulk, db
from sidflows.testing.cohort import synthetic_referrals

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
    pool = _plans(min(children, DISTINCT_PLANS), seed)
    items_total = 0
    for start in range(0, children, CHUNK):
        chunk = [
            bulk.ActiveChild(
                ref=f"BENCH-{i:07d}",
                birth_date=dt.date.fromisoformat(pool[i % len(pool)][0]["patient"]["birth_date"]),
                items=pool[i % len(pool)][1]["items"],
            )
            for i in range(start, min(children, start + CHUNK))
        ]
        with db.session_scope(url) as session:
            items_total += bulk.load_active_plans(
                session=session, children=chunk, as_of=BENCH_TODAY, label="bench"
            )
    with db.session_scope(url) as session:
        bulk.analyze(session=session)
    return items_total


def measure_bare(url: str, day: dt.date) -> dict[str, Any]:
    """In a fresh process: the bare indexed query, once to warm up, then timed."""
    with db.session_scope(url) as session:
        bulk.bare_due_ids(session=session, on=day)
    started = time.perf_counter()
    with db.session_scope(url) as session:
        rows = len(bulk.bare_due_ids(session=session, on=day))
    return {"due_rows": rows, "bare_query_s": time.perf_counter() - started}


def _measure_in_fresh_process(url: str, day: dt.date) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for module in ("flows.bench.sweep", "flows.bench.sweep_measure"):
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": "ERROR"}
        done = subprocess.run(
            [sys.executable, "-m", module, url, day.isoformat()],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"{module} measurement failed: {done.stderr[-2000:]}")
        figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


def _record_the_past(url: str, day: dt.date) -> None:
    """Items before ``day`` were given (2 % left open: the overdue a unit really has)."""
    with db.session_scope(url) as session:
        bulk.record_the_past(session=session, before=day, left_open_every=50)
        bulk.analyze(session=session, table="planitem")


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


if __name__ == "__main__":  # the bare query's own process (the sweep's: flows.bench.sweep_measure)
    print(json.dumps(measure_bare(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))))
