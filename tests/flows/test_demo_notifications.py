"""The demo's year delivers its notifications: every message once, no identity, nothing left.

A small cohort through the real flows on the session's Prefect server, with the
demo's local receivers (a webhook and a mail server on loopback) as every
role's route. What arrived is read from the receivers themselves, not from the
demo's own report (which is then checked against it).
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import select

from flows.demo.notifications import notification_report, start_local_receivers
from flows.demo.simulation import Simulation
from flows.notifications import send_outbox
from sidflows.notify.config import load_notifications
from sidflows.notify.routes import PREFIX
from sidflows.store import db
from sidflows.store.models import Identity, Notification, NotificationStatus
from sidflows.testing.receivers import KEY
from tests.conftest import clear_store_caches
from tests.flows.processes import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def year_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The year's store: SQLite (the embedded default) or PostgreSQL (a unit's). The
    flows had run on SQLite only: a re-plan whose hold reason was longer than its
    column failed on PostgreSQL alone (migration 0009)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'store.db'}"
        else:
            url = stack.enter_context(postgres_database())
        monkeypatch.setenv("SIDFLOWS_DATABASE_URL", url)
        clear_store_caches()
        db.upgrade(url)
        try:
            yield url
        finally:
            clear_store_caches()
            db.dispose_engines()


def test_a_small_year_delivers_each_message_once_without_identity(
    prefect_server: str, year_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    config = load_notifications()
    receivers = start_local_receivers(config)
    try:
        for name, url in receivers.routes.items():
            monkeypatch.setenv(name, url)
        # A third of the outcomes recorded late: overdue items escalate.
        simulation = Simulation(
            children=2,
            months=2,
            seed=3,
            console=Console(file=io.StringIO()),
            late_share=0.3,
            start=dt.date(2026, 11, 24),
        )
        simulation.run()
        send_outbox()  # as the demo does before it reads the outbox
        arrived = [
            (where, subject, body)
            for receiver in (receivers.http, receivers.smtp)
            if receiver is not None
            for where, subject, body in receiver.received.messages
        ]
        report = notification_report(config, receivers)
    finally:
        receivers.stop()

    assert receivers.smtp is not None, "the coordinators' route is the mail server"
    assert receivers.smtp.received.messages, "the coordinators got mail"
    keys = Counter(m.group(1) for _, _, body in arrived if (m := KEY.search(body)))
    assert sum(keys.values()) == len(arrived), "every message carries its outbox key"
    assert [k for k, n in keys.items() if n > 1] == []
    events = {key.split("|", 1)[0] for key in keys}
    assert {
        "referral_received",
        "plan_awaiting_approval",
        "plan_activated",
        "digest",
        "item_overdue",
    } <= events, events

    with db.session_scope() as session:
        rows = session.exec(select(Notification.key, Notification.status)).all()
        identities = session.exec(select(Identity.name, Identity.mrn)).all()
    statuses = Counter(status for _, status in rows)
    assert statuses[NotificationStatus.sent] == len(arrived)
    assert {k for k, s in rows if s == NotificationStatus.sent} == set(keys)
    left = {NotificationStatus.pending, NotificationStatus.sending, NotificationStatus.failed}
    left |= {NotificationStatus.queued, NotificationStatus.unrouted}
    assert {s: n for s, n in statuses.items() if s in left} == {}

    # No route of the shipped configuration is secure: no message may name the child.
    secrets = {v for pair in identities for v in pair if v}
    assert secrets, "the cohort has names and record numbers"
    for where, subject, body in arrived:
        text = f"{subject}\n{body}"
        assert "SYN-MRN-" not in text, where
        assert "Synthetic" not in text, where
        assert not [s for s in secrets if s in text], where

    assert report.arrived == len(arrived)
    assert report.duplicates == {}
    assert report.identity_leaks == 0
    assert report.never_arrived == 0
    assert report.unfinished == 0
