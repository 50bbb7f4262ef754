"""What every command shares: reading a document, printing a line or JSON, exit codes.

Exit codes: 0 ok; 1 configuration or system problem; 2 invalid input (one line
naming the field); 3 unknown ref. Never a traceback for bad input.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sidflows.documents import iso_day
from sidflows.errors import InvalidInput

EXIT_OK, EXIT_CONFIG, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2, 3


def one_line(message: str) -> str:
    """What the command line prints: one line, whatever a document put in it."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)


def out(message: str) -> None:
    sys.stdout.write(message + "\n")


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


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


def checked(
    path: str,
    parse: Callable[[bytes], object],
    mapped: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """The document at FILE, refused (InvalidInput, exit 2) before the store is even loaded.

    ``mapped`` turns a document in another format (a FHIR Bundle) into this one first.
    """
    text = read_document(path)
    if mapped is not None:
        text = mapped(text)
    parse(text)
    return text


def day(value: str | None, field: str) -> dt.date | None:
    return None if value is None else iso_day(value, field)


def by(value: str | None) -> str:
    """Who acts: the name given, else the operating system login."""
    return getpass.getuser() if value is None else value


@contextmanager
def by_option() -> Iterator[None]:
    """A refusal by the staff roster names the option the person typed (``--by``)."""
    try:
        yield
    except InvalidInput as refusal:
        if refusal.field != "by":
            raise
        raise InvalidInput("--by", refusal.message) from None
