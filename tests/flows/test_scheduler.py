"""Scheduled runs run: `prefect server start` and `sidflows serve`, left alone, do the schedules.

The last round's suite never waited for a scheduled run, and a dependency
(SQLAlchemy 2.1 under Prefect 3.8.8) had broken the server's scheduler: no
`dispatch` run every minute, no 07:00 sweep. These tests start the real
processes on SQLite and on PostgreSQL, create nothing by hand, and wait for
what the schedules alone produce, so an upgrade that breaks scheduling fails CI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from processes import PrefectServer, Unit, postgres_database, wait_for
from sqlalchemy import make_url

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

# The scheduler looks every 5 s instead of every 60 s; nothing else is changed.
FAST_SCHEDULER = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}


@contextmanager
def served(tmp: Path, database_url: str | None) -> Iterator[Unit]:
    server = PrefectServer(tmp, database_url=database_url, settings=FAST_SCHEDULER)
    unit = Unit(tmp, server, {})
    try:
        server.start()
        unit.upgrade_store()
        unit.start_serve()
        yield unit
    finally:
        unit.stop()
        server.stop()


def deployment_runs(unit: Unit, deployment: str) -> list[dict[str, Any]]:
    deployment_id = unit.get(f"/deployments/name/{deployment}")["id"]
    runs: list[dict[str, Any]] = unit.post(
        "/flow_runs/filter",
        {
            "flow_runs": {"deployment_id": {"any_": [deployment_id]}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 50,
        },
    )
    return runs


def completed_scheduled_dispatch(unit: Unit) -> dict[str, Any] | None:
    for run in deployment_runs(unit, "notify/dispatch"):
        if run["auto_scheduled"] and run["state"]["type"] == "COMPLETED":
            return run
    return None


def check_schedules(unit: Unit) -> None:
    # The every-minute dispatcher: the scheduler creates its runs, serve runs one to completion.
    run = wait_for("a scheduled dispatch run completed", lambda: completed_scheduled_dispatch(unit))
    assert run["created_by"] is None or run["created_by"].get("type") != "USER"
    assert "Can't evaluate bulk DML" not in unit.log_files()

    # The daily sweep's cron: its next run is scheduled at 07:00 in the unit's timezone.
    sweeps = wait_for(
        "the sweep's next scheduled run",
        lambda: [r for r in deployment_runs(unit, "sweep/daily-sweep") if r["auto_scheduled"]],
    )
    timezone = ZoneInfo("Europe/Madrid")  # config/calendar.toml
    starts = [
        dt.datetime.fromisoformat(r["expected_start_time"]).astimezone(timezone) for r in sweeps
    ]
    now = dt.datetime.now(timezone)
    assert all(s.time() == dt.time(7, 0) for s in starts), starts
    assert min(starts) > now
    assert min(starts) - now <= dt.timedelta(days=1)
    first = min(starts).date()
    assert {s.date() for s in starts} == {first + dt.timedelta(days=i) for i in range(len(starts))}


def test_schedules_run_on_a_sqlite_prefect_server(tmp_path: Path) -> None:
    with served(tmp_path, None) as unit:
        check_schedules(unit)


@pytest.mark.postgres
def test_schedules_run_on_a_postgresql_prefect_server(tmp_path: Path) -> None:
    with postgres_database() as url:
        asyncpg = make_url(url).set(drivername="postgresql+asyncpg")
        with served(tmp_path, asyncpg.render_as_string(hide_password=False)) as unit:
            check_schedules(unit)
