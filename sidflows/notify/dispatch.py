"""The dispatcher: sends what the outbox holds through Apprise, with retries and backoff.

The send itself (one message to one URL, Apprise's plugins and logging) is in
``sidflows.notify.sender``; this module claims, sends and records.

Each pass claims a batch (status ``sending`` with a lease, committed before
anything is sent), sends it with a few workers, renews each message's lease
right before its send (a message whose lease ran out and that another pass
claimed meanwhile is left to that pass), and records each message's result as
soon as it is known. A dispatcher that dies leaves its claim to run
out; the next pass sends the unfinished messages again, only to the URLs that
had not taken them. Delivery is therefore at least once: a message in flight
when the process died may arrive twice, and every message carries its outbox
key so that a receiver can tell. A message is marked sent exactly once.

After the configured attempts a message is marked failed and ops is told
(unless the failed message was ops' own). A message that had failed and is then
delivered (``redeliver``, an operator's retry: now, attempts kept) is followed by
a "delivered" note wherever that alert went, under its own key, so once. URLs are
never logged or stored: errors are kept as the route's label (``json#3f2a9c``) and
a category.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, update
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
from sidflows.notify.routes import Url, resolve
from sidflows.notify.sender import Sender, apprise_send
from sidflows.store.db import session_scope
from sidflows.store.models import Identity, Notification, NotificationStatus, Patient, utcnow


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
    taken: float = field(default_factory=time.monotonic)  # when the claim was made


def claim(*, config: NotificationConfig, now: dt.datetime, limit: int) -> list[_Job]:
    """Take up to ``limit`` messages for this dispatcher (one committed transaction)."""
    token = uuid.uuid4().hex
    until = now + dt.timedelta(seconds=config.dispatch.lease_seconds)
    with session_scope() as session:
        ids = list(
            session.exec(
                select(Notification.id)
                .where(claimable(now))
                .order_by(col(Notification.id))
                .limit(limit)
            )
        )
        if not ids:
            return []
        # The condition is checked again row by row: a concurrent dispatcher's claim wins.
        session.execute(
            update(Notification)
            .where(col(Notification.id).in_(ids), claimable(now))
            .values(status=NotificationStatus.sending, claim=token, claimed_until=until)
        )
    with session_scope() as session:
        rows = session.exec(
            select(Notification).where(Notification.claim == token).order_by(col(Notification.id))
        ).all()
        return [
            _Job(
                r.id or 0,
                r.key,
                r.ref,
                r.route,
                r.subject,
                r.body,
                r.attempts,
                tuple(r.delivered or ()),
                token,
            )
            for r in rows
        ]


def _identity_line(ref: str | None) -> str | None:
    if ref is None:
        return None
    with session_scope() as session:
        found = session.exec(
            select(Identity.name, Identity.mrn)
            .join(Patient, col(Patient.id) == Identity.patient_id)
            .where(Patient.ref == ref)
        ).first()
    if found is None or not any(found):
        return None
    name, mrn = found
    return " · ".join(p for p in (name, f"MRN {mrn}" if mrn else None) if p)


def _body(job: _Job, url: Url, config: NotificationConfig) -> str:
    body = f"{job.body}\n\n[sidflows {job.key}]"
    role = config.roles.get(job.route.split(":", 1)[0])
    if role is not None and role.secure and url.scheme in config.secure_schemes:
        identity = _identity_line(job.ref)
        if identity:
            body = f"{identity}\n{body}"
    return body


@dataclass
class _Outcome:
    job: _Job
    delivered: list[str]
    errors: list[str]
    unrouted: bool = False


def _deliver(
    job: _Job, config: NotificationConfig, send: Sender, environ: Mapping[str, str] | None
) -> _Outcome:
    urls = resolve(job.route, environ)
    if not urls:
        return _Outcome(job, list(job.delivered), [], unrouted=True)
    delivered, errors = list(job.delivered), []
    for url in urls:
        if url.digest in delivered:
            continue
        error = send(
            url.with_timeout(config.dispatch.timeout_seconds), job.subject, _body(job, url, config)
        )
        if error is None:
            delivered.append(url.digest)
        else:
            errors.append(f"{url.label}: {error}")
    pending = [u for u in urls if u.digest not in delivered]
    return _Outcome(job, delivered, errors if pending else [])


def _changes(outcome: _Outcome, config: NotificationConfig) -> tuple[dict[str, Any], list[Notice]]:
    """What one message's result writes: its row's new values, and ops' notice if it failed."""
    job, now = outcome.job, utcnow()
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


def _write(
    session: Session,
    outcome: _Outcome,
    config: NotificationConfig,
    ui_url: str,
) -> dict[str, Any]:
    """One message's result in the caller's transaction (only while its claim holds)."""
    values, notices = _changes(outcome, config)
    job = outcome.job
    # A Core statement on the session's connection: no ORM object to synchronise here.
    session.connection().execute(
        update(Notification)
        .where(col(Notification.id) == job.id, col(Notification.claim) == job.claim)
        .values(**values)
    )
    if notices:
        enqueue(session, notices, config=config, ui_url=ui_url)
    if values.get("status") == NotificationStatus.sent and job.attempts > 0:
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
    return values


