"""The command line's arguments: one parser, each command pointing at its handler.

``propose`` and ``schema`` (flows/cli/documents.py) load no store and no
Prefect. Every other command's module is imported when that command runs, and
a document it reads is validated first: bad input is refused before the store
or Prefect is loaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import cache

from flows.cli import documents
from flows.cli.io import checked, day
from sidflows.incoming import lab_result_text, referral_text, treatment_change_text
from sidflows.referral import parse_lab_report, parse_referral, parse_treatment_change
from sidflows.settings import get_settings

Handler = Callable[[argparse.Namespace], int]
Reader = Callable[[argparse.Namespace], bytes]


def _referral(args: argparse.Namespace) -> bytes:
    day(args.today, "--today")  # a bad --today is refused first, as it always was
    secret = get_settings().ref_secret
    return checked(args.file, parse_referral, lambda text: referral_text(text, ref_secret=secret))


def _treatment_change(args: argparse.Namespace) -> bytes:
    return checked(args.file, parse_treatment_change, treatment_change_text)


def _lab_report(args: argparse.Namespace) -> bytes:
    return checked(args.file, parse_lab_report, lab_result_text)


def _plans(name: str, read: Reader | None = None) -> Handler:
    """A command of flows/cli/plans.py; its document (``read``) is validated before the import."""

    def run(args: argparse.Namespace) -> int:
        if read is not None:
            args.document = read(args)
        # Prefect and the store load only when such a command runs: `propose` stays light.
        from flows.cli import plans

        handler: Handler = getattr(plans, name)
        return handler(args)

    return run


def _operations(name: str) -> Handler:
    """A command of flows/cli/operations.py."""

    def run(args: argparse.Namespace) -> int:
        # Prefect and the store load only when such a command runs: `propose` stays light.
        from flows.cli import operations

        handler: Handler = getattr(operations, name)
        return handler(args)

    return run


def _harness(name: str) -> Handler:
    """A command of flows/cli/harness.py."""

    def run(args: argparse.Namespace) -> int:
        # The demo and the benchmarks load only when they run: `propose` stays light.
        from flows.cli import harness

        handler: Handler = getattr(harness, name)
        return handler(args)

    return run


def _worklist(args: argparse.Namespace) -> int:
    """`sidflows worklist` (flows/cli/worklist.py): the store only, never Prefect."""
    # The store loads only when the worklist runs: `propose` stays light.
    from flows.cli import worklist

    return worklist.worklist(args)


def _calendar(args: argparse.Namespace) -> int:
    """`sidflows calendar` (flows/cli/calendar.py): the store only, never Prefect."""
    # The store loads only when the calendar runs: `propose` stays light.
    from flows.cli import calendar

    return calendar.calendar(args)


def _local_server(args: argparse.Namespace) -> int:
    """`sidflows server` (flows/cli/local_server.py): Prefect's own server, never imported."""
    # Loads only when the command runs: `propose` stays light.
    from flows.cli import local_server

    return local_server.command(args)


# Commands of the CDSi engine (sidflows/cdsi) parse their own arguments: no store, no Prefect.
PASS_THROUGH = {"cdsi-conformance": "conformance", "immds-forecast": "immds"}


def run_pass_through(command: str, rest: list[str]) -> int:
    # The engine loads only when its command runs: `propose` stays light.
    from importlib import import_module

    entry: Callable[[list[str]], int] = import_module(f"sidflows.cdsi.{PASS_THROUGH[command]}").main
    return entry(rest)


