"""``sidflows benchmark prefect``: Prefect's share of the registry, on a real server.

For each registry size (2,000 and 10,000 children by default), a fresh store
(flows/bench/sweep.py builds it, not timed) and a fresh ``prefect server start``
on a PostgreSQL database of its own, with the unit's retention settings
(config/prefect-server.env). Then, in a fresh process, the sweep's
reconciliation step (flows/sweep.py ``reconcile_runs``: read what the store
expects, ``projection.reconcile``, record the run ids) three times, on a day
three to nine months into the plans (made over half a year), the past recorded
(2 % left overdue):

- first: Prefect holds nothing yet (a new server), every run is created;
- again the same day: the steady state, nothing to create;
- the next day: the items that came within the look-ahead overnight.

It prints the runs Prefect holds (and what the plan's 366-day horizon would
hold), each round's time split into store and Prefect work, the Prefect API
calls per child, Prefect's database size, and the extrapolation to 100,000
and 1,000,000 children from the two sizes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, text
from sqlalchemy import select as sa_select

from flows.bench.common import BENCH_TODAY, peak_rss_mib
from sidflows import service
from sidflows.calendar import load_calendar
from sidflows.errors import InvalidInput
from sidflows.store import bulk, db
from sidflows.store.models import PlanItem
from sidflows.store.sweep import expected_runs

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EXTRAPOLATE = (100_000, 1_000_000)
STEADY_AFTER_DAYS = 91
SPREAD_DAYS = 182
LOOKAHEADS = (7, 14, 28, 42, 91, 366)  # what Prefect would hold with each (the store says)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _admin(url: str, statement: str) -> Any:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(statement)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None


@contextmanager
def prefect_on_postgres(
    *, admin_url: str = ADMIN_URL, settings: Mapping[str, str] | None = None, label: str = "bench"
) -> Iterator[tuple[str, str]]:
    """``prefect server start`` on a new PostgreSQL database, with the unit's retention.

    Yields (API URL, database name); the server is stopped and its database dropped after.
    """
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows.deployments import prefect_server_settings

    name = f"sidflows_{label}_{uuid.uuid4().hex[:12]}"
    try:
        _admin(admin_url, f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise InvalidInput("--prefect-postgres", f"cannot create a database: {exc}") from None
    home = Path(tempfile.mkdtemp(prefix="sidflows-prefect-"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {
        **os.environ,
        **prefect_server_settings(),
        **(settings or {}),
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"{base}/{name}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("ab")
    command = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--no-ui"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start: see {home / 'server.log'}")
            time.sleep(0.5)
        yield api, name
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(home, ignore_errors=True)


# ----------------------------------------------------------------------------- measuring process


class CountedCalls:
    """Every request Prefect's clients send from this process (retries counted once)."""

    def __init__(self) -> None:
        # loaded when used: this module loads no Prefect (the demo sets it up first)
        from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

        self.count = 0
        sync_send, async_send = PrefectHttpxSyncClient.send, PrefectHttpxAsyncClient.send

        def counted_sync(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return sync_send(client, request, *args, **kwargs)

        async def counted_async(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await async_send(client, request, *args, **kwargs)

        PrefectHttpxSyncClient.send = counted_sync  # type: ignore[method-assign,assignment]
        PrefectHttpxAsyncClient.send = counted_async  # type: ignore[method-assign,assignment]


def reconcile_once(day: dt.date, calls: CountedCalls, batch: int = 5000) -> dict[str, Any]:
    """The sweep's ``reconcile_runs`` step for ``day``, each part timed and its calls counted."""
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows import projection

    started, before = time.perf_counter(), calls.count
    expected = projection.expected_by(projection.lookahead(day), batch=batch)
    read = time.perf_counter()
    result, done = projection.reconcile(expected, until=projection.lookahead(day))
    reconciled = time.perf_counter()
    service.record_run_ids(done.runs)
    recorded = time.perf_counter()
    return {
        "expected": result.expected,
        "existing": result.existing,
        "created": result.created,
        "cancelled": result.cancelled,
        "store_read_s": read - started,
        "prefect_s": reconciled - read,
        "store_record_s": recorded - reconciled,
        "total_s": recorded - started,
        "api_calls": calls.count - before,
    }


def store_figures(day: dt.date) -> dict[str, Any]:
    """What the store says Prefect would hold at the plan's horizon, and item runs a day."""
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows import projection

    with db.session_scope() as session:
        by_lookahead = {
            days: len(
                expected_runs(
                    session=session,
                    until=day + dt.timedelta(days=days),
                    after_plan_id=0,
                    limit=10_000_000,
                )
            )
            for days in LOOKAHEADS
        }
        year = session.execute(  # the plans' 12 months, from the day they were made
            sa_select(func.count()).where(
                PlanItem.due >= BENCH_TODAY,  # type: ignore[arg-type]
                PlanItem.due < BENCH_TODAY + dt.timedelta(days=365),  # type: ignore[arg-type]
            )
        ).scalar_one()
    return {
        "lookahead_days": (projection.lookahead(day) - day).days,
        "held_at_366_days": by_lookahead[366],
        "held_by_lookahead": by_lookahead,
        "item_runs_per_day": year / 365,
    }


def measure(day: dt.date) -> dict[str, Any]:
    """In this process: the deployments, then three reconciliations and what Prefect holds."""
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from prefect import get_client

    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows import projection

    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows.deployments import register

    calls = CountedCalls()
    register()
    rounds = {
        "first": reconcile_once(day, calls),
        "steady": reconcile_once(day, calls),
        "next_day": reconcile_once(day + dt.timedelta(days=1), calls),
    }
    with get_client(sync_client=True) as client:
        waiting = len(projection.waiting_item_runs(client))
        every = client.count_flow_runs()
    return {
        "rounds": rounds,
        "waiting_item_runs": waiting,
        "flow_runs": every,
        "peak_rss_mib": peak_rss_mib(),
        **store_figures(day),
    }


# ----------------------------------------------------------------------------- the command


def spread_plan_starts(session: Any, days: int) -> None:
    """Move each plan's items ``plan id % days`` days earlier: plans made over half a year.

    The registry's plans are all made on one day, so each stream's next item would fall on
    the same day for every child (every plan review at once, three months in): a unit's
    children started on different days.
    """
    if session.get_bind().dialect.name == "sqlite":
        shift = "due = date(due, '-' || (plan_id % :days) || ' days')"
    else:
        shift = "due = due - (plan_id % :days)"
    session.execute(text(f"UPDATE planitem SET {shift}").bindparams(days=days))


def _measure_in_fresh_process(store_url: str, api: str, day: dt.date) -> dict[str, Any]:
    env = {
        **os.environ,
        "SIDFLOWS_DATABASE_URL": store_url,
        "PREFECT_API_URL": api,
        "PREFECT_LOGGING_LEVEL": "ERROR",
    }
    done = subprocess.run(
        [sys.executable, "-m", "flows.bench.prefect_share", day.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the reconciliation's measurement failed: {done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _fit(sizes: list[int], values: list[float], at: int) -> float:
    """The straight line through the two sizes' values, at ``at`` children."""
    (n1, n2), (v1, v2) = sizes[-2:], values[-2:]
    slope = (v2 - v1) / (n2 - n1)
    return max(0.0, v2 + slope * (at - n2))


def benchmark_prefect(
    *,
    sizes: list[int],
    seed: int,
    database_url: str | None,
    admin_url: str = ADMIN_URL,
) -> list[dict[str, Any]]:
    # loaded when used: this module loads no Prefect (the demo sets it up first)
    from flows.bench.sweep import build_registry

    if len(sizes) < 2 or len(set(sizes)) != len(sizes):
        raise InvalidInput("--sizes", "give two different sizes at least, e.g. 2000,10000")
    url = database_url or f"sqlite:///{os.path.abspath('.sidflows/bench-prefect.db')}"
    os.makedirs(".sidflows", exist_ok=True)
    print(f"Prefect's share: children {', '.join(map(str, sizes))}; store {url.split('@')[-1]}")
    print(
        f"  look-ahead {load_calendar().config.prefect_lookahead_days} days (config/calendar.toml)"
    )
    # Three months into the plans, the past recorded (2 % left open: the unit's overdue):
    # each stream's next item is where a running unit's would be, not its plan's first.
    day = load_calendar().next_working_day(BENCH_TODAY + dt.timedelta(days=STEADY_AFTER_DAYS))
    found = []
    for children in sorted(sizes):
        started = time.perf_counter()
        items = build_registry(url, children, seed)
        with db.session_scope(url) as session:
            spread_plan_starts(session, SPREAD_DAYS)
            bulk.record_the_past(session=session, before=day, left_open_every=50)
            bulk.analyze(session=session, table="planitem")
        built = time.perf_counter() - started
        with prefect_on_postgres(admin_url=admin_url) as (api, name):
            f = _measure_in_fresh_process(url, api, day)
            f["prefect_db_mib"] = _admin(admin_url, f"SELECT pg_database_size('{name}')") / 2**20
        f["children"], f["items"] = children, items
        found.append(f)
        held = f["waiting_item_runs"]
        print(f"  {children} children ({items} items, registry built in {built:.0f} s, not timed)")
        print(
            f"    runs Prefect holds     {held:>9} waiting item runs ({held / children:.2f} a "
            f"child; the 366-day horizon would hold {f['held_at_366_days']}, "
            f"{f['held_at_366_days'] / children:.2f} a child); {f['flow_runs']} flow runs in all"
        )
        table = ", ".join(
            f"{days} d {n / children:.2f}" for days, n in f["held_by_lookahead"].items()
        )
        print(f"    a child's runs by look-ahead: {table}")
        print(
            f"    history under vacuum   {f['item_runs_per_day'] * 30:9.0f} ended item runs "
            f"(30 days of {f['item_runs_per_day']:.0f} a day; config/prefect-server.env)"
        )
        print(f"    Prefect database       {f['prefect_db_mib']:9.1f} MiB (PostgreSQL)")
        for label, r in (
            ("first (all created)", f["rounds"]["first"]),
            ("steady (same day again)", f["rounds"]["steady"]),
            ("next day", f["rounds"]["next_day"]),
        ):
            print(
                f"    {label:<23}{r['total_s']:9.2f} s: store {r['store_read_s']:.2f} s read + "
                f"{r['store_record_s']:.2f} s record, Prefect {r['prefect_s']:.2f} s; "
                f"{r['created']} created, {r['cancelled']} cancelled; {r['api_calls']} API calls "
                f"({r['api_calls'] / children:.3f} a child)"
            )
        print(f"    peak memory            {f['peak_rss_mib']:9.1f} MiB (the measuring process)")
    counts = [f["children"] for f in found]
    daily = [f["rounds"]["steady"]["total_s"] + f["rounds"]["next_day"]["total_s"] for f in found]
    held_growth = found[-1]["waiting_item_runs"] / max(found[-2]["waiting_item_runs"], 1)
    print(
        f"  growth {counts[-2]} -> {counts[-1]} children ({counts[-1] / counts[-2]:.1f}x): "
        f"runs held {held_growth:.1f}x, "
        f"a day's reconciliation (steady + next day) {daily[-1] / max(daily[-2], 1e-6):.1f}x"
    )
    for at in EXTRAPOLATE:
        held = _fit(counts, [f["waiting_item_runs"] for f in found], at)
        calls = _fit(
            counts,
            [
                f["rounds"]["steady"]["api_calls"] + f["rounds"]["next_day"]["api_calls"]
                for f in found
            ],
            at,
        )
        history = _fit(counts, [f["item_runs_per_day"] * 30 for f in found], at)
        memory = _fit(counts, [f["peak_rss_mib"] for f in found], at)
        print(
            f"  at {at:>9} children (straight line through the last two sizes): "
            f"{held:,.0f} waiting runs and {history:,.0f} ended ones kept; a day's "
            f"reconciliation {_fit(counts, daily, at):,.0f} s in {calls:,.0f} API calls; "
            f"{memory:,.0f} MiB"
        )
    return found


def parse_sizes(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InvalidInput("--sizes", f"sizes like 2000,10000, not {value!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise InvalidInput("--sizes", f"sizes like 2000,10000, not {value!r}")
    return sizes


if __name__ == "__main__":  # the measuring process (PREFECT_API_URL, SIDFLOWS_DATABASE_URL set)
    print(json.dumps(measure(dt.date.fromisoformat(sys.argv[1]))))
