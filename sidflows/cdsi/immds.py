"""FHIR ``$immds-forecast`` over the CDSi engine (HL7 Immunization Decision Support
Forecast IG), built and validated with ``fhir.resources`` (R4B models, FHIR R4-compatible).

``python -m sidflows.cdsi.immds FILE`` (FILE or ``-``): one FHIR R4 ``Parameters``
resource (JSON), or NDJSON with one ``Parameters`` per line, answered line by line in the
same order. Input parameters: ``assessmentDate`` (valueDate), ``patient`` (Patient with
birthDate, gender), ``immunization`` (0..*: CVX in ``vaccineCode.coding``, MVX optional,
``occurrenceDateTime``, ``id``) and ``condition`` (0..*: the CDSi observation code in
``code.coding``, ``onsetDateTime`` when dated). Output: a ``Parameters`` with one
``evaluation`` (ImmunizationEvaluation) per dose and antigen and one ``recommendation``
(ImmunizationRecommendation) with an entry per vaccine group.

Bad input: exit 2 and one line on stderr naming the parameter's path
(``parameter[3].resource.occurrenceDateTime: ...``; ``line 3: ...`` in NDJSON). See
``docs/cdsi.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sidflows.cdsi.immds_request import (
    CDSI_SYSTEM,
    CVX_SYSTEM,
    MVX_SYSTEM,
    ImmdsError,
    Request,
    parse_request,
)
from sidflows.cdsi.immds_response import (
    AUTHORITY,
    DOSE_STATUS_SYSTEM,
    LOINC_SYSTEM,
    RECOMMENDATION_STATUS_SYSTEM,
    forecast_parameters,
)

__all__ = [
    "AUTHORITY",
    "CDSI_SYSTEM",
    "CVX_SYSTEM",
    "DOSE_STATUS_SYSTEM",
    "LOINC_SYSTEM",
    "MVX_SYSTEM",
    "RECOMMENDATION_STATUS_SYSTEM",
    "ImmdsError",
    "Request",
    "forecast_parameters",
    "main",
    "parse_request",
]


def _requests(text: str) -> Iterator[tuple[str | None, Any]]:
    """(label, parsed JSON) per request: one JSON document, or NDJSON line by line."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    else:
        yield None, whole
        return
    any_line = False
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        any_line = True
        try:
            yield f"line {n}", json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"malformed JSON ({exc.msg} at column {exc.colno})"
            raise ImmdsError(f"line {n}", message) from None
    if not any_line:
        raise ImmdsError("input", "empty (expected a FHIR Parameters resource or NDJSON)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidflows.cdsi.immds",
        description="FHIR $immds-forecast: Parameters (JSON or NDJSON) in, Parameters out.",
    )
    parser.add_argument("file", metavar="FILE", help="request file, or - for standard input")
    args = parser.parse_args(argv)
    try:
        source = sys.stdin if args.file == "-" else None
        text = source.read() if source else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.file}: cannot read ({exc})", file=sys.stderr)
        return 2
    answers: list[str] = []
    try:
        for label, resource in _requests(text):
            try:
                answers.append(json.dumps(forecast_parameters(resource), separators=(",", ":")))
            except ImmdsError as exc:
                if label is None:
                    raise
                raise ImmdsError(f"{label}: {exc.path}", exc.message) from None
    except ImmdsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback: one line, as for a refused request
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write("".join(a + "\n" for a in answers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
