"""The dispatcher: sends what the outbox holds through Apprise, with retries and backoff.

The send itself (one message to one URL, Apprise's plugins and logging) is in
``sidflows.notify.sender``; this module claims, sends and records.

Each pass claims a batch in one statement (status ``sending`` with a lease,
committed before anything is sent; ``UPDATE ... RETURNING``, with ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL so that two dispatchers take different rows). The
routes of the batch are resolved once (URLs, timeouts, digests), and the
identity lines of secure routes read in one query. A few workers send; a
message whose lease is half gone has it renewed right before its send (one
that another pass claimed meanwhile is left to that pass). Each result is
committed right after its send, grouped with the results the other workers
have at that moment: the group is written as one ``UPDATE ... WHERE id IN``
per distinct outcome (all the messages sent to the same URLs are one
statement), so each worker has at most one message sent but unrecorded.

A dispatcher that dies leaves its claim to run out; the next pass sends the
unfinished messages again, only to the URLs that had not taken them. Delivery
is therefore at least once: a message in flight when the process died may
arrive twice, and every message carries its outbox key so that a receiver can
tell. A message is marked sent exactly once.

After the configured attempts a message is marked failed and ops is told
(unless the failed message was ops' own). A message that had failed and is then
delivered (``redeliver``, an operator's retry: now, attempts kept) is followed by
a "delivered" note wherever that alert went, under its own key, so once. URLs are
never logged or stored: errors are kept as the route's label (``json#3f2a9c``) and
a category.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Update, bindparam, func, update
from sqlmodel import Session, col, select

from sidflows.notify.config import NotificationConfig
from sidflows.notify.messages import Notice, render
from sidflows.notify.outbox import (
    claimable,
    enqueue,
    failure_alert_suffix,
    queue_delivered_notes,
    requeue_for_redelivery,
    statuses_of,
)
from sidflows.notify.routes import resolve
from sidflows.notify.sender import Sender, apprise_send
from sidflows.store.db import get_engine, session_scope
from sidflows.store.models import Identity, Notification, NotificationStatus, Patient, utcnow

IDS_PER_STATEMENT = 1000  # ids in one ``IN (...)``: within every driver's parameter limit


@dataclass
class DispatchResult:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unrouted: int = 0
    passes: int = 0
    by_route: dict[str, int] = field(default_factory=dict)

    def add(self, other: DispatchResult) -> None:
        for name in ("claimed", "sent", "retrying", "failed", "unrouted", "passes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for route, n in other.by_route.items():
            self.by_route[route] = self.by_route.get(route, 0) + n


@dataclass(frozen=True)
class _Job:
    id: int
    key: str
    ref: str | None
    route: str
    subject: str
    body: str
    attempts: int
    delivered: tuple[str, ...]
    claim: str
    taken: float = field(default_factory=time.monotonic)  # when its lease began


def claim(
    *, config: NotificationConfig, now: dt.datetime, limit: int, since: float | None = None
) -> list[_Job]:
    """Take up to ``limit`` messages for this dispatcher: one statement, committed.

    ``UPDATE ... WHERE id IN (the first due) AND still claimable RETURNING``: the
    condition is checked again row by row, so a concurrent dispatcher's claim wins;
    on PostgreSQL the due rows are taken ``FOR UPDATE SKIP LOCKED``, so two
    dispatchers claiming at once take different rows instead of waiting on each other.

    The lease runs from ``now``; ``since`` is the monotonic clock's reading at that
    moment (default: now, before the statement), so that the half-lease renewal counts
    the time spent before the claim returned (a busy database) as part of the lease.
    """
    taken = time.monotonic() if since is None else since
    token = uuid.uuid4().hex
    until = now + dt.timedelta(seconds=config.dispatch.lease_seconds)
    with session_scope() as session:
        connection = session.connection()
        due = select(Notification.id).where(claimable(now)).order_by(col(Notification.id))
        due = due.limit(limit)
        if connection.dialect.name == "postgresql":
            # A CTE, materialised: a LIMIT in an ``IN (subquery)`` is no bound on
            # PostgreSQL, which may run the subquery again and claim every due row.
            rows_due = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            chosen = col(Notification.id) == rows_due.c.id
        else:
            chosen = col(Notification.id).in_(due)
        rows = connection.execute(
            update(Notification)
            .where(chosen, claimable(now))
            .values(status=NotificationStatus.sending, claim=token, claimed_until=until)
            .returning(
                col(Notification.id),
                col(Notification.key),
                col(Notification.ref),
                col(Notification.route),
                col(Notification.subject),
                col(Notification.body),
                col(Notification.attempts),
                col(Notification.delivered),
            )
        ).all()
    return sorted(
        (
            _Job(
                id_, key, ref, route, subject, body, attempts, tuple(delivered or ()), token, taken
            )
            for id_, key, ref, route, subject, body, attempts, delivered in rows
        ),
        key=lambda job: job.id,
    )


@dataclass(frozen=True)
class _Target:
    """One URL of a route, made ready once per pass (timeouts, digest, label)."""

    url: str = field(repr=False)  # with Apprise's timeouts; a secret, never shown
    digest: str
    label: str
    identity: bool  # a secure role on an allowed scheme: the child's name may be added


def _targets(
    routes: Iterable[str], config: NotificationConfig, environ: Mapping[str, str] | None
) -> dict[str, tuple[_Target, ...]]:
    """The URLs of each route, resolved once for a whole pass rather than per message."""
    timeout = config.dispatch.timeout_seconds
    found: dict[str, tuple[_Target, ...]] = {}
    for route in routes:
        role = config.roles.get(route.split(":", 1)[0])
        secure = role is not None and role.secure
        found[route] = tuple(
            _Target(
                url.with_timeout(timeout),
                url.digest,
                url.label,
                secure and url.scheme in config.secure_schemes,
            )
            for url in resolve(route, environ)
        )
    return found


def _identity_lines(refs: Iterable[str]) -> dict[str, str]:
    """The identity line (name · MRN) of each of these refs that has one: one query per
    1,000 refs, for the messages of a pass that go to a secure route."""
    wanted = sorted(set(refs))
    lines: dict[str, str] = {}
    if not wanted:
        return lines
    with session_scope() as session:
        for start in range(0, len(wanted), IDS_PER_STATEMENT):
            found = session.exec(
                select(Patient.ref, Identity.name, Identity.mrn)
                .join(Patient, col(Patient.id) == Identity.patient_id)
                .where(col(Patient.ref).in_(wanted[start : start + IDS_PER_STATEMENT]))
                .order_by(col(Identity.id))
            )
            for ref, name, mrn in found:
                line = " · ".join(p for p in (name, f"MRN {mrn}" if mrn else None) if p)
                if line:
                    lines.setdefault(ref, line)
    return lines


@dataclass
class _Outcome:
    job: _Job
    delivered: list[str]
    errors: list[str]
    unrouted: bool = False


@dataclass
class _Pass:
    """What the workers of one pass share: read-only but for the recorder."""

    config: NotificationConfig
    send: Sender
    targets: dict[str, tuple[_Target, ...]]
    identities: dict[str, str]
    recorder: _Recorder


def _deliver(job: _Job, run: _Pass) -> _Outcome:
    targets = run.targets.get(job.route, ())
    if not targets:
        return _Outcome(job, list(job.delivered), [], unrouted=True)
    delivered, errors = list(job.delivered), []
    body = f"{job.body}\n\n[sidflows {job.key}]"
    for target in targets:
        if target.digest in delivered:
            continue
        text = body
        if target.identity and job.ref is not None and job.ref in run.identities:
            text = f"{run.identities[job.ref]}\n{body}"
        error = run.send(target.url, job.subject, text)
        if error is None:
            delivered.append(target.digest)
        else:
            errors.append(f"{target.label}: {error}")
    pending = any(t.digest not in delivered for t in targets)
    return _Outcome(job, delivered, errors if pending else [])


def _changes(
    outcome: _Outcome, config: NotificationConfig, now: dt.datetime
) -> tuple[dict[str, Any], list[Notice]]:
    """What one message's result writes: its row's new values, and ops' notice if it failed."""
    job = outcome.job
    values: dict[str, Any] = {"claim": None, "claimed_until": None, "delivered": outcome.delivered}
    notices: list[Notice] = []
    if outcome.unrouted:
        values.update(status=NotificationStatus.unrouted, last_error=f"no route for {job.route}")
    elif not outcome.errors:
        values.update(status=NotificationStatus.sent, sent_at=now, last_error=None)
    else:
        attempts = job.attempts + 1
        error = "; ".join(outcome.errors)[:300]
        values.update(attempts=attempts, last_error=error)
        if attempts >= config.dispatch.attempts:
            values["status"] = NotificationStatus.failed
            if not job.route.startswith("ops"):
                event, ref = job.key.split("|", 2)[:2]
                notices.append(
                    Notice(
                        "delivery_failed",
                        None,
                        {
                            "failed_id": job.id,
                            "failed_event": event,
                            "failed_ref": ref,
                            "failed_role": job.route,
                            "attempts": attempts,
                            "error": error,
                        },
                        suffix=failure_alert_suffix(job.id),
                    )
                )
        else:
            values["status"] = NotificationStatus.pending
            values["next_attempt_at"] = now + dt.timedelta(
                seconds=config.dispatch.backoff(attempts)
            )
    return values, notices


