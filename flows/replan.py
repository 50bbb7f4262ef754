"""Re-plan: a change in the child's record proposes plan vN+1 from the whole record.

On a unit's server a change in the record writes a ``replan`` intent in the
store (sidflows.service), carried out as a run of the ``replan`` deployment
under the intent's key (flows/intents.py): the command does it, else
``serve``'s every-minute pass or the sweep, once. The deployment's trigger on
the event ``sidflows.plan.replan-requested`` (the ref only) stays for other
systems. An item run that finds a re-plan is needed emits that event, unless whoever
runs the item here has said re-plans run here too (``replanning_here``: the
in-process orchestrator, for the demo's simulated year).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect import flow, get_run_logger, tags
from prefect.events import emit_event

from flows import runtime
from flows.notifications import send_queued
from flows.tasks import activate_and_schedule, propose_plan
from sidflows.store import db, intents
from sidflows.store.models import utcnow


@flow(name="replan", flow_run_name="replan-{ref}")
async def replan(ref: str, reason: str = "treatment change", today: dt.date | None = None) -> str:
    """A change in the child's record: propose vN+1 from the whole record, publish it.

    Args:
        ref: the child's pseudonymous ref.
        reason: what triggered it (treatment change, lab result, plan review).
        today: the day to plan from (default: today in the unit's timezone).
    """
    proposed = propose_plan(ref, runtime.today(today), reason)
    status = await activate_and_schedule(ref)
    get_run_logger().info(
        "re-plan of %s (%s): v%s %s, %s", ref, reason, proposed.version, proposed.status, status
    )
    send_queued()
    return f"v{proposed.version} {status}"


def request_replan(ref: str, reason: str) -> None:
    """Emit the event the re-plan deployment's trigger listens for (ref only)."""
    emit_event(
        event=runtime.REPLAN_EVENT,
        resource={"prefect.resource.id": f"sidflows.patient.{ref}", "sidflows.ref": ref},
        payload={"ref": ref, "reason": reason},
    )


def run_replan(ref: str, reason: str, today: dt.date | None = None) -> str:
    """The re-plan in this process, with the tags of a deployment run.

    It carries out the child's pending re-plan intents (vN+1 is proposed from the
    whole record, whichever changes asked for it), so none of them runs again.
    """
    with tags(*runtime.tags("replan", ref)):
        answer = asyncio.run(replan(ref, reason, today))
    with db.session_scope() as session:
        intents.settle(session=session, ref=ref, kind="replan", now=utcnow())
    return answer


# ----------------------------------------------------------------------------- after an item

Replanner = Callable[[str, str, dt.date | None], Awaitable[None]]


async def _through_the_trigger(ref: str, reason: str, today: dt.date | None) -> None:
    request_replan(ref, reason)


async def _here(ref: str, reason: str, today: dt.date | None) -> None:
    with tags(*runtime.tags("replan", ref)):
        await replan(ref, reason, today)


_AFTER_AN_ITEM: ContextVar[Replanner] = ContextVar(
    "sidflows_replan_after_an_item", default=_through_the_trigger
)


@contextmanager
def replanning_here() -> Iterator[None]:
    """Item runs started inside this block run their re-plans here, as a subflow."""
    token = _AFTER_AN_ITEM.set(_here)
    try:
        yield
    finally:
        _AFTER_AN_ITEM.reset(token)


async def after_an_item(ref: str, reason: str, today: dt.date | None) -> None:
    """The re-plan an item's outcome calls for: an event for the trigger, or here."""
    await _AFTER_AN_ITEM.get()(ref, reason, today)
