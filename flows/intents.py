"""Carrying out the store's intents: Prefect is their projection.

A committed change that needs Prefect (a referral's pathway, a re-plan, an
activation) wrote an intent in its own transaction (sidflows.store.intents).
``carry_out`` claims the pending ones and makes each happen:

- on a unit's server (PREFECT_API_URL set): a run of the intent's deployment
  under ``idempotency_key=intent.key``. Prefect returns the run that already
  exists for a key, so a repeat (a pass that died between creating the run and
  marking the intent done, two passes racing) creates nothing: exactly once;
- in process (Prefect's temporary server): the flow runs here, with the
  runner the in-process orchestrator gives (flows/orchestrator.py).

An error reaching Prefect (connection refused, a timeout, a 5xx) leaves the
intent pending with a doubling wait; the next command, ``serve``'s every-minute
pass or the sweep carries it out. Prefect's own tracebacks go to the debug log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterIdempotencyKey,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL
from sqlmodel import select

from flows import runtime
from flows.projection import DEAD_STATES
from sidflows.store import db
from sidflows.store import intents as store
from sidflows.store.models import IntentStatus, Patient, PatientState, utcnow

log = logging.getLogger("sidflows.intents")

DEPLOYMENTS = {
    "pathway": runtime.PATHWAY_DEPLOYMENT,
    "replan": "replan/replan",
    "activate": "activate/activate",
}


@dataclass
class Carried:
    """What one pass did: intents done, failed this time (last error), still pending."""

    done: int = 0
    failed: int = 0
    pending: int = 0
    last_error: str | None = None
    # (kind, run id on a server / the flow's answer here), in the order carried out
    results: list[tuple[str, str]] = field(default_factory=list)

    def result(self, kind: str) -> str | None:
        found = [answer for k, answer in self.results if k == kind]
        return found[-1] if found else None

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "done": self.done,
            "failed": self.failed,
            "pending": self.pending,
        }
        if self.last_error:
            figures["last_error"] = self.last_error
        return figures


def unreachable(exc: BaseException) -> bool:
    """Prefect could not be reached or could not answer now (worth trying again)."""
    if isinstance(exc, PrefectHTTPStatusError | httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code in (408, 429)
    return isinstance(
        exc, httpx.TransportError | ConnectionError | OSError | TimeoutError | asyncio.TimeoutError
    )


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


def on_server() -> bool:
    """A unit's Prefect server (PREFECT_API_URL set), as flows.orchestrator decides."""
    return bool(PREFECT_API_URL.value())


Here = Callable[[store.Pending], Awaitable[str]]


def carry_out(*, ref: str | None = None, limit: int = 100, here: Here | None = None) -> Carried:
    """Claim the pending intents (this child's, or all) and carry each out; what happened.

    ``here``: run each intent's flow in this process with it (the in-process
    orchestrator gives it); without it, each is a run of its deployment on the
    unit's server.
    """
    return asyncio.run(acarry_out(ref=ref, limit=limit, here=here))


async def acarry_out(
    *, ref: str | None = None, limit: int = 100, here: Here | None = None
) -> Carried:
    """``carry_out`` inside an event loop (the flows of ``serve``'s pass and the sweep)."""
    server = here is None
    carried = Carried()
    with db.session_scope() as session:
        claimed = store.claim(session=session, now=utcnow(), limit=limit, ref=ref)
    for intent in claimed:
        if intent.kind == "pathway" and _pathway_has_run(intent.ref):
            # Its run did the work: one that an earlier attempt created though the
            # answer was lost (a timeout on a busy server), or one run here without
            # its intent (demo, tests), which has no run to name.
            run_id = await _run_under_key(intent.key) if server else None
            with db.session_scope() as session:
                store.done(session=session, intent_id=intent.id, run_id=run_id, now=utcnow())
            carried.done += 1
            continue
        try:
            answer = await (_on_server(intent) if here is None else here(intent))
        except Exception as exc:
            log.debug("intent %s not carried out", intent.key, exc_info=True)
            if server and not unreachable(exc):
                log.warning("intent %s refused by Prefect: %s", intent.key, one_line(exc))
            carried.failed += 1
            carried.last_error = one_line(exc)
            with db.session_scope() as session:
                store.failed(
                    session=session, intent_id=intent.id, error=carried.last_error, now=utcnow()
                )
            continue
        with db.session_scope() as session:
            store.done(
                session=session,
                intent_id=intent.id,
                run_id=answer if server else None,
                now=utcnow(),
            )
        carried.done += 1
        carried.results.append((intent.kind, answer))
    with db.session_scope() as session:
        carried.pending = store.pending_count(session=session, ref=ref)
    return carried


def _state_of(ref: str) -> str | None:
    with db.session_scope() as session:
        state: str | None = session.exec(select(Patient.state).where(Patient.ref == ref)).first()
    return state


def _pathway_has_run(ref: str) -> bool:
    """The child has left ``referred``: its pathway ran, the intent is fulfilled."""
    state = _state_of(ref)
    return state is not None and state != PatientState.referred


async def _run_under_key(key: str) -> str | None:
    """The run an earlier attempt created under this key, if Prefect has it (none is
    created here); an unreachable server leaves the intent without one."""
    try:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])
                ),
                sort=FlowRunSort.ID_DESC,
                limit=1,
            )
    except Exception:  # the work is done either way; the run is only for the record
        log.debug("no run read for intent %s", key, exc_info=True)
        return None
    return str(runs[0].id) if runs else None


