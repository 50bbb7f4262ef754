"""``sidflows benchmark sweep``: the daily sweep over a large synthetic registry.

Builds a registry of N children with 12 months of active-plan items each (not
timed), and a last sweep's notification part on its day (not timed). Then two
sweeps, each in fresh processes so that peak memory is the sweep's own:

- the catch-up sweep: a month after that last sweep, nothing recorded since, so
  a month of items is overdue and escalated at once;
- the next daily sweep, the month recorded (2 % left open: a unit's real overdue).

Each sweep is the flow on Prefect timed in full, notification part included
(reminders, escalations and digests written to the outbox; their sending is
``sidflows benchmark notifications``; the reconciliation with Prefect is
flows/bench/prefect_share.py's). Before it, in their own process, the bare
indexed queries that find the rows of each phase (due, overdue, to remind, to
escalate), and after it those of the digests; the table prints each phase's
rows, its bare query, the sweep's store work and the ratio.
flows/bench/sweep_measure.py is the sweep's process (this module never loads
Prefect, so ``sidflows demo`` can set Prefect up before it does).

Registries are built from a pool of distinct synthetic plans, replicated with
their own refs (planning 100,000 children one by one would dominate the run).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import text

from flows.bench.common import BENCH_TODAY, fresh_store
from sidflows.calendar import UnitCalendar, load_calendar
from sidflows.notify import outbox
from sidflows.notify.config import NotificationConfig, load_notifications
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
        planned = plan_document(plan)
        # One item per key, as the store holds them (a planner that repeats a key would
        # fail the load on the (plan, key) constraint, not measure the sweep).
        items = list({item["key"]: item for item in reversed(planned["items"])}.values())
        out.append((document, {**planned, "items": items[::-1]}))
    return out


def build_registry(url: str, children: int, seed: int) -> int:
    """A fresh store holding ``children`` active plans. Returns the number of items."""
    fresh_store(url)
    pool = _plans(min(children, DISTINCT_PLANS), seed)
    items_total = 0
    # Millions of short-lived rows: the cycle collector would walk them again and again.
    gc.disable()
    try:
        with db.session_scope(url) as session, bulk.indexes_deferred(session, "planitem"):
            for start in range(0, children, CHUNK):
                items_total += _load_chunk(session, pool, start, min(children, start + CHUNK))
    finally:
        gc.enable()
    with db.session_scope(url) as session:
        bulk.analyze(session=session)
    return items_total


def _load_chunk(session: Any, pool: list[Any], start: int, end: int) -> int:
    chunk = [
        bulk.ActiveChild(
            ref=f"BENCH-{i:07d}",
            birth_date=dt.date.fromisoformat(pool[i % len(pool)][0]["patient"]["birth_date"]),
            items=pool[i % len(pool)][1]["items"],
        )
        for i in range(start, end)
    ]
    return bulk.load_active_plans(session=session, children=chunk, as_of=BENCH_TODAY, label="bench")


PHASES = ("due", "overdue", "remind", "escalate", "digest")
BEFORE = ("due", "overdue", "remind", "escalate")  # measured before the sweep; digest after


def bare_params(
    phase: str, day: dt.date, calendar: UnitCalendar, config: NotificationConfig
) -> dict[str, Any]:
    """The parameters of a phase's bare query on ``day`` (as the sweep derives them)."""
    if phase in ("due", "overdue"):
        return {"day": day}
    if phase == "remind":
        until = calendar.add_working_days(day, config.reminders.lead_working_days)
        return {"day": day, "until": until}
    if phase == "escalate":
        after = [s.after_working_days for s in config.escalation]
        threshold = outbox.escalation_thresholds(day, calendar, after)[0]
        return {"threshold": threshold, "steps": len(after)}
    return {"pattern": f"digest|%|{day}#%"}


def measure_bare(url: str, day: dt.date, phases: tuple[str, ...]) -> dict[str, Any]:
    """In a fresh process: each phase's bare query, once to warm up, then timed."""
    calendar, config = load_calendar(), load_notifications()
    figures: dict[str, Any] = {}
    for phase in phases:
        params = bare_params(phase, day, calendar, config)
        with db.session_scope(url) as session:
            bulk.bare_rows(session=session, phase=phase, **params)
        started = time.perf_counter()
        with db.session_scope(url) as session:
            rows = bulk.bare_rows(session=session, phase=phase, **params)
        figures[phase] = {"rows": rows, "bare_s": time.perf_counter() - started}
    return figures


