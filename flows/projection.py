"""Prefect runs as a projection of the store: create, find, cancel, reconcile.

The store is the source of truth. Each open item that is next in its stream
has one scheduled run of the ``item`` deployment, keyed by
``ref:vN:item_key`` (Prefect returns the existing run for a repeated key).

Only items due within the look-ahead (``prefect_lookahead_days`` in the unit's
calendar, 42 days by default) have a run: an activation or an item run that
schedules an item due later leaves it to the daily sweep, whose reconciliation
creates its run once its day comes within reach. What Prefect holds is then
what the unit does in the next six weeks, not every stream of every child;
coordinators see the whole plan, dates included, in the plan artifacts.

The deployments themselves are made elsewhere (``sidflows serve``, a work
pool's ``prefect deploy``, or the in-process orchestrator before it runs a flow
here): this module only reads the item deployment's id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Scheduled

from flows.runtime import (
    ITEM_DEPLOYMENT,
    calendar,
    idempotency_key,
    item_of_key,
    run_name,
    scheduled_time,
    tags,
)
from sidflows.service import RunSpec
from sidflows.store import db
from sidflows.store.sweep import expected_runs

WAITING_STATES = [StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED]
LIVE_STATES = (StateType.RUNNING, StateType.CANCELLING)  # a process is executing the run
# Ended without recording its item: the item's stream needs a fresh run. (A completed
# item run recorded its item, or found it cancelled or superseded.)
DEAD_STATES = (StateType.CRASHED, StateType.CANCELLED, StateType.FAILED)
MAX_ATTEMPTS = 20
CLOCK_SLACK = dt.timedelta(seconds=30)  # between this machine's clock and the server's
PAGE = 200


@dataclass
class Reconciled:
    """What the reconciliation really did (the sweep reports it as it is)."""

    expected: int  # open items due within the look-ahead, next in their stream
    existing: int  # of them, with a run waiting in Prefect
    created: int  # new runs (replacements included)
    cancelled: int  # waiting runs with no open item in the store
    replaced: int = 0  # of the new runs, those replacing a run that died with its item open
    running: int = 0  # held by a run still executing (left alone until it ends or crashes)


def item_parameters(spec: RunSpec) -> dict[str, object]:
    return {
        "ref": spec.ref,
        "plan_version": spec.plan_version,
        "item_key": spec.item_key,
        "kind": spec.kind,
    }


_DEPLOYMENT_IDS: dict[str, UUID] = {}


def item_deployment_id(*, refresh: bool = False) -> UUID:
    """The item deployment's id (looked up once per process and API, or again on ``refresh``).

    A deployment deleted and re-created, or a server started on a new database,
    has another id: the reconciliation always looks it up again.
    """
    api = str(PREFECT_API_URL.value())
    if api in _DEPLOYMENT_IDS and not refresh:
        return _DEPLOYMENT_IDS[api]
    _DEPLOYMENT_IDS[api] = _read_item_deployment_id()
    return _DEPLOYMENT_IDS[api]


def _read_item_deployment_id() -> UUID:
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(ITEM_DEPLOYMENT).id


def _run_fields(spec: RunSpec, attempt: int) -> dict[str, Any]:
    return {
        "parameters": item_parameters(spec),
        "state": Scheduled(scheduled_time=scheduled_time(spec.due)),
        "name": run_name(spec.kind, spec.ref),
        "tags": [*tags("item", spec.ref, spec.kind), f"plan:v{spec.plan_version}"],
        "idempotency_key": idempotency_key(spec.ref, spec.plan_version, spec.item_key, attempt),
    }


@dataclass(frozen=True)
class Replaced:
    """A run that died holding an open item's key, and the attempt that replaced it."""

    ref: str
    plan_version: int
    item_key: str
    state: str  # what the dead run ended as (Crashed, Cancelled, Failed)
    message: str
    attempt: int
    run_id: str


@dataclass
class ScheduledBatch:
    """What scheduling a batch of items did in Prefect."""

    runs: dict[tuple[str, int, str], str] = field(default_factory=dict)  # every item's run
    created: int = 0  # runs that did not exist before
    running: int = 0  # the key is held by a run a process is executing: left alone
    replaced: list[Replaced] = field(default_factory=list)


def _state_name(run: FlowRun) -> str:
    return str(run.state.name) if run.state is not None else str(run.state_type)


