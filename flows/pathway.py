"""The care pathway as Prefect flows: each reads like the procedure it runs.

Tasks are a few lines that call sidflows; nothing clinical is decided here.
Parameters, run names, tags, events, logs and artifacts carry the
pseudonymous ref only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from typing import Any, Literal

from prefect import flow, get_client, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, get_run_context
from prefect.events import emit_event
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from pydantic import Field, ValidationError

from flows import runtime, scheduling
from flows.artifacts import plan_markdown, publish_census, publish_plan
from flows.notifications import dispatch_notifications, queue_daily, send_queued
from sidflows import service
from sidflows.errors import ConfigError, InvalidInput
from sidflows.referral import field_path
from sidflows.store import db
from sidflows.store.models import PatientState
from sidflows.store.patients import get_patient
from sidflows.store.plans import show_document

APPROVAL_TIMEOUT_S = 60 * 60 * 24 * 30  # a month: then the run times out and the sweep reminds
OUTCOME_TIMEOUT_S = 60 * 60 * 24 * 7


class PlanDecision(RunInput):
    """The clinician's answer to a proposed plan (the form shown in the Prefect UI)."""

    decision: Literal["approve", "modify", "reject"] = "approve"
    approver: str = Field(
        min_length=1,
        max_length=200,
        description="Your name as in the staff roster (clinicians only)",
    )
    note: str | None = Field(default=None, max_length=2000)
    remove_items: list[str] = Field(default_factory=list, description="modify: item keys to drop")


class ItemOutcome(RunInput):
    """What happened at an item: given / missed / results (the nurse's form)."""

    result: Literal["given", "missed", "done", "continue", "discharge"] = "given"
    dose_g: float | None = Field(default=None, ge=0, le=200)
    lot: str | None = Field(default=None, max_length=100)
    values: dict[str, float] = Field(default_factory=dict)


def _in_deployment() -> bool:
    context = get_run_context()
    return getattr(getattr(context, "flow_run", None), "deployment_id", None) is not None


# ----------------------------------------------------------------------------- tasks


