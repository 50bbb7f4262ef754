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
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments.flow_runs import arun_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL
from sqlmodel import select

from flows import runtime
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
            with db.session_scope() as session:  # run here without its intent (demo, tests)
                store.done(session=session, intent_id=intent.id, run_id=None, now=utcnow())
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


def _pathway_has_run(ref: str) -> bool:
    """The child has left ``referred``: its pathway ran, the intent is fulfilled."""
    with db.session_scope() as session:
        state = session.exec(select(Patient.state).where(Patient.ref == ref)).first()
    return state is not None and state != PatientState.referred


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
    return carried.summary()
