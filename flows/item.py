"""A plan item on its day: mark it due, wait for the outcome, schedule what follows.

Each item that is next in its stream has one scheduled run of the ``item``
deployment (flows/projection.py). On its day the run marks the item due and
suspends with the nurse's form until the outcome is recorded; then the next
occurrence of the stream is scheduled, and a trough below target, results that
change the plan or a plan review ask for a re-plan (flows/replan.py).

A held item (a re-plan waits for the clinician and its rule found the item unsafe,
docs/clinical-reference.md §4.8) is not marked due and no form is shown: the run
records that the day came while held and suspends with no form, under a key of its
own, until the hold is answered. ``wake_released`` resumes it once the item is
released (the run starts again, finds the item free and asks the nurse); a held item
the approved plan drops is cancelled, and its suspended run with it (a waiting run
of a superseded item). Run here, outside a deployment, it just ends as held.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Literal

from prefect import flow, get_client, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows import runtime
from flows.notifications import send_queued
from flows.replan import after_an_item
from flows.tasks import board_changed, in_deployment, schedule
from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.service.items import RESULT_FIELDS, ResultField

OUTCOME_TIMEOUT_S = 60 * 60 * 24 * 7
# A held run waits this long, then Prefect fails it; an item still open then gets a
# fresh run from the reconciliation (a run that ended without recording its item).
HOLD_TIMEOUT_S = OUTCOME_TIMEOUT_S
HOLD_KEY = "held-"


def _result(field: ResultField) -> Any:
    """A typed result of the form: its unit and range in its description, its limits checked."""
    if field.low_exclusive:
        return Field(default=None, description=field.describe(), gt=field.low, le=field.high)
    return Field(default=None, description=field.describe(), ge=field.low, le=field.high)


_RESULTS = {r.field: r for r in RESULT_FIELDS}


class ItemOutcome(RunInput):
    """What happened at an item: given / missed / results (the nurse's form).

    Each result the unit knows is a field of its own, in the unit of a lab result
    (docs/formats.md §4, §9). ``values`` is the older form's free dictionary: a run
    suspended before the typed fields came is answered that way, and is still read.
    """

    result: Literal["given", "missed", "done", "continue", "discharge"] = "given"
    dose_g: float | None = Field(
        default=None, ge=0, le=200, description="IG session: grams actually given (0-200)"
    )
    lot: str | None = Field(default=None, max_length=100, description="the product's lot number")
    igg_g_l: float | None = _result(_RESULTS["igg_g_l"])
    iga_g_l: float | None = _result(_RESULTS["iga_g_l"])
    igm_g_l: float | None = _result(_RESULTS["igm_g_l"])
    igg_lower_limit_g_l: float | None = _result(_RESULTS["igg_lower_limit_g_l"])
    cd4_per_ul: float | None = _result(_RESULTS["cd4_per_ul"])
    cd4_percent: float | None = _result(_RESULTS["cd4_percent"])
    cd19_per_ul: float | None = _result(_RESULTS["cd19_per_ul"])
    cd19_lower_limit_per_ul: float | None = _result(_RESULTS["cd19_lower_limit_per_ul"])
    anc_per_ul: float | None = _result(_RESULTS["anc_per_ul"])
    pneumococcal_fold_rise: float | None = _result(_RESULTS["pneumococcal_fold_rise"])
    recorded_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your name as in the staff roster (nurse, clinician; a coordinator: missed)",
    )
    day: dt.date | None = Field(
        default=None, description="The day it happened (default: today in the unit)"
    )
    values: dict[str, float] = Field(
        default_factory=dict, description="Older form: results by name (use the fields above)"
    )

    def outcome(self) -> dict[str, Any]:
        """The outcome the service records (docs/formats.md §9), from either form."""
        values = dict(self.values)
        for name in _RESULTS:
            given = getattr(self, name)
            if given is None:
                continue
            if name in values and values[name] != given:
                raise InvalidInput(f"values.{name}", "given twice, with two values")
            values[name] = given
        return {"result": self.result, "dose_g": self.dose_g, "lot": self.lot, "values": values}


@task(name="mark-due", cache_policy=NO_CACHE)
def mark_due(ref: str, plan_version: int, item_key: str) -> service.ItemStep:
    return service.item_due(ref, plan_version=plan_version, item_key=item_key, actor=runtime.ACTOR)


@task(name="record-outcome", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_outcome(
    ref: str,
    plan_version: int,
    item_key: str,
    outcome: dict[str, Any],
    day: dt.date,
    recorded_by: str | None = None,
) -> service.ItemStep:
    return service.item_outcome(
        ref,
        unit=runtime.unit(),
        plan_version=plan_version,
        item_key=item_key,
        outcome=outcome,
        actor=runtime.ACTOR,
        on=day,
        by=recorded_by,
    )


@flow(name="item", flow_run_name="{kind}-{ref}", persist_result=True)
async def item(
    ref: str,
    plan_version: int,
    item_key: str,
    kind: str,
    outcome: dict[str, Any] | None = None,
    today: dt.date | None = None,
    recorded_by: str | None = None,
    recorded_on: dt.date | None = None,
) -> str:
    """One plan item on its day: mark it due, record the outcome, schedule what follows.

    Args:
        ref: the child's pseudonymous ref.
        plan_version: the plan version the item belongs to.
        item_key: the item's key in the plan (e.g. ig_session:2026-12-01).
        kind: the item's kind (ig_session, vaccine_dose, ...).
        outcome: given / missed / results, when already known (else the run waits for the form).
        today: the day of the outcome (default: today in the unit's timezone).
        recorded_by: who records the outcome given here (a name on the staff roster).
        recorded_on: the day the outcome given here happened (default: ``today``).
    """
    if outcome is None:
        step = mark_due(ref, plan_version, item_key)
        if isinstance(step, service.HeldStep):
            return await wait_while_held(ref, item_key, step)
        if step.status != "due":
            return step.status  # cancelled, superseded or already recorded
    if outcome is None and in_deployment():
        answer = await asuspend_flow_run(wait_for_input=ItemOutcome, timeout=OUTCOME_TIMEOUT_S)
        outcome, recorded_by = answer.outcome(), answer.recorded_by or recorded_by
        recorded_on = answer.day or recorded_on
    if outcome is None:
        return "due"
    day = recorded_on or runtime.today(today)
    result = record_outcome(ref, plan_version, item_key, outcome, day, recorded_by)
    follow = result.follow
    if result.next_run is not None:
        schedule([result.next_run], [], ref)
    if follow is not None and (follow.replan or follow.review_reason):
        await after_an_item(ref, follow.review_reason or f"{kind} outcome", today)
    if follow is not None and follow.escalate:
        told = "; the missed-session alert is queued" if kind == "ig_session" else ""
        get_run_logger().warning("%s %s missed%s", ref, item_key, told)
    board_changed()
    send_queued()
    return result.status


async def wait_while_held(ref: str, item_key: str, step: service.HeldStep) -> str:
    """A held item's day: nobody is asked to act; the run waits, suspended, for the answer."""
    get_run_logger().warning(
        "%s %s held while plan v%s waits: %s", ref, item_key, step.held_for, step.reason
    )
    context = FlowRunContext.get()
    if in_deployment() and context is not None and context.flow_run is not None:
        # A key per start of the run: a run resumed while still held suspends again.
        key = f"{HOLD_KEY}v{step.held_for}-{context.flow_run.run_count}"
        await asuspend_flow_run(timeout=HOLD_TIMEOUT_S, key=key)
    return "held"


def wake_released(ref: str) -> int:
    """Resume the child's item runs suspended on a hold that has been lifted; how many.

    Called once a clinician's answer has been stored (it may release items). A run
    whose item is still held, or no longer open, is left to wait or to be cancelled.
    """
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"ref:{ref}", "step:item"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )
        woken = 0
        for run in runs:
            pause = run.state.state_details.pause_key if run.state is not None else None
            if not (pause or "").startswith(HOLD_KEY):
                continue  # waiting for the nurse's form, not for a hold
            status, reason = service.item_hold(
                ref,
                plan_version=int(run.parameters["plan_version"]),
                item_key=str(run.parameters["item_key"]),
            )
            if reason is None and status in ("planned", "scheduled", "due"):
                client.resume_flow_run(run.id)
                woken += 1
        return woken


def run_item(
    ref: str,
    plan_version: int,
    item_key: str,
    kind: str,
    *,
    outcome: dict[str, Any] | None = None,
    today: dt.date | None = None,
    recorded_by: str | None = None,
    recorded_on: dt.date | None = None,
) -> str:
    """The item in this process, with the tags of a deployment run."""
    with tags(*runtime.tags("item", ref, kind), f"plan:v{plan_version}"):
        return asyncio.run(
            item(
                ref,
                plan_version,
                item_key,
                kind,
                outcome=outcome,
                today=today,
                recorded_by=recorded_by,
                recorded_on=recorded_on,
            )
        )
