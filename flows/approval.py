"""The clinician's approval: the pathway run suspends with a form, and asks again on a refusal.

A step inside the top-level ``pathway`` flow, not a subflow of its own: Prefect
refuses to suspend a subflow (its server answers "Cannot suspend subflows."
to a suspension of a run that has a parent task run, see
prefect/server/orchestration/core_policy.py; ``suspend_flow_run`` in
prefect/flow_runs.py proposes that state), and a suspended run is what keeps a
month-long wait from holding a process.

The n-th question is the run's pause key n (Prefect's own default for the
first). A resumed run starts the flow again: it reads back only the newest
answer, so an answer already refused is neither applied nor audited twice.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from pydantic import Field, ValidationError

from flows import runtime
from flows.artifacts import plan_markdown
from flows.item import wake_released
from sidflows import service
from sidflows.documents import field_path
from sidflows.errors import ConfigError, InvalidInput

APPROVAL_TIMEOUT_S = 60 * 60 * 24 * 30  # a month: then the run times out and the sweep reminds


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


@task(name="apply-decision", cache_policy=NO_CACHE)
def apply_decision(ref: str, answer: PlanDecision) -> str | None:
    """The clinician's answer applied to the plan: None, or why it was refused."""
    try:
        service.decide(
            ref,
            unit=runtime.unit(),
            decision=answer.decision,
            by=answer.approver,
            note=answer.note,
            remove_items=tuple(answer.remove_items),
        )
    except InvalidInput as refusal:
        return f"{'approver' if refusal.field == 'by' else refusal.field}: {refusal.message}"
    except ConfigError as problem:
        return f"configuration: {problem}"
    wake_held_runs(ref)
    return None


def wake_held_runs(ref: str) -> None:
    """An answer may release items held while it was awaited (§4.8): their runs resume.

    The answer is stored already; a Prefect that does not answer now leaves the runs
    suspended until their hold times out and the reconciliation gives the items fresh runs.
    """
    try:
        woken = wake_released(ref)
    except Exception as problem:  # the projection only: the stored answer stands
        get_run_logger().warning("%s: held runs not resumed now: %s", ref, problem)
    else:
        if woken:
            get_run_logger().info("%s: %d released item run(s) resume", ref, woken)


async def clinician_answer(ref: str, document: dict[str, Any]) -> None:
    """Wait for the clinician's answer; ask again, saying why, while answers are refused."""
    asked = await _questions_asked()
    refused: str | None = None
    for question in itertools.count(max(asked, 1)):
        form = PlanDecision.with_initial_data(description=form_text(document, refused))
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


def form_text(document: dict[str, Any], refused: str | None) -> str:
    """The text above the form: the plan, after why the last answer was refused."""
    plan = plan_markdown(document)
    if refused is None:
        return plan
    return f"**The last answer was refused** ({refused}). Please answer again.\n\n{plan}"
