"""Referral to active plan: assess, propose, the clinician's approval, the family's consent.

``pathway`` is the child's run from the referral on; ``activate`` finishes the
same path later, once the last thing it waited for (an approval given on the
command line, the family's consent) is recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE

from flows import runtime
from flows.approval import clinician_answer
from flows.notifications import send_queued
from flows.tasks import activate_and_schedule, in_deployment, propose_plan, publish_current
from sidflows.store import db, intents
from sidflows.store.models import PatientState, utcnow
from sidflows.store.patients import get_patient

AWAITING_CONSENT = "awaiting_consent"


@task(name="plan-waiting", cache_policy=NO_CACHE)
def plan_waiting(ref: str) -> str:
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=ref)
        return str(patient.state)


@task(name="family-consent-gate", cache_policy=NO_CACHE)
def family_consent_gate(ref: str) -> str:
    """The plan is approved and waits for the family's consent to the cost: say so, visibly."""
    get_run_logger().info(
        "%s: the approved plan waits for the family's consent to the cost; it is activated "
        "once the consent is recorded (sidflows consent %s)",
        ref,
        ref,
    )
    return AWAITING_CONSENT


@flow(name="pathway", flow_run_name="pathway-{ref}", persist_result=True)
async def pathway(ref: str, today: dt.date | None = None) -> str:
    """Referral to active plan: assess, propose, clinician approval, family consent, activate.

    Args:
        ref: the child's pseudonymous ref (the referral is already in the store).
        today: the day to plan from (default: today in the unit's timezone).
    """
    state = plan_waiting(ref)
    if state == PatientState.referred:
        propose_plan(ref, runtime.today(today), "referral")
    document = publish_current(ref)
    status = await activate_and_schedule(ref)
    if status == "awaiting_approval" and in_deployment() and document is not None:
        await clinician_answer(ref, document)
        status = await activate_and_schedule(ref)
    if status == AWAITING_CONSENT:
        family_consent_gate(ref)
    send_queued()
    return status


@flow(name="activate", flow_run_name="activate-{ref}")
async def activate(ref: str) -> str:
    """An approved plan with the family's consent becomes bookings and scheduled runs."""
    status = await activate_and_schedule(ref)
    if status == AWAITING_CONSENT:
        family_consent_gate(ref)
    send_queued()
    return status


# In-process runs (the command line without a server, the demo, tests) carry the same
# tags as deployment runs.


def run_pathway(ref: str, *, today: dt.date | None = None) -> str:
    """The pathway in this process, with the tags of a deployment run.

    It carries out the child's pending pathway intent, so it does not run again.
    """
    with tags(*runtime.tags("pathway", ref)):
        answer = asyncio.run(pathway(ref, today=today))
    with db.session_scope() as session:
        intents.settle(session=session, ref=ref, kind="pathway", now=utcnow())
    return answer


def run_activate(ref: str) -> str:
    with tags(*runtime.tags("activate", ref)):
        return asyncio.run(activate(ref))
