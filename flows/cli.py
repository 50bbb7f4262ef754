"""The ``sidflows`` command line (CONTRACTS.md).

Exit codes: 0 ok; 1 configuration or system problem; 2 invalid input (one line
naming the field); 3 unknown ref. Never a traceback for bad input.

Each command imports what it needs when it runs: ``propose`` loads only
sidflows (never prefect), so it answers fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from sidflows.errors import ConfigError, InvalidInput, UnknownPatient

EXIT_OK, EXIT_CONFIG, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2, 3


def _one_line(message: str) -> str:
    """What the command line prints: one line, whatever a document put in it."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)


def _worker_counts(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        counts = []
    if not counts or not all(1 <= c <= 64 for c in counts):
        raise argparse.ArgumentTypeError(f"worker counts from 1 to 64, comma-separated: {value!r}")
    return counts


def read_document(path: str, *, what: str = "FILE") -> bytes:
    """A document from a file, or standard input for ``-``."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidInput(what, f"no such file: {path}") from None
    except IsADirectoryError:
        raise InvalidInput(what, f"is a directory: {path}") from None
    except PermissionError:
        raise InvalidInput(what, f"cannot be read: {path}") from None


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- commands


def cmd_propose(args: argparse.Namespace) -> int:
    from sidflows.calendar import load_calendar
    from sidflows.plan_document import plan_document
    from sidflows.planning import propose_plan
    from sidflows.protocol import load_protocol
    from sidflows.referral import iso_day, parse_referral

    referral = parse_referral(read_document(args.file))
    protocol = load_protocol()
    calendar = load_calendar()
    today = iso_day(args.today, "--today") if args.today else calendar.today()
    plan = propose_plan(referral, today=today, protocol=protocol, calendar=calendar)
    print_json(plan_document(plan))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from sidflows.schema import referral_schema

    print_json(referral_schema())
    return EXIT_OK


def cmd_benchmark(args: argparse.Namespace) -> int:
    from sidflows.benchmark import benchmark_propose

    if args.what == "propose":
        benchmark_propose(children=args.children, seed=args.seed)
        return EXIT_OK
    if args.what == "notifications":
        from sidflows.notify.benchmark import benchmark_notifications

        runs = benchmark_notifications(
            messages=args.messages, workers=args.workers or (), database_url=args.database_url
        )
        return (
            EXIT_OK
            if all(r.duplicates == 0 and r.sent == r.messages for r in runs)
            else EXIT_CONFIG
        )
    from flows.benchmark import benchmark_sweep

    benchmark_sweep(children=args.children, seed=args.seed, database_url=args.database_url)
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace) -> int:
    from sidflows.notify import outbox
    from sidflows.notify.config import load_notifications
    from sidflows.notify.dispatch import dispatch
    from sidflows.settings import get_settings
    from sidflows.store import db

    config = load_notifications()
    db.upgrade()
    if args.action in ("redeliver", "dispatch"):
        if args.action == "redeliver":
            with db.session_scope() as session:
                requeued = outbox.requeue_failed(session=session)
            print(f"{requeued} failed or unrouted notifications queued again")
        result = dispatch(config=config, ui_url=get_settings().ui_url)
        print(
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
        print(
            f"{n['id']:>7} {n['status']:<9} {n['created_at'] or '':<25} {n['route']:<22} "
            f"{n['attempts']}  {n['subject']}{error}"
        )
    print(" · ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "the outbox is empty")
    return EXIT_OK


def cmd_notify_test(args: argparse.Namespace) -> int:
    from sidflows.notify.config import load_notifications
    from sidflows.notify.dispatch import send_test
    from sidflows.notify.routes import env_name, route_for

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
        print(f"{route} {label}: {'delivered' if error is None else 'FAILED: ' + error}")
    return EXIT_OK if all(error is None for _, error in results) else EXIT_CONFIG


def _flows_command(name: str) -> Callable[[argparse.Namespace], int]:
    """A command implemented in flows/ (it needs Prefect), imported only when run."""

    def run(args: argparse.Namespace) -> int:
        from flows import commands

        handler: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return handler(args)

    return run


# ----------------------------------------------------------------------------- parser


@cache
def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per process (tests call main thousands of times)."""
    parser = argparse.ArgumentParser(
        prog="sidflows",
        description="Care-plan orchestrator for children with secondary immunodeficiency.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("propose", help="print the proposed plan for a referral (no database)")
    p.add_argument("file", metavar="FILE", help="referral document (JSON), or - for stdin")
    p.add_argument("--today", metavar="YYYY-MM-DD", help="plan as of this day (default: today)")
    p.set_defaults(handler=cmd_propose)

    p = sub.add_parser("schema", help="print the JSON Schema of the referral document")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("demo", help="run a synthetic cohort through the real flows")
    p.add_argument("--children", type=int, default=25)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--local-receivers",
        action="store_true",
        help="deliver the notifications to receivers on loopback (webhook and mail), check them",
    )
    p.set_defaults(handler=_flows_command("demo"))

    p = sub.add_parser("refer", help="store a referral and start the child's pathway")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--today", metavar="YYYY-MM-DD")
    p.set_defaults(handler=_flows_command("refer"))

    p = sub.add_parser("show", help="the child's current plan, items and their states")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_flows_command("show"))

    p = sub.add_parser("approve", help="approve the proposed plan")
    p.add_argument("ref", metavar="REF")
    p.add_argument(
        "--by",
        metavar="NAME",
        default=None,
        help="a clinician's name or login in the staff roster (default: your login)",
    )
    p.set_defaults(handler=_flows_command("approve"))

    p = sub.add_parser("consent", help="record the family's consent to the cost")
    p.add_argument("ref", metavar="REF")
    p.add_argument(
        "--by",
        metavar="NAME",
        default=None,
        help="who records it: a name or login in the staff roster (default: your login)",
    )
    p.set_defaults(handler=_flows_command("consent"))

    p = sub.add_parser("treatment-change", help="record a treatment change and re-plan")
    p.add_argument("ref", metavar="REF")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=_flows_command("treatment_change"))

    p = sub.add_parser("lab-result", help="record new lab results and re-plan")
    p.add_argument("ref", metavar="REF")
    p.add_argument("file", metavar="FILE", help='{"labs": [...]} shaped as a referral\'s labs')
    p.set_defaults(handler=_flows_command("lab_result"))

    p = sub.add_parser("sweep", help="the daily run: due and overdue items, reconciliation")
    p.add_argument("--date", metavar="YYYY-MM-DD", default=None)
    p.set_defaults(handler=_flows_command("sweep"))

    p = sub.add_parser("notifications", help="the outbox: list, redeliver failed, dispatch now")
    p.add_argument("action", nargs="?", choices=["list", "redeliver", "dispatch"], default="list")
    p.add_argument(
        "--status",
        choices=["queued", "pending", "sending", "sent", "failed", "unrouted", "digested"],
    )
    p.add_argument("--ref", metavar="REF", default=None)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_notifications)

    p = sub.add_parser("notify-test", help="send a test message to a role's routes")
    p.add_argument("role", metavar="ROLE", help="e.g. pharmacy, or referrers:oncology")
    p.set_defaults(handler=cmd_notify_test)

    p = sub.add_parser("serve", help="serve every deployment (schedules, event triggers)")
    p.set_defaults(handler=_flows_command("serve"))

    p = sub.add_parser("db", help="the store's schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(handler=_flows_command("db_command"))

    p = sub.add_parser("benchmark", help="print speed and memory figures")
    p.add_argument("what", choices=["propose", "sweep", "notifications"])
    p.add_argument("--children", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--database-url", default=None, help="sweep, notifications: the store to fill (*bench*)"
    )
    p.add_argument("--messages", type=int, default=10_000, help="notifications: outbox size")
    p.add_argument(
        "--workers",
        type=_worker_counts,
        default=None,
        metavar="N[,N...]",
        help="notifications: dispatcher workers, one run each (default: the configured count)",
    )
    p.set_defaults(handler=cmd_benchmark)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A hospital network has no route to Prefect's telemetry: do not try (and log errors).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except InvalidInput as exc:
        print(f"sidflows: invalid input: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_INVALID
    except UnknownPatient as exc:
        print(f"sidflows: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_UNKNOWN
    except ConfigError as exc:
        print(f"sidflows: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("sidflows: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("SIDFLOWS_DEBUG"):
            raise
        print(
            f"sidflows: error: {type(exc).__name__}: {exc} (SIDFLOWS_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return code


if __name__ == "__main__":
    sys.exit(main())
