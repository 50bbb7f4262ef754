"""Every deployment, with its schedule and triggers: the one list.

``sidflows serve`` serves it; ``sidflows deployments --yaml`` writes it as
config/prefect.yaml for a work pool (``prefect deploy``), so both deploy the
same set; the in-process orchestrator registers it on the temporary server.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import prefect
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from flows import item, notifications, referral, replan, runtime, sweep

SWEEP_CRON = "0 7 * * *"  # 07:00 in the unit's timezone, every day
DISPATCH_EVERY = timedelta(minutes=1)  # the outbox's dispatcher, whatever else runs
WORK_POOL = "sidflows"
YAML_PATH = Path("config") / "prefect.yaml"
SERVER_ENV = "prefect-server.env"  # in config/: the unit's Prefect server (its retention)
# Flow runs send a heartbeat this often (Prefect's PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
# 30 s at least); a run silent for MISSED_HEARTBEATS of them is marked Crashed.
HEARTBEAT_SECONDS = 60
MISSED_HEARTBEATS = 3
ZOMBIE_AUTOMATION = "sidflows: mark flow runs without a heartbeat as crashed"


def heartbeat_seconds() -> int:
    """The heartbeat of the unit's flow runs: the Prefect setting when given, else 60 s."""
    value = os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "").strip()
    return max(30, int(value)) if value.isdigit() else HEARTBEAT_SECONDS


def zombie_automation(every: int) -> AutomationCore:
    """Prefect's guidance for self-hosted servers ("detect zombie flows"): a run whose
    process died stops sending heartbeats and is marked Crashed, so the next sweep gives
    its item a fresh run. Suspended and paused runs (waiting for a nurse or a clinician)
    have no process and send none: their state event ends the wait, like a final state.
    """
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=(
            f"Flow runs send a heartbeat every {every} s; one silent for "
            f"{every * MISSED_HEARTBEATS} s lost its process and is marked Crashed "
            "(installed by sidflows serve and sidflows automations)."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
                "prefect.flow-run.Paused",
                "prefect.flow-run.Suspended",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=every * MISSED_HEARTBEATS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {every * MISSED_HEARTBEATS} s: its process died",
            )
        ],
    )


def install_automations(every: int | None = None) -> str:
    """Create, or bring up to date, the unit's automations on the server (idempotent)."""
    wanted = zombie_automation(every or heartbeat_seconds())
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        if not found:
            client.create_automation(wanted)
            return "created"
        client.update_automation(found[0].id, wanted)
        for duplicate in found[1:]:  # two installs at once
            client.delete_automation(duplicate.id)
        return "updated"


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
        referral.pathway.to_deployment(name="pathway", tags=["sidflows", "step:pathway"]),
        referral.activate.to_deployment(name="activate", tags=["sidflows", "step:activate"]),
        item.item.to_deployment(name="item", tags=["sidflows", "step:item"]),
        replan.replan.to_deployment(
            name="replan",
            tags=["sidflows", "step:replan"],
            triggers=[replan_trigger] if with_triggers else None,
        ),
        sweep.sweep.to_deployment(
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


PULL_STEPS = [
    {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SIDFLOWS_HOME }}"}}
]


def deploy_to_work_pool(pool: str = WORK_POOL) -> list[str]:
    """What ``prefect deploy --all --prefect-file config/prefect.yaml`` deploys, from here.

    The same deployments (schedules and triggers included) in the process work pool,
    with the YAML's job variables and pull step (workers run them from $SIDFLOWS_HOME).
    Prefect 3.8.8's ``prefect deploy`` stops after its first deployment under FastAPI
    0.154 (its closing "active workers" query sends ``limit: null``, refused with 422),
    which this does not depend on. Returns the deployments' names.
    """
    # only for a work pool's deployment
    from prefect.client.schemas.actions import DeploymentUpdate

    names = []
    job_variables = work_pool()["job_variables"]
    with get_client(sync_client=True) as client:
        for deployment in deployments():
            deployment.job_variables = job_variables
            deployment_id = deployment.apply(work_pool_name=pool)
            assert isinstance(deployment_id, UUID)  # called outside an event loop
            client.update_deployment(deployment_id, DeploymentUpdate(pull_steps=PULL_STEPS))
            names.append(f"{deployment.flow_name}/{deployment.name}")
    return names