def _create_run(
    client: SyncPrefectClient, deployment_id: UUID, spec: RunSpec, done: ScheduledBatch
) -> FlowRun:
    """The item's run: the one waiting under its key, or a new one.

    A run that ended without recording the item (crashed, killed and marked
    crashed by the heartbeat automation, cancelled by hand, timed out waiting
    for its outcome) still holds its key, so Prefect would return it forever:
    the next attempt's key (``#2``, ``#3``...) makes a fresh run, once, since a
    repeat returns that attempt's run.
    """
    dead: FlowRun | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        fields = _run_fields(spec, attempt)
        requested = dt.datetime.now(dt.UTC)
        run = client.create_flow_run_from_deployment(deployment_id, **fields)
        if run.deployment_id != deployment_id and run.state_type not in LIVE_STATES:
            # The key is held by a run of a deleted deployment (deleting a deployment keeps
            # its suspended runs): that run can never resume, so it gives its key back.
            client.delete_flow_run(run.id)
            run = client.create_flow_run_from_deployment(deployment_id, **fields)
        if run.state_type in DEAD_STATES:
            dead = run
            continue
        if run.state_type in LIVE_STATES:
            done.running += 1
        elif run.created is not None and run.created >= requested - CLOCK_SLACK:
            done.created += 1
            if dead is not None:
                done.replaced.append(
                    Replaced(
                        spec.ref,
                        spec.plan_version,
                        spec.item_key,
                        _state_name(dead),
                        (dead.state.message or "") if dead.state is not None else "",
                        attempt,
                        str(run.id),
                    )
                )
        return run
    raise RuntimeError(
        f"{spec.ref} {spec.item_key}: {MAX_ATTEMPTS} runs in a row ended without "
        "recording the item; look at the item deployment's runs"
    )


def schedule_runs(specs: Iterable[RunSpec]) -> dict[tuple[str, int, str], str]:
    """One scheduled run per spec due within the look-ahead (idempotent).

    Returns (ref, version, key) -> run id, for the specs given a run.
    """
    return schedule_batch(specs).runs


def reference_day() -> dt.date:
    """The day the look-ahead counts from: today, or the simulated day of this flow run.

    A flow given a day (``today`` for the pathway, an item or a re-plan, ``day`` for
    the sweep: the demo and the tests simulate the calendar) counts from that day
    when it is later than the clock's. Never earlier: a run may wait, not go missing.
    """
    today = calendar().today()
    try:
        given = flow_run.parameters.get("today") or flow_run.parameters.get("day")
    except Exception:  # outside a flow run, or parameters Prefect could not read
        given = None
    if isinstance(given, str):
        given = dt.date.fromisoformat(given[:10])
    simulated = given if isinstance(given, dt.date) else None
    return max(d for d in (today, simulated, *_SIMULATED[-1:]) if d is not None)


_SIMULATED: list[dt.date] = []  # every thread of the process (the demo's item runs) sees it


@contextmanager
def simulating(day: dt.date) -> Iterator[None]:
    """Count the look-ahead from ``day`` in this process (a simulation ahead of the clock)."""
    _SIMULATED.append(day)
    try:
        yield
    finally:
        _SIMULATED.pop()


def within_reach(specs: Iterable[RunSpec], until: dt.date | None = None) -> list[RunSpec]:
    """The specs due by ``until`` (default: the look-ahead from :func:`reference_day`)."""
    horizon = until if until is not None else lookahead(reference_day())
    return [s for s in specs if s.due <= horizon]


def schedule_batch(specs: Iterable[RunSpec], *, until: dt.date | None = None) -> ScheduledBatch:
    """One run per spec due by ``until`` (default: within the look-ahead), idempotent,
    with what was created, left running and replaced. A later spec gets no run now:
    the daily sweep's reconciliation creates it when its day comes within reach.
    """
    specs = within_reach(specs, until)
    if not specs:
        return ScheduledBatch()
    try:
        return _create_runs(item_deployment_id(), specs)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
        return _create_runs(item_deployment_id(refresh=True), specs)  # deployment re-created


def _create_runs(deployment_id: UUID, specs: list[RunSpec]) -> ScheduledBatch:
    done = ScheduledBatch()
    with get_client(sync_client=True) as client:
        for spec in specs:
            run = _create_run(client, deployment_id, spec, done)
            done.runs[(spec.ref, spec.plan_version, spec.item_key)] = str(run.id)
    return done


