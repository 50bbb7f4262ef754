"""The store under test on SQLite and on PostgreSQL: a fresh, migrated database per test.

Every test that asks for ``database_url`` runs twice, once per engine. The URL is
also put in SIDFLOWS_DATABASE_URL (settings cache cleared), so the service steps,
which open their own transactions on the default URL, use the same database.
PostgreSQL comes from SIDFLOWS_TEST_POSTGRES_URL; each test gets its own
database on that server, dropped afterwards. When the server cannot be reached
the postgres parameters are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from sidflows.settings import get_settings
from sidflows.store import db

POSTGRES_URL = os.environ.get(
    "SIDFLOWS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _server_conninfo() -> str:
    """The test server's URL as psycopg takes it (the maintenance connection)."""
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


@cache
def _postgres_unreachable() -> str | None:
    try:
        with psycopg.connect(_server_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {make_url(POSTGRES_URL)!r} is unreachable: {first_line}"
    return None


def _admin(statement: str) -> None:
    with psycopg.connect(_server_conninfo(), autocommit=True, connect_timeout=3) as conn:
        conn.execute(statement)


@pytest.fixture(params=ENGINES)
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A new, empty database (no schema), named in SIDFLOWS_DATABASE_URL."""
    name: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        reason = _postgres_unreachable()
        if reason:
            pytest.skip(reason)
        name = f"sidflows_t_{uuid.uuid4().hex}"
        _admin(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("SIDFLOWS_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        db.dispose_engines()
        get_settings.cache_clear()
        if name is not None:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A new database migrated to the head revision."""
    db.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def dialect(database_url: str) -> str:
    return db.get_engine(database_url).dialect.name
