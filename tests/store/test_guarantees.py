"""What the store guarantees when things go wrong: a step is whole or absent, the trail is fixed.

A PostgreSQL connection dropped in the middle of a service step (the backend
terminated from a second connection, at a chosen statement of the step's
transaction) leaves no trace of the step, and the step run again succeeds. A
process killed mid-step leaves nothing either, on SQLite and PostgreSQL. The
application cannot update or delete the audit trail, whatever way it tries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, delete, event, make_url, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col, select

from sidflows import service
from sidflows.store import db, items
from sidflows.store.models import AuditEntry, CarePlan, IgDose, ItemStatus, PlanItem, PlanStatus
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, iv_child, refer_and_activate, snapshot

RELAPSE = json.dumps(
    {
        "date": "2026-11-23",
        "treatments": [
            {"drug": "relapse induction", "class": "chemotherapy", "start": "2026-11-22"}
        ],
    }
)
FIRST_SESSION = "ig_session:2026-12-01"
ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- the steps


def _propose() -> Any:
    return service.propose(
        "GU-1",
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="relapse",
        actor="t",
    )


def _activate() -> Any:
    return service.activate("GU-1", unit=Unit(calendar=CALENDAR), actor="t")


def _given() -> Any:
    return service.item_outcome(
        "GU-1",
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        plan_version=1,
        item_key=FIRST_SESSION,
        outcome={"result": "given", "dose_g": 10.0, "lot": "L-1"},
        actor="nurse",
        on=TODAY,
    )


STEPS: dict[str, Callable[[], Any]] = {
    "propose": _propose,
    "activate": _activate,
    "item_outcome": _given,
}


def _child_before(step: str) -> None:
    """GU-1 on an active v1 (IV sessions booked), brought to just before ``step``."""
    refer_and_activate(iv_child("GU-1"))
    if step == "item_outcome":
        service.item_due("GU-1", plan_version=1, item_key=FIRST_SESSION, actor="scheduler")
        return
    service.record_treatment_change("GU-1", RELAPSE, actor="dr.oncology")
    if step == "activate":
        assert _propose().version == 2
        service.decide("GU-1", unit=Unit(), decision="approve", by="dr.approver")


def _step_happened(step: str) -> None:
    """The step's whole effect is there, once."""
    with db.session_scope() as session:
        versions = {p.version: p.status for p in session.exec(select(CarePlan))}
        entries = session.exec(select(AuditEntry.action)).all()
        if step == "propose":
            assert versions == {1: PlanStatus.active, 2: PlanStatus.proposed}
            assert entries.count("plan v2 proposed") == 1
        elif step == "activate":
            assert versions == {1: PlanStatus.superseded, 2: PlanStatus.active}
            assert entries.count("plan v2 active") == 1
            v2 = session.exec(select(CarePlan).where(CarePlan.version == 2)).one()
            keys = session.exec(select(PlanItem.key).where(PlanItem.plan_id == v2.id)).all()
            assert sorted(keys) == sorted(i["key"] for i in v2.document["items"])
            open_v1 = session.exec(
                select(PlanItem).where(
                    PlanItem.plan_id != v2.id, PlanItem.status != ItemStatus.cancelled
                )
            ).all()
            assert open_v1 == []
        else:
            item = items.get_item(session=session, ref="GU-1", key=FIRST_SESSION, version=1)
            assert item.status == ItemStatus.done
            doses = session.exec(select(IgDose).where(IgDose.item_id == item.id)).all()
            assert [d.lot for d in doses] == ["L-1"]


# ----------------------------------------------------------------------------- the drop


def _terminate_backend(conn: Connection) -> None:
    """Terminate this connection's PostgreSQL backend from a second connection, and wait."""
    dbapi = conn.connection.dbapi_connection
    assert isinstance(dbapi, psycopg.Connection)
    pid = dbapi.info.backend_pid
    url = make_url(str(conn.engine.url)).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        row = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()
    assert row == (True,), f"backend {pid} was not terminated"


@dataclass
class Drop:
    """Drop the connection at the ``nth`` statement starting with ``at`` of each transaction.

    ``at="COMMIT"`` drops it just before the commit is sent. ``times`` bounds how
    many transactions lose their connection (None: every one).
    """

    at: str
    nth: int = 1
    times: int | None = None
    dropped: int = 0
    seen: int = 0

    def begin(self, _conn: Connection) -> None:
        self.seen = 0

    def statement(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        self._maybe_drop(conn, statement.lstrip())

    def commit(self, conn: Connection) -> None:
        self._maybe_drop(conn, "COMMIT")

    def _maybe_drop(self, conn: Connection, statement: str) -> None:
        if not statement.upper().startswith(self.at.upper()):
            return
        self.seen += 1
        if self.seen == self.nth and (self.times is None or self.dropped < self.times):
            self.dropped += 1
            _terminate_backend(conn)


@contextmanager
def dropping(url: str, drop: Drop) -> Iterator[Drop]:
    engine = db.get_engine(url)
    hooks = [
        ("begin", drop.begin),
        ("before_cursor_execute", drop.statement),
        ("commit", drop.commit),
    ]
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield drop
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)


