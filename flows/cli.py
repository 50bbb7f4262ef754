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
    from flows.benchmark import benchmark_sweep

    benchmark_sweep(children=args.children, seed=args.seed, database_url=args.database_url)
    return EXIT_OK


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
    p.add_argument("--by", metavar="NAME", default=None)
    p.set_defaults(handler=_flows_command("approve"))

    p = sub.add_parser("consent", help="record the family's consent to the cost")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--by", metavar="NAME", default=None)
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

    p = sub.add_parser("serve", help="serve every deployment (schedules, event triggers)")
    p.set_defaults(handler=_flows_command("serve"))

    p = sub.add_parser("db", help="the store's schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(handler=_flows_command("db_command"))

    p = sub.add_parser("benchmark", help="print speed and memory figures")
    p.add_argument("what", choices=["propose", "sweep"])
    p.add_argument("--children", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-url", default=None, help="sweep only: the store to fill")
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
