"""The ``sidflows`` command line (docs/formats.md): ``main``.

- flows/cli/parser.py: the arguments; each command's module loads when it runs.
- flows/cli/io.py: reading documents, printing, exit codes.
- flows/cli/documents.py: propose, schema (no store, no Prefect: they answer fast).
- flows/cli/plans.py: refer, show, approve, consent, treatment-change, lab-result.
- flows/cli/operations.py: sweep, serve, deployments, db, notifications, notify-test.
- flows/cli/harness.py: demo, benchmark.

Exit codes: 0 ok; 1 configuration or system problem; 2 invalid input (one line
naming the field); 3 unknown ref. Never a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from flows.cli.io import EXIT_CONFIG, EXIT_INVALID, EXIT_UNKNOWN, one_line
from flows.cli.parser import PASS_THROUGH, build_parser, run_pass_through
from sidflows.errors import ConfigError, InvalidInput, UnknownPatient

__all__ = ["main"]


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
    except Exception as exc:
        if os.environ.get("SIDFLOWS_DEBUG"):
            raise
        print(
            f"sidflows: error: {type(exc).__name__}: {exc} (SIDFLOWS_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return code
