"""Where the flows run, chosen once: on a unit's Prefect server, or here in this process.

``pick()`` makes the choice, from PREFECT_API_URL:

- set (a unit's ``prefect server start`` with ``sidflows serve`` or workers):
  ``OnServer``. A referral or a change in the record carries out the intent
  the store wrote with it (flows/intents.py): a run of the pathway or replan
  deployment under the intent's key, or, when Prefect cannot be reached, an
  honest "stored" left to ``serve``'s pass and the sweep. An answer resumes the
  suspended pathway run, and the sweep reconciles Prefect's scheduled runs
  with the store.
- not set (Prefect's temporary local server, or the long-lived local one of
  ``sidflows server start``, flows/cli/local_server.py): ``InProcess``. The flows run
  here, in this process; the sweep leaves Prefect's runs alone (no worker
  would ever run them), and an item run executed here re-plans here too.

Either one runs a flow here when nothing on the server is waiting for it (an
approval with no suspended run, a consent, the sweep); before that it makes
sure the deployments the flow schedules into exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from prefect import get_client, tags
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_engine import run_flow
from prefect.flow_runs import aresume_flow_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled

from flows import intents, item, quiet, referral, replan, runtime, sweep
from flows.deployments import ensure_registered
from sidflows.service import Referred, pathway_key
from sidflows.service.items import OutcomeTarget
from sidflows.store import db
from sidflows.store import intents as store_intents
from sidflows.store.intents import Pending


class Orchestrator(Protocol):
    """What the command line asks of Prefect; each answer is one line for the user."""

    def start_pathway(self, referred: Referred, *, today: dt.date | None) -> str:
        """The child's pathway, for a referral just stored."""
        ...

    def answered(self, ref: str, run_input: dict[str, Any] | None) -> str:
        """A clinician's approval (``run_input``) or the family's consent was recorded."""
        ...

    def replan(self, ref: str, reason: str, *, new: bool = False) -> str:
        """The child's record changed: plan vN+1 from the whole record (``new``: the
        command has just stored the change and its intent)."""
        ...

    def sweep(self, day: dt.date | None) -> dict[str, Any]:
        """The daily sweep."""
        ...

    def record_outcome(
        self, target: OutcomeTarget, outcome: dict[str, Any], *, by: str, on: dt.date | None
    ) -> str:
        """An item's outcome (``sidflows record``): to its waiting run, else recorded here."""
        ...


def server_configured() -> bool:
    """A unit's Prefect server (not the local one ``sidflows server start`` keeps)."""
    api = PREFECT_API_URL.value()
    return bool(api) and not runtime.local_server(str(api))


def pick() -> Orchestrator:
    """The one place that decides: a unit's Prefect server, or this process (on Prefect's
    temporary server, or the local one the command found: nothing else would run them)."""
    quiet.apply()
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
        """Resume the suspended pathway run with the answer; else activate here (which
        settles the activate intent the answer wrote). With the server down the intent
        is stored, and serve's pass or the sweep carries it out."""
        try:
            if run_input is not None and asyncio.run(_resume_pathway(ref, run_input)):
                return "the pathway run resumes with the answer"
            return _activate_here(ref)
        except (httpx.HTTPError, OSError):
            with db.session_scope() as session:
                waiting = list(store_intents.waiting(session=session, ref=ref))
            if any(i.kind == "activate" for i in waiting):
                return "stored; the activation will run when the Prefect server answers"
            return "stored; the Prefect server did not answer: serve or the sweep carries it on"

    def replan(self, ref: str, reason: str, *, new: bool = False) -> str:
        """Carry out the change's intent: a run of the replan deployment under its key."""
        carried = intents.carry_out(ref=ref)
        if carried.result("replan") is not None:
            return "re-plan requested (the replan deployment runs it)"
        if new and not (carried.failed or carried.pending):
            # The intent this command stored was taken between its commit and this pass:
            # serve's every-minute pass (or a sweep) started its run first.
            return "re-plan requested (serve's pass started its run first)"
        return _stored_for_later("the re-plan", "will run", carried)

    def sweep(self, day: dt.date | None) -> dict[str, Any]:
        ensure_registered()
        return sweep.run_sweep(day, reconcile=True)

    def record_outcome(
        self, target: OutcomeTarget, outcome: dict[str, Any], *, by: str, on: dt.date | None
    ) -> str:
        """Resume the item's run suspended on the nurse's form with the outcome; when none
        waits (or its older form cannot say who recorded it), the item flow records it here."""
        waiting = _item_runs_now(target)
        if waiting.answered is not None:
            return _already_sent(waiting.answered)
        if waiting.form is not None:
            answer = _form_input(outcome, waiting.form_fields, by=by, on=on)
            if answer is not None:
                return _resume_item_run(waiting.form, answer)
        status = _record_here(target, outcome, by=by, on=on)
        return f"recorded here by the item flow ({status}){_close_runs(waiting, outcome)}"


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