@task(name="propose-plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def propose_plan(ref: str, day: dt.date, reason: str) -> service.Proposed:
    protocol, calendar = runtime.unit()
    return service.propose(
        ref, today=day, protocol=protocol, calendar=calendar, reason=reason, actor=runtime.ACTOR
    )


@task(name="current-plan", cache_policy=NO_CACHE)
def current_plan(ref: str) -> dict[str, Any] | None:
    with db.session_scope() as session:
        return show_document(session=session, patient=get_patient(session=session, ref=ref))


@task(name="publish-plan", cache_policy=NO_CACHE)
def publish(document: dict[str, Any] | None) -> None:
    if document is not None:
        publish_plan(document)


@task(name="apply-decision", cache_policy=NO_CACHE)
def apply_decision(ref: str, answer: PlanDecision) -> str | None:
    """The clinician's answer applied to the plan: None, or why it was refused."""
    try:
        service.decide(
            ref,
            decision=answer.decision,
            by=answer.approver,
            note=answer.note,
            remove_items=tuple(answer.remove_items),
        )
    except InvalidInput as refusal:
        return f"{'approver' if refusal.field == 'by' else refusal.field}: {refusal.message}"
    except ConfigError as problem:
        return f"configuration: {problem}"
    return None


@task(name="activate-plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def activate_plan(ref: str) -> service.Activated:
    return service.activate(ref, calendar=runtime.calendar(), actor=runtime.ACTOR)


@task(name="schedule-runs", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5)
def schedule(runs: list[service.RunSpec], cancelled: list[str], ref: str) -> int:
    if cancelled:
        scheduling.cancel_superseded(ref, cancelled)
    run_ids = scheduling.schedule_runs(runs)
    service.record_run_ids(run_ids)
    return len(run_ids)


@task(name="plan-waiting", cache_policy=NO_CACHE)
def plan_waiting(ref: str) -> str:
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=ref)
        return str(patient.state)


# ----------------------------------------------------------------------------- flows


async def _activate_and_schedule(ref: str) -> str:
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
    publish(current_plan(ref))
    return activation.status


@flow(name="pathway", flow_run_name="pathway-{ref}", persist_result=True)
async def pathway(ref: str, today: dt.date | None = None, wait: bool = True) -> str:
    """Referral to active plan: assess, propose, clinician approval, family consent, activate.

    Args:
        ref: the child's pseudonymous ref (the referral is already in the store).
        today: the day to plan from (default: today in the unit's timezone).
        wait: suspend for the clinician's answer when run from a deployment.
    """
    state = plan_waiting(ref)
    if state == PatientState.referred:
        propose_plan(ref, runtime.today(today), "referral")
    document = current_plan(ref)
    publish(document)
    status = await _activate_and_schedule(ref)
    if status == "awaiting_approval" and wait and _in_deployment() and document is not None:
        await _clinician_answer(ref, document)
        status = await _activate_and_schedule(ref)
    send_queued()
    return status


async def _clinician_answer(ref: str, document: dict[str, Any]) -> None:
    """Wait for the clinician's answer; ask again, saying why, while answers are refused.

    The n-th question is the run's pause key n (Prefect's own default for the
    first). A resumed run starts the flow again: it reads back only the newest
    answer, so an answer already refused is neither applied nor audited twice.
    """
    asked = await _questions_asked()
    refused: str | None = None
    for question in itertools.count(max(asked, 1)):
        form = PlanDecision.with_initial_data(description=_form_text(document, refused))
        try:
            answer = await asuspend_flow_run(
                wait_for_input=form, timeout=APPROVAL_TIMEOUT_S, key=str(question)
            )
        except ValidationError as exc:  # the form's schema let it through, the model did not
            error = exc.errors(include_url=False)[0]
            refused = f"{field_path(error['loc'])}: {error['msg']}"
        else:
            refused = apply_decision(ref, answer)
            if refused is None:
                return
        get_run_logger().warning("%s: answer refused, asking again: %s", ref, refused)


async def _questions_asked() -> int:
    """How many answers this run has asked for so far (Prefect keeps its pause keys)."""
    context = FlowRunContext.get()
    current = context.flow_run if context is not None else None
    assert current is not None
    async with get_client() as client:
        run = await client.read_flow_run(current.id)
    keys = run.empirical_policy.pause_keys or set()
    return max((int(key) for key in keys if key.isdigit()), default=0)


def _form_text(document: dict[str, Any], refused: str | None) -> str:
    plan = plan_markdown(document)
    if refused is None:
        return plan
    return f"**The last answer was refused** ({refused}). Please answer again.\n\n{plan}"


@flow(name="activate", flow_run_name="activate-{ref}")
async def activate(ref: str) -> str:
    """An approved plan with the family's consent becomes bookings and scheduled runs."""
    status = await _activate_and_schedule(ref)
    send_queued()
    return status


@flow(name="replan", flow_run_name="replan-{ref}")
async def replan(ref: str, reason: str = "treatment change", today: dt.date | None = None) -> str:
    """A change in the child's record: propose vN+1 from the whole record, publish it.

    Args:
        ref: the child's pseudonymous ref.
        reason: what triggered it (treatment change, lab result, plan review).
        today: the day to plan from (default: today in the unit's timezone).
    """
    proposed = propose_plan(ref, runtime.today(today), reason)
    status = await _activate_and_schedule(ref)
    get_run_logger().info(
        "re-plan of %s (%s): v%s %s, %s", ref, reason, proposed.version, proposed.status, status
    )
    send_queued()
    return f"v{proposed.version} {status}"


@task(name="mark-due", cache_policy=NO_CACHE)
def mark_due(ref: str, plan_version: int, item_key: str) -> service.ItemStep:
    return service.item_due(ref, plan_version=plan_version, item_key=item_key, actor=runtime.ACTOR)


@task(name="record-outcome", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_outcome(
    ref: str, plan_version: int, item_key: str, outcome: dict[str, Any], day: dt.date
) -> service.ItemStep:
    protocol, calendar = runtime.unit()
    return service.item_outcome(
        ref,
        plan_version=plan_version,
        item_key=item_key,
        outcome=outcome,
        actor=runtime.ACTOR,
        on=day,
        protocol=protocol,
        calendar=calendar,
    )


def request_replan(ref: str, reason: str) -> None:
    """Emit the event the re-plan deployment's trigger listens for (ref only)."""
    emit_event(
        event=runtime.REPLAN_EVENT,
        resource={"prefect.resource.id": f"sidflows.patient.{ref}", "sidflows.ref": ref},
        payload={"ref": ref, "reason": reason},
    )


@flow(name="item", flow_run_name="{kind}-{ref}", persist_result=True)
async def item(
    ref: str,
    plan_version: int,
    item_key: str,
    kind: str,
    outcome: dict[str, Any] | None = None,
    today: dt.date | None = None,
    replan_inline: bool = False,
) -> str:
    """One plan item on its day: mark it due, record the outcome, schedule what follows.

    Args:
        ref: the child's pseudonymous ref.
        plan_version: the plan version the item belongs to.
        item_key: the item's key in the plan (e.g. ig_session:2026-12-01).
        kind: the item's kind (ig_session, vaccine_dose, ...).
        outcome: given / missed / results, when already known (else the run waits for the form).
        today: the day of the outcome (default: today in the unit's timezone).
        replan_inline: run a needed re-plan in this process instead of through the event trigger.
    """
    if outcome is None:
        step = mark_due(ref, plan_version, item_key)
        if step.status != "due":
            return step.status  # cancelled, superseded or already recorded
    if outcome is None and _in_deployment():
        answer = await asuspend_flow_run(wait_for_input=ItemOutcome, timeout=OUTCOME_TIMEOUT_S)
        outcome = answer.model_dump(exclude={"metadata"})
    if outcome is None:
        return "due"
    result = record_outcome(ref, plan_version, item_key, outcome, runtime.today(today))
    follow = result.follow
    if result.next_run is not None:
        schedule([result.next_run], [], ref)
    if follow is not None and (follow.replan or follow.review_reason):
        reason = follow.review_reason or f"{kind} outcome"
        if replan_inline:
            with tags(*runtime.tags("replan", ref)):
                await replan(ref, reason, today)
        else:
            request_replan(ref, reason)
    if follow is not None and follow.escalate:
        told = "; the missed-session alert is queued" if kind == "ig_session" else ""
        get_run_logger().warning("%s %s missed%s", ref, item_key, told)
    send_queued()
    return result.status


@task(name="unfinished-activations", cache_policy=NO_CACHE)
def unfinished_activations() -> list[str]:
    """Approved plans left inactive by a run that died before its activation committed."""
    return service.unfinished_activations()


@task(name="due-items", cache_policy=NO_CACHE)
def due_items(day: dt.date) -> dict[str, Any]:
    """Count the open items whose day has come, and read the oldest overdue."""
    from sidflows.store.sweep import read_due

    started = time.perf_counter()
    with db.session_scope() as session:
        found = read_due(session=session, on=day)
    return {
        "due": found.rows,
        "overdue": found.overdue,
        "by_kind": dict(found.by_kind),
        "store_seconds": round(time.perf_counter() - started, 4),
        "oldest_overdue": [vars(o) for o in found.oldest_overdue],
    }


@task(name="reconcile-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def reconcile_runs(day: dt.date, batch: int) -> dict[str, int]:
    from sidflows.store.sweep import expected_runs

    expected: list[service.RunSpec] = []
    after = 0
    while True:
        with db.session_scope() as session:
            rows = expected_runs(
                session=session, until=scheduling.lookahead(day), after_plan_id=after, limit=batch
            )
        if not rows:
            break
        expected += [
            service.RunSpec(ref, version, key, kind, due)
            for _, ref, version, key, kind, due in rows
        ]
        after = rows[-1][0]
    result, created = scheduling.reconcile(expected, until=scheduling.lookahead(day))
    service.record_run_ids(created)
    return vars(result)


@task(name="census", cache_policy=NO_CACHE)
def census(day: dt.date) -> dict[str, Any]:
    from sidflows.store.census import unit_census

    with db.session_scope() as session:
        figures = unit_census(session=session, on=day)
    publish_census(day, figures)
    return figures


@flow(name="sweep", flow_run_name="sweep-{day}")
async def sweep(
    day: dt.date | None = None, batch: int = 5000, reconcile: bool = True, notify: bool = True
) -> dict[str, Any]:
    """The daily run: unfinished activations, due and overdue items, reconciliation, census,
    reminders and digests.

    Args:
        day: the day swept (default: today in the unit's timezone).
        batch: plans per batch when the reconciliation reads what Prefect should hold.
        reconcile: make Prefect's scheduled runs match the store, both ways.
        notify: queue reminders, escalations and digests, and send the outbox.
    """
    swept = runtime.today(day)
    summary: dict[str, Any] = {"day": swept.isoformat()}
    unfinished = unfinished_activations()
    for ref in unfinished:
        get_run_logger().warning("%s: plan approved but never activated: activating it now", ref)
        await _activate_and_schedule(ref)
    summary["activations_finished"] = len(unfinished)
    found = due_items(swept)
    late = found.pop("oldest_overdue")
    summary.update(found)
    for row in late:
        get_run_logger().warning(
            "overdue: %s %s due %s (%d days)", row["ref"], row["key"], row["due"], row["days"]
        )
    if reconcile:
        summary["reconciliation"] = reconcile_runs(swept, batch)
    summary["census"] = census(swept)
    if notify:
        summary["notifications"] = queue_daily(swept)
        summary["dispatch"] = dispatch_notifications()
    return summary


# ----------------------------------------------------------------------------- entry points
# In-process runs (CLI, demo, tests) carry the same tags as deployment runs.


def run_pathway(ref: str, *, today: dt.date | None = None, wait: bool = False) -> str:
    with tags(*runtime.tags("pathway", ref)):
        return asyncio.run(pathway(ref, today=today, wait=wait))


def run_activate(ref: str) -> str:
    with tags(*runtime.tags("activate", ref)):
        return asyncio.run(activate(ref))


def run_replan(ref: str, reason: str, today: dt.date | None = None) -> str:
    with tags(*runtime.tags("replan", ref)):
        return asyncio.run(replan(ref, reason, today))


def run_item(
    ref: str,
    plan_version: int,
    item_key: str,
    kind: str,
    *,
    outcome: dict[str, Any] | None = None,
    today: dt.date | None = None,
) -> str:
    with tags(*runtime.tags("item", ref, kind), f"plan:v{plan_version}"):
        return asyncio.run(item(ref, plan_version, item_key, kind, outcome=outcome, today=today))


def run_sweep(
    day: dt.date | None = None, *, reconcile: bool = True, notify: bool = True
) -> dict[str, Any]:
    with tags("step:sweep"):
        return asyncio.run(sweep(day=day, reconcile=reconcile, notify=notify))
