"""The dispatcher against real receivers on loopback (no mock of Apprise): a JSON
webhook (json://) and an SMTP server (mailto://), which refuse, fail and hang on
demand, then come back. Every message arrives, each key is marked sent once,
and a dispatcher killed mid-way loses nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.config import read_toml
from sidflows.notify import dispatch as dispatch_module
from sidflows.notify.config import NotificationConfig, load_notifications, parse_notifications
from sidflows.notify.dispatch import dispatch, dispatch_once, redeliver
from sidflows.notify.sender import apprise_send
from sidflows.store import db
from sidflows.store.models import Notification, NotificationStatus
from sidflows.testing.receivers import HttpReceiver, SmtpReceiver
from sidflows.unit import Unit

from .support import dump_table, iv_child, refer_and_activate

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "notifications.toml"
ROLES = ("coordinators", "clinicians", "day_unit", "pharmacy", "home_care", "referrers", "ops")


def _config(**dispatch: float) -> NotificationConfig:
    data = read_toml(SHIPPED)
    settings = {"attempts": 3, "backoff_seconds": 0, "timeout_seconds": 1, "lease_seconds": 2}
    data["dispatch"] = {**data["dispatch"], **settings, **dispatch}  # type: ignore[dict-item]
    return parse_notifications(data)


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(hang_seconds=3).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


def _routes(http: HttpReceiver, smtp: SmtpReceiver | None = None) -> dict[str, str]:
    routes = {f"SIDFLOWS_NOTIFY_{r.upper()}": http.url(r) for r in ROLES}
    if smtp is not None:
        routes["SIDFLOWS_NOTIFY_COORDINATORS"] = smtp.url("coordinators@unit.test")
    return routes


def _statuses() -> dict[str, str]:
    with db.session_scope() as session:
        return {n.key: n.status for n in session.exec(select(Notification))}


def _attempts(keys: list[str] | None = None) -> dict[str, int]:
    with db.session_scope() as session:
        rows = session.exec(select(Notification)).all()
    return {n.key: n.attempts for n in rows if keys is None or n.key in keys}


def _fill(count: int = 3) -> list[str]:
    """Children taken to an active IV plan: about ten messages each in the outbox."""
    return [refer_and_activate(iv_child(f"D-{i}")) for i in range(count)]


def _drain(config: NotificationConfig, env: dict[str, str], *, passes: int = 20) -> None:
    for _ in range(passes):
        dispatch(config=config, ui_url="http://ui", environ=env)
        if all(s != NotificationStatus.pending for s in _statuses().values()):
            return
        time.sleep(0.05)


def test_messages_reach_the_webhook_and_the_mail_server_once_each(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    """Every pending message is delivered, once, and marked sent; the URLs are stored nowhere."""
    _fill(2)
    keys = set(_statuses())
    env = _routes(http, smtp)
    result = dispatch(config=_config(), ui_url="http://ui", environ=env)
    assert result.sent == len(keys)
    assert result.failed == 0
    assert set(_statuses().values()) == {NotificationStatus.sent}
    arrived = http.received.keys() + smtp.received.keys()
    assert set(arrived) == keys
    assert max(arrived.values()) == 1
    assert smtp.received.messages
    assert all(to == "coordinators@unit.test" for to, _, _ in smtp.received.messages)
    assert dispatch(config=_config(), ui_url="http://ui", environ=env).claimed == 0
    stored = dump_table(database_url, "notification") + dump_table(database_url, "auditentry")
    for url in env.values():
        assert url not in stored
    assert f":{http.port}" not in stored
    assert f":{smtp.port}" not in stored


@pytest.mark.parametrize("fault", ["refused", "error", "hang"])
def test_a_faulty_receiver_that_comes_back_gets_every_message_once(
    database_url: str, http: HttpReceiver, fault: str
) -> None:
    """Refused, HTTP 500 or hanging past the timeout: retried with backoff until it answers."""
    _fill(2)
    keys = set(_statuses())
    env = _routes(http)
    config = _config(attempts=10)
    if fault == "refused":
        http.stop()
    else:
        http.mode = "error" if fault == "error" else "hang"
    first = dispatch_once(config=config, ui_url="http://ui", environ=env)
    assert first.sent == 0
    assert first.retrying == len(keys)
    with db.session_scope() as session:
        errors = {n.last_error for n in session.exec(select(Notification))}
    expected = {"refused": "no answer", "error": "HTTP 500", "hang": "no answer"}[fault]
    # A kept-alive connection the receiver drops after its 500 reads as "no answer".
    assert all(e and (expected in e or "no answer" in e) for e in errors), errors
    assert any(expected in (e or "") for e in errors), errors
    assert all(str(http.port) not in (e or "") for e in errors)
    if fault == "refused":
        http.start()  # the same port again
    http.mode = "ok"
    _drain(config, env)
    assert set(_statuses().values()) == {NotificationStatus.sent}
    arrived = http.received.keys()
    assert set(arrived) == keys
    assert max(arrived.values()) == 1


def test_backoff_waits_before_the_next_attempt(database_url: str, http: HttpReceiver) -> None:
    """After a failure the message waits its backoff: an immediate second pass leaves it alone."""
    _fill(1)
    http.mode = "error"
    config = _config(backoff_seconds=60)
    dispatch_once(config=config, ui_url="http://ui", environ=_routes(http))
    assert dispatch_once(config=config, ui_url="http://ui", environ=_routes(http)).claimed == 0
    with db.session_scope() as session:
        rows = session.exec(select(Notification)).all()
    assert all(r.attempts == 1 and r.next_attempt_at is not None for r in rows)


def test_after_the_last_attempt_a_message_fails_and_ops_is_told(
    database_url: str, http: HttpReceiver
) -> None:
    """The clinicians' route keeps failing: marked failed, ops told once each; redeliver sends."""
    _fill(1)
    broken = HttpReceiver().start()
    broken.mode = "error"
    env = {**_routes(http), "SIDFLOWS_NOTIFY_CLINICIANS": broken.url("clinicians")}
    config = _config(attempts=2)
    _drain(config, env)
    statuses = _statuses()
    failed = [k for k, s in statuses.items() if s == NotificationStatus.failed]
    assert failed
    assert all("|clinicians" in k for k in failed)
    told = [b for where, _, b in http.received.messages if where == "/ops"]
    assert len(told) == len(failed)
    assert all("sidflows notifications redeliver" in b for b in told)
    broken.mode = "ok"
    done = redeliver(config=config, ui_url="http://ui", environ=env)
    assert (done.requeued, done.sent, done.failed) == (len(failed), len(failed), 0)
    assert set(_statuses().values()) == {NotificationStatus.sent}
    assert set(broken.received.keys()) == set(failed)
    assert set(_attempts(failed).values()) == {2}, "the failed attempts are still counted"
    broken.stop()