DROP_POINTS = [
    pytest.param("propose", "INSERT INTO careplan", 1, id="propose-insert-plan"),
    pytest.param("propose", "INSERT INTO auditentry", 1, id="propose-insert-audit"),
    pytest.param("propose", "COMMIT", 1, id="propose-commit"),
    pytest.param("activate", "UPDATE planitem", 1, id="activate-cancel-v1-items"),
    pytest.param("activate", "UPDATE careplan", 2, id="activate-v2-active"),
    pytest.param("activate", "INSERT INTO planitem", 1, id="activate-insert-items"),
    pytest.param("activate", "INSERT INTO booking", 5, id="activate-fifth-booking"),
    pytest.param("activate", "COMMIT", 1, id="activate-commit"),
    pytest.param("item_outcome", "INSERT INTO igdose", 1, id="outcome-insert-dose"),
    pytest.param("item_outcome", "COMMIT", 1, id="outcome-commit"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("step", "at", "nth"), DROP_POINTS)
def test_a_dropped_connection_leaves_no_partial_step_and_a_retry_succeeds(
    database_url: str, step: str, at: str, nth: int
) -> None:
    """A connection dropped at any point of a step leaves the store as it was; a retry works."""
    _child_before(step)
    before = snapshot(database_url)
    with dropping(database_url, Drop(at, nth)) as drop, pytest.raises(OperationalError):
        STEPS[step]()
    retried_inside = service.RETRIES_ON_CONFLICT if step != "item_outcome" else 1
    assert drop.dropped == retried_inside, "every attempt lost its connection"
    assert snapshot(database_url) == before, "the failed step left rows behind"
    STEPS[step]()
    _step_happened(step)


@pytest.mark.postgres
@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("step", "at", "nth"), [DROP_POINTS[1], DROP_POINTS[6]])
def test_a_connection_dropped_once_is_retried_within_the_step(
    database_url: str, step: str, at: str, nth: int
) -> None:
    """Propose and activate retry a lost connection themselves: the step happens once."""
    _child_before(step)
    with dropping(database_url, Drop(at, nth, times=1)) as drop:
        STEPS[step]()
    assert drop.dropped == 1
    _step_happened(step)


# ----------------------------------------------------------------------------- the kill

KILLED_ACTIVATION = """
    import os
    from sqlalchemy import event
    from sidflows import service
    from sidflows.calendar import load_calendar
    from sidflows.store import db
    from sidflows.unit import Unit

    seen = 0

    def die_at_the_fifth_booking(conn, cursor, statement, *args):
        global seen
        if statement.lstrip().startswith("INSERT INTO booking"):
            seen += 1
            if seen == 5:
                os._exit(9)

    event.listen(db.get_engine(), "before_cursor_execute", die_at_the_fifth_booking)
    service.activate("GU-1", unit=Unit(calendar=load_calendar()), actor="t")
    raise SystemExit("the activation finished: it was never interrupted")
"""


def test_a_process_killed_mid_activation_leaves_nothing(database_url: str) -> None:
    """A process dying inside the activation's transaction leaves no item, chair or entry."""
    _child_before("activate")
    before = snapshot(database_url)
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_ACTIVATION)],
        env={**os.environ, "SIDFLOWS_DATABASE_URL": database_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == 9, killed.stderr
    assert snapshot(database_url) == before
    assert _activate().status == "activated"
    _step_happened("activate")


# ----------------------------------------------------------------------------- the trail


def _change_actor(session: Session, entry_id: int) -> None:
    entry = session.get(AuditEntry, entry_id)
    assert entry is not None
    entry.actor = "someone else"
    session.add(entry)


def _delete_entry(session: Session, entry_id: int) -> None:
    session.delete(session.get(AuditEntry, entry_id))


def _bulk_update(session: Session, entry_id: int) -> None:
    session.execute(
        update(AuditEntry).where(col(AuditEntry.id) == entry_id).values(actor="someone else")
    )


def _bulk_delete(session: Session, _entry_id: int) -> None:
    session.execute(delete(AuditEntry))


@pytest.mark.parametrize(
    "tamper",
    [_change_actor, _delete_entry, _bulk_update, _bulk_delete],
    ids=["modify-and-commit", "session-delete", "bulk-update", "bulk-delete"],
)
def test_the_application_cannot_change_the_audit_trail(
    database_url: str, tamper: Callable[[Session, int], None]
) -> None:
    """Through the ORM session, changing or deleting audit entries is refused by the database."""
    refer_and_activate(iv_child("GU-1"))
    before = snapshot(database_url)["auditentry"]
    with db.session_scope() as session:
        entry_id = session.exec(select(AuditEntry.id).order_by(col(AuditEntry.id))).first()
    assert entry_id is not None
    with pytest.raises(DBAPIError, match="append-only"), db.session_scope() as session:
        tamper(session, entry_id)
    assert snapshot(database_url)["auditentry"] == before
