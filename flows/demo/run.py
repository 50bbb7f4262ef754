"""``sidflows demo``: a synthetic cohort from referral to review through the real flows.

Embedded defaults: a SQLite store and Prefect's temporary local server, both
kept under .sidflows/demo/ so the UI can be opened on them afterwards. This
module never imports Prefect itself: it points Prefect at .sidflows/demo/ first
(Prefect reads its settings when it is imported), then loads the simulation. The
clock is simulated: each working day of the year, the item runs Prefect holds
for that day are executed here, with outcomes a simulated unit records.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import make_url

from flows.cli.local_server import loopback_client, plain_http_client
from flows.demo import notifications as notes
from flows.quiet import first_line
from sidflows.errors import ConfigError
from sidflows.notify.config import load_notifications
from sidflows.notify.routes import configured
from sidflows.settings import get_settings

DEMO_DIR = Path(".sidflows") / "demo"


def _prepare_environment() -> Path:
    """Before prefect is imported: where the demo's store and Prefect history live."""
    base = DEMO_DIR.resolve()
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    os.environ["SIDFLOWS_DATABASE_URL"] = _store(base)
    get_settings.cache_clear()  # settings read before this (the command line's) are the unit's
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_HOME"] = str(base / "prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_API_DATABASE_CONNECTION_URL", _prefect_database(base))
        loopback_client()
        os.environ.setdefault("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK", RESULTS_BLOCK)
    plain_http_client()
    return base


# Where the flows' results go: Prefect's default (files under PREFECT_HOME/storage), named
# as a block the demo saves on its server. Without one, each flow run asks the server
# whether it has a default storage of its own (a request and a client per run).
RESULTS_BLOCK = "local-file-system/sidflows-demo-results"


def save_results_block() -> None:
    """The block RESULTS_BLOCK names, on the demo's server (once Prefect is imported)."""
    if os.environ.get("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK") != RESULTS_BLOCK:
        return
    # Prefect loads after the environment above is set (it reads it when imported).
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH  # read when imported, as above

    storage = LocalFileSystem(basepath=str(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()))
    storage.save(RESULTS_BLOCK.split("/", 1)[1], overwrite=True)


