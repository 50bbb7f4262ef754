"""A unit as processes: `prefect server start` and `sidflows serve`, on free loopback ports.

Shared by the end-to-end and crash tests. `serve` can be killed with SIGKILL
(with every flow-run process it started, as when its machine dies) and started
again. Logs go to files (``server.log``, ``serve.log``), so a test can read them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, make_url
from sqlmodel import Session, create_engine, select

from sidflows.store.models import Patient
from sidflows.store.views import show_document

BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get(
    "SIDFLOWS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# A treatment change that calls for a re-plan: prednisolone 40 mg a day from 2026-11-24.
PREDNISOLONE_CHANGE: dict[str, Any] = {
    "date": "2026-11-24",
    "treatments": [
        {
            "drug": "prednisolone",
            "class": "corticosteroid",
            "start": "2026-11-24",
            "end": None,
            "dose_mg_day": 40,
        }
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 180.0,
    every: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> Any:
    """``check()`` until it is true; else fail, with what ``explain()`` says was going on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:
            found = None
        if found:
            return found
        time.sleep(every)
    context = ""
    if explain is not None:
        try:
            context = "\n" + explain()
        except Exception as error:  # the explanation must not hide the timeout
            context = f"\n(no explanation: {error!r})"
    raise AssertionError(f"timed out waiting for {what}{context}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    wanted = [pid]
    while wanted:
        children = [p for p, parent in parents.items() if parent == wanted[-1]]
        wanted.pop()
        found += children
        wanted += children
    return found


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


# What Prefect's own client retries (prefect/client/base.py): a server that is busy (a
# SQLite server's locked database answers 503) is asked again, with a growing wait.
RETRIED_STATUSES = frozenset({429, 502, 503})
RETRIES = 5


def _answer(call: Callable[[], httpx.Response]) -> Any:
    for attempt in range(RETRIES + 1):
        response = call()
        if response.status_code not in RETRIED_STATUSES or attempt == RETRIES:
            break
        time.sleep(2**attempt)
    response.raise_for_status()
    return response.json()


# A Prefect SQLite database a server has already migrated and set up, copied into each
# new server's home: a server on a new database spends about 10 s of CPU migrating it,
# on one set up 4 s (measured). One per Prefect version and user, kept between runs
# like a cache; made once, under a lock, by the first test that needs it.
TEMPLATE_DIR = Path(tempfile.gettempdir()) / (
    f"sidflows-test-prefect-{importlib.metadata.version('prefect')}-{os.getuid()}"
)


def seed_sqlite_home(home: Path) -> None:
    """Put a set-up Prefect database in ``home`` unless it has one."""
    target = home / "prefect.db"
    if target.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template(), target)