def test_a_role_without_a_route_is_held_not_failed(database_url: str, http: HttpReceiver) -> None:
    """No URL for the pharmacy: its messages wait as unrouted; nobody is paged for it."""
    _fill(1)
    env = {k: v for k, v in _routes(http).items() if not k.endswith("PHARMACY")}
    _drain(_config(), env)
    statuses = _statuses()
    held = {k for k, s in statuses.items() if s == NotificationStatus.unrouted}
    assert held
    assert all("|pharmacy" in k for k in held)
    assert not [k for k in statuses if k.startswith("delivery_failed")]


def test_identity_only_on_a_route_marked_secure(database_url: str, http: HttpReceiver) -> None:
    """Clinicians marked secure on an allowed scheme get the name; every other route does not."""
    ref = refer_and_activate(iv_child("SEC-1"))
    data = read_toml(SHIPPED)
    data["roles"]["clinicians"]["secure"] = True  # type: ignore[index]
    data["secure_schemes"] = ["json"]
    data["dispatch"] = {**data["dispatch"], "backoff_seconds": 0}  # type: ignore[dict-item]
    _drain(parse_notifications(data), _routes(http))
    by_route: dict[str, list[str]] = {}
    for where, _, body in http.received.messages:
        by_route.setdefault(where.strip("/"), []).append(body)
    assert all("Child SEC-1" in b and "MRN-SEC-1" in b for b in by_route["clinicians"])
    others = [b for route, bodies in by_route.items() if route != "clinicians" for b in bodies]
    assert others
    assert not any("Child SEC-1" in b or "MRN-SEC-1" in b for b in others)
    assert all(ref in b for b in others)
    # The same role on a scheme not in secure_schemes gets no identity.
    service.refer(iv_child("SEC-2"), unit=Unit(), actor="intake")
    plain = parse_notifications({**data, "secure_schemes": ["mailtos"]})
    before = len(http.received)
    _drain(plain, _routes(http))
    assert not any("Child SEC-2" in b for _, _, b in http.received.messages[before:])


