"""kill -9 of `sidflows serve` during activation, a sweep and a dispatch; restart; sweep.

Each test runs a unit as processes (one `prefect server start` for the module,
its own `sidflows serve` and CLI commands) with the store on a fresh PostgreSQL
database and every role routed to real HTTP receivers in this process. serve is
caught provably in the middle of the step: the test holds something the step
needs (the day unit's advisory lock, a table lock, a receiver that never
answers), sees that serve's transaction has written and now waits on it (or
that the delivery is on the wire), and only then kills serve and every flow-run
process it started, as a dying machine would. After a restart and the next
sweep the same invariants hold every time:

- store: one active plan whose items are exactly the plan document's items, each
  once; one day-unit chair per IV session and never two sessions on a chair; the
  activation audited once;
- Prefect: the next open item of each stream has exactly one waiting item run
  (by idempotency key), and no other item run of the child waits;
- notifications: every message of the outbox was sent (alone or inside a sent
  digest) and marked sent once, and every key arrived exactly once. Delivery is
  at least once: a second copy is acceptable only for a message on the wire when
  serve died, and here the only such messages went to a receiver that never
  answered (it records nothing), so not a single duplicate is accepted.

The killed runs themselves stay Running in Prefect (nothing marks a run whose
process died): the store, not the run, is what the sweep finishes from.

The last test runs the same unit with a password in the store's URL and a route
that fails, at DEBUG level, and finds neither the password nor any route's URL
in the logs, the command output, Prefect's API or the store.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import EXAMPLES
from processes import PrefectServer, Unit, everything_prefect_holds, postgres_database, wait_for
from sqlalchemy import text
from sqlmodel import SQLModel, col, select

from sidflows.store import db
from sidflows.store.bookings import DAY_UNIT_LOCK
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    AuditEntry,
    Booking,
    CarePlan,
    Notification,
    NotificationStatus,
    Patient,
    PlanItem,
    PlanStatus,
    utcnow,
)
from sidflows.testing.receivers import HttpReceiver

pytestmark = [pytest.mark.slow, pytest.mark.prefect, pytest.mark.postgres]

ROLES = ("coordinators", "clinicians", "day_unit", "pharmacy", "home_care", "referrers", "ops")
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "notifications.toml"
LOOKAHEAD_DAYS = 42  # config/calendar.toml: prefect_lookahead_days
WAITING = ["SCHEDULED", "PENDING", "PAUSED"]  # flows/projection.py WAITING_STATES
DONE = {NotificationStatus.sent, NotificationStatus.digested}
# One worker sends the batch in id order; a lease that outlives the delivery timeout.
DISPATCH = {"workers": 1, "timeout_seconds": 4, "lease_seconds": 5, "backoff_seconds": 1}


def aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def notifications_config(path: Path, **dispatch: float) -> Path:
    """The shipped notifications.toml with other dispatcher settings (a unit's own copy)."""
    text = SHIPPED.read_text()
    for name, value in dispatch.items():
        text, found = re.subn(rf"(?m)^{name} = \S+", f"{name} = {value:g}", text)
        assert found == 1, name
    path.write_text(text)
    return path


def referral(path: Path, ref: str) -> Path:
    """EX-0001 (IV immunoglobulin in the day unit, consent given) under its own ref."""
    document = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    document["patient"]["ref"] = ref
    path.write_text(json.dumps(document))
    return path


@dataclass
class Crash:
    """A unit whose store is a PostgreSQL database and whose roles go to local receivers."""

    unit: Unit
    url: str
    ref: str
    ok: HttpReceiver
    hang: HttpReceiver
    failing: HttpReceiver
    path: str  # the receivers' URL path
    kills: list[str] = field(default_factory=list)

    @property
    def conninfo(self) -> str:
        return self.url.replace("postgresql+psycopg://", "postgresql://")

    def refer_and_wait_for_the_clinician(self) -> None:
        document = referral(self.unit.tmp / "referral.json", self.ref)
        referred = self.unit.cli("refer", str(document))
        assert referred.returncode == 0, referred.stderr
        wait_for("the pathway waiting for approval", lambda: self.unit.paused(self.ref), 120, 0.5)

    def approve(self) -> None:
        """`sidflows approve`: the approval commits here; the suspended run resumes in serve."""
        approved = self.unit.cli("approve", self.ref, "--by", "Dr Test")
        assert approved.returncode == 0, approved.stderr
        assert "resumes" in approved.stdout, approved.stdout

    def blocked_writer(self, wait_event: str) -> str | None:
        """The query of serve's transaction when it has written and waits for the test's lock."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND wait_event_type = 'Lock' AND wait_event = %s AND backend_xid IS NOT NULL",
                (wait_event,),
            ).fetchone()
        return None if row is None else str(row[0])

    def writers_gone(self) -> bool:
        """No transaction of the killed serve is left (PostgreSQL rolled them back)."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
            ).fetchone()
        return row is not None and row[0] == 0

    def kill(self, moment: str) -> None:
        self.unit.kill_serve()
        self.kills.append(moment)

    def sweep(self, day: dt.date | None = None) -> dict[str, Any]:
        """The next sweep, from the command line (as a coordinator or cron would run it)."""
        done = self.unit.cli("sweep", *(["--date", day.isoformat()] if day else []))
        assert done.returncode == 0, done.stderr[-3000:]
        summary: dict[str, Any] = json.loads(done.stdout)
        return summary

    def notifications(self) -> list[Notification]:
        with db.session_scope(self.url) as session:
            return list(session.exec(select(Notification).order_by(col(Notification.id))))

    def plan_status(self) -> str:
        with db.session_scope(self.url) as session:
            return str(session.exec(select(CarePlan.status)).one())

    def statuses(self) -> dict[str, str]:
        return {n.key: n.status for n in self.notifications()}

    def all_sent(self) -> bool:
        found = self.statuses()
        return bool(found) and set(found.values()) <= DONE

    def received(self) -> Counter[str]:
        """Copies of each outbox key that reached a receiver."""
        return self.ok.received.keys() + self.hang.received.keys() + self.failing.received.keys()

    def item_runs(self) -> list[dict[str, Any]]:
        """The child's item runs waiting for their day or their outcome (not yet run)."""
        found: list[dict[str, Any]] = self.unit.post(
            "/flow_runs/filter",
            {
                "flow_runs": {
                    "tags": {"all_": [f"ref:{self.ref}", "step:item"]},
                    "state": {"type": {"any_": WAITING}},
                },
                "limit": 200,
            },
        )
        return found


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One `prefect server start` for the module (each test has its own refs and serve)."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"))
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass(frozen=True)
class Setup:
    """How a test's unit is set up (``indirect`` parameter of the ``crash`` fixture)."""

    hanging: tuple[str, ...] = ()  # roles routed to the receiver that never answers
    failing: tuple[str, ...] = ()  # roles routed to the receiver that answers HTTP 500
    password: str | None = None  # in the store's URL (the test server trusts loopback)
    env: tuple[tuple[str, str], ...] = ()
    dispatch: tuple[tuple[str, float], ...] = ()