def _cdsi(command: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        return run_pass_through(command, list(args.rest))

    return run


def _record(args: argparse.Namespace) -> int:
    """`sidflows record` (flows/cli/record.py): an item's outcome, to its run or recorded here."""
    # The store and Prefect load only when such a command runs: `propose` stays light.
    from flows.cli import record

    return record.record(args)


def _worker_counts(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        counts = []
    if not counts or not all(1 <= c <= 64 for c in counts):
        raise argparse.ArgumentTypeError(f"worker counts from 1 to 64, comma-separated: {value!r}")
    return counts


def _count(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (argparse names the option when it is not)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}: {value!r}")
        return number

    return parse


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
    p.set_defaults(handler=documents.propose)

    p = sub.add_parser("schema", help="print the JSON Schema of the referral document")
    p.set_defaults(handler=documents.schema)

    p = sub.add_parser("demo", help="run a synthetic cohort through the real flows")
    p.add_argument("--children", type=_count(1, 10_000), default=25)
    p.add_argument("--months", type=_count(1, 120), default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--local-receivers",
        action="store_true",
        help="deliver the notifications to receivers on loopback (webhook and mail), check them",
    )
    p.set_defaults(handler=_harness("demo"))

    p = sub.add_parser("refer", help="store a referral and start the child's pathway")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--today", metavar="YYYY-MM-DD")
    p.set_defaults(handler=_plans("refer", _referral))

    p = sub.add_parser("show", help="the child's current plan, items and their states")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fhir", action="store_true", help="the plan as a FHIR R4 Bundle (refs only)")
    p.add_argument(
        "--identity", action="store_true", help="with --fhir: the child's name and record number"
    )
    p.set_defaults(handler=_plans("show"))

    p = sub.add_parser("approve", help="approve the proposed plan")
    p.add_argument("ref", metavar="REF")
    p.add_argument(
        "--by",
        metavar="NAME",
        default=None,
        help="a clinician's name or login in the staff roster (default: your login)",
    )
    p.set_defaults(handler=_plans("approve"))

    p = sub.add_parser("consent", help="record the family's consent to the cost")
    p.add_argument("ref", metavar="REF")
    p.add_argument(
        "--by",
        metavar="NAME",
        default=None,
        help="who records it: a name or login in the staff roster (default: your login)",
    )
    p.set_defaults(handler=_plans("consent"))

    p = sub.add_parser("treatment-change", help="record a treatment change and re-plan")
    p.add_argument("ref", metavar="REF")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=_plans("treatment_change", _treatment_change))

    p = sub.add_parser("lab-result", help="record new lab results and re-plan")
    p.add_argument("ref", metavar="REF")
    p.add_argument("file", metavar="FILE", help='{"labs": [...]} shaped as a referral\'s labs')
    p.set_defaults(handler=_plans("lab_result", _lab_report))

    p = sub.add_parser("record", help="record an item's outcome: given, missed, done, results")
    p.add_argument("ref", metavar="REF")
    p.add_argument("item", metavar="ITEM", help="the item's key, as `show REF` prints it")
    p.add_argument("result", metavar="RESULT", help="given, missed or done (plan review: continue)")
    p.add_argument("--dose-g", metavar="G", default=None, help="IG session: grams given")
    p.add_argument("--lot", metavar="L", default=None, help="the product's or vaccine's lot")
    p.add_argument(
        "--value", metavar="NAME=NUMBER", action="append", help="a result, e.g. IgG=6.1 (g/L)"
    )
    p.add_argument("--by", metavar="NAME", default=None, help="a name or login in the roster")
    p.add_argument("--date", metavar="YYYY-MM-DD", default=None, help="default: today")
    p.set_defaults(handler=_record)

    p = sub.add_parser("sweep", help="the daily run: due and overdue items, reconciliation")
    p.add_argument("--date", metavar="YYYY-MM-DD", default=None)
    p.set_defaults(handler=_operations("sweep"))

    p = sub.add_parser(
        "calendar", help="an iCalendar feed: day-unit, home-care or one child's (the store only)"
    )
    p.add_argument("who", metavar="ROLE|REF", help="day-unit, home-care, or a child's ref")
    p.add_argument("--from", dest="start", metavar="YYYY-MM-DD", default=None)
    p.add_argument("--to", dest="end", metavar="YYYY-MM-DD", default=None)
    p.add_argument("--output", metavar="FILE", default=None, help="default: standard output")
    p.add_argument("--identity", action="store_true", help="a child's feed: the child's name in it")
    p.set_defaults(handler=_calendar)

    p = sub.add_parser(
        "worklist", help="the day's work per role and what is stuck (the store only)"
    )
    p.add_argument("--date", metavar="YYYY-MM-DD", default=None, help="default: today in the unit")
    p.add_argument(
        "--role",
        metavar="ROLE",
        default=None,
        help="day-unit, home-care, labs, vaccines or coordinator (default: everything)",
    )
    p.add_argument("--limit", metavar="N", default=None, help="rows per list (default 200)")
    p.add_argument("--json", action="store_true", help="the document of docs/formats.md")
    p.set_defaults(handler=_worklist)

    p = sub.add_parser("notifications", help="the outbox: list; redeliver the failed now; dispatch")
    p.add_argument("action", nargs="?", choices=["list", "redeliver", "dispatch"], default="list")
    p.add_argument(
        "--status",
        choices=["queued", "pending", "sending", "sent", "failed", "unrouted", "digested"],
    )
    p.add_argument("--ref", metavar="REF", default=None)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_operations("notifications"))

    p = sub.add_parser("notify-test", help="send a test message to a role's routes")
    p.add_argument("role", metavar="ROLE", help="e.g. pharmacy, or referrers:oncology")
    p.set_defaults(handler=_operations("notify_test"))

    p = sub.add_parser(
        "server", help="a local Prefect server the commands reuse (instead of a temporary one)"
    )
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=4300, help="start: its port on 127.0.0.1")
    p.set_defaults(handler=_local_server)

    p = sub.add_parser("serve", help="serve every deployment (schedules, event triggers)")
    p.set_defaults(handler=_operations("serve"))

    p = sub.add_parser(
        "deployments", help="the deployments `serve` serves; --yaml writes config/prefect.yaml"
    )
    p.add_argument(
        "--yaml", action="store_true", help="write them as a prefect.yaml for work pools"
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="with --yaml: where to write it (default: config/prefect.yaml; - for stdout)",
    )
    p.set_defaults(handler=_operations("deployments_command"))

    p = sub.add_parser(
        "automations",
        help="install the unit's automations on the Prefect server (serve does it at start)",
    )
    p.set_defaults(handler=_operations("automations_command"))

    p = sub.add_parser("db", help="the store's schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(handler=_operations("db_command"))

    p = sub.add_parser(
        "cdsi-conformance",
        help="CDC's CDSi test cases through the engine: pass rates, failing cases",
        add_help=False,
    )
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="[--workbook X] [--case ID] [--failures N]"
    )
    p.set_defaults(handler=_cdsi("cdsi-conformance"))

    p = sub.add_parser(
        "immds-forecast",
        help="FHIR $immds-forecast: Parameters (or NDJSON of them) in, evaluation and forecast out",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="FILE or -")
    p.set_defaults(handler=_cdsi("immds-forecast"))

    p = sub.add_parser("benchmark", help="print speed and memory figures")
    p.add_argument(
        "what", choices=["propose", "sweep", "notifications", "cdsi", "prefect", "workers"]
    )
    p.add_argument("--children", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--database-url", default=None, help="sweep, notifications: the store to fill (*bench*)"
    )
    p.add_argument(
        "--daily-only",
        action="store_true",
        help="sweep: measure the daily sweep only (the catch-up's levels set, not timed)",
    )
    p.add_argument("--messages", type=int, default=10_000, help="notifications: outbox size")
    p.add_argument(
        "--sizes", default="2000,10000", help="prefect: registry sizes, two at least (N,N...)"
    )
    p.add_argument("--runs", type=int, default=500, help="workers: item runs in the burst")
    p.add_argument(
        "--prefect-postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="prefect, workers: a PostgreSQL the benchmark may create its Prefect databases on",
    )
    p.add_argument(
        "--workers",
        type=_worker_counts,
        default=None,
        metavar="N[,N...]",
        help="notifications: dispatcher workers, one run each (default: the configured count); "
        "workers: Prefect workers, one burst each (default: 1,2)",
    )
    p.set_defaults(handler=_harness("benchmark"))
    return parser
