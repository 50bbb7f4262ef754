"""The dispatcher's batches, on SQLite and PostgreSQL against a real receiver on
loopback: a batch is claimed in one statement and two claims never share a
message; results are written in one UPDATE per distinct outcome; a route that
fails in a batch is the only one retried; a failure between a send and its
record loses nothing and repeats only that group; a slow send does not hold up
the next batch."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from flows.bench.notifications import _notice, routes_environ
from sidflows.config import read_toml
from sidflows.notify import dispatch as dispatcher
from sidflows.notify.config import NotificationConfig, parse_notifications
from sidflows.notify.dispatch import _Outcome, _write, claim, dispatch, dispatch_once
from sidflows.notify.outbox import insert_new, messages
from sidflows.notify.routes import Url, env_name
from sidflows.store import db
from sidflows.store.models import Notification, NotificationStatus, utcnow
from sidflows.testing.receivers import KEY, HttpReceiver

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "notifications.toml"
CLINICIANS = env_name("clinicians")


def _config(**dispatch: float) -> NotificationConfig:
    data = read_toml(SHIPPED)
    settings = {"attempts": 3, "backoff_seconds": 0, "timeout_seconds": 2, "lease_seconds": 1}
    data["dispatch"] = {**data["dispatch"], **settings, **dispatch}  # type: ignore[dict-item]
    return parse_notifications(data)


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def _queue(count: int) -> set[str]:
    """``count`` pending messages, round robin over four routes (coordinators,
    clinicians, day unit, the oncology referrers); their keys."""
    config = _config()
    now = utcnow()
    rows = [
        row
        for i in range(count)
        for row in messages(_notice(i), config=config, ui_url="http://ui", now=now)
    ]
    with db.session_scope() as session:
        assert insert_new(session, rows) == count
    return {row["key"] for row in rows}


def _rows() -> list[Notification]:
    with db.session_scope() as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))))


class _Statements:
    """The UPDATEs of the outbox sent to the database while it counts."""

    def __init__(self) -> None:
        self.updates: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "UPDATE NOTIFICATION " in statement.upper():  # PostgreSQL's claim: WITH ... UPDATE
            self.updates.append(statement)


@pytest.fixture
def statements(database_url: str) -> Iterator[_Statements]:
    seen = _Statements()
    engine = db.get_engine(database_url)
    event.listen(engine, "before_cursor_execute", seen)
    yield seen
    event.remove(engine, "before_cursor_execute", seen)


def test_a_batch_is_claimed_in_one_statement_and_written_per_outcome(
    database_url: str, statements: _Statements
) -> None:
    """40 messages over four routes, one of which fails: one UPDATE claims them all,
    four write the results (three routes sent, one retried), none per row."""
    _queue(40)
    config = _config()
    jobs = claim(config=config, now=utcnow(), limit=100)
    assert len(jobs) == 40
    assert len(statements.updates) == 1
    assert {r.status for r in _rows()} == {NotificationStatus.sending}
    assert len({job.claim for job in jobs}) == 1
    outcomes = [
        _Outcome(job, [], ["json#000000: HTTP 500"])
        if job.route == "clinicians"
        else _Outcome(job, [Url(f"json://127.0.0.1/{job.route}").digest], [])
        for job in jobs
    ]
    statements.updates.clear()
    with db.get_engine().begin() as connection:
        written = _write(connection, outcomes, config, "http://ui")
    assert len(written) == 40
    assert len(statements.updates) == 4
    rows = _rows()
    retried = [r for r in rows if r.route == "clinicians"]
    assert len(retried) == 10
    for row in retried:
        assert row.status == NotificationStatus.pending
        assert (row.attempts, row.last_error, row.delivered) == (1, "json#000000: HTTP 500", [])
        assert row.next_attempt_at is not None
    sent = [r for r in rows if r.route != "clinicians"]
    assert {r.status for r in sent} == {NotificationStatus.sent}
    assert all(r.claim is None and r.claimed_until is None and r.attempts == 0 for r in sent)
    assert all(r.delivered == [Url(f"json://127.0.0.1/{r.route}").digest] for r in sent)


def test_two_claims_at_once_never_take_the_same_message(database_url: str) -> None:
    """Eight dispatchers claiming at the same moment, ten each, again until nothing is
    left: every message is claimed exactly once."""
    keys = _queue(120)
    config = _config(lease_seconds=600)
    start = threading.Barrier(8)
    taken: list[list[str]] = [[] for _ in range(8)]

    def claimer(index: int) -> None:
        start.wait()
        while jobs := claim(config=config, now=utcnow(), limit=10):
            assert len(jobs) <= 10  # the limit holds (PostgreSQL: a CTE, not IN (...))
            taken[index].extend(job.key for job in jobs)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [key for found in taken for key in found]
    assert sorted(every) == sorted(keys)


def test_a_failing_route_in_a_batch_is_the_only_one_retried(
    database_url: str, http: HttpReceiver
) -> None:
    """The clinicians' webhook answers 500: in the same batch every other message is
    sent once and marked sent; only the clinicians' are retried, then sent once."""
    keys = _queue(40)
    broken = HttpReceiver().start()
    broken.mode = "error"
    env = {**routes_environ(http.port), CLINICIANS: broken.url("clinicians")}
    config = _config(attempts=5, workers=4)
    try:
        first = dispatch_once(config=config, ui_url="http://ui", environ=env)
        assert (first.claimed, first.sent, first.retrying, first.failed) == (40, 30, 10, 0)
        by_route: dict[str, set[str]] = {}
        for row in _rows():
            by_route.setdefault(row.route, set()).add(row.status)
        assert by_route.pop("clinicians") == {NotificationStatus.pending}
        assert set().union(*by_route.values()) == {NotificationStatus.sent}
        assert all(r.attempts == 1 for r in _rows() if r.route == "clinicians")
        assert len(http.received) == 30
        assert max(http.received.keys().values()) == 1
        broken.mode = "ok"
        again = dispatch_once(config=config, ui_url="http://ui", environ=env)
        assert (again.claimed, again.sent) == (10, 10)
        assert {r.status for r in _rows()} == {NotificationStatus.sent}
        arrived = http.received.keys() + broken.received.keys()
        assert set(arrived) == keys
        assert max(arrived.values()) == 1
    finally:
        broken.stop()