def resume_pathway(ref: str, run_input: dict[str, Any]) -> str:
    """Resume the child's suspended pathway run with an answer the store already holds."""
    try:
        resumed = asyncio.run(_resume_pathway(ref, run_input))
    except (httpx.HTTPError, OSError):
        return "stored; the Prefect server did not answer: the suspended pathway run was not told"
    return "the pathway run resumes with the answer" if resumed else "no pathway run was waiting"


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

    def replan(self, ref: str, reason: str, *, new: bool = False) -> str:
        """Carry out the change's intent: the re-plan runs here."""
        ensure_registered()
        answer = intents.carry_out(ref=ref, here=run_here)
        found = answer.result("replan")
        return found if found is not None else _failed_here("the re-plan", ref, answer)

    def sweep(self, day: dt.date | None) -> dict[str, Any]:
        ensure_registered()
        return sweep.run_sweep(day, reconcile=False)

    def record_outcome(
        self, target: OutcomeTarget, outcome: dict[str, Any], *, by: str, on: dt.date | None
    ) -> str:
        """The item's scheduled run executed here with the outcome (its re-plan too);
        none: the item flow here."""
        waiting = _item_runs_now(target)
        if waiting.answered is not None:
            return _already_sent(waiting.answered)
        ready = [
            r for r in waiting.others if r.state_type in (StateType.SCHEDULED, StateType.PENDING)
        ]
        if not ready:
            with replan.replanning_here():
                status = _record_here(target, outcome, by=by, on=on)
            return f"recorded here by the item flow ({status})"
        extra = {"outcome": outcome, "recorded_by": by, "recorded_on": on}
        with replan.replanning_here():
            ran = asyncio.run(
                run_flow(item.item, flow_run=ready[0], parameters={**ready[0].parameters, **extra})  # type: ignore[arg-type]
            )
        return f"recorded here by its run {ready[0].id} ({ran})"

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


# ----------------------------------------------------------------- an item's outcome (record)

# The states of an item run that has not finished: scheduled, resuming, running, suspended.
UNFINISHED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


@dataclass
class ItemRuns:
    """The unfinished runs of one item (every attempt), as ``record`` finds them."""

    answered: FlowRun | None = None  # given an outcome already, recording it
    form: FlowRun | None = None  # suspended on the nurse's form
    form_fields: frozenset[str] = frozenset()  # what that form takes
    others: list[FlowRun] = field(default_factory=list)  # scheduled, held, running


def _item_runs_now(target: OutcomeTarget) -> ItemRuns:
    """The item's unfinished runs; a Prefect that does not answer stops here, nothing recorded."""
    try:
        with get_client(sync_client=True) as client:
            return _item_runs(client, target)
    except (httpx.HTTPError, OSError) as exc:
        raise RuntimeError(
            f"the Prefect server did not answer ({type(exc).__name__}): nothing recorded; "
            "try again when it does"
        ) from None


