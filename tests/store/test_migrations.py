"""Migrations: idempotent upgrade to head, and an audit trail the database keeps append-only."""

from __future__ import annotations

import subprocess
import sys

import alembic.command
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel, select

from sidflows.store import db
from sidflows.store.audit import audit
from sidflows.store.models import AuditEntry

from .support import row_counts


def _one_audit_entry(url: str) -> int:
    with db.session_scope(url) as session:
        audit(
            session=session,
            actor="dr.test",
            entity="patient",
            entity_id=1,
            ref="P-0001",
            action="referral received",
        )
    with db.session_scope(url) as session:
        entry = session.exec(select(AuditEntry)).one()
        assert entry.id is not None
        return entry.id


def test_upgrade_reaches_head(empty_database_url: str) -> None:
    """A new database is brought to the head revision and every table exists."""
    assert db.current_revision(db.get_engine(empty_database_url)) is None
    revision = db.upgrade(empty_database_url)
    assert revision == db.head_revision(empty_database_url) == "0009"
    assert db.current_revision(db.get_engine(empty_database_url)) == revision
    assert set(row_counts(empty_database_url)) == set(SQLModel.metadata.tables)


def _migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    with db.migrating(url) as conn:
        config = db.alembic_config(url)
        config.attributes["connection"] = conn
        (alembic.command.downgrade if down else alembic.command.upgrade)(config, revision)


def test_a_store_with_plans_goes_through_a_table_rebuild(empty_database_url: str) -> None:
    """0009 changes two columns: SQLite rebuilds careplan and planitem, which other rows
    point at. With foreign keys on, that failed on any store with a plan (and left a
    half-built table behind); now every row comes through, both ways, on both engines."""
    from .test_holds import active_child

    url = empty_database_url
    _migrate_to(url, "0008")
    active_child("MIG-1")
    before = row_counts(url)
    assert before["careplan"]
    assert before["planitem"]
    assert db.upgrade(url) == db.newest_migration()
    assert row_counts(url) == before
    with db.get_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    _migrate_to(url, "0008", down=True)
    assert db.current_revision(db.get_engine(url)) == "0008"
    assert row_counts(url) == before
    assert db.upgrade(url) == db.newest_migration()


def test_upgrade_twice_is_a_no_op(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgrading a database already at head runs no migration and changes nothing."""
    before = row_counts(database_url)

    def must_not_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("upgrade ran a migration on a database at head")

    monkeypatch.setattr(alembic.command, "upgrade", must_not_run)
    assert db.upgrade(database_url) == db.head_revision(database_url)
    assert db.upgrade() == db.head_revision(database_url)  # the settings' URL is the same database
    assert row_counts(database_url) == before


def test_the_head_is_known_without_alembic(database_url: str) -> None:
    """Every command opens the store: at head that is one query, and alembic (about
    0.3 s to import) is not loaded; the head read from the file names is alembic's."""
    assert db.newest_migration() == db.head_revision(database_url)
    probe = (
        "import sys; from sidflows.store import db; "
        f"print(db.upgrade({database_url!r}), 'alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [db.newest_migration(), "False"]


def test_schema_matches_models(database_url: str) -> None:
    """The migrated schema is what the models declare (no drift to autogenerate)."""
    with db.get_engine(database_url).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diffs == []


def test_audit_trail_refuses_update(database_url: str) -> None:
    """The database refuses an UPDATE of an audit entry, whatever the application does."""
    entry_id = _one_audit_entry(database_url)
    with pytest.raises(DBAPIError, match="append-only"), db.get_engine(database_url).begin() as c:
        c.execute(
            text("UPDATE auditentry SET actor = 'someone else' WHERE id = :id"), {"id": entry_id}
        )
    with db.session_scope(database_url) as session:
        entry = session.get(AuditEntry, entry_id)
        assert entry is not None
        assert entry.actor == "dr.test"


def test_audit_trail_refuses_delete(database_url: str) -> None:
    """The database refuses a DELETE of audit entries, through the ORM or in SQL."""
    entry_id = _one_audit_entry(database_url)
    with pytest.raises(DBAPIError, match="append-only"), db.get_engine(database_url).begin() as c:
        c.execute(text("DELETE FROM auditentry"))
    with pytest.raises(DBAPIError, match="append-only"), db.session_scope(database_url) as s:
        s.delete(s.get(AuditEntry, entry_id))
    assert row_counts(database_url)["auditentry"] == 1


@pytest.mark.postgres
@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_audit_trail_refuses_truncate_on_postgresql(database_url: str) -> None:
    """On PostgreSQL even TRUNCATE of the audit trail is refused (SQLite has no TRUNCATE)."""
    _one_audit_entry(database_url)
    with pytest.raises(DBAPIError, match="append-only"), db.get_engine(database_url).begin() as c:
        c.execute(text("TRUNCATE auditentry"))
    assert row_counts(database_url)["auditentry"] == 1
