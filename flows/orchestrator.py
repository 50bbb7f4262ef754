"""Where the flows run, chosen once: on a unit's Prefect server, or here in this process.

``pick()`` makes the choice, from PREFECT_API_URL:

- set (a unit's ``prefect server start`` with ``sidflows serve`` or workers):
  ``OnServer``. A referral or a change in the record carries out the intent
  the store wrote with it (flows/intents.py): a run of the pathway or replan
  deployment under the intent's key, or, when Prefect cannot be reached, an
  honest "stored" left to ``serve``'s pass and the sweep. An answer resumes the
  suspended pathway run, and the sweep reconciles Prefect's scheduled runs
  with the store.
- not set (Prefect's temporary local server): ``InProcess``. The flows run
  here, in this process; the sweep leaves Prefect's runs alone (no worker
  would ever run them), and an item run executed here re-plans here too.

Either one runs a flow here when nothing on the server is waiting for it (an
approval with no suspended run, a consent, the sweep); before that it makes
sure the deployments the flow schedules into exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Protocol

from prefect import get_client, tags
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.flow_engine import run_flow
from prefect.flow_runs import aresume_flow_run
from prefect.settings import PREFECT_API_URL

from flows import intents, item, referral, replan, runtime, sweep
from flows.deployments import ensure_registered
from sidflows.service import Referred, pathway_key
from sidflows.store.intents import Pending


class Orchestrator(Protocol):
    """What the command line asks of Prefect; each answer is one line for the user."""

    def start_pathway(self, referred: Referred, *, today: dt.date | None) -> str:
        """The child's pathway, for a referral just stored."""
        ...

    def answered(self, ref: str, run_input: dict[str, Any] | None) -> str:
        """A clinician's approval (``run_input``) or the family's consent was recorded."""
        ...

    def replan(self, ref: str, reason: str) -> str:
        """The child's record changed: plan vN+1 from the whole record."""
        ...

    def sweep(self, day: dt.date | None) -> dict[str, Any]:
        """The daily sweep."""
        ...


def server_configured() -> bool:
    return bool(PREFECT_API_URL.value())


def pick() -> Orchestrator:
    """The one place that decides: a unit's Prefect server, or this process."""
    return OnServer() if server_configured() else InProcess()


def _activate_here(ref: str) -> str:
    ensure_registered()
    return referral.run_activate(ref).replace("_", " ")


class OnServer:
    """A unit's Prefect server: its deployments run the flows, its triggers hear the events."""

    def start_pathway(self, referred: Referred, *, today: dt.date | None) -> str:
        """Carry out the referral's intent: a run of the pathway deployment under its key."""
        carried = intents.carry_out(ref=referred.ref)
        run_id = carried.result("pathway") or intents.done_run(
            pathway_key(referred.ref, referred.sha256)
        )
        if run_id is None:
            return _stored_for_later("the pathway", "will start", carried)
        return (
            f"pathway run {run_id}; the plan waits for approval "
            "(Prefect UI form, or sidflows approve)"
        )

    def answered(self, ref: str, run_input: dict[str, Any] | None) -> str:
        """Resume the suspended pathway run with the answer; else activate here."""
        if run_input is not None and asyncio.run(_resume_pathway(ref, run_input)):
            return "the pathway run resumes with the answer"
        return _activate_here(ref)

    def replan(self, ref: str, reason: str) -> str:
        """Carry out the change's intent: a run of the replan deployment under its key."""
        carried = intents.carry_out(ref=ref)
        if carried.result("replan") is None:
            return _stored_for_later("the re-plan", "will run", carried)
        return "re-plan requested (the replan deployment runs it)"

    def sweep(self, day: dt.date | None) -> dict[str, Any]:
        ensure_registered()
        return sweep.run_sweep(day, reconcile=True)


async def run_here(intent: Pending) -> str:
    """An intent's flow in this process, with the tags of a deployment run; its answer."""
    parameters = intent.parameters
    with tags(*runtime.tags(intent.kind, intent.ref)):
        if intent.kind == "pathway":
            today = parameters.get("today")
            day = dt.date.fromisoformat(today) if today else None
            return str(await referral.pathway(intent.ref, today=day))
        if intent.kind == "replan":
            reason = str(parameters.get("reason") or "treatment change")
            return str(await replan.replan(intent.ref, reason))
        return str(await referral.activate(intent.ref))


def _stored_for_later(what: str, will: str, carried: intents.Carried) -> str:
    """The intent is stored; Prefect did not take it now (one honest line)."""
    if carried.failed:
        return f"stored; {what} {will} when the Prefect server answers"
    if carried.pending:  # claimed by another pass (serve's, the sweep) right now
        return f"stored; {what} {will} on the next pass of serve or the sweep"
    return f"{what} was already carried out (nothing more to do)"


def _failed_here(what: str, ref: str, carried: intents.Carried) -> str:
    if carried.failed:
        return (
            f"stored; {what} failed here ({carried.last_error}): "
            f"the next command for {ref} tries again"
        )
    return f"stored; {what} was already carried out"


async def _resume_pathway(ref: str, run_input: dict[str, Any]) -> bool:
    """Resume the child's suspended pathway runs with the answer; whether there was one."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"ref:{ref}", "step:pathway"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.ID_DESC,
            limit=20,
        )
        for run in runs:
            await aresume_flow_run(run.id, run_input=run_input)
        return bool(runs)


class InProcess:
    """No server: the flows run here, on Prefect's temporary local server."""

    def start_pathway(self, referred: Referred, *, today: dt.date | None) -> str:
        """Carry out the referral's intent: the pathway runs here."""
        ensure_registered()
        answer = intents.carry_out(ref=referred.ref, here=run_here)
        found = answer.result("pathway")
        if found is None:
            return _failed_here("the pathway", referred.ref, answer)
        return found.replace("_", " ")

    def answered(self, ref: str, run_input: dict[str, Any] | None) -> str:
        return _activate_here(ref)

    def replan(self, ref: str, reason: str) -> str:
        """Carry out the change's intent: the re-plan runs here."""
        ensure_registered()
        answer = intents.carry_out(ref=ref, here=run_here)
        found = answer.result("replan")
        return found if found is not None else _failed_here("the re-plan", ref, answer)

    def sweep(self, day: dt.date | None) -> dict[str, Any]:
        ensure_registered()
        return sweep.run_sweep(day, reconcile=False)

    def execute_item_run(
        self, run: FlowRun, *, outcome: dict[str, Any], today: dt.date | None
    ) -> str:
        """A run of the item deployment, executed here and now with its outcome.

        A re-plan the outcome calls for runs here too, as a subflow (there is no
        trigger to hear its event).
        """
        parameters = {**run.parameters, "outcome": outcome, "today": today}
        with replan.replanning_here():
            status = asyncio.run(run_flow(item.item, flow_run=run, parameters=parameters))  # type: ignore[arg-type]
        return str(status)