@pytest.fixture
def crash(
    prefect_server: PrefectServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Crash]:
    """`sidflows serve` on the module's server; the store on a fresh PostgreSQL database."""
    setup: Setup = getattr(request, "param", Setup())
    ok, hang, failing = HttpReceiver(), HttpReceiver(hang_seconds=300), HttpReceiver()
    receivers = {"ok": ok.start(), "hang": hang.start(), "failing": failing.start()}
    hang.mode, failing.mode = "hang", "error"
    path = f"hook-{uuid.uuid4().hex}"  # a route's URL is a secret: this path must show nowhere

    def route(role: str) -> str:
        receiver = hang if role in setup.hanging else failing if role in setup.failing else ok
        return receiver.url(f"{path}/{role}")

    env = {f"SIDFLOWS_NOTIFY_{r.upper()}": route(r) for r in ROLES}
    config = notifications_config(
        tmp_path / "notifications.toml", **{**DISPATCH, **dict(setup.dispatch)}
    )
    env["SIDFLOWS_NOTIFICATIONS"] = str(config)
    env.update(setup.env)
    with postgres_database(password=setup.password) as url:
        env["SIDFLOWS_DATABASE_URL"] = url
        unit = Unit(tmp_path, prefect_server, env)
        ref = f"CR-{uuid.uuid4().hex[:8].upper()}"  # the module's tests share one server
        try:
            unit.upgrade_store()
            unit.start_serve()
            yield Crash(unit, url, ref, ok, hang, failing, path)
        finally:
            unit.stop()
            db.dispose_engines()
            for receiver in receivers.values():
                receiver.stop()