def _dispatcher(tmp_path: Path, env: dict[str, str], database_url: str) -> subprocess.Popen[str]:
    config = SHIPPED.read_text()
    config = re.sub(r"(?m)^lease_seconds = .*$", "lease_seconds = 2", config)
    config = re.sub(r"(?m)^timeout_seconds = .*$", "timeout_seconds = 5", config)
    config = re.sub(r"(?m)^workers = .*$", "workers = 2", config)
    path = tmp_path / "notifications.toml"
    path.write_text(config)
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "notifications", "dispatch"],
        env={
            **os.environ,
            **env,
            "SIDFLOWS_NOTIFICATIONS": str(path),
            "SIDFLOWS_DATABASE_URL": database_url,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_dispatcher_killed_mid_send_loses_nothing(
    database_url: str, http: HttpReceiver, tmp_path: Path
) -> None:
    """kill -9 while deliveries hang; a new dispatcher after the lease sends each message once."""
    _fill(2)
    keys = set(_statuses())
    http.mode = "hang"
    env = _routes(http)
    process = _dispatcher(tmp_path, env, database_url)
    deadline = time.monotonic() + 60
    while http.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http.requests >= 2, process.communicate(timeout=10)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    claimed = [k for k, s in _statuses().items() if s == NotificationStatus.sending]
    assert claimed, "the killed dispatcher held a claim"
    http.mode = "ok"
    time.sleep(2.2)  # the dead dispatcher's lease runs out
    restarted = _dispatcher(tmp_path, env, database_url)
    _out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert set(_statuses().values()) == {NotificationStatus.sent}
    arrived = http.received.keys()
    assert set(arrived) == keys
    assert max(arrived.values()) == 1


def test_a_dispatcher_killed_while_delivering_loses_none_and_repeats_only_in_flight(
    database_url: str, http: HttpReceiver, tmp_path: Path
) -> None:
    """kill -9 at full speed: nothing lost; a copy arrives twice only if it was in flight."""
    _fill(6)
    keys = set(_statuses())
    env = _routes(http)
    process = _dispatcher(tmp_path, env, database_url)
    deadline = time.monotonic() + 60
    while len(http.received) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(2.2)
    restarted = _dispatcher(tmp_path, env, database_url)
    _, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    with db.session_scope() as session:
        sent = session.exec(
            select(Notification.key).where(col(Notification.status) == NotificationStatus.sent)
        ).all()
    assert set(sent) == keys
    arrived = http.received.keys()
    assert set(arrived) == keys
    repeated = [k for k, n in arrived.items() if n > 1]
    assert len(repeated) <= 2  # at most one in flight per worker when it was killed


def test_a_batch_that_outlasts_its_lease_sends_each_message_once(
    database_url: str, http: HttpReceiver
) -> None:
    """A slow dispatcher's lease runs out mid-batch: another takes the rest, none goes twice.

    Seven messages at 0.5 s each on a 2 s lease: those sent after half the lease are
    renewed first; at 2.6 s the rest are claimable. A send never outlasts the unrenewed
    lease, so each message goes once, with a second of margin for a busy database."""
    _fill(1)
    keys = set(_statuses())
    config = _config(lease_seconds=2, workers=1)
    env = _routes(http)

    def slow(url: str, subject: str, body: str) -> str | None:
        time.sleep(0.5)  # a slow mail server: the batch takes longer than the lease
        return apprise_send(url, subject, body)

    first = threading.Thread(
        target=dispatch_once, kwargs={"config": config, "ui_url": "u", "send": slow, "environ": env}
    )
    first.start()
    time.sleep(2.6)  # the first claim's lease is over; the first dispatcher is still sending
    second = dispatch_once(config=config, ui_url="u", send=slow, environ=env)
    first.join()
    assert second.claimed > 0  # the messages the first had not reached
    _drain(config, env)
    assert set(_statuses().values()) == {NotificationStatus.sent}
    arrived = http.received.keys()
    assert set(arrived) == keys
    assert max(arrived.values()) == 1


def test_the_lease_clock_starts_when_the_lease_does(
    database_url: str, http: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is written from the pass's start; time the database took before the claim
    returned (CI's loaded PostgreSQL took over half a 1 s lease) counts towards the
    half-lease renewal, or a message would be sent unrenewed after its lease ran out and
    a second dispatcher would send it too."""
    _fill(1)
    held = dispatch_module.hold_unrouted

    def busy(**kwargs: object) -> int:
        time.sleep(0.6)  # a busy database before the claim
        return held(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch_module, "hold_unrouted", busy)
    config = _config(lease_seconds=1, workers=1)
    renewed: list[int] = []
    renew = dispatch_module._renew

    def counted(job: object, config: NotificationConfig) -> bool:
        renewed.append(1)
        return renew(job, config)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch_module, "_renew", counted)
    result = dispatch_once(config=config, ui_url="u", environ=_routes(http))
    assert result.claimed > 0
    assert len(renewed) == result.claimed, "every send came after half the lease: each renewed"
    assert set(_statuses().values()) == {NotificationStatus.sent}


def test_the_shipped_configuration_is_what_the_dispatcher_uses() -> None:
    """Defaults: 6 attempts, backoff doubling from 30 s to an hour, 10 s timeout."""
    config = load_notifications()
    assert config.dispatch.attempts == 6
    assert [config.dispatch.backoff(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert config.dispatch.backoff(20) == 3600