def _sqlite_template() -> Path:
    template = TEMPLATE_DIR / "prefect.db"
    TEMPLATE_DIR.mkdir(exist_ok=True)
    with (TEMPLATE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            making = Path(tempfile.mkdtemp(dir=TEMPLATE_DIR))
            server = PrefectServer(making)
            try:
                server.start(seeded=False)
            finally:
                server.stop()
            try:
                made = Path(server.env["PREFECT_HOME"]) / "prefect.db"
                # One file, whole: the server has stopped, its write-ahead log
                # checkpointed; a database with no migration in it is no template.
                conn = sqlite3.connect(f"file:{made}?mode=rw", uri=True)
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
                finally:
                    conn.close()
                os.replace(made, template)
            finally:
                shutil.rmtree(making, ignore_errors=True)
    return template


class PrefectServer:
    """`prefect server start` with its own home on a free port.

    Its database is SQLite in that home, or ``database_url`` (an asyncpg URL of
    PostgreSQL); ``settings`` adds PREFECT_* settings (a faster scheduler, say).
    """

    def __init__(
        self, tmp: Path, *, database_url: str | None = None, settings: Mapping[str, str] = {}
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_API_URL": self.api,
            "PREFECT_UI_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # serve picks runs up within 2 s
            **({"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}),
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "server.log"

    def start(self, *, seeded: bool = True) -> PrefectServer:
        """Start it; on SQLite its home gets the set-up database first (unless ``seeded``
        is false: the template itself)."""
        on_sqlite = "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in self.env
        if seeded and on_sqlite:
            seed_sqlite_home(Path(self.env["PREFECT_HOME"]))
        environment = {**os.environ, **self.env}
        if on_sqlite:  # the database in its home, whatever this process was given
            for name in (
                "PREFECT_SERVER_DATABASE_CONNECTION_URL",
                "PREFECT_API_DATABASE_CONNECTION_URL",
            ):
                environment.pop(name, None)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "prefect"),
                    *("server", "start", "--host", "127.0.0.1", "--port", str(self.port)),
                ],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        wait_for(
            "the Prefect server",
            lambda: httpx.get(f"{self.api}/health", timeout=5).status_code == 200,
            every=0.5,
            explain=lambda: self.log_path.read_text(errors="replace")[-3000:],
        )
        return self

    def pause(self) -> None:
        """SIGSTOP the server and its processes: calls to its API wait (a hung server)."""
        assert self.process is not None
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
        _stop(self.process)


class Unit:
    """`sidflows serve` and the CLI against a Prefect server; store and routes from ``env``."""

    def __init__(self, tmp: Path, server: PrefectServer, env: Mapping[str, str]) -> None:
        self.tmp = tmp
        self.server = server
        self.api = server.api
        self.env = {
            **os.environ,
            **server.env,
            "SIDFLOWS_DATABASE_URL": f"sqlite:///{tmp / 'store.db'}",
            **env,
            "TMP": str(tmp),
        }
        self.serve: subprocess.Popen[bytes] | None = None
        self.serve_started = dt.datetime.now(dt.UTC)
        self._logs: list[IO[str]] = []
        self._engine: Engine | None = None

    def upgrade_store(self) -> None:
        done = self.cli("db", "upgrade")
        assert done.returncode == 0, done.stderr

    def start_serve(self) -> None:
        """`sidflows serve` in a session of its own; back once it polls for runs."""
        assert self.serve is None or self.serve.poll() is not None
        self.serve_started = dt.datetime.now(dt.UTC)
        log = (self.tmp / "serve.log").open("a")
        self._logs.append(log)
        self.serve = subprocess.Popen(
            [str(BIN / "sidflows"), "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
            start_new_session=True,
        )
        wait_for("serve polling for runs", self.serve_polling, every=0.5)

    def serve_polling(self) -> bool:
        """This `serve` has polled the server for its deployments' runs since it started."""
        if self.serve is None or self.serve.poll() is not None:
            raise AssertionError(f"serve exited: see {self.tmp / 'serve.log'}")
        response = httpx.get(f"{self.api}/deployments/name/replan/replan", timeout=5)
        polled = response.json().get("last_polled") if response.status_code == 200 else None
        return bool(polled) and dt.datetime.fromisoformat(polled) >= self.serve_started

    def kill_serve(self) -> list[int]:
        """SIGKILL `serve` and every process it started (flow runs): nothing runs on."""
        assert self.serve is not None
        doomed = [self.serve.pid, *descendants(self.serve.pid)]
        for pid in doomed:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.serve.wait(timeout=30)
        for pid in doomed[1:]:
            wait_for(f"process {pid} gone", lambda pid=pid: not Path(f"/proc/{pid}").exists())
        return doomed

    def stop(self) -> None:
        if self.serve is not None:
            children = descendants(self.serve.pid)
            _stop(self.serve)
            for pid in children:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for log in self._logs:
            log.close()
        if self._engine is not None:
            self._engine.dispose()

    # ------------------------------------------------------------------------- driving it

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # the caller checks the exit code
            [str(BIN / "sidflows"), *args],
            check=False,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def show(self, ref: str) -> dict[str, Any]:
        done = self.cli("show", ref, "--json")
        assert done.returncode == 0, done.stderr
        document: dict[str, Any] = json.loads(done.stdout)
        return document

    def peek(self, ref: str) -> dict[str, Any]:
        """What ``show REF --json`` says, read straight from the unit's store: what a test
        polls while it waits (a ``show`` process a second would keep a core busy, and
        slow the very runs it waits for). ``show`` itself is checked where it matters."""
        if self._engine is None:
            self._engine = create_engine(self.env["SIDFLOWS_DATABASE_URL"])
        with Session(self._engine) as session:
            patient = session.exec(select(Patient).where(Patient.ref == ref)).first()
            if patient is None:
                return {}
            return show_document(session=session, patient=patient) or {
                "patient_ref": ref,
                "plan_version": None,
                "patient_state": patient.state,
            }

    def get(self, path: str) -> Any:
        return _answer(lambda: httpx.get(f"{self.api}{path}", timeout=90))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return _answer(lambda: httpx.post(f"{self.api}{path}", json=body, timeout=90))

    def runs(self, *tags: str, limit: int = 200) -> list[dict[str, Any]]:
        """Flow runs carrying every one of ``tags``, newest first."""
        found: list[dict[str, Any]] = self.post(
            "/flow_runs/filter",
            {"flow_runs": {"tags": {"all_": list(tags)}}, "sort": "ID_DESC", "limit": limit},
        )
        return found

    def timeline(self, *tags: str, serve_lines: int = 40) -> str:
        """The runs carrying ``tags`` (name, state, when expected, started, ended) and the
        end of serve's log: what a test that timed out was waiting behind."""
        lines = [
            f"{r['name']:<40} {r['state']['type']:<10} expected {r['expected_start_time']}"
            f" started {r['start_time']} ended {r['end_time']}"
            for r in reversed(self.runs(*tags))
        ]
        log = self.tmp / "serve.log"
        tail = log.read_text(errors="replace").splitlines()[-serve_lines:] if log.exists() else []
        return "\n".join(["runs:", *lines, "serve.log:", *tail])

    def log_files(self) -> str:
        """What serve and the Prefect server wrote to their logs."""
        paths = [self.tmp / "serve.log", self.server.log_path]
        return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())

    def paused(self, ref: str) -> bool:
        """The child's pathway run is suspended, waiting for the clinician."""
        return any(r["state"]["type"] == "PAUSED" for r in self.runs(f"ref:{ref}", "step:pathway"))


def everything_prefect_holds(base: str) -> str:
    """Runs, task runs, logs, artifacts, events, deployments: all of it, as text."""
    dumps: list[Any] = []
    for path, body in (
        ("/flow_runs/filter", {"sort": "ID_DESC"}),
        ("/task_runs/filter", {"sort": "ID_DESC"}),
        ("/logs/filter", {"sort": "TIMESTAMP_ASC"}),
        ("/artifacts/filter", {"sort": "ID_DESC"}),
        ("/deployments/filter", {"sort": "NAME_ASC"}),
        ("/automations/filter", {}),
    ):
        offset = 0
        while True:
            response = httpx.post(
                f"{base}{path}", json={"limit": 200, "offset": offset, **body}, timeout=30
            )
            response.raise_for_status()
            page = response.json()
            dumps.append(page)
            if len(page) < 200:
                break
            offset += 200
    response = httpx.post(f"{base}/events/filter", json={"limit": 50}, timeout=30)
    response.raise_for_status()
    page = response.json()
    dumps.append(page["events"])
    while page.get("next_page"):
        response = httpx.get(page["next_page"], timeout=30)
        response.raise_for_status()
        page = response.json()
        dumps.append(page["events"])
    return json.dumps(dumps)


@contextmanager
def running_unit(tmp: Path, env: Mapping[str, str] | None = None) -> Iterator[Unit]:
    """A Prefect server and `sidflows serve`, each its own process, stopped afterwards."""
    server = PrefectServer(tmp)
    unit = Unit(tmp, server, env or {})
    try:
        server.start()
        unit.upgrade_store()
        unit.start_serve()
        yield unit
    finally:
        unit.stop()
        server.stop()


def _admin(statement: str) -> None:
    conninfo = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(
        conninfo.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
    ) as conn:
        conn.execute(statement)


@contextmanager
def postgres_database(password: str | None = None) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL (skipped when it cannot be reached).

    ``password`` goes into the URL only (the test server trusts loopback).
    """
    name = f"sidflows_c_{uuid.uuid4().hex}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {make_url(POSTGRES_URL)!r} is unreachable: {exc}")
    url = make_url(POSTGRES_URL).set(database=name)
    if password is not None:
        url = url.set(password=password)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
