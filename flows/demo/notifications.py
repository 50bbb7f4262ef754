"""The demo's notifications: local receivers for every role, and what the year sent.

``sidflows demo --local-receivers`` starts an HTTP receiver (``json://``, one
path per role) and an SMTP server (``mailto://``, the coordinators) on
loopback, in this process, and points every role's route at them; no real
route is ever reached (every SIDFLOWS_NOTIFY_* of the environment is set
aside). At the end, the outbox and what arrived are compared: each message
once, none with an identity value on a route that may not carry it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rich.table import Table

from sidflows.notify.config import NotificationConfig
from sidflows.notify.routes import PREFIX, env_name
from sidflows.store import db
from sidflows.store.models import NotificationStatus
from sidflows.store.reports import identities, outbox_keys
from sidflows.testing.receivers import KEY, HttpReceiver, Received, SmtpReceiver

MAIL_ROLES = frozenset({"coordinators"})  # by mail; the other roles by webhook
MAIL_DOMAIN = "unit.test"


@dataclass
class LocalReceivers:
    http: HttpReceiver
    smtp: SmtpReceiver | None
    routes: dict[str, str]  # SIDFLOWS_NOTIFY_<ROLE> -> URL

    def stop(self) -> None:
        self.http.stop()
        if self.smtp is not None:
            self.smtp.stop()

    def messages(self) -> list[tuple[str, str, str, str]]:
        """(role, URL scheme, subject, body) of every message that arrived."""
        found = [
            (urlsplit(where).path.strip("/"), "json", subject, body)
            for where, subject, body in _copy(self.http.received)
        ]
        if self.smtp is not None:
            found += [
                (where.split("@", 1)[0], "mailto", subject, body)
                for where, subject, body in _copy(self.smtp.received)
            ]
        return found


def _copy(received: Received) -> list[tuple[str, str, str]]:
    with received.lock:
        return list(received.messages)


def start_local_receivers(config: NotificationConfig) -> LocalReceivers:
    """Receivers on loopback and, for each role, the environment variable that routes it there.

    The caller puts ``routes`` into the environment (the demo into os.environ, a
    test through monkeypatch) after setting aside any SIDFLOWS_NOTIFY_* there.
    """
    http = HttpReceiver().start()
    smtp: SmtpReceiver | None
    try:
        smtp = SmtpReceiver().start()
    except ImportError:  # aiosmtpd comes with the test extra: the webhook for everyone
        smtp = None
    routes = {
        env_name(role): (
            smtp.url(to=f"{role}@{MAIL_DOMAIN}")
            if smtp is not None and role in MAIL_ROLES
            else http.url(role)
        )
        for role in config.roles
    }
    return LocalReceivers(http, smtp, routes)


def route_environment_aside() -> list[str]:
    """Remove every SIDFLOWS_NOTIFY_* (and the secrets file) from os.environ; names only."""
    names = [name for name in os.environ if name.startswith(PREFIX)]
    for name in names:
        del os.environ[name]
    return names


@dataclass
class NotificationReport:
    by_event: dict[str, Counter[str]] = field(default_factory=dict)  # event -> status -> n
    by_route: dict[str, Counter[str]] = field(default_factory=dict)  # route -> status -> n
    statuses: Counter[str] = field(default_factory=Counter)
    local: bool = False
    arrived: int = 0
    arrived_by_event: Counter[str] = field(default_factory=Counter)
    arrived_by_route: Counter[str] = field(default_factory=Counter)  # by the receiver's role
    duplicates: dict[str, int] = field(default_factory=dict)  # key -> copies, when > 1
    never_arrived: int = 0  # marked sent in the store, no copy at the receivers
    unknown_keys: int = 0  # arrived without a key of the outbox
    identity_leaks: int = 0  # messages with an identity value on an ordinary route

    @property
    def unfinished(self) -> int:
        return sum(
            self.statuses.get(s, 0)
            for s in (
                NotificationStatus.pending,
                NotificationStatus.sending,
                NotificationStatus.failed,
                NotificationStatus.queued,
            )
        )


def identity_pattern() -> re.Pattern[str] | None:
    """Every identity value in the store (names, record numbers, the synthetic name tokens)."""
    values: set[str] = set()
    with db.session_scope() as session:
        known = identities(session=session)
    for name, mrn in known:
        for value in (name, mrn):
            if value:
                values.add(value)
        values |= {w for w in (name or "").split() if w.startswith("Synthetic")}
    if not values:
        return None
    ordered = sorted((re.escape(v) for v in values), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(ordered) + r")(?![\w-])")


def notification_report(
    config: NotificationConfig, receivers: LocalReceivers | None
) -> NotificationReport:
    report = NotificationReport(local=receivers is not None)
    sent_keys: set[str] = set()
    with db.session_scope() as session:
        rows = outbox_keys(session=session)
    for event, route, status, key in rows:
        report.by_event.setdefault(event, Counter())[status] += 1
        report.by_route.setdefault(route, Counter())[status] += 1
        report.statuses[status] += 1
        if status == NotificationStatus.sent:
            sent_keys.add(key)
    if receivers is None:
        return report
    secret = identity_pattern()
    copies: Counter[str] = Counter()
    for role, scheme, subject, body in receivers.messages():
        report.arrived += 1
        report.arrived_by_route[role] += 1
        found = KEY.search(body)
        key = found.group(1) if found else ""
        if not key:
            report.unknown_keys += 1
        copies[key] += 1
        report.arrived_by_event[key.split("|", 1)[0] if key else "?"] += 1
        settings = config.roles.get(role)
        secure = settings is not None and settings.secure and scheme in config.secure_schemes
        if not secure and secret is not None and secret.search(f"{subject}\n{body}"):
            report.identity_leaks += 1
    report.duplicates = {k: n for k, n in copies.items() if k and n > 1}
    report.never_arrived = len(sent_keys - set(copies))
    return report


def print_report(console: Any, report: NotificationReport, *, store_hint: str) -> None:
    sent, digested = NotificationStatus.sent, NotificationStatus.digested
    table = Table(title="Notifications of the year (the outbox)")
    table.add_column("event")
    table.add_column("messages", justify="right")
    table.add_column("sent", justify="right")
    table.add_column("in a digest", justify="right")
    if report.local:
        table.add_column("arrived", justify="right")
    for event, statuses in sorted(report.by_event.items()):
        row = [
            event,
            str(sum(statuses.values())),
            str(statuses.get(sent, 0)),
            str(statuses.get(digested, 0)),
        ]
        if report.local:
            row.append(str(report.arrived_by_event.get(event, 0)))
        table.add_row(*row)
    console.print(table)
    routes = Table(title="per route")
    routes.add_column("route")
    routes.add_column("messages", justify="right")
    routes.add_column("sent", justify="right")
    routes.add_column("in a digest", justify="right")
    for route, statuses in sorted(report.by_route.items()):
        routes.add_row(
            route,
            str(sum(statuses.values())),
            str(statuses.get(sent, 0)),
            str(statuses.get(digested, 0)),
        )
    console.print(routes)
    left = ", ".join(
        f"{status} {report.statuses.get(status, 0)}"
        for status in ("pending", "sending", "failed", "queued", "unrouted")
    )
    unrouted = report.statuses.get(NotificationStatus.unrouted, 0)
    if report.unfinished:
        verdict = "[bold red]messages left to send[/]"
    elif unrouted:
        verdict = "the rest held for lack of a route"
    else:
        verdict = "nothing left to send"
    console.print(f"outbox at the end: {left} -> {verdict}")
    if report.local:
        by_role = ", ".join(f"{r} {n}" for r, n in sorted(report.arrived_by_route.items()))
        console.print(
            f"arrived at the local receivers: {report.arrived} ({by_role}); "
            f"sent in the store {report.statuses.get(sent, 0)}, never arrived "
            f"{report.never_arrived}"
        )
        console.print(
            f"keys that arrived twice: {len(report.duplicates)}; messages with an identity "
            f"value on an ordinary route: {report.identity_leaks}"
        )
        return
    if unrouted:
        console.print(
            f"{unrouted} messages held without a route (status unrouted): no "
            "SIDFLOWS_NOTIFY_<ROLE> is set. `sidflows demo --local-receivers` delivers them "
            "to receivers on loopback; list them with\n"
            f"  {store_hint} .venv/bin/sidflows notifications --status unrouted"
        )