_REGISTERED: set[str] = set()


def ensure_registered() -> None:
    """The deployments a flow run here needs (it schedules item runs) exist on the server.

    Only those missing are created, without schedules or triggers: a unit's
    ``sidflows serve`` keeps its own. Checked once per process and server.
    """
    api = str(PREFECT_API_URL.value())
    if api in _REGISTERED:
        return
    missing = []
    with get_client(sync_client=True) as client:
        for deployment in deployments(with_triggers=False, with_schedules=False):
            try:
                client.read_deployment_by_name(f"{deployment.flow_name}/{deployment.name}")
            except ObjectNotFound:
                missing.append(deployment)
    for deployment in missing:
        deployment.apply()
    _REGISTERED.add(api)


def prefect_server_settings(path: Path | None = None) -> dict[str, str]:
    """The unit's Prefect server settings (config/prefect-server.env): its retention.

    ``KEY=VALUE`` lines, ``#`` comments, a value optionally in single quotes: what a
    shell's ``set -a; . FILE`` and a systemd ``EnvironmentFile=`` read alike.
    """
    path = path or Path(runtime.__file__).resolve().parents[1] / "config" / SERVER_ENV
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        found[name.strip()] = value.strip().removeprefix("'").removesuffix("'")
    return found


# ----------------------------------------------------------------------------- config/prefect.yaml

YAML_HEADER = """\
# GENERATED by `sidflows deployments --yaml` from flows/deployments.py (the list
# `sidflows serve` serves) and the unit's calendar (timezone {timezone}): do not
# edit by hand, change the code and run it again. tests/flows/test_deployments.py
# fails when this file and the served deployments differ.
#
# Deploys sidflows' flows to a Prefect server (backed by PostgreSQL) and a
# process work pool. From the project root:
#
#   set -a; . config/prefect-server.env; set +a   # the server's retention
#   prefect server start                          # on PostgreSQL (docs/prefect.md)
#   export PREFECT_API_URL=https://prefect.unit.example/api   # behind TLS
#   prefect work-pool create sidflows --type process
#   prefect --no-prompt deploy --all --prefect-file config/prefect.yaml
#   # Prefect 3.8.8 under FastAPI 0.154 stops after the first deployment (a 422
#   # on its closing workers query); this deploys the same set and pull step:
#   python -c "from flows.deployments import deploy_to_work_pool; deploy_to_work_pool()"
#   sidflows automations        # runs without a heartbeat are marked Crashed
#   prefect worker start --pool sidflows                        # on each worker machine
#
# Each deployment's runs send a heartbeat every {heartbeat} s (job_variables env);
# `sidflows automations` installs the automation that marks a run silent for
# three of them Crashed, so the next sweep replaces an item run whose process died.
#
# Workers need the project installed (python3 dev.py ... or pip install -r
# requirements.lock && pip install -e .) and the same SIDFLOWS_* settings as
# the rest of the unit (SIDFLOWS_DATABASE_URL pointing at the store on
# PostgreSQL). For one machine, `sidflows serve` does all of this without a
# work pool.
#
# Docker pool: `prefect work-pool create sidflows --type docker`, build an
# image from the project (python:3.11-slim + requirements.lock + the project),
# set `image:` under job_variables and pass SIDFLOWS_* through `env:`.
# Kubernetes pool: `--type kubernetes`, the same image, SIDFLOWS_DATABASE_URL
# and the Apprise URLs from a Secret (never in this file), one worker
# Deployment per cluster.
#
# Only pseudonymous refs are parameters: Prefect shows every parameter, run
# name, tag, event and artifact to every UI user. A deployment's description is
# its flow's docstring (as `sidflows serve` shows it).
"""