# ----------------------------------------------------------------------------- invariants


def assert_whole(crash: Crash, swept: dt.date | None = None) -> dict[str, int]:
    """Nothing lost, nothing doubled: the store, Prefect and the notifications agree.

    ``swept``: the day a sweep reconciled for (its look-ahead counts from it when later).
    """
    ref = crash.ref
    with db.session_scope(crash.url) as session:
        patient = session.exec(select(Patient).where(Patient.ref == ref)).one()
        plans = session.exec(select(CarePlan).where(CarePlan.patient_id == patient.id)).all()
        active = [p for p in plans if p.status == PlanStatus.active]
        assert len(active) == 1, [(p.version, p.status) for p in plans]
        plan = active[0]
        items = session.exec(select(PlanItem).where(PlanItem.plan_id == plan.id)).all()
        bookings = session.exec(
            select(Booking).where(col(Booking.item_id).in_([i.id for i in items]))
        ).all()
        activations = session.exec(
            select(AuditEntry.id).where(
                AuditEntry.patient_ref == ref, AuditEntry.action == f"plan v{plan.version} active"
            )
        ).all()
    document_keys = [i["key"] for i in plan.document["items"]]
    iv_sessions = [i for i in items if i.kind == "ig_session" and i.details.get("route") == "iv"]
    first_open: dict[str, PlanItem] = {}
    for item in sorted(items, key=lambda i: (i.due, i.id or 0)):
        if item.status in OPEN_ITEM_STATUSES:
            first_open.setdefault(item.stream, item)
    # The store: each item of the document once, one chair per IV session, one activation.
    assert sorted(i.key for i in items) == sorted(document_keys)
    assert len(set(document_keys)) == len(document_keys)
    assert len(activations) == 1
    assert len(bookings) == len(iv_sessions) > 0
    assert {b.item_id for b in bookings} == {i.id for i in iv_sessions}
    assert len({(b.day, b.chair) for b in bookings}) == len(bookings)
    # Prefect: one waiting run for the next open item of each stream, and no other.
    today = dt.datetime.now(dt.UTC).date()
    horizon = max(today, swept or today) + dt.timedelta(days=LOOKAHEAD_DAYS)
    expected = {f"{ref}:v{plan.version}:{i.key}" for i in first_open.values() if i.due <= horizon}
    waiting = Counter(r["idempotency_key"] for r in crash.item_runs())
    assert set(waiting) == expected
    assert max(waiting.values()) == 1
    # Notifications: all sent, each key marked sent once and arrived once.
    statuses = crash.statuses()
    assert set(statuses.values()) <= DONE, statuses
    sent = {k for k, s in statuses.items() if s == NotificationStatus.sent}
    received = crash.received()
    assert set(received) == sent
    assert max(received.values()) == 1, {k: n for k, n in received.items() if n > 1}
    return {"items": len(items), "bookings": len(bookings), "runs": len(waiting)}


# ----------------------------------------------------------------------------- the crashes


@pytest.mark.parametrize("moment", ["before-commit", "before-runs"])
def test_killed_during_activation_the_next_sweep_finishes_it_once(
    crash: Crash, moment: str
) -> None:
    """kill -9 mid-activation, before its commit or before its runs: the next sweep finishes."""
    crash.refer_and_wait_for_the_clinician()
    with psycopg.connect(crash.conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (DAY_UNIT_LOCK,))
        crash.approve()
        query = wait_for(
            "the activation waiting for a day-unit chair",
            lambda: crash.blocked_writer("advisory"),
            90,
            0.2,
        )
        assert "pg_advisory_xact_lock" in query
        if moment == "before-commit":
            crash.kill("activation: plan marked active, items inserted, booking a chair")
        else:
            crash.unit.server.pause()  # serve's next call to Prefect (its runs) waits
    if moment == "before-runs":
        wait_for("the activation committed", lambda: crash.plan_status() == "active", 30, 0.2)
        crash.kill("activation committed, its runs not yet created in Prefect")
        crash.unit.server.resume()
    wait_for("no transaction of the killed serve left", crash.writers_gone, 30, 0.2)
    assert len(crash.item_runs()) <= 1  # at most one request was on its way when serve died
    if moment == "before-commit":
        assert crash.plan_status() == PlanStatus.proposed
        with db.session_scope(crash.url) as session:
            assert session.exec(select(PlanItem)).first() is None
            assert session.exec(select(Booking)).first() is None
        assert not [n for n in crash.notifications() if n.event == "plan_activated"]
    crash.unit.start_serve()
    summary = crash.sweep()
    reconciled = summary["reconciliation"]
    if moment == "before-commit":
        assert summary["activations_finished"] == 1
        assert reconciled["created"] == 0  # the finished activation scheduled its runs
    else:
        assert summary["activations_finished"] == 0
        assert reconciled["created"] >= reconciled["expected"] - 1 > 0
    wait_for("the outbox sent", crash.all_sent, 60, 0.5)
    found = assert_whole(crash)
    assert found["runs"] == reconciled["expected"]