def _prefect_database(base: Path) -> str:
    """Where the temporary Prefect server keeps the demo's history.

    A local PostgreSQL when one answers (Prefect's SQLite backend serialises the
    server's writes and retries on locks: the demo's year takes several times
    longer), else SQLite under .sidflows/demo/prefect. SIDFLOWS_DEMO_PREFECT_DB
    chooses: "auto" (default), "sqlite", or a PostgreSQL server URL.
    """
    sqlite = f"sqlite+aiosqlite:///{base / 'prefect' / 'prefect.db'}"
    choice = os.environ.get("SIDFLOWS_DEMO_PREFECT_DB", "auto")
    if choice == "sqlite":
        return sqlite
    server = (
        choice
        if choice.startswith("postgresql")
        else "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        _new_database(server, "sidflows_demo_prefect", timeout=2)
    except Exception:  # no PostgreSQL answers here: SQLite it is
        return sqlite
    head, _, _ = server.rpartition("/")
    return head.replace("postgresql://", "postgresql+asyncpg://", 1) + "/sidflows_demo_prefect"


def _new_database(server: str, name: str, *, timeout: int) -> None:
    """``name`` on the PostgreSQL ``server`` (a libpq URL), empty: an older one is dropped."""
    with psycopg.connect(server, connect_timeout=timeout, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


STORE_DATABASE = "sidflows_demo_store"


def _store(base: Path) -> str:
    """The demo's store: SQLite under .sidflows/demo (the embedded default), or, with
    SIDFLOWS_DEMO_STORE set to a PostgreSQL server's URL (SQLAlchemy's, any database
    on it), a new database ``sidflows_demo_store`` there, as a unit's store runs in
    production. A server that does not answer stops the demo before it starts."""
    choice = os.environ.get("SIDFLOWS_DEMO_STORE", "sqlite")
    if choice == "sqlite":
        return f"sqlite:///{base / 'sidflows.db'}"
    if not choice.startswith("postgresql"):
        raise ConfigError(
            f"SIDFLOWS_DEMO_STORE: 'sqlite' or a PostgreSQL server's URL, not {choice!r}"
        )
    url = make_url(choice)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        _new_database(admin, STORE_DATABASE, timeout=5)
    except psycopg.Error as exc:
        raise ConfigError(
            f"SIDFLOWS_DEMO_STORE: the PostgreSQL server refused: {first_line(exc)}"
        ) from None
    return url.set(database=STORE_DATABASE).render_as_string(hide_password=False)


def _store_hint() -> str:
    url = os.environ["SIDFLOWS_DATABASE_URL"]
    shown = make_url(url).render_as_string(hide_password=True)
    return f"SIDFLOWS_DATABASE_URL={shown}"


def run_demo(*, children: int, months: int, seed: int, local_receivers: bool = False) -> int:
    base = _prepare_environment()
    started = time.perf_counter()
    # Prefect reads PREFECT_HOME and its settings when first imported: after the above.
    from flows.demo.simulation import simulate

    console = Console()
    console.print(
        f"[bold]sidflows demo[/]: {children} synthetic children, {months} months, seed {seed}"
    )
    config = load_notifications()
    receivers = None
    if local_receivers:
        notes.route_environment_aside()
        receivers = notes.start_local_receivers(config)
        os.environ.update(receivers.routes)
        console.print(
            f"notifications: local receivers on 127.0.0.1 (webhook :{receivers.http.port}"
            + (f", mail :{receivers.smtp.port}" if receivers.smtp else "")
            + ") for every role"
        )
    elif configured():
        console.print(f"notifications go to the routes configured for: {', '.join(configured())}")
    try:
        summary = simulate(
            children=children,
            months=months,
            seed=seed,
            console=console,
            before_year=save_results_block,
        )
        report = notes.notification_report(config, receivers)
    finally:
        if receivers is not None:
            receivers.stop()
    elapsed = time.perf_counter() - started
    _print_summary(console, summary, elapsed, base)
    notes.print_report(console, report, store_hint=_store_hint())
    return 0


def _timing_table(seconds: dict[str, tuple[float, int]], elapsed: float) -> Table:
    """Where the demo's time went: each part's seconds, runs and seconds per run."""
    table = Table(title=f"Time: {elapsed:.0f} s in all")
    for column in ("part", "runs", "seconds", "per run"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for part, (spent, count) in sorted(seconds.items(), key=lambda kv: -kv[1][0]):
        table.add_row(part, str(count), f"{spent:.1f}", f"{spent / max(count, 1):.2f}")
    rest = elapsed - sum(spent for spent, _ in seconds.values())
    table.add_row("the rest (referrals, approvals, the store, the report)", "", f"{rest:.1f}", "")
    return table


def _print_summary(console: Any, summary: dict[str, Any], elapsed: float, base: Path) -> None:
    table = Table(
        title=f"After {summary['days']} simulated days ({summary['start']} to {summary['end']})"
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    for state, count in sorted(summary["states"].items()):
        table.add_row(f"children {state.replace('_', ' ')}", str(count))
    for label in (
        "IG sessions given",
        "IG sessions missed",
        "vaccines given",
        "vaccines deferred",
        "reassessments",
        "plan reviews",
        "re-plans",
        "treatment changes",
        "outcomes recorded late",
        "item runs executed",
        "plan versions",
    ):
        table.add_row(label, str(summary["counts"].get(label, 0)))
    console.print(table)
    console.print(_timing_table(summary.get("seconds", {}), elapsed))
    console.print(f"finished in {elapsed:.0f} s")
    console.print(f"store: {make_url(os.environ['SIDFLOWS_DATABASE_URL']).render_as_string()}")
    if os.environ.get("PREFECT_HOME", "").startswith(str(base)):
        database = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
        where = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
        console.print(
            f"Prefect history ({where}); open the UI on it with:\n"
            f"  PREFECT_HOME={base / 'prefect'} PREFECT_API_DATABASE_CONNECTION_URL={database} "
            ".venv/bin/prefect server start\n"
            "then http://127.0.0.1:4200 (flow runs; artifacts plan-demo-..., unit-census)"
        )
    console.print(f"look at one child: {_store_hint()} .venv/bin/sidflows show DEMO-000000")
