"""Every deployment, with its schedule and triggers: served by ``sidflows serve``."""

from __future__ import annotations

from datetime import timedelta

from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from flows import notifications, runtime
from flows import pathway as p

SWEEP_CRON = "0 7 * * *"  # 07:00 in the unit's timezone, every day
DISPATCH_EVERY = timedelta(minutes=1)  # the outbox's dispatcher, whatever else runs


def deployments(
    *, with_triggers: bool = True, with_schedules: bool = True
) -> list[RunnerDeployment]:
    timezone = runtime.calendar().config.timezone
    replan_trigger = DeploymentEventTrigger(
        name="re-plan on a treatment change or a new result",
        expect={runtime.REPLAN_EVENT},
        match={"prefect.resource.id": "sidflows.patient.*"},
        parameters={"ref": "{{ event.payload.ref }}", "reason": "{{ event.payload.reason }}"},
    )
    made = [
        p.pathway.to_deployment(name="pathway", tags=["sidflows", "step:pathway"]),
        p.activate.to_deployment(name="activate", tags=["sidflows", "step:activate"]),
        p.item.to_deployment(name="item", tags=["sidflows", "step:item"]),
        p.replan.to_deployment(
            name="replan",
            tags=["sidflows", "step:replan"],
            triggers=[replan_trigger] if with_triggers else None,
        ),
        p.sweep.to_deployment(
            name="daily-sweep",
            tags=["sidflows", "step:sweep"],
            schedules=[CronSchedule(cron=SWEEP_CRON, timezone=timezone)]
            if with_schedules
            else None,
        ),
        notifications.notify.to_deployment(
            name="dispatch",
            tags=["sidflows", "step:notify"],
            schedules=[IntervalSchedule(interval=DISPATCH_EVERY)] if with_schedules else None,
        ),
    ]
    # Called outside an event loop, to_deployment returns the deployment itself.
    return [d for d in made if isinstance(d, RunnerDeployment)]


def register(*, with_triggers: bool = False, with_schedules: bool = False) -> None:
    """Create the deployments on the server without serving them (demo, tests)."""
    for deployment in deployments(with_triggers=with_triggers, with_schedules=with_schedules):
        deployment.apply()
