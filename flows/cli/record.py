"""`sidflows record REF ITEM RESULT [...]`: an item's outcome from anywhere (docs/formats.md §13).

The options are read and checked first, then who records it against the staff
roster, then the item of the child's active plan is looked up and the outcome
checked against it by the rules the item run's form goes through
(sidflows/rules/outcomes.py); a refusal is one line naming the option and exit 2,
and nothing is written. Then the orchestrator (flows/orchestrator.py) sends the
outcome to the item's run suspended on the nurse's form, or, when none waits,
records it here through the item flow (the stream's next run scheduled, a re-plan
asked for). Once: an item keeps its first outcome; the same call again says it is
already recorded and changes nothing.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flows import runtime
from flows.cli.io import EXIT_OK, by, by_option, day, out
from flows.cli.local_server import before_prefect
from flows.runtime import ensure_store
from sidflows.errors import InvalidInput
from sidflows.service.items import (
    RECORDERS,
    RESULT_FIELDS,
    OutcomeTarget,
    outcome_recorder,
    outcome_target,
    result_field,
)

# The form's bounds of a dose (flows/item.py ItemOutcome); the rule wants more than 0.
MAX_DOSE_G = 200.0
MAX_LOT = 100
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# A refusal of the rules or the store names the outcome's field: the option it came from.
OPTIONS = {"result": "RESULT", "dose_g": "--dose-g", "lot": "--lot", "values": "--value"}


def record(args: argparse.Namespace) -> int:
    outcome = read_outcome(args)
    on = day(args.date, "--date")
    unit = runtime.unit()
    with by_option():
        who = outcome_recorder(unit, by(args.by), outcome["result"])
    ensure_store()
    with named_options():
        target = outcome_target(
            args.ref,
            item_key=args.item,
            outcome=outcome,
            on=on or runtime.today(None),
            unit=unit,
        )
    if target.recorded_outcome is not None:
        out(f"{args.ref}: {already(target, outcome)}")
        return EXIT_OK
    if target.hold_reason is not None:
        out(
            f"{args.ref}: {args.item} was held ({target.hold_reason}): "
            "recorded as it happened, the hold ends"
        )
    before_prefect()  # the local server of `sidflows server start`, if one answers
    from flows.orchestrator import (
        pick,
    )  # Prefect loads once the input is accepted: refusals stay fast

    sent = pick().record_outcome(target, outcome, by=who, on=on)
    out(f"{args.ref}: {args.item} {outcome['result']} by {who}: {sent}")
    return EXIT_OK


def read_outcome(args: argparse.Namespace) -> dict[str, Any]:
    """The outcome the options give (docs/formats.md §9), each refused naming its option."""
    allowed = tuple(RECORDERS)
    if args.result not in allowed:
        raise InvalidInput(
            "RESULT",
            f"{args.result!r} is not an outcome (given, missed, done; "
            "at a plan review also continue, discharge)",
        )
    return {
        "result": args.result,
        "dose_g": _dose(args.dose_g),
        "lot": _lot(args.lot),
        "values": _values(args.value or []),
    }


def _number(text: str, option: str) -> float:
    if not NUMBER.fullmatch(text.strip()):
        raise InvalidInput(option, f"not a number: {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(option, f"not a number: {text!r}")
    return value


def _dose(text: str | None) -> float | None:
    if text is None:
        return None
    grams = _number(text, "--dose-g")
    if not 0 < grams <= MAX_DOSE_G:
        raise InvalidInput(
            "--dose-g", f"{grams:g} g is out of range (more than 0, at most {MAX_DOSE_G:g})"
        )
    return grams


def _lot(text: str | None) -> str | None:
    if text is None:
        return None
    lot = text.strip()
    if not lot:
        raise InvalidInput("--lot", "empty")
    if len(lot) > MAX_LOT:
        raise InvalidInput("--lot", f"longer than {MAX_LOT} characters")
    if not lot.isprintable():
        raise InvalidInput("--lot", "holds a control character")
    return lot


def _values(given: list[str]) -> dict[str, float]:
    """``--value NAME=NUMBER`` ...: results by their lab-result names, in range."""
    values: dict[str, float] = {}
    for entry in given:
        name, equals, number = entry.partition("=")
        if not equals or not name.strip():
            raise InvalidInput("--value", f"expected NAME=NUMBER (e.g. IgG=6.1): {entry!r}")
        found = result_field(name)
        if found is None:
            known = ", ".join(r.label for r in RESULT_FIELDS)
            raise InvalidInput("--value", f"unknown result {name.strip()!r} (known: {known})")
        option = f"--value {found.label}"
        value = _number(number, option)
        refused = found.refusal(value)
        if refused is not None:
            raise InvalidInput(option, refused)
        if found.field in values:
            raise InvalidInput(option, "given twice")
        values[found.field] = value
    return values


@contextmanager
def named_options() -> Iterator[None]:
    """A refusal by the rules names the outcome's field: say the option it came from."""
    try:
        yield
    except InvalidInput as refusal:
        head, _, rest = refusal.field.partition(".")
        if refusal.field in ("item", "kind", "route"):
            raise InvalidInput("ITEM", refusal.message) from None
        if head not in OPTIONS:
            raise
        found = result_field(rest) if rest else None
        option = f"--value {found.label}" if found is not None else OPTIONS[head]
        raise InvalidInput(option, refusal.message) from None


def _same(recorded: dict[str, Any], outcome: dict[str, Any]) -> bool:
    def norm(o: dict[str, Any]) -> tuple[Any, ...]:
        values = {k: float(v) for k, v in (o.get("values") or {}).items()}
        dose = o.get("dose_g")
        return (
            o.get("result") or "given",
            None if dose is None else float(dose),
            o.get("lot"),
            values,
        )

    return norm(recorded) == norm(outcome)


def already(target: OutcomeTarget, outcome: dict[str, Any]) -> str:
    """The item keeps its first outcome: the same again changes nothing, another is refused."""
    recorded = target.recorded_outcome or {}
    who = f" by {target.recorded_by}" if target.recorded_by else ""
    when = f" on {target.recorded_at:%Y-%m-%d}" if target.recorded_at else ""
    line = f"{target.item_key} already recorded as {target.status}{who}{when}"
    if _same(recorded, outcome):
        return f"{line} (nothing changed)"
    raise InvalidInput(
        "ITEM", f"{line}, with another outcome: an item keeps its first outcome (not recorded)"
    )
