"""Engine, sessions and migrations of the store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from sidflows.settings import get_settings

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported by the functions that migrate, not here: every command and
# every flow run's process opens the store, and alembic costs about 0.3 s to import.

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL for the process; without a URL, the one the settings name now."""
    url = url or get_settings().database_url
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _create_engine(url)
    return engine


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    return engine


def dispose_engines() -> None:
    """Close every pooled connection and forget the engines (tests, forked workers)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


def alembic_config(url: str) -> Config:
    # alembic loads only to migrate (see above)
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def current_revision(engine: Engine) -> str | None:
    # alembic loads only to migrate (see above)
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    # alembic loads only to migrate (see above)
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def newest_migration() -> str:
    """The head revision without alembic: each migration's revision is its file's
    number (``0007_digest_members.py`` is ``0007``), one after the other; a test holds
    this to alembic's own head."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _stored_revision(engine: Engine) -> str | None:
    """The store's revision in one plain query; None where there is no version table yet."""
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except Exception:  # no table yet (a new store): alembic creates it
        return None


def upgrade(url: str | None = None) -> str | None:
    """Bring the store to the newest schema (``sidflows db upgrade``). Idempotent.

    A store already at the newest revision (every command after the first) is told
    by one query, without importing alembic."""
    url = url or get_settings().database_url
    engine = get_engine(url)
    stored = _stored_revision(engine)
    if stored is not None and stored == newest_migration():
        return stored
    if current_revision(engine) != head_revision(url):
        # alembic loads only to migrate (see above)
        from alembic import command  # noqa: PLC0415

        with migrating(url) as conn:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    return current_revision(engine)


@contextmanager
def migrating(url: str) -> Iterator[Connection]:
    """A connection to migrate on, in one transaction: all of a migration or none of it.

    On SQLite a migration that changes a column rebuilds its table (a copy, the old
    table dropped, the copy renamed). With foreign keys on, dropping a table that other
    rows point at fails; and pysqlite runs DDL outside a transaction, so a failure left
    the half-built copy behind. So SQLite migrates on a connection of its own: foreign
    keys off (SQLite's own procedure for altering a table), every statement inside one
    explicit transaction, and the keys checked before it commits.
    """
    if not url.startswith("sqlite"):
        with get_engine(url).begin() as conn:
            yield conn
        return
    engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
    )

    @event.listens_for(engine, "connect")
    def _keys_off(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, or ignored
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as conn:
            yield conn
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(
                    f"the migration would leave {len(broken)} rows pointing at nothing "
                    f"(first: {tuple(broken[0])}); nothing was changed"
                )
    finally:
        engine.dispose()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error (nothing half-written)."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