def _record(
    outcome: _Outcome, config: NotificationConfig, ui_url: str, result: DispatchResult
) -> DispatchResult:
    """Write one message's result in its own short transaction."""
    with session_scope() as session:
        values = _write(session, outcome, config, ui_url)
    return _count(outcome, values, result)


@dataclass
class _Ticket:
    outcome: _Outcome
    done: bool = False
    result: DispatchResult | None = None
    error: BaseException | None = None


class _Recorder:
    """Group commit of the results of one pass.

    A worker hands over its message's result and waits until it is committed,
    so each worker has at most one message sent but unrecorded, as when each
    wrote its own transaction. The worker that finds no transaction under way
    writes every result waiting at that moment in one; the others wait for it.
    A result never waits for another send, only for the transaction ahead of
    it; a commit (a flush to disk) serves many results instead of one.
    """

    def __init__(self, config: NotificationConfig, ui_url: str) -> None:
        self.config, self.ui_url = config, ui_url
        self._turn = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._writing = False

    def record(self, outcome: _Outcome) -> DispatchResult:
        ticket = _Ticket(outcome)
        with self._turn:
            self._waiting.append(ticket)
            while self._writing and not ticket.done:
                self._turn.wait()
            if not ticket.done:  # nobody is writing: this worker writes what waits
                self._writing = True
                group, self._waiting = self._waiting, []
            else:
                group = []
        if group:
            try:
                self._write(group)
            finally:
                with self._turn:
                    self._writing = False
                    self._turn.notify_all()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def _write(self, group: list[_Ticket]) -> None:
        try:
            with session_scope() as session:
                written = [_write(session, t.outcome, self.config, self.ui_url) for t in group]
        except Exception as exc:
            if len(group) == 1:
                group[0].error, group[0].done = exc, True
                return
            # One result's problem must not lose the others: each in a transaction of its own.
            for ticket in group:
                try:
                    ticket.result = _record(
                        ticket.outcome, self.config, self.ui_url, DispatchResult()
                    )
                except Exception as own:
                    ticket.error = own
                ticket.done = True
            return
        for ticket, values in zip(group, written, strict=True):
            ticket.result = _count(ticket.outcome, values, DispatchResult())
            ticket.done = True


def _renew(job: _Job, config: NotificationConfig) -> bool:
    """Right before a send: a fresh lease on this message, unless it is no longer ours.

    A batch may take longer than the lease (a slow route, a long queue behind few
    workers); once the lease has run out another dispatcher may have claimed the
    message, and then it is that dispatcher's to send, not this one's.
    """
    until = utcnow() + dt.timedelta(seconds=config.dispatch.lease_seconds)
    with session_scope() as session:
        renewed = session.execute(
            update(Notification)
            .where(col(Notification.id) == job.id, col(Notification.claim) == job.claim)
            .values(claimed_until=until)
        )
    return bool(getattr(renewed, "rowcount", 0))


def _send_and_record(
    job: _Job,
    config: NotificationConfig,
    send: Sender,
    environ: Mapping[str, str] | None,
    recorder: _Recorder,
) -> DispatchResult:
    """In the worker: the lease is renewed before the send when half of it has gone (a
    message another dispatcher took over is not sent again), and the result is committed
    right after the send, grouped with the results other workers have at that moment: at
    most one message per worker is sent but unrecorded if the process dies."""
    if time.monotonic() - job.taken > config.dispatch.lease_seconds / 2 and not _renew(job, config):
        return DispatchResult()
    return recorder.record(_deliver(job, config, send, environ))


def hold_unrouted(*, now: dt.datetime, environ: Mapping[str, str] | None) -> int:
    """Messages of a route with no URL are held as unrouted in one statement per route,
    not claimed and handled one by one (a unit that has not configured a role yet)."""
    held = 0
    with session_scope() as session:
        routes = session.exec(select(Notification.route).where(claimable(now)).distinct()).all()
        for route in routes:
            if resolve(route, environ):
                continue
            done = session.execute(
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
    result = DispatchResult(passes=1)
    at = now or utcnow()
    result.unrouted += hold_unrouted(now=at, environ=environ)
    jobs = claim(config=config, now=at, limit=limit or config.dispatch.batch)
    result.claimed = len(jobs)
    if not jobs:
        return result
    recorder = _Recorder(config, ui_url)
    with _pool(config.dispatch.workers) as pool:
        futures: list[Future[DispatchResult]] = [
            pool.submit(_send_and_record, job, config, send, environ, recorder) for job in jobs
        ]
        for future in as_completed(futures):
            result.add(future.result())
    return result


def dispatch(
    *,
    config: NotificationConfig,
    ui_url: str,
    send: Sender = apprise_send,
    environ: Mapping[str, str] | None = None,
    max_passes: int = 1000,
) -> DispatchResult:
    """Send everything that is due now, pass after pass, until nothing is left to claim."""
    total = DispatchResult()
    for _ in range(max_passes):
        step = dispatch_once(config=config, ui_url=ui_url, send=send, environ=environ)
        total.add(step)
        if step.claimed == 0:
            break
    return total


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
