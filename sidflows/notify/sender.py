"""The Apprise sender: one message to one URL, a delivery or a category of failure.

A plugin is made once per worker thread and URL. Apprise's own log lines name
hosts and addresses, so they never leave this module: a failure is reported
only as a category (``HTTP 500``, ``timed out``), never as Apprise's text.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import apprise

_captured = threading.local()


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        found = getattr(_captured, "lines", None)
        if found is not None:
            found.append(record.getMessage())


_CAPTURE = _Capture(logging.WARNING)


def _quiet_apprise() -> None:
    """Apprise's own log lines name hosts and addresses: they stay inside this module.

    Checked before every send, since a logging configuration applied later
    (Prefect's, a test runner's) may have reset the logger.
    """
    log = logging.getLogger("apprise")
    log.propagate = False
    if log.level != logging.WARNING:
        log.setLevel(logging.WARNING)
    if _CAPTURE not in log.handlers:
        log.addHandler(_CAPTURE)


# A sender takes (URL, subject, body) and answers None when delivered, else a category.
Sender = Callable[[str, str, str], str | None]


def _category(text: str) -> str:
    status = re.search(r"\b([45]\d\d)\b", text)
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if status:
        return f"HTTP {status.group(1)}"
    if "refused" in lowered or "connection" in lowered:
        return "no answer (connection refused, reset or timed out)"
    if "smtp" in lowered or "email" in lowered:
        return "mail server refused the message"
    return "delivery failed"


_plugins = threading.local()
PLUGINS_PER_THREAD = 64


def _plugin(url: str) -> Any:
    """The Apprise plugin of a URL, made once per worker thread and reused as Apprise does
    (parsing the URL costs more than a send to a local receiver). Never shared between
    threads; a dispatch's pool of threads, and their plugins, end with the dispatch."""
    made: dict[str, Any] | None = getattr(_plugins, "by_url", None)
    if made is None or len(made) >= PLUGINS_PER_THREAD:
        made = _plugins.by_url = {}
    if url not in made:
        made[url] = apprise.Apprise.instantiate(url)
    return made[url]


def apprise_send(url: str, subject: str, body: str) -> str | None:
    """Send one message to one Apprise URL; None when delivered, else why not (no URL)."""
    _quiet_apprise()
    plugin = _plugin(url)
    if plugin is None:
        return "not a valid Apprise URL"
    _captured.lines = []
    try:
        delivered = plugin.notify(body=body, title=subject)
    except Exception as exc:  # a plugin bug must not stop the dispatcher
        return _category(type(exc).__name__)
    finally:
        found, _captured.lines = _captured.lines, None
    return None if delivered else _category(" ".join(found))