def _active(crash: Crash) -> None:
    crash.refer_and_wait_for_the_clinician()
    crash.approve()
    wait_for("plan v1 active", lambda: crash.unit.peek(crash.ref)["plan_status"] == "active", 90)
    wait_for("the outbox sent", crash.all_sent, 90, 0.5)


def _sweep_day(crash: Crash) -> dt.date:
    """The day before the second due day: first items overdue, the next ones to remind."""
    with db.session_scope(crash.url) as session:
        days = sorted(set(session.exec(select(PlanItem.due))))
    return days[1] - dt.timedelta(days=1)


def _sweep_deployment(crash: Crash, day: dt.date) -> str:
    """A run of the daily-sweep deployment for ``day``, run by serve."""
    deployment = httpx.get(f"{crash.unit.api}/deployments/name/sweep/daily-sweep", timeout=10)
    deployment.raise_for_status()
    run = crash.unit.post(
        f"/deployments/{deployment.json()['id']}/create_flow_run",
        {"parameters": {"day": day.isoformat()}, "tags": ["step:sweep", f"test:{crash.ref}"]},
    )
    return str(run["id"])


def test_killed_during_a_sweep_the_next_sweep_does_its_work_once(crash: Crash) -> None:
    """kill -9 mid-sweep (reminders and escalations written, not committed): redone once."""
    _active(crash)
    day = _sweep_day(crash)
    before = set(crash.statuses())
    with psycopg.connect(crash.conninfo) as holder:
        holder.execute("LOCK TABLE auditentry IN SHARE MODE")  # writes wait, reads go on
        _sweep_deployment(crash, day)
        query = wait_for(
            "the sweep's escalations waiting to be audited",
            lambda: crash.blocked_writer("relation"),
            90,
            0.2,
        )
        assert "auditentry" in query.lower()
        crash.kill("sweep: reminders queued, escalations raised, audit being written")
        holder.rollback()
    wait_for("the killed sweep rolled back", crash.writers_gone, 30, 0.2)
    assert set(crash.statuses()) == before
    with db.session_scope(crash.url) as session:
        assert max(session.exec(select(PlanItem.escalations))) == 0
    crash.unit.start_serve()
    summary = crash.sweep(day)
    queued = summary["notifications"]
    assert queued["reminders"] > 0
    assert queued["escalations"] > 0
    assert queued["digests"] > 0
    wait_for("the outbox sent", crash.all_sent, 60, 0.5)
    assert_whole(crash, day)
    with db.session_scope(crash.url) as session:
        escalated = Counter(
            session.exec(
                select(AuditEntry.entity_id).where(
                    AuditEntry.patient_ref == crash.ref, AuditEntry.action == "escalated"
                )
            )
        )
        overdue = session.exec(
            select(PlanItem.id).where(PlanItem.due < day, PlanItem.escalations > 0)
        ).all()
    assert set(escalated) == set(overdue)
    assert set(escalated.values()) == {1}
    events = Counter(n.event for n in crash.notifications())
    assert events["item_overdue"] == queued["escalations"]
    assert events["item_reminder"] == queued["reminders"]
    again = crash.sweep(day)["notifications"]
    assert again == {"reminders": 0, "escalations": 0, "digests": 0}


