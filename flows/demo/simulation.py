"""The demo's simulated unit: clinicians approve, families consent, nurses record outcomes.

Nothing here decides anything clinical: outcomes are drawn at random (seeded)
and fed to the real flows, which run on Prefect exactly as in a unit.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import pendulum
from prefect import get_client
from prefect.states import Scheduled
from rich.console import Console
from rich.progress import Progress

from flows import runtime
from flows.deployments import register
from flows.notifications import send_outbox
from flows.orchestrator import InProcess
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from flows.sweep import run_sweep
from sidflows import service
from sidflows.calendar import add_months
from sidflows.store import db, reports
from sidflows.store.models import PlanItem
from sidflows.testing.cohort import synthetic_referrals

CLINICIAN = "Dr Demo Clinician"
COORDINATOR = "Demo Coordinator"
WORKERS = 1  # the temporary server keeps its state in SQLite: one writer at a time
# Outcomes a nurse records some days late: the items are overdue meanwhile, and the
# daily notification part escalates them (coordinators, then clinicians).
LATE_SHARE = 0.04
LATE_KINDS = frozenset({"ig_session", "vaccine_dose", "ig_trough", "reassessment"})


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

    # ------------------------------------------------------------------ the year

    def run(self) -> dict[str, Any]:
        runtime.ensure_store()
        register()
        refs = self.refer_cohort()
        days = (self.end - self.start).days
        with Progress(console=self.console, transient=False) as progress:
            task = progress.add_task("simulated days", total=days)
            day = self.start
            while day < self.end:
                day += dt.timedelta(days=1)
                self.one_day(day, refs)
                progress.update(task, advance=1, description=f"simulated {day.isoformat()}")
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
            run_pathway(ref, today=self.start)
        self.approve_waiting(self.start)
        return refs

    def one_day(self, day: dt.date, refs: list[str]) -> None:
        # 07:00, before the day's items: the sweep (every day in a unit). Here the whole
        # sweep flow runs on Mondays; the other days only its notification part, in
        # process (reminders, escalations, digests, then the outbox is sent).
        if day.isoweekday() == 1:
            run_sweep(day, reconcile=True)
        else:
            self.notify(day)
        if day in self.change_days:
            self.treatment_changes(day, refs)
        for _ in range(3):  # items whose run was scheduled today by an earlier item of the stream
            due = [item for item in self.due_items(day) if self.recorded_by(item, day)]
            if not due:
                break
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(lambda item: self.execute(item, day), due))
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
        if waiting:
            for ref in waiting:
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
        with get_client(sync_client=True) as client:
            run_id = UUID(str(item.flow_run_id))
            # The simulated day is ahead of the real clock: bring the run to now, or
            # Prefect holds it until its scheduled time.
            client.set_flow_run_state(
                run_id, Scheduled(scheduled_time=pendulum.now("UTC")), force=True
            )
            run = client.read_flow_run(run_id)
        self.unit.execute_item_run(run, outcome=outcome, today=day)  # its re-plans run here too
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
        }


def simulate(*, children: int, months: int, seed: int, console: Console) -> dict[str, Any]:
    """The demo's year; then whatever still waits in the outbox (a retry) is sent."""
    summary = Simulation(children=children, months=months, seed=seed, console=console).run()
    send_outbox()
    return summary
