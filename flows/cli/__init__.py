"""The ``sidflows`` command line (docs/formats.md): ``main``.

- flows/cli/parser.py: the arguments; each command's module loads when it runs.
- flows/cli/io.py: reading documents, printing, exit codes.
- flows/cli/documents.py: propose, schema (no store, no Prefect: they answer fast).
- flows/cli/plans.py: refer, show, approve, consent, treatment-change, lab-result.
- flows/cli/operations.py: sweep, serve, deployments, db, notifications, notify-test.
- flows/cli/harness.py: demo, benchmark.
- flows/cli/local_server.py: ``server start|stop|status``, the local server commands reuse.

Exit codes: 0 ok; 1 configuration or system problem; 2 invalid input (one line
naming the field); 3 unknown ref. Never a traceback for bad input.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from flows.cli.io import EXIT_CONFIG, EXIT_INVALID, EXIT_UNKNOWN, one_line
from flows.cli.parser import PASS_THROUGH, build_parser, run_pass_through
from flows.quiet import DEBUG_HINT, first_line, request
from sidflows.errors import ConfigError, InvalidInput, UnknownPatient
from sidflows.unit import Unit

__all__ = ["main"]

# Commands that write the store: every file of the unit is read first, so a broken
# one stops the command before anything is stored.
WRITES = frozenset(
    {
        "refer",
        "approve",
        "modify",
        "reject",
        "consent",
        "treatment-change",
        "lab-result",
        "record",
        "sweep",
        "serve",
    }
)  # not the demo: it writes a store and Prefect history of its own (flows/demo/run.py)


def main(argv: Sequence[str] | None = None) -> int:
    # A hospital network has no route to Prefect's telemetry: do not try (and log errors).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in PASS_THROUGH:
        return run_pass_through(words[0], words[1:])
    parser = build_parser()
    args = parser.parse_args(words)
    try:
        if args.command in WRITES:
            Unit().check()
        request()  # one line per error on the console, wherever Prefect runs
        code: int = args.handler(args)
    except InvalidInput as exc:
        print(f"sidflows: invalid input: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_INVALID
    except UnknownPatient as exc:
        print(f"sidflows: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_UNKNOWN
    except ConfigError as exc:
        print(f"sidflows: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("sidflows: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:
        if os.environ.get("SIDFLOWS_DEBUG"):
            raise
        print(f"sidflows: error: {one_line(first_line(exc))} ({DEBUG_HINT})", file=sys.stderr)
        return EXIT_CONFIG
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    return code


def _closed_pipe() -> int:
    """The reader went away (``sidflows show REF | head -1``): end quietly, as cat does."""
    # Python would report the failed flush of stdout at exit: point it at nothing.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE
