"""What every flow shares: the unit's files, the store, the clock, names and tags.

Only pseudonymous refs go into run names, tags, parameters, events, logs and
artifacts: Prefect shows all of them to every UI user.
"""

from __future__ import annotations

import datetime as dt
import os
from functools import cache

from sidflows.calendar import UnitCalendar
from sidflows.protocol import Protocol
from sidflows.store import db
from sidflows.unit import Unit

ITEM_DEPLOYMENT = "item/item"
PATHWAY_DEPLOYMENT = "pathway/pathway"
REPLAN_EVENT = "sidflows.plan.replan-requested"
ACTOR = "sidflows"
# The API URL of the local server a command found (``sidflows server start``,
# flows/cli/local_server.py): a server of this machine's, not a unit's.
LOCAL_SERVER_MARK = "SIDFLOWS_LOCAL_PREFECT"


def local_server(api_url: str | None) -> bool:
    """Whether ``api_url`` is the local server a command adopted: its flows run here."""
    return bool(api_url) and os.environ.get(LOCAL_SERVER_MARK) == api_url


@cache
def unit() -> Unit:
    """The unit's configuration, built once per process and handed to every service call."""
    return Unit()


def calendar() -> UnitCalendar:
    return unit().calendar


def protocol() -> Protocol:
    return unit().protocol


@cache
def ensure_store() -> str | None:
    """The store at the newest schema (embedded default: created on first use)."""
    return db.upgrade()


def today(value: dt.date | None) -> dt.date:
    """The simulated day when a flow is given one (demo, tests), else today in the unit."""
    return value if value is not None else calendar().today()


def run_name(step: str, ref: str) -> str:
    return f"{step}-{ref}"


def tags(step: str, ref: str, kind: str | None = None) -> list[str]:
    found = [f"step:{step}", f"ref:{ref}"]
    if kind:
        found.append(f"kind:{kind}")
    return found


def idempotency_key(ref: str, plan_version: int, item_key: str, attempt: int = 1) -> str:
    """An item run's key; a run that died holding it is replaced by attempt 2, 3, ...

    Prefect returns the run already made under a key, so the first attempt keeps
    the plain key and each replacement adds ``#<attempt>``.
    """
    key = f"{ref}:v{plan_version}:{item_key}"
    return key if attempt == 1 else f"{key}#{attempt}"


def item_of_key(key: str) -> tuple[str, int]:
    """(the key without its attempt, the attempt) of an item run's idempotency key."""
    base, mark, attempt = key.rpartition("#")
    if mark and attempt.isdigit():
        return base, int(attempt)
    return key, 1


def scheduled_time(day: dt.date) -> dt.datetime:
    """Items run at 07:30 in the unit's timezone on their day (before the day unit opens)."""
    tz = calendar().tz
    return dt.datetime(day.year, day.month, day.day, 7, 30, tzinfo=tz)
