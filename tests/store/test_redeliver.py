"""`notifications redeliver`, an operator's retry: it means now.

Failed, unrouted and retrying messages (those waiting out a backoff) are sent at
once, their attempts still counted; the command says how many went and exits 1
if any failed again; ops, told that a message failed, hears once that it went.
Real receivers on loopback, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from sidflows.notify.config import NotificationConfig, load_notifications
from sidflows.notify.dispatch import dispatch, dispatch_once, redeliver
from sidflows.notify.messages import delivered_after_failure
from sidflows.store import db
from sidflows.store.models import Notification, NotificationStatus
from sidflows.testing.receivers import HttpReceiver

from .test_dispatch import SHIPPED, _attempts, _config, _drain, _fill, _routes, _statuses

FAILED_NOTE = "a notification that had failed was delivered"


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(hang_seconds=3).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def broken() -> Iterator[HttpReceiver]:
    """The clinicians' webhook, answering 500 until told otherwise."""
    receiver = HttpReceiver().start()
    receiver.mode = "error"
    yield receiver
    receiver.stop()


def _rows() -> list[Notification]:
    with db.session_scope() as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))))


def _to_ops(http: HttpReceiver) -> list[tuple[str, str]]:
    return [(subject, body) for where, subject, body in http.received.messages if where == "/ops"]


def _failed_clinicians(
    config: NotificationConfig, http: HttpReceiver, broken: HttpReceiver
) -> tuple[dict[str, str], list[str]]:
    """One child's messages sent, the clinicians' failing until they are failed."""
    _fill(1)
    env = {**_routes(http), "SIDFLOWS_NOTIFY_CLINICIANS": broken.url("clinicians")}
    _drain(config, env)
    failed = [k for k, s in _statuses().items() if s == NotificationStatus.failed]
    assert failed
    assert all("|clinicians" in k for k in failed)
    assert len(_to_ops(http)) == len(failed)  # ops was told of each
    return env, failed


def test_redeliver_sends_a_message_waiting_out_its_backoff_now(
    database_url: str, http: HttpReceiver
) -> None:
    """An hour's backoff ahead: the dispatcher leaves the messages; redeliver sends them now,
    once each, and their failed attempt is still counted."""
    _fill(1)
    keys = set(_statuses())
    config = _config(attempts=6, backoff_seconds=3600)
    env = _routes(http)
    http.mode = "error"
    first = dispatch_once(config=config, ui_url="http://ui", environ=env)
    assert first.retrying == len(keys)
    http.mode = "ok"
    assert dispatch_once(config=config, ui_url="http://ui", environ=env).claimed == 0
    assert all(r.next_attempt_at is not None for r in _rows())

    done = redeliver(config=config, ui_url="http://ui", environ=env)

    assert (done.requeued, done.sent, done.failed, done.retrying) == (len(keys), len(keys), 0, 0)
    assert done.delivered_all
    assert set(_statuses().values()) == {NotificationStatus.sent}
    assert _attempts() == dict.fromkeys(keys, 1), "the failed attempt is kept, not reset"
    assert all(r.last_error is None for r in _rows())  # kept until the success
    arrived = http.received.keys()
    assert set(arrived) == keys
    assert max(arrived.values()) == 1
    assert not _to_ops(http), "nobody was told of a failure, so no 'delivered' note either"


def test_a_failed_message_redelivered_keeps_counting_and_fails_again_at_once(
    database_url: str, http: HttpReceiver, broken: HttpReceiver
) -> None:
    """The route still fails: one attempt now (not the whole series again), the count goes
    on from where it was, the error is kept, and ops is not told a second time."""
    config = _config(attempts=2)
    env, failed = _failed_clinicians(config, http, broken)
    assert set(_attempts(failed).values()) == {2}
    before = broken.requests

    done = redeliver(config=config, ui_url="http://ui", environ=env)

    assert (done.requeued, done.sent, done.failed, done.retrying) == (
        len(failed),
        0,
        len(failed),
        0,
    )
    assert not done.delivered_all
    assert broken.requests - before == len(failed)  # one attempt each, at once
    assert set(_attempts(failed).values()) == {3}
    rows = {r.key: r for r in _rows()}
    assert all(rows[k].status == NotificationStatus.failed for k in failed)
    assert all("HTTP 500" in (rows[k].last_error or "") for k in failed)
    assert len(_to_ops(http)) == len(failed), "ops is not told again of the same message"

    broken.mode = "ok"
    done = redeliver(config=config, ui_url="http://ui", environ=env)
    assert (done.sent, done.failed) == (len(failed), 0)
    assert set(_attempts(failed).values()) == {3}, "a success does not reset the count"
    assert all(r.last_error is None for r in _rows() if r.key in failed)