def _item_runs(client: SyncPrefectClient, target: OutcomeTarget) -> ItemRuns:
    base = runtime.idempotency_key(target.ref, target.plan_version, target.item_key)
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"ref:{target.ref}", "step:item"]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)),
        ),
        sort=FlowRunSort.ID_DESC,
        limit=200,
    )
    found = ItemRuns()
    for run in runs:
        if not run.idempotency_key or runtime.item_of_key(run.idempotency_key)[0] != base:
            continue
        details = run.state.state_details if run.state is not None else None
        keyset = details.run_input_keyset if details is not None else None
        pause = (details.pause_key if details is not None else None) or ""
        if run.state_type == StateType.PAUSED and keyset and not pause.startswith(item.HOLD_KEY):
            schema = json.loads(client.read_flow_run_input(run.id, keyset["schema"]) or "{}")
            found.form, found.form_fields = run, frozenset(schema.get("properties", {}))
        elif run.state_type != StateType.PAUSED and _has_answer(client, run):
            found.answered = run
        else:
            found.others.append(run)
    return found


def _has_answer(client: SyncPrefectClient, run: FlowRun) -> bool:
    """A run resumed with a nurse's answer (its form's response is stored)."""
    for key in run.empirical_policy.pause_keys or set():
        if key.startswith(item.HOLD_KEY):
            continue
        try:
            client.read_flow_run_input(run.id, f"suspended-{key}-response")
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:
                continue  # asked, not answered
            raise
        return True
    return False


def _already_sent(run: FlowRun) -> str:
    return f"already recorded: its Prefect run {run.id} has the outcome and records it"


def _form_input(
    outcome: dict[str, Any], fields: frozenset[str], *, by: str, on: dt.date | None
) -> dict[str, Any] | None:
    """The outcome as the run's form takes it; None for an older form that cannot say who
    recorded it (or on which day)."""
    if "recorded_by" not in fields or (on is not None and "day" not in fields):
        return None
    answer: dict[str, Any] = {"result": outcome["result"], "recorded_by": by}
    answer |= {k: outcome[k] for k in ("dose_g", "lot") if outcome.get(k) is not None}
    if on is not None:
        answer["day"] = on.isoformat()
    for name, value in (outcome.get("values") or {}).items():
        if name in fields:
            answer[name] = value
        else:
            answer.setdefault("values", {})[name] = value
    return answer


def _resume_item_run(run: FlowRun, answer: dict[str, Any]) -> str:
    with get_client(sync_client=True) as client:
        resumed = client.resume_flow_run(run.id, run_input=answer)
    if resumed.status == SetStateStatus.ACCEPT:
        return f"sent to its waiting Prefect run {run.id}: it resumes and records it"
    if resumed.status == SetStateStatus.ABORT:  # another answer resumed it a moment ago
        return _already_sent(run)
    reason = getattr(resumed.details, "reason", "") or str(resumed.status)
    raise RuntimeError(f"Prefect run {run.id} refused the outcome: {reason}")


def _record_here(
    target: OutcomeTarget, outcome: dict[str, Any], *, by: str, on: dt.date | None
) -> str:
    """The item flow here with the outcome: recorded, the next run scheduled, re-plan asked."""
    ensure_registered()
    return item.run_item(
        target.ref,
        target.plan_version,
        target.item_key,
        target.kind,
        outcome=outcome,
        recorded_by=by,
        recorded_on=on,
    )


def _close_runs(waiting: ItemRuns, outcome: dict[str, Any]) -> str:
    """The item's other runs after it was recorded here: a run suspended on an older form is
    resumed with it (it finds the item recorded and ends), the rest cancelled. What was done."""
    done = []
    try:
        with get_client(sync_client=True) as client:
            if waiting.form is not None:
                older = {
                    k: outcome[k]
                    for k in ("result", "dose_g", "lot", "values")
                    if outcome.get(k) is not None
                }
                client.resume_flow_run(waiting.form.id, run_input=older)
                done.append(f"its run {waiting.form.id} (an older form) resumes and ends")
            for run in waiting.others:
                if run.state_type == StateType.RUNNING:
                    continue  # on its way to the form: it finds the item recorded or asks in vain
                client.set_flow_run_state(
                    run.id, Cancelled(message="outcome recorded with sidflows record"), force=True
                )
                done.append(f"its run {run.id} cancelled")
    except (httpx.HTTPError, OSError):
        done.append("its waiting runs are left to the sweep (Prefect did not answer)")
    return "".join(f"; {line}" for line in done)
