"""The tasks several steps share: propose, read and publish the plan, activate, schedule.

Tasks are a few lines that call sidflows; nothing clinical is decided here.
Parameters, run names, tags, events, logs and artifacts carry the
pseudonymous ref only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context

from flows import projection, runtime
from flows.artifacts import publish_plan
from flows.board import refresh_board
from flows.exports import export_plans
from sidflows import service
from sidflows.settings import get_settings
from sidflows.store import db
from sidflows.store.patients import get_patient
from sidflows.store.views import show_document

# Set by whoever runs many flows here and publishes the board itself once they are done
# (the demo: its weekly sweep and its last day): the runs inside only note the change.
_BOARD_LATER: ContextVar[list[bool] | None] = ContextVar("sidflows_board_later", default=None)


@contextmanager
def board_published_later() -> Iterator[list[bool]]:
    """Flow runs inside this block do not publish the board; ``[True]`` once one asked to."""
    asked: list[bool] = []
    token = _BOARD_LATER.set(asked)
    try:
        yield asked
    finally:
        _BOARD_LATER.reset(token)


def board_changed() -> None:
    """A run changed what the board shows: publish it again (or note it for later)."""
    later = _BOARD_LATER.get()
    if later is None:
        refresh_board()
    elif not later:
        later.append(True)


def in_deployment() -> bool:
    """This flow run belongs to a deployment (a server's worker or ``serve`` runs it)."""
    context = get_run_context()
    return getattr(getattr(context, "flow_run", None), "deployment_id", None) is not None


@task(name="propose-plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def propose_plan(ref: str, day: dt.date, reason: str) -> service.Proposed:
    return service.propose(ref, unit=runtime.unit(), today=day, reason=reason, actor=runtime.ACTOR)


@task(name="publish-plan", cache_policy=NO_CACHE)
def publish_current(ref: str) -> dict[str, Any] | None:
    """The child's plan as ``show`` gives it, published as the plan artifact (one task:
    reading it is a query, and a task run of its own cost more than the query)."""
    with db.session_scope() as session:
        document = show_document(session=session, patient=get_patient(session=session, ref=ref))
    if document is not None:
        publish_plan(document)
    return document


@task(name="activate-plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def activate_plan(ref: str) -> service.Activated:
    return service.activate(ref, unit=runtime.unit(), actor=runtime.ACTOR)


@task(name="schedule-runs", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5)
def schedule(runs: list[service.RunSpec], cancelled: list[str], ref: str) -> int:
    if cancelled:
        projection.cancel_superseded(ref, cancelled)
    run_ids = projection.schedule_runs(runs)
    service.record_run_ids(run_ids)
    return len(run_ids)


async def activate_and_schedule(ref: str) -> str:
    """Activate the approved plan if it waits for nothing, schedule its runs, publish it."""
    activation = activate_plan(ref)
    if activation.status == "activated":
        schedule(activation.runs, activation.cancelled, ref)
        get_run_logger().info(
            "plan v%s of %s active: %d bookings, %d runs scheduled, %d replaced",
            activation.version,
            ref,
            activation.bookings,
            len(activation.runs),
            len(activation.cancelled),
        )
    publish_current(ref)
    if get_settings().fhir_export:
        export_plans(ref)  # the FHIR Bundle of each version proposed or activated, once
    board_changed()  # a plan proposed, approved or activated changes the unit's board
    return activation.status
