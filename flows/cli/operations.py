"""Running the unit: the sweep, serving the deployments, their YAML, the store, the outbox.

The store's and the outbox's commands (``db``, ``notifications``, ``notify-test``)
never import Prefect; the others import it when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flows import quiet
from flows.cli.io import EXIT_CONFIG, EXIT_OK, day, out, print_json
from flows.cli.local_server import before_prefect, plain_http_client
from flows.runtime import ensure_store
from sidflows.errors import InvalidInput
from sidflows.notify import outbox
from sidflows.notify.config import NotificationConfig, load_notifications
from sidflows.notify.dispatch import dispatch, redeliver, send_test
from sidflows.notify.routes import env_name, route_for
from sidflows.settings import get_settings
from sidflows.store import db


def sweep(args: argparse.Namespace) -> int:
    swept = day(args.date, "--date")
    ensure_store()
    before_prefect()
    from flows.orchestrator import pick  # Prefect loads here: the store's commands stay light

    summary = pick().sweep(swept)
    out(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    """Every file was read before this (flows.cli.main: Unit.check); then the store, the
    server's automations, and the deployments, until SIGTERM or SIGINT."""
    plain_http_client()  # the flow-run processes inherit it
    # Prefect and the deployments load only when serving: the store's commands stay light.
    from flows.deployments import deployments, heartbeat_seconds, install_automations
    from flows.serving import serve_until_stopped  # Prefect: only when serving

    ensure_store()
    quiet.apply()
    every = heartbeat_seconds()
    install_automations(every)
    if get_settings().approvals_web:  # the SSO approval page (docs/sso.md): off by default
        from flows.approvals_page import listen_address, start_in_background  # FastAPI: only here

        start_in_background()
        host, port = listen_address(get_settings())
        out(f"sidflows serve: the approval page listens on http://{host}:{port} (for the proxy)")
    serve_until_stopped(deployments(), heartbeat=every)
    return EXIT_OK


def automations_command(args: argparse.Namespace) -> int:
    """For work pools (``prefect deploy``): what serve installs at its start."""
    # Prefect loads here: the store's commands stay light.
    from flows.deployments import MISSED_HEARTBEATS, heartbeat_seconds, install_automations

    every = heartbeat_seconds()
    done = install_automations(every)
    out(
        f"zombie automation {done}: a flow run without a heartbeat for "
        f"{every * MISSED_HEARTBEATS} s is marked Crashed (runs send one every {every} s)"
    )
    return EXIT_OK


def deployments_command(args: argparse.Namespace) -> int:
    """The deployments ``serve`` serves; with --yaml, written as config/prefect.yaml."""
    # Prefect loads here: the store's commands stay light.
    from flows.deployments import YAML_PATH, deployments, entrypoint, prefect_yaml, when

    made = deployments()
    if not args.yaml:
        for deployment in made:
            coming = when(deployment)
            out(
                f"{deployment.flow_name}/{deployment.name}  {entrypoint(deployment)}"
                + (f"  ({'; '.join(coming)})" if coming else "")
            )
        return EXIT_OK
    text = prefect_yaml(made)
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(args.output or YAML_PATH)
    path.write_text(text)
    out(f"{path}: {len(made)} deployments written")
    return EXIT_OK


def db_command(args: argparse.Namespace) -> int:
    revision = db.upgrade()
    out(f"store at revision {revision}")
    return EXIT_OK


def notifications(args: argparse.Namespace) -> int:
    config = load_notifications()
    db.upgrade()
    if args.action == "redeliver":
        return _redeliver(config)
    if args.action == "dispatch":
        result = dispatch(config=config, ui_url=get_settings().ui_url)
        out(
            f"sent {result.sent}, to retry {result.retrying}, failed {result.failed}, "
            f"without a route {result.unrouted}"
        )
        return EXIT_OK if not result.failed else EXIT_CONFIG
    with db.session_scope() as session:
        rows = outbox.listing(session=session, status=args.status, ref=args.ref, limit=args.limit)
        totals = outbox.counts(session=session)
    found = [
        {
            "id": r.id,
            "status": r.status,
            "created_at": r.created_at.isoformat(timespec="seconds") if r.created_at else None,
            "event": r.event,
            "ref": r.ref,
            "item": r.item_key,
            "plan_version": r.plan_version,
            "route": r.route,
            "attempts": r.attempts,
            "subject": r.subject,
            "last_error": r.last_error,
            "sent_at": r.sent_at.isoformat(timespec="seconds") if r.sent_at else None,
            "key": r.key,
        }
        for r in rows
    ]
    if args.json:
        print_json({"notifications": found, "counts": totals})
        return EXIT_OK
    for n in found:
        error = f"  ({n['last_error']})" if n["last_error"] else ""
        out(
            f"{n['id']:>7} {n['status']:<9} {n['created_at'] or '':<25} {n['route']:<22} "
            f"{n['attempts']}  {n['subject']}{error}"
        )
    out(" · ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "the outbox is empty")
    return EXIT_OK


def notify_test(args: argparse.Namespace) -> int:
    config = load_notifications()
    role, _, service = args.role.partition(":")
    if role not in config.roles:
        raise InvalidInput("ROLE", f"unknown role {role!r} (roles: {', '.join(config.roles)})")
    route = route_for(role, service=service or None)
    results = send_test(route, config=config)
    if not results:
        print(f"sidflows: no route for {route}: set {env_name(route)}", file=sys.stderr)
        return EXIT_CONFIG
    for label, error in results:
        out(f"{route} {label}: {'delivered' if error is None else 'FAILED: ' + error}")
    return EXIT_OK if all(error is None for _, error in results) else EXIT_CONFIG


def _redeliver(config: NotificationConfig) -> int:
    """`notifications redeliver`: failed, unrouted and retrying messages sent now; exit 1
    if any of them was tried and failed again."""
    done = redeliver(config=config, ui_url=get_settings().ui_url)
    if not done.requeued:
        out("nothing to redeliver: no failed, unrouted or retrying notification")
    else:
        line = (
            f"redelivered {done.sent} of {done.requeued}: sent {done.sent}, "
            f"failed {done.failed}, to retry {done.retrying}, without a route {done.unrouted}"
        )
        if done.elsewhere:
            line += f", being sent by another dispatcher {done.elsewhere}"
        out(line)
    passed = done.dispatched
    if passed.sent + passed.retrying + passed.failed > done.sent + done.retrying + done.failed:
        out(
            f"in all this pass: sent {passed.sent}, to retry {passed.retrying}, "
            f"failed {passed.failed}, without a route {passed.unrouted}"
        )
    return EXIT_OK if done.delivered_all and not passed.failed else EXIT_CONFIG
