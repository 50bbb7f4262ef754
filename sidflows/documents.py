"""Reading a JSON document at the edge: one refusal naming the field, never a traceback.

What every document format (referral, treatment change, lab result) shares:
the size, depth and text limits, dates, one-line text, duplicate keys and
non-numbers refused, and pydantic's errors turned into one ``InvalidInput``
whose field is the path (``treatments[1].end``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    StringConstraints,
    ValidationError,
)

from sidflows.errors import InvalidInput

MAX_DOCUMENT_BYTES = 1_048_576
MAX_LIST = 1000  # entries in any list of a document
# A referral is three levels deep (treatments[0].start); anything far deeper is junk, and
# refusing it here keeps every later step (validation, storage) far from Python's recursion limit.
MAX_DEPTH = 16
# Dates a child's record can hold. Beyond them the calendar arithmetic of planning
# (months added to a treatment's end) would leave what a date can represent.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# C0 and C1 control characters except tab, line feed and carriage return, and unpaired
# surrogates (not Unicode: no database stores them): never in a document.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# One-line text (names, labels, drugs) also refuses tabs and every line break.
_LINE_BREAK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _iso_date(value: object) -> object:
    """Accept only ``YYYY-MM-DD`` strings (or dates built in code) between 1900 and 2199."""
    if isinstance(value, date):
        day = value
    elif not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("not a date (expected YYYY-MM-DD)")
    else:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"impossible date {value!r}") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(f"out of range ({EARLIEST_DAY} to {LATEST_DAY}): {day}")
    return day


def iso_day(value: str, field: str) -> date:
    """A day given on the command line (``--today``), or InvalidInput naming the option."""
    try:
        day = _iso_date(value)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None
    assert isinstance(day, date)
    return day


def _one_line(value: str) -> str:
    found = _LINE_BREAK.search(value)
    if found:
        raise ValueError(f"contains a control character or line break (U+{ord(found[0]):04X})")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]
Ref = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]


class _NotANumber:
    """NaN or Infinity in the JSON text: refused once its path is known."""

    def __init__(self, name: str) -> None:
        self.name = f"{name} is not a number"


class _Refused(dict[str, Any]):
    """A JSON object holding something no document may (a repeated key, NaN, a NUL...).

    Found while parsing; refused by :func:`check_tree`, which knows the path.
    """

    def __init__(self, pairs: list[tuple[str, Any]], key: str, problem: str) -> None:
        super().__init__(pairs)
        self.key, self.problem = key, problem


def _string_problem(value: str) -> str | None:
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if "\ud800" <= found[0] <= "\udfff":
        return "not valid Unicode (an unpaired surrogate)"
    return f"contains a control character (U+{ord(found[0]):04X})"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each JSON object as it is parsed: its keys and its text and number values checked."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        problem = _string_problem(key)
        if problem:
            return _Refused(pairs, key, f"field name {problem}")
        if key in seen:
            return _Refused(pairs, key, "duplicate key")
        if isinstance(value, str):
            problem = _string_problem(value)
            if problem:
                return _Refused(pairs, key, problem)
        elif isinstance(value, _NotANumber):
            return _Refused(pairs, key, value.name)
        seen[key] = value
    return seen


_SCALARS = (int, float, type(None))  # bool is an int


def check_tree(data: Any) -> None:
    """Refuse what JSON allows but no document may hold, naming its path.

    Repeated keys, NaN and Infinity, text that is not valid Unicode or carries
    control characters (flagged while parsing), lists longer than MAX_LIST and
    nesting deeper than MAX_DEPTH. Iterative, so that a deep document cannot
    exhaust the stack.
    """
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            raise InvalidInput(field_path(path[:3]), f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, _Refused):
            raise InvalidInput(field_path((*path, value.key)), value.problem)
        if isinstance(value, dict):  # its text was checked while parsing: only go deeper
            found = [((*path, k), v) for k, v in value.items() if isinstance(v, dict | list)]
        elif isinstance(value, list):
            if len(value) > MAX_LIST:  # refused before anything validates a thousand entries
                raise InvalidInput(field_path(path) or "document", f"more than {MAX_LIST} entries")
            found = [((*path, i), v) for i, v in enumerate(value) if not isinstance(v, _SCALARS)]
        elif isinstance(value, _NotANumber):  # in a list, or the whole document
            raise InvalidInput(field_path(path) or "document", value.name)
        elif isinstance(value, str) and (problem := _string_problem(value)):  # in a list
            raise InvalidInput(field_path(path) or "document", problem)
        else:
            continue
        stack.extend(reversed(found))


def load_json_document(text: str | bytes, *, what: str = "document") -> Any:
    """Parse JSON text, refusing oversize input, duplicate keys, NaN and junk (check_tree)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(what, f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(what, f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_constant=_NotANumber)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            what, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise InvalidInput(what, "nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise InvalidInput(what, "malformed JSON (a number too long to read)") from None
    check_tree(data)
    return data


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")


def field_path(loc: Iterable[int | str]) -> str:
    """``('treatments', 1, 'end')`` -> ``treatments[1].end``.

    A name that is not plain (spaces, dots, line breaks, other scripts) is shown
    JSON-quoted in brackets, ``["a\\nb"]``, so the path stays one unambiguous line.
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _PLAIN_NAME.fullmatch(part):
            path += f"[{json.dumps(part)}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        return "unknown field"
    msg = str(error["msg"]).removeprefix("Value error, ").replace("valid tuple", "list")
    return re.sub(r"^Input should be ", "must be ", msg)


def invalid_from_pydantic(exc: ValidationError, *, prefix: str = "") -> InvalidInput:
    """The first error of a pydantic validation, as one line naming the field."""
    error = exc.errors(include_url=False)[0]
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    path = field_path(loc)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    return InvalidInput(path or "document", _message(error))