@pytest.mark.parametrize("crash", [Setup(hanging=("day_unit",))], indirect=True, ids=["day-unit"])
def test_killed_during_dispatch_each_message_arrives_once(crash: Crash) -> None:
    """kill -9 mid-dispatch (some sent, one on the wire, one claimed): each arrives once."""
    crash.refer_and_wait_for_the_clinician()
    crash.approve()
    wait_for("a delivery on the wire", lambda: crash.hang.requests > 0, 90, 0.05)
    crash.kill("dispatch: day unit's message on the wire, pharmacy's claimed, the rest sent")
    at_kill = {n.key: n for n in crash.notifications()}
    on_the_wire = {k for k, n in at_kill.items() if n.route == "day_unit"}
    assert {at_kill[k].status for k in on_the_wire} == {NotificationStatus.sending}
    claimed = {k for k, n in at_kill.items() if n.status == NotificationStatus.sending}
    assert claimed - on_the_wire, "a claimed message not yet sent when serve died"
    sent_before = {k for k, n in at_kill.items() if n.status == NotificationStatus.sent}
    assert sent_before
    assert set(crash.received()) == sent_before  # each result recorded right after its send
    crash.hang.mode = "ok"
    lease = max(aware(n.claimed_until) for n in at_kill.values() if n.claimed_until)
    crash.unit.start_serve()
    wait_for("the dead dispatcher's lease to run out", lambda: utcnow() > lease, 30, 0.2)
    crash.sweep()
    wait_for("the outbox sent", crash.all_sent, 60, 0.5)
    assert_whole(crash)
    assert set(crash.hang.received.keys()) == on_the_wire


# ----------------------------------------------------------------------------- secrets


PASSWORD = "s3cretPW"
PREFECT = "Prefect's API (logs, runs, task runs, artifacts, events)"


def dump_table(url: str, table: str) -> str:
    """Every row of a store table as text."""
    with db.get_engine(url).connect() as conn:
        rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
    return "\n".join(json.dumps(list(row), default=str) for row in rows)


@pytest.mark.parametrize(
    "crash",
    [
        Setup(
            failing=("clinicians",),
            password=PASSWORD,
            env=(("PREFECT_LOGGING_LEVEL", "DEBUG"),),  # the most it ever logs
            dispatch=(("attempts", 1),),
        )
    ],
    indirect=True,
    ids=["clinicians-fail"],
)
def test_no_route_url_or_database_password_in_any_log(crash: Crash) -> None:
    """Routes' URLs and the store's password show in no log, no Prefect record, no table."""
    crash.refer_and_wait_for_the_clinician()
    crash.approve()
    wait_for("plan v1 active", lambda: crash.unit.peek(crash.ref)["plan_status"] == "active", 90)

    def settled() -> bool:
        statuses = crash.statuses()
        return bool(statuses) and set(statuses.values()) <= {*DONE, NotificationStatus.failed}

    wait_for("every message sent or failed", settled, 60, 0.5)
    outputs = [
        crash.unit.cli("sweep"),
        crash.unit.cli("notifications", "--json"),
        crash.unit.cli("notify-test", "clinicians"),
        crash.unit.cli("notify-test", "pharmacy"),
    ]
    assert [o.returncode for o in outputs] == [0, 0, 1, 0]
    failed = [n for n in crash.notifications() if n.status == NotificationStatus.failed]
    assert [n.route for n in failed] == ["clinicians"]
    assert "HTTP 500" in (failed[0].last_error or "")
    told = [n for n in crash.notifications() if n.event == "delivery_failed"]
    assert [(n.route, n.status) for n in told] == [("ops", NotificationStatus.sent)]
    api = crash.unit.api
    held = {
        "logs of serve and the server": crash.unit.log_files(),
        "command output": "\n".join(o.stdout + o.stderr for o in outputs),
        PREFECT: everything_prefect_holds(api),
        "the store's notification table": dump_table(crash.url, "notification"),
        "the whole store": "\n".join(dump_table(crash.url, t) for t in SQLModel.metadata.tables),
    }
    # The checks see the data: the password in use, the failure logged, routes by label.
    assert PASSWORD in crash.unit.env["SIDFLOWS_DATABASE_URL"]
    assert crash.ref in held[PREFECT]
    assert "failed after every attempt" in held[PREFECT]
    assert "json#" in held["the store's notification table"]
    assert "clinicians json#" in held["command output"]
    ports = (crash.ok.port, crash.hang.port, crash.failing.port)
    secrets = [PASSWORD, crash.path, *(f"127.0.0.1:{port}" for port in ports)]
    leaked = {where: [s for s in secrets if s in text] for where, text in held.items()}
    assert leaked == {where: [] for where in held}
