"""Shared fixtures: one real Prefect server per test session, a fresh store per test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from flows.cli.local_server import loopback_client, plain_http_client

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A Prefect home of this pytest process's own (each xdist worker has one): a command a
# test starts without a server of its own starts Prefect's temporary server there, never
# on the ~/.prefect database of the developer or of another worker. Tests that want a
# home of their own give one in the command's environment.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="sidflows-tests-prefect-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
# The client settings the commands give a plain-HTTP server on loopback (before Prefect is
# imported; every server, `serve` and command the tests start inherits them): no CSRF
# round trip per client, and one CA certificate to load instead of certifi's bundle.
loopback_client()
plain_http_client()

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "referrals"


@pytest.fixture(scope="session", autouse=True)
def _prefect_home_set_up() -> None:
    """The process's Prefect home starts with a database Prefect has already set up
    (tests/flows/processes.py keeps one per Prefect version): the temporary server a
    command starts there does not spend its first start migrating a new one."""
    from tests.flows.processes import seed_sqlite_home

    try:
        seed_sqlite_home(Path(os.environ["PREFECT_HOME"]))
    except Exception as exc:  # the temporary servers then migrate their own database
        warnings.warn(f"no set-up Prefect database for PREFECT_HOME: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server for the whole session, on a new PostgreSQL database.

    PostgreSQL is what a unit's server runs on. Prefect's test harness puts the server
    on SQLite, whose single writer made the server's own services and the tests'
    calls wait on each other's locks: a request stalled for about a minute in some
    runs. Without the test PostgreSQL, the harness's SQLite server it is.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with ExitStack() as stack:
        database = stack.enter_context(_prefect_database())
        if database is None:
            stack.enter_context(prefect_test_harness(server_startup_timeout=180))
        else:
            stack.enter_context(_server_on(database))
        yield str(PREFECT_API_URL.value())


POSTGRES_URL = os.environ.get(
    "SIDFLOWS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def _prefect_database() -> Iterator[str | None]:
    """A new database for the session's Prefect server (asyncpg URL), dropped after it."""
    import psycopg
    from sqlalchemy import make_url

    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    name = f"sidflows_prefect_{uuid.uuid4().hex}"
    conninfo = admin.render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        if os.environ.get("CI"):  # CI has the test PostgreSQL: its absence is a failure
            raise RuntimeError(f"the test PostgreSQL is unusable: {exc}") from exc
        yield None
        return
    try:
        yield (
            make_url(POSTGRES_URL)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:  # left behind; a test's own failure is not hidden
            warnings.warn(f"{name} was not dropped: {exc}", stacklevel=1)


@contextmanager
def _server_on(database: str) -> Iterator[None]:
    """Prefect's own subprocess server (as its test harness starts it) on ``database``."""
    import socket

    import prefect.context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database}):
        server = SubprocessASGIServer(port=port)
        # Prefect code that looks for the default local server finds this one, as under
        # the harness, instead of starting one of its own.
        before = SubprocessASGIServer._instances.get(None)
        SubprocessASGIServer._instances[None] = server
        server.start(timeout=180)
        try:
            with (
                temporary_settings(updates={PREFECT_API_URL: server.api_url}),
                # Code in a context copied before this (threads) sees it too, as with
                # the harness.
                prefect.context._temporary_global_settings_context(
                    prefect.context.get_settings_context()
                ),
            ):
                yield
                _drain_queued()
        finally:
            server.stop()
            if before is None:
                SubprocessASGIServer._instances.pop(None, None)
            else:
                SubprocessASGIServer._instances[None] = before


def _drain_queued() -> None:
    """The logs and events still queued for the server, sent before it stops (as the
    harness does; else each retries against a stopped server at exit)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # the log worker never started
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


def clear_store_caches() -> None:
    """Forget the settings and the store prepared for an earlier SIDFLOWS_DATABASE_URL."""
    from flows import runtime
    from sidflows.settings import get_settings

    get_settings.cache_clear()
    runtime.ensure_store.cache_clear()


Snapshot = dict[str, list[tuple[Any, ...]]]


def store_snapshot(url: str | None = None) -> Snapshot:
    """Every row of every table of the store, every column (timestamps too), in id order."""
    from sqlalchemy import text
    from sqlmodel import SQLModel

    from sidflows.store import db

    with db.get_engine(url).connect() as conn:
        return {
            table: [
                tuple(row) for row in conn.execute(text(f'SELECT * FROM "{table}" ORDER BY id'))
            ]
            for table in sorted(SQLModel.metadata.tables)
        }


def store_changes(before: Snapshot, after: Snapshot) -> dict[str, dict[str, list[Any]]]:
    """What differs between two snapshots, table by table: rows gone and rows new or changed."""
    return {
        table: {
            "gone": [r for r in before[table] if r not in after[table]],
            "new or changed": [r for r in after[table] if r not in before[table]],
        }
        for table in before
        if before[table] != after[table]
    }


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite store at the newest schema, used by the service and the flows."""
    from sidflows.store import db

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("SIDFLOWS_DATABASE_URL", url)
    clear_store_caches()
    db.upgrade(url)
    yield url
    clear_store_caches()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (each otherwise in its place): under pytest-xdist's ``load``
    distribution (dev.py test, two tests at a time per worker) they are dealt out to the
    workers at the start and the short ones fill in around them, instead of a few long
    ones ending the run."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a plain pytest keeps the files' order
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# ----------------------------------------------------------------------------- bad-input tally

RUN_TALLY: Counter[str] = Counter()  # this run's, in the process that reports
TALLY_PROPERTY = "bad_input_tally"


@pytest.fixture
def bad_input_tally(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """Mangled documents refused, by command: printed at the end of the run.

    Each test's count travels in its report (user properties), so the run's total is
    the same whether the tests ran in this process or in pytest-xdist's workers."""
    tally: Counter[str] = Counter()
    yield tally
    request.node.user_properties.append((TALLY_PROPERTY, dict(tally)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add a test's bad-input tally (in its teardown report) to the run's."""
    if report.when != "teardown":
        return
    for name, value in report.user_properties:
        if name == TALLY_PROPERTY and isinstance(value, dict):
            RUN_TALLY.update(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = RUN_TALLY
    if not tally:
        return
    terminalreporter.write_sep("-", "mangled documents refused (exit 2, one line, store unchanged)")
    for command, count in sorted(tally.items()):
        terminalreporter.write_line(f"{command:<40} {count:>7,}")
    terminalreporter.write_line(f"{'total':<40} {sum(tally.values()):>7,}")
