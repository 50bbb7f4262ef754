"""The demo's simulated unit: clinicians approve, families consent, nurses record outcomes.

Nothing here decides anything clinical: outcomes are drawn at random (seeded)
and fed to the real flows, which run on Prefect exactly as in a unit.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any
from uuid import UUID

import pendulum
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.states import Scheduled
from rich.console import Console
from rich.progress import Progress

from flows import runtime
from flows.board import publish_board
from flows.deployments import register
from flows.notifications import send_outbox
from flows.orchestrator import InProcess
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from flows.sweep import run_sweep
from flows.tasks import board_published_later
from sidflows import service
from sidflows.calendar import add_months
from sidflows.store import db, reports
from sidflows.store.models import PlanItem
from sidflows.testing.cohort import synthetic_referrals

CLINICIAN = "Dr Demo Clinician"
COORDINATOR = "Demo Coordinator"
# Outcomes a nurse records some days late: the items are overdue meanwhile, and the
# daily notification part escalates them (coordinators, then clinicians).
LATE_SHARE = 0.04
LATE_KINDS = frozenset({"ig_session", "vaccine_dose", "ig_trough", "reassessment"})


def _not_watched(*args: Any, **kwargs: Any) -> AbstractContextManager[None]:
    return nullcontext()


@contextmanager
def outside_suspensions_not_watched() -> Iterator[None]:
    """The year's item runs without Prefect's watch for a suspension asked from elsewhere.

    Prefect's engine watches every run of a deployment it executes for a suspension
    requested by someone else (a thread with its own event loop, a websocket
    subscription and a read of the run; then up to 0.2 s to stop it): about a quarter
    of a second per item run, measured, and the demo executes hundreds. Nobody
    suspends a demo run from elsewhere. A run that suspends itself (an item held
    while a re-plan waits) does not go through the watch: Prefect marks that
    request directly (prefect/flow_runs.py), so it suspends as before.
    """
    from prefect import flow_engine  # the engine module itself, only where it is patched

    original = getattr(flow_engine, "observe_flow_run_suspension", None)
    if original is None:  # another Prefect: nothing to set aside
        yield
        return
    setattr(flow_engine, "observe_flow_run_suspension", _not_watched)  # noqa: B010
    try:
        yield
    finally:
        setattr(flow_engine, "observe_flow_run_suspension", original)  # noqa: B010


class Simulation:
    def __init__(
        self,
        *,
        children: int,
        months: int,
        seed: int,
        console: Console,
        late_share: float = LATE_SHARE,
        start: dt.date | None = None,
    ) -> None:
        self.children, self.months = children, months
        self.late_share = late_share
        # Its own draws: the year's other outcomes stay those of the seed without it.
        self.late_rng = random.Random(seed + 1_000_003)
        self.record_on: dict[int, dt.date] = {}  # item id -> the day its outcome is recorded
        self.rng = random.Random(seed)
        self.seed = seed
        self.console = console
        self.start = start or runtime.calendar().today()
        self.end = add_months(self.start, months)
        self.counts: Counter[str] = Counter()
        self.change_days = {add_months(self.start, 3), add_months(self.start, 7)}
        self.unit = InProcess()  # the flows run here, on the demo's Prefect server
        self._client: SyncPrefectClient | None = None  # one for the year (execute)
        # Where the demo's time goes: seconds and how many, per part (the summary prints it).
        self.seconds: dict[str, float] = {}
        self.times: Counter[str] = Counter()

    @contextmanager
    def timed(self, part: str, count: int = 1) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started
            self.times[part] += count

    # ------------------------------------------------------------------ the year

    def run(self, before_year: Callable[[], None] | None = None) -> dict[str, Any]:
        with self.timed("Prefect server start, deployments"):
            runtime.ensure_store()
            register()
            if before_year is not None:
                before_year()
        days = (self.end - self.start).days
        with ExitStack() as stack:
            self._client = stack.enter_context(get_client(sync_client=True))
            # The board is the 07:00 sweep's (each Monday here) and the last day's: the
            # year's many runs here only note that they changed it (flows/tasks.py).
            stack.enter_context(board_published_later())
            stack.enter_context(outside_suspensions_not_watched())
            refs = self.refer_cohort()
            with Progress(console=self.console, transient=False) as progress:
                task = progress.add_task("simulated days", total=days)
                day = self.start
                while day < self.end:
                    day += dt.timedelta(days=1)
                    self.one_day(day, refs)
                    progress.update(task, advance=1, description=f"simulated {day.isoformat()}")
            with self.timed("the board (last day)"):
                publish_board(self.end)
            self._client = None
        return self.summary(days)

    def refer_cohort(self) -> list[str]:
        received = self.start - dt.timedelta(days=3)
        refs = []
        for document in synthetic_referrals(
            self.children, seed=self.seed, received=received, prefix="DEMO"
        ):
            document.pop("consent", None) if self.rng.random() < 0.3 else None
            referred = service.refer(
                json.dumps(document), unit=runtime.unit(), actor="referring service"
            )
            refs.append(referred.ref)
        for ref in refs:
            with self.timed("pathway runs"):
                run_pathway(ref, today=self.start)
        self.approve_waiting(self.start)
        return refs

    def one_day(self, day: dt.date, refs: list[str]) -> None:
        # 07:00, before the day's items: the sweep (every day in a unit). Here the whole
        # sweep flow runs on Mondays; the other days only its notification part, in
        # process (reminders, escalations, digests, then the outbox is sent).
        if day.isoweekday() == 1:
            with self.timed("sweep runs (Mondays)"):
                run_sweep(day, reconcile=True)
        else:
            with self.timed("daily notifications (other days)"):
                self.notify(day)
        if day in self.change_days:
            self.treatment_changes(day, refs)
        for _ in range(3):  # items whose run was scheduled today by an earlier item of the stream
            due = [item for item in self.due_items(day) if self.recorded_by(item, day)]
            if not due:
                break
            for item in due:
                self.execute(item, day)
        self.approve_waiting(day)

    def notify(self, day: dt.date) -> None:
        """The sweep's notification part: what service.notify_day queues, then sent."""
        service.notify_day(day, unit=runtime.unit(), actor=runtime.ACTOR)
        send_outbox()

    # ------------------------------------------------------------------ the unit's people

    def approve_waiting(self, day: dt.date) -> None:
        """Clinicians answer the proposals; coordinators record consent where it is missing."""
        with db.session_scope() as session:
            waiting = reports.refs_awaiting_approval(session=session)
        for ref in waiting:
            service.decide(ref, unit=runtime.unit(), decision="approve", by=CLINICIAN)
            if service.consent(ref, unit=runtime.unit(), by=COORDINATOR):
                self.counts["consents recorded"] += 1
        for ref in waiting:
            with self.timed("activate runs"):
                run_activate(ref)

    def treatment_changes(self, day: dt.date, refs: list[str]) -> None:
        """Stop an ongoing treatment (or add a steroid course) for two children."""
        with db.session_scope() as session:
            ongoing = reports.ongoing_treatments(session=session)
        chosen = self.rng.sample(ongoing, k=min(2, len(ongoing)))
        for ref, treatment in chosen:
            change = {
                "date": day.isoformat(),
                "treatments": [
                    {
                        "drug": treatment.drug,
                        "class": treatment.drug_class,
                        "start": treatment.start.isoformat(),
                        "end": day.isoformat(),
                    }
                ],
            }
            service.record_treatment_change(ref, json.dumps(change), actor=CLINICIAN)
            with self.timed("replan runs (treatment changes)"):
                run_replan(ref, "treatment change", day)
            self.counts["treatment changes"] += 1

    def recorded_by(self, item: PlanItem, day: dt.date) -> bool:
        """Whether the item's outcome is recorded by ``day`` (a few come days late)."""
        assert item.id is not None
        when = self.record_on.get(item.id)
        if when is None:
            late = item.kind in LATE_KINDS and self.late_rng.random() < self.late_share
            when = day + dt.timedelta(days=self.late_rng.randint(2, 10)) if late else day
            self.record_on[item.id] = when
            if late:
                self.counts["outcomes recorded late"] += 1
        return when <= day

    def due_items(self, day: dt.date) -> list[PlanItem]:
        with db.session_scope() as session:
            return reports.items_with_runs_due(session=session, on=day)

    def outcome(self, item: PlanItem, day: dt.date) -> dict[str, Any]:
        rng = self.rng
        if item.kind in ("ig_session", "vaccine_dose"):
            if rng.random() < 0.05:
                return {"result": "missed"}
            outcome: dict[str, Any] = {"result": "given", "lot": f"LOT-{rng.randint(10000, 99999)}"}
            if item.kind == "ig_session":
                outcome["dose_g"] = item.details["dose_g"]
            return outcome
        if item.kind == "ig_trough":
            return {"result": "done", "values": {"igg_g_l": round(rng.gauss(7.6, 1.4), 1)}}
        if item.kind == "reassessment":
            months = (day - self.start).days / 30
            recovery = min(1.0, months / 9)
            return {
                "result": "done",
                "values": {
                    "igg_g_l": round(3.5 + 5 * recovery + rng.uniform(-1, 1), 1),
                    "cd19_per_ul": round(30 + 300 * recovery * rng.uniform(0.6, 1.2)),
                    "cd19_lower_limit_per_ul": 100.0,
                    "cd4_per_ul": round(300 + 700 * recovery * rng.uniform(0.6, 1.2)),
                },
            }
        if item.kind == "plan_review":
            # Recovered after six months: discharged, whatever treatments the record still
            # lists (the demo has always drawn it so: its check for one never matched a row).
            recovered = (day - self.start).days > 180 and rng.random() < 0.35
            return {"result": "discharge" if recovered else "continue"}
        return {"result": "done"}

    def execute(self, item: PlanItem, day: dt.date) -> None:
        """Run the item's own scheduled Prefect run, here and now, with its outcome."""
        outcome = self.outcome(item, day)
        client = self._client
        assert client is not None, "execute runs inside run()"
        run_id = UUID(str(item.flow_run_id))
        with self.timed("item runs (their re-plans included)"):
            # The simulated day is ahead of the real clock: bring the run to now, or
            # Prefect holds it until its scheduled time.
            now: Any = Scheduled(scheduled_time=pendulum.now("UTC"))
            client.set_flow_run_state(run_id, now, force=True)
            run = client.read_flow_run(run_id)
            self.unit.execute_item_run(run, outcome=outcome, today=day)  # its re-plans too
        self.counts["item runs executed"] += 1
        kind = item.kind
        given = outcome.get("result") == "given"
        if kind == "ig_session":
            self.counts["IG sessions given" if given else "IG sessions missed"] += 1
        elif kind == "vaccine_dose" and given:
            self.counts["vaccines given"] += 1
        elif kind in ("reassessment", "ig_trough"):
            self.counts["reassessments"] += 1
        elif kind == "plan_review":
            self.counts["plan reviews"] += 1

    # ------------------------------------------------------------------ the summary

    def summary(self, days: int) -> dict[str, Any]:
        with db.session_scope() as session:
            states = reports.patient_states(session=session)
            tally = reports.plan_tally(session=session)
        self.counts["plan versions"] = tally.versions
        self.counts["re-plans"] = tally.replans
        self.counts["vaccines deferred"] = tally.deferred
        return {
            "days": days,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "states": states,
            "counts": dict(self.counts),
            "seconds": {part: (self.seconds[part], self.times[part]) for part in self.seconds},
        }


def simulate(
    *,
    children: int,
    months: int,
    seed: int,
    console: Console,
    before_year: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The demo's year; then whatever still waits in the outbox (a retry) is sent."""
    simulation = Simulation(children=children, months=months, seed=seed, console=console)
    summary = simulation.run(before_year)
    send_outbox()
    return summary