class _Crash(BaseException):
    """The process going down between the sends of a group and their record."""


def test_a_crash_between_send_and_record_loses_nothing(
    database_url: str, http: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first group's record never happens (the process dies with its messages
    delivered): they stay claimed; once the lease has run out the next pass sends
    them again; every message arrives, only that group twice (at most one message
    per worker), and every message is marked sent once."""
    keys = _queue(60)
    config = _config(workers=2, batch=20, lease_seconds=60)
    env = routes_environ(http.port)
    real = dispatcher._Recorder._write
    lost: list[str] = []

    def dies_once(self: Any, group: list[Any]) -> None:
        if not lost:
            lost.extend(t.outcome.job.key for t in group)
            raise _Crash
        real(self, group)

    monkeypatch.setattr(dispatcher._Recorder, "_write", dies_once)
    with pytest.raises(_Crash):
        dispatch(config=config, ui_url="http://ui", environ=env)
    assert 1 <= len(lost) <= 2
    statuses = {r.key: r.status for r in _rows()}
    assert all(statuses[key] == NotificationStatus.sending for key in lost)
    assert all(KEY.search(b) for _, _, b in http.received.messages)
    monkeypatch.setattr(dispatcher._Recorder, "_write", real)
    # Within the lease what was never claimed goes out; what the dead pass had claimed
    # (the lost group, and the rest of its batch, never sent) is left alone.
    dispatch(config=config, ui_url="http://ui", environ=env)
    held = {r.key for r in _rows() if r.status != NotificationStatus.sent}
    assert held >= set(lost)
    assert {r.status for r in _rows() if r.key in held} == {NotificationStatus.sending}
    assert len(held) <= config.dispatch.batch  # one batch claimed, no more
    assert max(http.received.keys().values()) == 1
    later = utcnow() + dt.timedelta(seconds=config.dispatch.lease_seconds + 1)
    while dispatch_once(config=config, ui_url="http://ui", environ=env, now=later).claimed:
        pass
    assert {r.status for r in _rows()} == {NotificationStatus.sent}
    arrived = http.received.keys()
    assert set(arrived) == keys
    assert {k for k, n in arrived.items() if n > 1} == set(lost)
    assert max(arrived.values()) == 2


def test_a_slow_send_does_not_hold_up_the_next_batch(database_url: str, http: HttpReceiver) -> None:
    """Batches of 4, two workers, the first message takes 1.5 s: the other worker goes
    on into the next batches meanwhile instead of waiting for the batch to end."""
    keys = _queue(16)
    config = _config(workers=2, batch=4, timeout_seconds=5, lease_seconds=60)
    env = routes_environ(http.port)
    first = min(keys, key=lambda k: int(k.split("|")[1].removeprefix("BENCH-")))
    slow_done: list[float] = []
    sent_at: list[float] = []

    def send(url: str, subject: str, body: str) -> str | None:
        if f"[sidflows {first}]" in body:
            time.sleep(1.5)
            slow_done.append(time.monotonic())
        else:
            sent_at.append(time.monotonic())
        return dispatcher.apprise_send(url, subject, body)

    result = dispatch(config=config, ui_url="http://ui", environ=env, send=send)
    assert result.sent == 16
    assert len([t for t in sent_at if t < slow_done[0]]) > config.dispatch.batch
    assert {r.status for r in _rows()} == {NotificationStatus.sent}
    arrived = http.received.keys()
    assert set(arrived) == keys
    assert max(arrived.values()) == 1
