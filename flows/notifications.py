"""Notifications in the flows: the daily part of the sweep, and the dispatcher.

The outbox is filled by the store transactions themselves (sidflows.service);
these tasks only send what is there. A delivery problem never fails the
clinical flow that ran it: the messages stay in the outbox for the next pass.
Logs carry counts, never a URL, a body or an identity.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import runtime
from flows.intents import carry_out_intents
from sidflows import service
from sidflows.notify.config import load_notifications
from sidflows.notify.dispatch import DispatchResult, dispatch
from sidflows.settings import get_settings


@task(name="queue-daily-notifications", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def queue_daily(day: dt.date) -> dict[str, Any]:
    """Reminders before items, escalations of overdue items, the roles' digests: their
    counts, and the store seconds of each phase (``store_seconds``)."""
    queued = service.notify_day_timed(day, unit=runtime.unit(), actor=runtime.ACTOR)
    return {**queued.counts(), "store_seconds": queued.seconds}


def send_outbox() -> DispatchResult:
    """Send what the outbox holds now (also ``sidflows notifications dispatch``)."""
    return dispatch(config=load_notifications(), ui_url=get_settings().ui_url)


def send_queued() -> dict[str, Any]:
    """A flow's last step: send what it queued, in the flow itself (no task run, since
    most item runs queue nothing and a task run costs more than the empty claim)."""
    return _dispatch_and_log()


@task(name="dispatch-notifications", cache_policy=NO_CACHE)
def dispatch_notifications() -> dict[str, Any]:
    return _dispatch_and_log()


def _dispatch_and_log() -> dict[str, Any]:
    logger = get_run_logger()
    try:
        result = send_outbox()
    except Exception as exc:  # the store is down, say: the next pass sends them
        logger.warning("notifications not dispatched this time: %s", type(exc).__name__)
        return {"error": type(exc).__name__}
    if result.claimed:
        logger.info(
            "notifications: %d sent, %d to retry, %d failed, %d without a route",
            result.sent,
            result.retrying,
            result.failed,
            result.unrouted,
        )
    if result.failed:
        logger.error("%d notifications failed after every attempt: ops was told", result.failed)
    return {
        "sent": result.sent,
        "retrying": result.retrying,
        "failed": result.failed,
        "unrouted": result.unrouted,
    }


@flow(name="notify", flow_run_name="notify")
async def notify() -> dict[str, Any]:
    """Send the notifications waiting in the outbox (every minute when served)."""
    # First what must reach Prefect (stored intents: pathways, re-plans), then the outbox.
    carried = await carry_out_intents()
    sent = dispatch_notifications()
    return {**sent, "intents": carried}
