"""The console gets one line per error; Prefect keeps the traceback in its own logs.

Prefect logs a failed task or flow with its traceback, and its console handler
prints it. The operator needs the one line the command ends with (which names
the fault); an engineer sets ``SIDFLOWS_DEBUG=1`` to see every traceback.
"""

from __future__ import annotations

import logging
import os

DEBUG_HINT = "SIDFLOWS_DEBUG=1 shows the traceback"


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (drivers add hints on further lines)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OneLine(logging.Filter):
    """A record's traceback becomes a mention of its exception, on the same line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            exc = record.exc_info[1] if record.exc_info else None
            message = record.getMessage().split("\n", 1)[0]
            hint = f"{first_line(exc)}; " if exc is not None else ""
            record.msg, record.args = f"{message} ({hint}{DEBUG_HINT})", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_WANTED: set[str] = set()


def request() -> None:
    """The command line wants one line per error: applied where Prefect is about to run."""
    _WANTED.add("console")


def apply() -> None:
    """Put the filter on the console's handlers, if the command line asked for it.

    Called once Prefect is imported (it sets up its logging handlers then): where a
    command starts its flows (flows.orchestrator.pick) and where serve starts.
    """
    if not _WANTED or os.environ.get("SIDFLOWS_DEBUG"):
        return
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("fastapi")]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, OneLine) for f in handler.filters):
                handler.addFilter(OneLine())