async def _on_server(intent: store.Pending) -> str:
    """A run of the intent's deployment under its key; the run's id."""
    run = await arun_deployment(
        DEPLOYMENTS[intent.kind],
        parameters=dict(intent.parameters),
        flow_run_name=runtime.run_name(intent.kind, intent.ref),
        tags=runtime.tags(intent.kind, intent.ref),
        idempotency_key=intent.key,
        timeout=0,
        as_subflow=False,
    )
    return str(run.id)


# ----------------------------------------------------------------------------- runs that died

RECOVER_FOR = dt.timedelta(days=3)  # how far back a carried-out intent's run is looked at
MAX_ATTEMPTS = 3  # a run that dies this often is a fault for a person, not for a retry


@dataclass
class Recovered:
    """Intents whose run died: carried out again under the next key, or given up."""

    again: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    settled: int = 0  # runs seen done with their work: not read on the next passes


async def arecover(*, now: dt.datetime | None = None) -> Recovered:
    """An intent is done once its run exists, yet the run may then die before its work
    is stored: crashed (serve killed), failed (the store down mid-run), cancelled by
    hand, or lost with Prefect's database. A re-plan that dies so would leave the
    child's change unplanned. Each such intent is written again under its next key
    (``#2``, ``#3``), pending, for this pass to carry out; after ``MAX_ATTEMPTS`` it is
    marked failed and the log says so (the flow's failure is in the Prefect UI).
    A pathway whose child has left ``referred`` did its work and is not run again."""
    now = now or utcnow()
    recovered = Recovered()
    with db.session_scope() as session:
        carried = [
            (int(i.id or 0), i.key, i.kind, i.ref, str(i.run_id))
            for i in store.carried_since(session=session, since=now - RECOVER_FOR)
        ]
    if not carried:
        return recovered
    states: dict[str, StateType | None] = {}
    async with get_client() as client:
        for start in range(0, len(carried), 200):
            ids = [UUID(run_id) for *_, run_id in carried[start : start + 200]]
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                sort=FlowRunSort.ID_DESC,  # this server refuses a request without a sort
                limit=len(ids),
            )
            states.update({str(r.id): r.state_type for r in runs})
    settled: list[int] = []
    for intent_id, key, kind, ref, run_id in carried:
        if run_id in states and states[run_id] not in DEAD_STATES:
            if states[run_id] == StateType.COMPLETED:
                settled.append(intent_id)  # its work is done: not read again
            continue
        state = _state_of(ref)
        if state in (None, PatientState.discharged) or (
            kind == "pathway" and state != PatientState.referred
        ):
            settled.append(intent_id)  # nothing to run again for this child
            continue
        how = "lost" if run_id not in states else str(states[run_id]).rsplit(".", 1)[-1].lower()
        with db.session_scope() as session:
            if store.attempt_of(key)[1] >= MAX_ATTEMPTS:
                if store.given_up(
                    session=session, intent_id=intent_id, error=f"run {run_id} {how}", now=now
                ):
                    recovered.given_up.append(f"{key} (run {run_id} {how})")
                continue
            next_key = store.again(session=session, intent_id=intent_id, now=now)
        if next_key is not None:
            recovered.again.append(next_key)
            log.info(
                "%s for %s: run %s %s; carried out again as %s", kind, ref, run_id, how, next_key
            )
    if settled:  # most passes settle nothing: no transaction for them
        with db.session_scope() as session:
            recovered.settled = store.mark_settled(session=session, intent_ids=settled, now=now)
    return recovered


def done_run(key: str) -> str | None:
    """The run an intent already carried out created (a referral sent again finds it)."""
    with db.session_scope() as session:
        row = store.by_key(session=session, key=key)
        return row.run_id if row is not None and row.status == IntentStatus.done else None


@task(name="carry-out-intents", cache_policy=NO_CACHE)
async def carry_out_intents() -> dict[str, Any]:
    """The pending intents of every child (``serve``'s every-minute pass, the sweep).

    On a unit's server only: in process, the command that wrote an intent runs
    its flow itself, and the next command for that child tries again.
    """
    logger = get_run_logger()
    try:
        if not on_server():
            with db.session_scope() as session:
                return {"done": 0, "failed": 0, "pending": store.pending_count(session=session)}
        recovered = await arecover()
        carried = await acarry_out()
    except Exception as exc:  # the store is down, say: the next pass carries them out
        logger.warning("intents not carried out this time: %s", type(exc).__name__)
        log.debug("intents not carried out", exc_info=True)
        return {"error": type(exc).__name__}
    if carried.done or carried.failed:
        logger.info(
            "intents: %d carried out, %d to retry (%s), %d pending",
            carried.done,
            carried.failed,
            carried.last_error or "-",
            carried.pending,
        )
    for key in recovered.again:
        logger.info("intent %s: the run before it died; carried out again", key)
    for what in recovered.given_up:
        logger.warning("intent %s: its run died on every attempt; not tried again", what)
    summary = carried.summary()
    if recovered.again or recovered.given_up:
        summary.update(runs_died=len(recovered.again) + len(recovered.given_up))
        summary.update(given_up=len(recovered.given_up))
    return summary