def work_pool() -> dict[str, Any]:
    """The process pool, its runs sending heartbeats (what serve's runner sets)."""
    env = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
    return {"name": WORK_POOL, "job_variables": {"env": env}}


def entrypoint(deployment: RunnerDeployment) -> str:
    """``flows/<module>.py:<function>``, relative to the project root, wherever we run."""
    path, _, function = (deployment.entrypoint or "").rpartition(":")
    root = Path(runtime.__file__).resolve().parents[1]
    return f"{Path(path).resolve().relative_to(root).as_posix()}:{function}"


def summary_line(deployment: RunnerDeployment) -> str:
    """The first paragraph of the deployment's description (its flow's docstring)."""
    paragraph = (deployment.description or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def when(deployment: RunnerDeployment) -> list[str]:
    """When its runs come: each schedule and each event trigger, in words."""
    found = []
    for each in deployment.schedules or []:
        schedule = each.schedule
        if isinstance(schedule, CronSchedule):
            found.append(f"cron {schedule.cron} ({schedule.timezone})")
        elif isinstance(schedule, IntervalSchedule):
            found.append(f"every {int(schedule.interval.total_seconds())} s")
    found += [
        f"on {', '.join(sorted(trigger.expect))}"
        for trigger in deployment.triggers or []
        if isinstance(trigger, DeploymentEventTrigger)
    ]
    return found


def _value(value: Any) -> str:
    """A YAML scalar, list or mapping on one line (JSON is YAML)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def _schedule(schedule: Any) -> list[str]:
    if isinstance(schedule, CronSchedule):
        return [f"cron: {_value(schedule.cron)}", f"timezone: {_value(schedule.timezone)}"]
    if isinstance(schedule, IntervalSchedule):
        return [f"interval: {int(schedule.interval.total_seconds())}"]
    raise TypeError(f"no YAML for a {type(schedule).__name__}")  # pragma: no cover


TRIGGER_FIELDS = ("type", "name", "enabled", "match", "expect", "parameters")


def _trigger(trigger: Any) -> list[str]:
    fields = trigger.model_dump(mode="json")
    fields["expect"] = sorted(fields["expect"])
    return [f"{name}: {_value(fields[name])}" for name in TRIGGER_FIELDS]


def _items(rows: list[list[str]], indent: str) -> list[str]:
    lines = []
    for row in rows:
        lines.append(f"{indent}- {row[0]}")
        lines += [f"{indent}  {line}" for line in row[1:]]
    return lines


def prefect_yaml(made: list[RunnerDeployment] | None = None) -> str:
    """config/prefect.yaml for ``prefect deploy``: the same deployments ``serve`` serves."""
    made = deployments() if made is None else made
    lines = [
        YAML_HEADER.format(
            timezone=runtime.calendar().config.timezone, heartbeat=HEARTBEAT_SECONDS
        ),
        "name: sidflows",
        f"prefect-version: {prefect.__version__}",
        "",
        "pull:",
        *(
            line
            for step in PULL_STEPS
            for name, fields in step.items()
            for line in (
                f"  - {name}:",
                *(f"      {key}: {_value(value)}" for key, value in fields.items()),
            )
        ),
        "",
        "deployments:",
    ]
    for deployment in made:
        summary = summary_line(deployment)
        if summary:
            lines.append(f"  # {summary}")
        lines += [
            f"  - name: {_value(deployment.name)}",
            f"    entrypoint: {_value(entrypoint(deployment))}",
            f"    tags: {_value(list(deployment.tags))}",
            f"    parameters: {_value(deployment.parameters or {})}",
            f"    work_pool: {_value(work_pool())}",
        ]
        schedules = [_schedule(s.schedule) for s in deployment.schedules or []]
        if schedules:
            lines += ["    schedules:", *_items(schedules, "      ")]
        triggers = [_trigger(t) for t in deployment.triggers or []]
        if triggers:
            lines += ["    triggers:", *_items(triggers, "      ")]
        lines.append("")
    return "\n".join(lines)
