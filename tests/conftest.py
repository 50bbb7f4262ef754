"""Shared fixtures: one real Prefect server per test session, a fresh store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


def _clear_caches() -> None:
    from flows import runtime
    from sidflows.settings import get_settings

    get_settings.cache_clear()
    runtime.ensure_store.cache_clear()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite store at the newest schema, used by the service and the flows."""
    from sidflows.store import db

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("SIDFLOWS_DATABASE_URL", url)
    _clear_caches()
    db.upgrade(url)
    yield url
    _clear_caches()