def test_ops_hears_once_that_a_failed_message_was_delivered(
    database_url: str, http: HttpReceiver, broken: HttpReceiver
) -> None:
    """Each failure alert is followed by one 'delivered' note to ops, under its own key;
    another dispatch or redeliver sends no second one."""
    config = _config(attempts=2)
    env, failed = _failed_clinicians(config, http, broken)
    ids = {r.key: r.id for r in _rows()}
    broken.mode = "ok"

    done = redeliver(config=config, ui_url="http://ui", environ=env)
    assert done.sent == len(failed)
    dispatch(config=config, ui_url="http://ui", environ=env)
    redeliver(config=config, ui_url="http://ui", environ=env)
    dispatch(config=config, ui_url="http://ui", environ=env)

    notes = [r for r in _rows() if r.event == "delivery_recovered"]
    assert sorted(r.key for r in notes) == sorted(
        f"delivery_recovered|-|-|v0|ops|n{ids[k]}" for k in failed
    )
    assert all(r.status == NotificationStatus.sent and r.ref is None for r in notes)
    told = [(s, b) for s, b in _to_ops(http) if FAILED_NOTE in s]
    assert len(told) == len(failed)
    for key in failed:
        mine = [b for _, b in told if f"Notification {ids[key]} (" in b]
        assert len(mine) == 1, key
        assert "role clinicians" in mine[0]
        assert "after 2 failed attempts" in mine[0]
    arrived = http.received.keys()
    assert max(arrived.values()) == 1
    # The failure alerts came first, then the notes.
    subjects = [s for s, _ in _to_ops(http)]
    assert all(FAILED_NOTE not in s for s in subjects[: len(failed)])


def test_the_command_line_says_how_many_it_redelivered(
    database_url: str,
    http: HttpReceiver,
    broken: HttpReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`sidflows notifications redeliver`: how many of how many went, and exit 1 while some
    still fail; a role without a route is counted, not an error."""
    from flows.cli import main

    text = SHIPPED.read_text()
    for name, value in (("attempts", "2"), ("backoff_seconds", "0"), ("timeout_seconds", "1")):
        text = re.sub(rf"(?m)^{name} = \S+", f"{name} = {value}", text)
    path = tmp_path / "notifications.toml"
    path.write_text(text)
    config = load_notifications(path)
    assert config.dispatch.attempts == 2
    monkeypatch.setenv("SIDFLOWS_NOTIFICATIONS", str(path))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.delenv("SIDFLOWS_NOTIFY_SECRETS", raising=False)
    env = {
        **{k: v for k, v in _routes(http).items() if not k.endswith("PHARMACY")},
        "SIDFLOWS_NOTIFY_CLINICIANS": broken.url("clinicians"),
    }
    monkeypatch.delenv("SIDFLOWS_NOTIFY_PHARMACY", raising=False)
    for name, url in env.items():
        monkeypatch.setenv(name, url)
    _fill(1)
    _drain(config, env)
    statuses = _statuses()
    failed = [k for k, s in statuses.items() if s == NotificationStatus.failed]
    held = [k for k, s in statuses.items() if s == NotificationStatus.unrouted]
    assert failed
    assert held
    capsys.readouterr()

    assert main(["notifications", "redeliver"]) == 1
    said = capsys.readouterr().out
    assert (
        f"redelivered 0 of {len(failed) + len(held)}: sent 0, failed {len(failed)}, "
        f"to retry 0, without a route {len(held)}"
    ) in said, said

    broken.mode = "ok"
    assert main(["notifications", "redeliver"]) == 0
    said = capsys.readouterr().out
    assert (
        f"redelivered {len(failed)} of {len(failed) + len(held)}: sent {len(failed)}, "
        f"failed 0, to retry 0, without a route {len(held)}"
    ) in said, said
    # The same pass sent ops its notes that the failed messages went.
    assert f"in all this pass: sent {2 * len(failed)}," in said, said
    assert set(broken.received.keys()) == set(failed)
    assert set(_attempts(failed).values()) == {3}

    monkeypatch.setenv("SIDFLOWS_NOTIFY_PHARMACY", http.url("pharmacy"))
    assert main(["notifications", "redeliver"]) == 0
    said = capsys.readouterr().out
    assert f"redelivered {len(held)} of {len(held)}: sent {len(held)}, failed 0" in said, said
    assert main(["notifications", "redeliver"]) == 0
    assert "nothing to redeliver" in capsys.readouterr().out
    assert set(_statuses().values()) == {NotificationStatus.sent}


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_delivered_note_reads_in_the_units_language(language: str) -> None:
    facts = {
        "failed_id": 12,
        "failed_event": "plan_activated",
        "failed_ref": "P-1",
        "failed_role": "clinicians",
        "attempts": 6,
        "when": "2026-11-24T09:00:00",
    }
    subject, body = delivered_after_failure(facts, language)
    assert subject.startswith("sidflows: ")
    assert "{" not in subject + body
    assert all(str(v) in body for v in facts.values())
    assert ("entregó" in subject) == (language == "es")
