"""The daily sweep: intents not yet carried out, unfinished activations, due and overdue
items, Prefect's runs, the census, then the day's reminders, escalations and digests.

It reads the store and never rewrites an item (each item's own run records its
transitions), so a sweep run twice, or interrupted, changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows import projection, runtime
from flows.artifacts import publish_census
from flows.board import refresh_board
from flows.exports import write_calendars
from flows.intents import carry_out_intents
from flows.notifications import dispatch_notifications, queue_daily
from flows.tasks import activate_and_schedule
from sidflows import service
from sidflows.service.day import ReplacedRun, runs_replaced
from sidflows.store import db
from sidflows.store.census import unit_census
from sidflows.store.sweep import read_due


@task(name="unfinished-activations", cache_policy=NO_CACHE)
def unfinished_activations() -> list[str]:
    """Approved plans left inactive by a run that died before its activation committed."""
    return service.unfinished_activations()


@task(name="due-items", cache_policy=NO_CACHE)
def due_items(day: dt.date) -> dict[str, Any]:
    """Count the open items whose day has come, and read the oldest overdue."""
    started = time.perf_counter()
    with db.session_scope() as session:
        found = read_due(session=session, on=day)
    return {
        "due": found.rows,
        "overdue": found.overdue,
        "by_kind": dict(found.by_kind),
        "store_seconds": round(time.perf_counter() - started, 4),
        "store_seconds_by_phase": {k: round(v, 4) for k, v in found.seconds.items()},
        "oldest_overdue": [vars(o) for o in found.oldest_overdue],
    }


@task(name="reconcile-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def reconcile_runs(day: dt.date, batch: int) -> dict[str, int]:
    # The reach the activations and item runs use: from the later of the sweep's day and
    # the clock's (a sweep for a past day must not expect fewer runs than exist).
    reach = projection.lookahead(max(day, projection.reference_day()))
    expected = projection.expected_by(reach, batch=batch)
    result, done = projection.reconcile(expected, until=reach)
    service.record_run_ids(done.runs)
    if done.replaced:
        runs_replaced(
            [
                ReplacedRun(
                    r.ref, r.plan_version, r.item_key, r.state, r.message, r.attempt, r.run_id
                )
                for r in done.replaced
            ],
            unit=runtime.unit(),
        )
        for r in done.replaced:
            get_run_logger().warning(
                "%s %s: its run ended %s without recording the item; replaced by attempt %d",
                r.ref,
                r.item_key,
                r.state,
                r.attempt,
            )
    return vars(result)


@task(name="census", cache_policy=NO_CACHE)
def census(day: dt.date) -> dict[str, Any]:
    with db.session_scope() as session:
        figures = unit_census(session=session, on=day)
    publish_census(day, figures)
    return figures


def _run_name() -> str:
    """``sweep-<the day swept>``: a scheduled run has no ``day``, it sweeps today."""
    given = flow_run.parameters.get("day")
    return f"sweep-{given or runtime.today(None).isoformat()}"


@flow(name="sweep", flow_run_name=_run_name)
async def sweep(
    day: dt.date | None = None,
    batch: int = 5000,
    reconcile: bool = True,
    notify: bool = True,
    dispatch: bool = True,
) -> dict[str, Any]:
    """The daily run: unfinished activations, due and overdue items, reconciliation, census,
    reminders and digests.

    Args:
        day: the day swept (default: today in the unit's timezone).
        batch: plans per batch when the reconciliation reads what Prefect should hold.
        reconcile: make Prefect's scheduled runs match the store, both ways.
        notify: queue reminders, escalations and digests, and send the outbox.
        dispatch: send the outbox once queued (off: left to the dispatcher's next pass).
    """
    swept = runtime.today(day)
    summary: dict[str, Any] = {"day": swept.isoformat()}
    # First what must reach Prefect: stored intents (pathways, re-plans) not yet carried out.
    summary["intents"] = await carry_out_intents()
    unfinished = unfinished_activations()
    for ref in unfinished:
        get_run_logger().warning("%s: plan approved but never activated: activating it now", ref)
        await activate_and_schedule(ref)
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
    summary["board"] = refresh_board(swept)  # None: not published (logged)
    if notify:
        queued = queue_daily(swept)
        summary["store_seconds_by_phase"].update(queued.pop("store_seconds"))
        summary["notifications"] = queued
        if dispatch:
            summary["dispatch"] = dispatch_notifications()
    summary["calendar_feeds"] = write_calendars(swept)  # None: SIDFLOWS_CALENDAR_DIR unset
    return summary


def run_sweep(
    day: dt.date | None = None, *, reconcile: bool = True, notify: bool = True
) -> dict[str, Any]:
    """The sweep in this process, with the tags of a deployment run."""
    with tags("step:sweep"):
        return asyncio.run(sweep(day=day, reconcile=reconcile, notify=notify))