def _count(outcome: _Outcome, values: dict[str, Any], result: DispatchResult) -> DispatchResult:
    status = values.get("status")
    if status == NotificationStatus.unrouted:
        result.unrouted += 1
    elif status == NotificationStatus.sent:
        result.sent += 1
        route = outcome.job.route
        result.by_route[route] = result.by_route.get(route, 0) + 1
    elif status == NotificationStatus.failed:
        result.failed += 1
    else:
        result.retrying += 1
    return result


def _frozen(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A row's new values as a key: the results that write the same values are one UPDATE."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))


@functools.cache
def _update_statement(columns: tuple[str, ...]) -> Update:
    """``UPDATE ... SET (these columns) WHERE id IN (...) AND claim = ours``, built once
    per set of columns: a result writes only while its claim holds, and a statement
    made afresh for every group would cost more than the database's own work."""
    return (
        update(Notification)
        .where(
            col(Notification.id).in_(bindparam("ids", expanding=True)),
            col(Notification.claim) == bindparam("token"),
        )
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


def _update_rows(
    connection: Connection, claim: str, ids: Sequence[int], values: Mapping[str, Any]
) -> None:
    columns = tuple(sorted(values))
    statement = _update_statement(columns)
    params = {f"new_{name}": values[name] for name in columns}
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = list(ids[start : start + IDS_PER_STATEMENT])
        connection.execute(statement, {"ids": chunk, "token": claim, **params})


def _write(
    connection: Connection,
    outcomes: Sequence[_Outcome],
    config: NotificationConfig,
    ui_url: str,
) -> list[dict[str, Any]]:
    """These messages' results in the connection's transaction, set-based: one UPDATE
    per distinct outcome (every message sent to the same URLs at once is one
    statement), each only while its claim holds; then ops' alerts and "delivered"
    notes, if any (rare: a session is made for them only then)."""
    now = utcnow()
    changes = [_changes(outcome, config, now) for outcome in outcomes]
    same: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[dict[str, Any], list[int]]] = {}
    for outcome, (values, _) in zip(outcomes, changes, strict=True):
        group = same.setdefault((outcome.job.claim, _frozen(values)), (values, []))
        group[1].append(outcome.job.id)
    # Core statements: no ORM object to synchronise here.
    for (token, _), (values, ids) in same.items():
        _update_rows(connection, token, ids, values)
    notices = [notice for _, found in changes for notice in found]
    recovered = [
        (outcome.job, values)
        for outcome, (values, _) in zip(outcomes, changes, strict=True)
        if values.get("status") == NotificationStatus.sent and outcome.job.attempts > 0
    ]
    if notices or recovered:
        with Session(bind=connection) as session:  # joins the connection's transaction
            if notices:
                enqueue(session, notices, config=config, ui_url=ui_url)
            for job, values in recovered:
                # It had failed before: if ops was told, ops hears that it went after all (once).
                event, ref = job.key.split("|", 2)[:2]
                queue_delivered_notes(
                    session,
                    failed_id=job.id,
                    facts={
                        "failed_id": job.id,
                        "failed_event": event,
                        "failed_ref": ref,
                        "failed_role": job.route,
                        "attempts": job.attempts,
                    },
                    config=config,
                    now=values["sent_at"],
                )
    return [values for values, _ in changes]


@dataclass
class _Ticket:
    outcome: _Outcome
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to write the next group, not because its own is written
    result: DispatchResult | None = None
    error: BaseException | None = None


class _Recorder:
    """Group commit of the results of a dispatch.

    A worker hands over its message's result and waits until it is committed,
    so each worker has at most one message sent but unrecorded, as when each
    wrote its own transaction. The worker that finds no transaction under way
    leads: it writes the results waiting, its own among them, in one transaction
    (set-based: see ``_write``); the others wait for it. Before it writes, the
    leader lets the workers still sending catch up, briefly (``GATHER_SECONDS``
    at most): a commit (a flush to disk, a round trip) costs more than the
    statements in it, so one commit serves the workers' results of a round, not
    one or two. A slow send (a route that times out) delays the others' commit
    by that much at most. When the leader is done, the first result that
    arrived meanwhile is woken to lead the next group; every other waiting
    worker is woken once, when its own result is committed. The recorder keeps
    one connection (only the leader of the moment uses it).
    """

    GATHER_SECONDS = 0.005

    def __init__(self, config: NotificationConfig, ui_url: str) -> None:
        self.config, self.ui_url = config, ui_url
        self._turn = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._writing = False
        self._gathering = False
        self._sending = 0  # workers between the start of a send and its result's hand-over
        self._connection: Connection | None = None

    def started(self) -> None:
        """A worker starts to send a message (its result will follow, or ``stopped``)."""
        with self._turn:
            self._sending += 1

    def stopped(self) -> None:
        """A worker that started gives up without a result (its lease was lost, an error)."""
        with self._turn:
            self._sending -= 1
            if self._gathering and self._sending == 0:
                self._turn.notify()

    def record(self, outcome: _Outcome) -> DispatchResult:
        ticket = _Ticket(outcome)
        with self._turn:
            self._sending -= 1
            self._waiting.append(ticket)
            lead = not self._writing
            self._writing = True
            if self._gathering and self._sending == 0:
                self._turn.notify()
        if not lead:
            ticket.woken.wait()
            lead = ticket.lead
        if lead:  # this worker writes what waits, its own result among it
            with self._turn:
                self._gathering = True
                until = time.monotonic() + self.GATHER_SECONDS
                while self._sending > 0:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._turn.wait(left)
                self._gathering = False
                group, self._waiting = self._waiting, []
            try:
                self._write(group)
            except BaseException as exc:  # the process is going down: nothing was written
                for other in group:
                    if other.result is None and other.error is None:
                        other.error = exc
                raise
            finally:
                with self._turn:
                    if self._waiting:
                        self._waiting[0].lead = True
                        self._waiting[0].woken.set()
                    else:
                        self._writing = False
                for done in group:
                    done.woken.set()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write(self, group: list[_Ticket]) -> None:
        try:
            if self._connection is None:
                self._connection = get_engine().connect()
            with self._connection.begin():
                written = _write(
                    self._connection, [t.outcome for t in group], self.config, self.ui_url
                )
        except Exception as exc:
            self.close()  # it may be broken: the next group takes a fresh one
            if len(group) == 1:
                group[0].error = exc
                return
            # One result's problem must not lose the others: each in a transaction of its own.
            for ticket in group:
                try:
                    with session_scope() as session:
                        (values,) = _write(
                            session.connection(), [ticket.outcome], self.config, self.ui_url
                        )
                    ticket.result = _count(ticket.outcome, values, DispatchResult())
                except Exception as own:
                    ticket.error = own
            return
        for ticket, values in zip(group, written, strict=True):
            ticket.result = _count(ticket.outcome, values, DispatchResult())


def _renew(job: _Job, config: NotificationConfig) -> bool:
    """Right before a send: a fresh lease on this message, unless it is no longer ours.

    A batch may take longer than the lease (a slow route, a long queue behind few
    workers); once the lease has run out another dispatcher may have claimed the
    message, and then it is that dispatcher's to send, not this one's. Only a pass
    that has lasted half its lease asks (never on a pass that goes at speed).
    """
    until = utcnow() + dt.timedelta(seconds=config.dispatch.lease_seconds)
    with session_scope() as session:
        renewed = session.connection().execute(
            update(Notification)
            .where(col(Notification.id) == job.id, col(Notification.claim) == job.claim)
            .values(claimed_until=until)
        )
    return bool(getattr(renewed, "rowcount", 0))


def _send_and_record(job: _Job, run: _Pass) -> DispatchResult:
    """In the worker: the lease is renewed before the send when half of it has gone (a
    message another dispatcher took over is not sent again), and the result is committed
    right after the send, grouped with the results other workers have at that moment: at
    most one message per worker is sent but unrecorded if the process dies."""
    run.recorder.started()
    try:
        lease = run.config.dispatch.lease_seconds
        if time.monotonic() - job.taken > lease / 2 and not _renew(job, run.config):
            run.recorder.stopped()
            return DispatchResult()
        outcome = _deliver(job, run)
    except BaseException:
        run.recorder.stopped()
        raise
    return run.recorder.record(outcome)


def hold_unrouted(*, now: dt.datetime, environ: Mapping[str, str] | None) -> int:
    """Messages of a route with no URL are held as unrouted in one statement per route,
    not claimed and handled one by one (a unit that has not configured a role yet)."""
    held = 0
    with session_scope() as session:
        routes = session.exec(select(Notification.route).where(claimable(now)).distinct()).all()
        for route in routes:
            if resolve(route, environ):
                continue
            done = session.connection().execute(
                update(Notification)
                .where(col(Notification.route) == route, claimable(now))
                .values(
                    status=NotificationStatus.unrouted,
                    last_error=f"no route for {route}",
                    claim=None,
                    claimed_until=None,
                )
            )
            held += int(getattr(done, "rowcount", 0) or 0)
    return held


def _claim_batch(
    *,
    config: NotificationConfig,
    send: Sender,
    environ: Mapping[str, str] | None,
    now: dt.datetime | None,
    recorder: _Recorder,
) -> tuple[DispatchResult, list[_Job], _Pass]:
    """One pass's claim: the unrouted held, a batch claimed, its routes and identities read."""
    result = DispatchResult(passes=1)
    since = time.monotonic()  # the lease starts at ``at``, not when the claim returns
    at = now or utcnow()
    result.unrouted += hold_unrouted(now=at, environ=environ)
    jobs = claim(config=config, now=at, limit=config.dispatch.batch, since=since)
    result.claimed = len(jobs)
    targets = _targets({job.route for job in jobs}, config, environ)
    secure = {route for route, found in targets.items() if any(t.identity for t in found)}
    identities = _identity_lines(job.ref for job in jobs if job.route in secure and job.ref)
    return result, jobs, _Pass(config, send, targets, identities, recorder)


def _run(
    *,
    config: NotificationConfig,
    ui_url: str,
    send: Sender,
    environ: Mapping[str, str] | None,
    now: dt.datetime | None,
    passes: int,
) -> DispatchResult:
    """Up to ``passes`` batches, claimed one after the other, sent by one pool of workers.

    The next batch is claimed as soon as no more of the current one waits than there
    are workers, not once all of it is done: a slow send at the end of a batch (a
    route that times out, a receiver slow to accept) holds up its own worker only,
    not every worker until it ends. The passes share the pool, so each worker's
    Apprise plugins (one per URL, see ``sidflows.notify.sender``) serve the whole
    dispatch, and one recorder (one connection) records every result.
    """
    total = DispatchResult()
    recorder = _Recorder(config, ui_url)
    low_water = config.dispatch.workers
    turn = threading.Lock()
    low = threading.Event()
    outstanding = 0
    broken = False
    futures: list[Future[DispatchResult]] = []

    def finished(future: Future[DispatchResult]) -> None:
        nonlocal outstanding, broken
        with turn:
            outstanding -= 1
            if future.cancelled() or future.exception() is not None:
                broken = True  # no more claims: the error is raised below
            if outstanding <= low_water or broken:
                low.set()

    try:
        with _pool(config.dispatch.workers) as pool:
            for _ in range(passes):
                step, jobs, run = _claim_batch(
                    config=config, send=send, environ=environ, now=now, recorder=recorder
                )
                total.add(step)
                if not jobs:
                    break
                with turn:
                    outstanding += len(jobs)
                    low.clear()
                for job in jobs:
                    future = pool.submit(_send_and_record, job, run)
                    future.add_done_callback(finished)
                    futures.append(future)
                low.wait()
                if broken:
                    break
            for future in futures:
                total.add(future.result())
    finally:
        recorder.close()
    return total


def dispatch_once(
    *,
    config: NotificationConfig,
    ui_url: str,
    send: Sender = apprise_send,
    environ: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
    limit: int | None = None,
) -> DispatchResult:
    """One pass: claim a batch, send it with the configured workers, record each result."""
    if limit is not None:
        config = config.model_copy(
            update={"dispatch": config.dispatch.model_copy(update={"batch": limit})}
        )
    return _run(config=config, ui_url=ui_url, send=send, environ=environ, now=now, passes=1)


def dispatch(
    *,
    config: NotificationConfig,
    ui_url: str,
    send: Sender = apprise_send,
    environ: Mapping[str, str] | None = None,
    max_passes: int = 1000,
) -> DispatchResult:
    """Send everything that is due now, batch after batch, until nothing is left to claim."""
    return _run(
        config=config, ui_url=ui_url, send=send, environ=environ, now=None, passes=max_passes
    )


@dataclass
class Redelivery:
    """An operator's redeliver: what became of the messages it sent now."""

    requeued: int = 0
    sent: int = 0
    failed: int = 0  # failed again after their last attempt
    retrying: int = 0  # failed again, attempts left: back to their backoff
    unrouted: int = 0  # still no route for their role
    elsewhere: int = 0  # being sent by another dispatcher when this one finished
    dispatched: DispatchResult = field(default_factory=DispatchResult)  # the whole pass

    @property
    def delivered_all(self) -> bool:
        """Every message that was tried went (a role still without a route aside)."""
        return not (self.failed or self.retrying)


def redeliver(
    *,
    config: NotificationConfig,
    ui_url: str,
    send: Sender = apprise_send,
    environ: Mapping[str, str] | None = None,
) -> Redelivery:
    """Failed, unrouted and retrying messages sent now, with what else is due.

    They are made due in one statement (attempts and last error kept), then the
    ordinary dispatcher sends them: claims, leases and at-least-once as ever. A
    message that had failed and now goes has ops told that it went. Their
    statuses afterwards are counted in one grouped query."""
    with session_scope() as session:
        ids = requeue_for_redelivery(session=session)
    passed = dispatch(config=config, ui_url=ui_url, send=send, environ=environ)
    with session_scope() as session:
        found = statuses_of(session=session, ids=ids)
    return Redelivery(
        requeued=len(ids),
        sent=found.get(NotificationStatus.sent, 0),
        failed=found.get(NotificationStatus.failed, 0),
        retrying=found.get(NotificationStatus.pending, 0),
        unrouted=found.get(NotificationStatus.unrouted, 0),
        elsewhere=found.get(NotificationStatus.sending, 0),
        dispatched=passed,
    )


@contextmanager
def _pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sidflows-notify")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def send_test(
    route: str, *, config: NotificationConfig, send: Sender = apprise_send
) -> list[tuple[str, str | None]]:
    """A test message to each URL of a route: (label, None or why it failed)."""
    notice = Notice("test", None, {})
    now = utcnow().isoformat(timespec="seconds")
    subject, body = render(config, notice, route.split(":", 1)[0], {"ui": "", "when": now})
    return [
        (url.label, send(url.with_timeout(config.dispatch.timeout_seconds), subject, body))
        for url in resolve(route)
    ]


def pending_count(session: Session) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Notification)
            .where(
                col(Notification.status).in_(
                    [NotificationStatus.pending, NotificationStatus.sending]
                )
            )
        ).one()
    )
