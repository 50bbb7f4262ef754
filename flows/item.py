"""A plan item on its day: mark it due, wait for the outcome, schedule what follows.

Each item that is next in its stream has one scheduled run of the ``item``
deployment (flows/projection.py). On its day the run marks the item due and
suspends with the nurse's form until the outcome is recorded; then the next
occurrence of the stream is scheduled, and a trough below target, results that
change the plan or a plan review ask for a re-plan (flows/replan.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Literal

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows import runtime
from flows.notifications import send_queued
from flows.replan import after_an_item
from flows.tasks import in_deployment, schedule
from sidflows import service

OUTCOME_TIMEOUT_S = 60 * 60 * 24 * 7


class ItemOutcome(RunInput):
    """What happened at an item: given / missed / results (the nurse's form)."""

    result: Literal["given", "missed", "done", "continue", "discharge"] = "given"
    dose_g: float | None = Field(default=None, ge=0, le=200)
    lot: str | None = Field(default=None, max_length=100)
    values: dict[str, float] = Field(default_factory=dict)


@task(name="mark-due", cache_policy=NO_CACHE)
def mark_due(ref: str, plan_version: int, item_key: str) -> service.ItemStep:
    return service.item_due(ref, plan_version=plan_version, item_key=item_key, actor=runtime.ACTOR)


@task(name="record-outcome", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_outcome(
    ref: str, plan_version: int, item_key: str, outcome: dict[str, Any], day: dt.date
) -> service.ItemStep:
    return service.item_outcome(
        ref,
        unit=runtime.unit(),
        plan_version=plan_version,
        item_key=item_key,
        outcome=outcome,
        actor=runtime.ACTOR,
        on=day,
    )


@flow(name="item", flow_run_name="{kind}-{ref}", persist_result=True)
async def item(
    ref: str,
    plan_version: int,
    item_key: str,
    kind: str,
    outcome: dict[str, Any] | None = None,
    today: dt.date | None = None,
) -> str:
    """One plan item on its day: mark it due, record the outcome, schedule what follows.

    Args:
        ref: the child's pseudonymous ref.
        plan_version: the plan version the item belongs to.
        item_key: the item's key in the plan (e.g. ig_session:2026-12-01).
        kind: the item's kind (ig_session, vaccine_dose, ...).
        outcome: given / missed / results, when already known (else the run waits for the form).
        today: the day of the outcome (default: today in the unit's timezone).
    """
    if outcome is None:
        step = mark_due(ref, plan_version, item_key)
        if step.status != "due":
            return step.status  # cancelled, superseded or already recorded
    if outcome is None and in_deployment():
        answer = await asuspend_flow_run(wait_for_input=ItemOutcome, timeout=OUTCOME_TIMEOUT_S)
        outcome = answer.model_dump(exclude={"metadata"})
    if outcome is None:
        return "due"
    result = record_outcome(ref, plan_version, item_key, outcome, runtime.today(today))
    follow = result.follow
    if result.next_run is not None:
        schedule([result.next_run], [], ref)
    if follow is not None and (follow.replan or follow.review_reason):
        await after_an_item(ref, follow.review_reason or f"{kind} outcome", today)
    if follow is not None and follow.escalate:
        told = "; the missed-session alert is queued" if kind == "ig_session" else ""
        get_run_logger().warning("%s %s missed%s", ref, item_key, told)
    send_queued()
    return result.status


def run_item(
    ref: str,
    plan_version: int,
    item_key: str,
    kind: str,
    *,
    outcome: dict[str, Any] | None = None,
    today: dt.date | None = None,
) -> str:
    """The item in this process, with the tags of a deployment run."""
    with tags(*runtime.tags("item", ref, kind), f"plan:v{plan_version}"):
        return asyncio.run(item(ref, plan_version, item_key, kind, outcome=outcome, today=today))