def waiting_item_runs(client: SyncPrefectClient, *, ref: str | None = None) -> list[FlowRun]:
    """Every not-yet-finished run of the item deployment (optionally of one child)."""
    return [run for page in _waiting_pages(client, ref=ref) for run in page]


def _waiting_pages(client: SyncPrefectClient, *, ref: str | None = None) -> Iterator[list[FlowRun]]:
    """The waiting runs of the item deployment, a page of ``PAGE`` at a time."""
    deployment_id = item_deployment_id()
    run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=WAITING_STATES))
    )
    if ref is not None:
        run_filter.tags = FlowRunFilterTags(all_=[f"ref:{ref}"])
    offset = 0
    while True:
        page = client.read_flow_runs(
            flow_run_filter=run_filter,
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.ID_DESC,
            limit=PAGE,
            offset=offset,
        )
        yield page
        if len(page) < PAGE:
            return
        offset += PAGE


def _cancel(client: SyncPrefectClient, run_ids: Iterable[UUID], why: str) -> int:
    count = 0
    for run_id in run_ids:
        client.set_flow_run_state(run_id, Cancelled(message=why), force=True)
        count += 1
    return count


def cancel_superseded(ref: str, keys: Iterable[str]) -> int:
    """Cancel the waiting runs of items a new plan version replaced (``vN:key``)."""
    wanted = {f"{ref}:{k}" for k in keys}
    with get_client(sync_client=True) as client:
        runs = waiting_item_runs(client, ref=ref)
        return _cancel(
            client,
            [
                r.id
                for r in runs
                if r.idempotency_key and item_of_key(r.idempotency_key)[0] in wanted
            ],
            "item replaced by a new plan version",
        )


def reconcile(
    expected: list[RunSpec], *, until: dt.date | None = None
) -> tuple[Reconciled, ScheduledBatch]:
    """Make Prefect's waiting runs match the store, both ways. Returns what it scheduled.

    ``expected`` holds the items due by ``until`` (the look-ahead). A run due after
    it is left alone: it may stand for an open item not yet in reach. An open
    item whose run died (crashed, cancelled, failed, timed out) gets a fresh run
    under the next attempt's key.
    """
    wanted = {idempotency_key(s.ref, s.plan_version, s.item_key): s for s in expected}
    horizon = scheduled_time(until) if until is not None else None
    item_deployment_id(refresh=True)
    with get_client(sync_client=True) as client:
        # Only each run's id and start are kept (a page's runs are dropped once read):
        # memory for the runs Prefect holds, not for their whole records.
        existing: dict[str, tuple[UUID, dt.datetime | None]] = {}
        extra: list[UUID] = []
        for page in _waiting_pages(client):
            for r in page:
                if r.idempotency_key:
                    existing[item_of_key(r.idempotency_key)[0]] = (r.id, r.expected_start_time)
                else:
                    extra.append(r.id)
        missing = [s for key, s in wanted.items() if key not in existing]
        extra += [
            run_id
            for key, (run_id, starts) in existing.items()
            if key not in wanted and not (horizon and starts and starts > horizon)
        ]
        cancelled = _cancel(client, extra, "no open item in the store for this run")
    done = schedule_batch(missing, until=dt.date.max)  # ``expected`` is within reach
    found = Reconciled(
        expected=len(wanted),
        existing=len(existing),
        created=done.created,
        cancelled=cancelled,
        replaced=len(done.replaced),
        running=done.running,
    )
    return found, done


def expected_by(until: dt.date, *, batch: int = 5000) -> list[RunSpec]:
    """The open items due by ``until`` that should each have a waiting run, read from
    the store ``batch`` plans at a time (the reconciliation's half in the store)."""
    expected: list[RunSpec] = []
    after = 0
    while True:
        with db.session_scope() as session:
            rows = expected_runs(session=session, until=until, after_plan_id=after, limit=batch)
        if not rows:
            return expected
        expected += [
            RunSpec(ref, version, key, kind, due) for _, ref, version, key, kind, due in rows
        ]
        after = rows[-1][0]


def lookahead(day: dt.date) -> dt.date:
    """Runs exist for items due by this day (``prefect_lookahead_days`` after ``day``).

    Bounds what Prefect holds: the items of the next weeks, whatever the registry's
    size. Coordinators see further in each plan's artifact (every item, with its date).
    """
    return day + dt.timedelta(days=calendar().config.prefect_lookahead_days)
