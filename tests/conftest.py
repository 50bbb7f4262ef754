"""Shared fixtures: one real Prefect server per test session, a fresh store per test."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "referrals"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server (its own temporary database) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


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


# ----------------------------------------------------------------------------- bad-input tally

BAD_INPUT_TALLY = pytest.StashKey[Counter[str]]()


@pytest.fixture(scope="session")
def bad_input_tally(request: pytest.FixtureRequest) -> Counter[str]:
    """Mangled documents refused, by command: printed at the end of the run."""
    return request.config.stash.setdefault(BAD_INPUT_TALLY, Counter())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = terminalreporter.config.stash.get(BAD_INPUT_TALLY, Counter())
    if not tally:
        return
    terminalreporter.write_sep("-", "mangled documents refused (exit 2, one line, store unchanged)")
    for command, count in sorted(tally.items()):
        terminalreporter.write_line(f"{command:<40} {count:>7,}")
    terminalreporter.write_line(f"{'total':<40} {sum(tally.values()):>7,}")