def _in_fresh_process(module: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "ERROR"}
    if "PREFECT_API_URL" not in env:
        # Prefect's embedded server on a database of the benchmark's own: the default one
        # is shared by every other Prefect process of the user (and locked by them).
        path = os.path.abspath(".sidflows/bench-sweep-prefect.db")
        env.setdefault("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{path}")
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{module} measurement failed: {done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def measure_day(url: str, day: dt.date) -> dict[str, Any]:
    """Bare queries (before), the sweep, the digests' bare query (after): fresh processes."""
    bare = _in_fresh_process("flows.bench.sweep", url, day.isoformat(), ",".join(BEFORE))
    swept = _in_fresh_process("flows.bench.sweep_measure", url, day.isoformat())
    bare |= _in_fresh_process("flows.bench.sweep", url, day.isoformat(), "digest")
    return {"bare": bare, "sweep": swept}


def _last_sweep(url: str, day: dt.date) -> None:
    """The notification part of the sweep on ``day`` (reminders, digests), not timed."""
    with db.session_scope(url) as session:
        outbox.queue_day(
            session=session,
            on=day,
            calendar=load_calendar(),
            config=load_notifications(),
            ui_url="http://localhost",
            actor="bench",
        )


def _record_the_past(url: str, day: dt.date) -> None:
    """Items before ``day`` were given (2 % left open: the overdue a unit really has)."""
    with db.session_scope(url) as session:
        bulk.record_the_past(session=session, before=day, left_open_every=50)
        bulk.analyze(session=session)


def _print_day(label: str, figures: dict[str, Any]) -> None:
    bare, swept = figures["bare"], figures["sweep"]
    queued = swept["queued"]
    made = {
        "due": swept["due"],
        "overdue": swept["overdue"],
        "remind": queued.get("reminders"),
        "escalate": queued.get("escalations"),
        "digest": queued.get("digests"),
    }
    print(f"  {label}:")
    print(
        f"    {'phase':<10}{'rows':>9}{'sweep made':>12}{'bare query':>12}{'store work':>12}  ratio"
    )
    total_bare = total_store = 0.0
    for phase in PHASES:
        b, store = bare[phase], swept["store_s"].get(phase, 0.0)
        total_bare += b["bare_s"]
        total_store += store
        print(
            f"    {phase:<10}{b['rows']:>9}{made[phase]:>12}{b['bare_s']:>10.3f} s"
            f"{store:>10.3f} s  {store / max(b['bare_s'], 1e-6):5.1f}x"
        )
    print(
        f"    {'all':<10}{'':>9}{'':>12}{total_bare:>10.3f} s{total_store:>10.3f} s  "
        f"{total_store / max(total_bare, 1e-6):5.1f}x"
    )
    print(
        f"    sweep wall   {swept['sweep_wall_s']:8.2f} s  (the flow run in full: intents, "
        "due, overdue, census, board, notifications; dispatch and reconciliation off)"
    )
    print(f"    Prefect      {swept['prefect_start_s']:8.2f} s  to start, before it (not timed)")
    print(f"    task runs    {swept['task_runs']:8d}")
    print(f"    peak memory  {swept['peak_rss_mib']:8.1f} MiB (the sweep's own process)")


def _catch_up_levels(url: str, day: dt.date) -> None:
    """The escalation levels the catch-up sweep leaves, set without it (not timed)."""
    with db.session_scope(url) as session:
        outbox.raise_escalation_levels(
            session=session, on=day, calendar=load_calendar(), config=load_notifications()
        )


def benchmark_sweep(
    *, children: int, seed: int, database_url: str | None, daily_only: bool = False
) -> None:
    """``daily_only``: the catch-up is not measured (a million children's would take an
    hour); only the levels it leaves are set, and the daily sweep is measured."""
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
    last = calendar.next_working_day(BENCH_TODAY)
    _last_sweep(url, last)
    catch_up = calendar.next_working_day(last + dt.timedelta(days=30))
    first = None if daily_only else measure_day(url, catch_up)
    if daily_only:
        _catch_up_levels(url, catch_up)
    _record_the_past(url, catch_up)
    day = calendar.add_working_days(catch_up, 1)
    daily = measure_day(url, day)
    if first is not None:
        _print_day(
            f"catch-up sweep on {catch_up} (last sweep {last}, nothing recorded since)", first
        )
    else:
        print(
            f"  catch-up sweep on {catch_up}: not measured (--daily-only); its escalation "
            "levels set, its reminders not queued"
        )
    _print_day(f"daily sweep on {day} (the month recorded, 2 % left open)", daily)
    if url.startswith("postgresql"):
        with db.session_scope(url) as session:
            size = session.execute(text("SELECT pg_database_size(current_database())")).scalar()
        print(f"  database size  {int(size or 0) / 2**20:8.0f} MiB")


if __name__ == "__main__":  # the bare queries' own process (the sweep's: flows.bench.sweep_measure)
    given = dt.date.fromisoformat(sys.argv[2])
    print(json.dumps(measure_bare(sys.argv[1], given, tuple(sys.argv[3].split(",")))))
