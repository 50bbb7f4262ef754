"""The CLI commands that touch the store and Prefect (``sidflows refer``, ``approve`` ...).

With PREFECT_API_URL set (a unit's ``prefect server start`` + ``sidflows serve``)
events go to the server and its triggers run the flows; without it the flows
run here, on Prefect's temporary local server.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.store import db

EXIT_OK = 0


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")


def _server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _day(value: str | None, field: str) -> dt.date | None:
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, f"not a date (expected YYYY-MM-DD): {value!r}") from None


def _by(value: str | None) -> str:
    return getpass.getuser() if value is None else value


@contextmanager
def _by_option() -> Iterator[None]:
    """A refusal by the staff roster names the option the person typed (``--by``)."""
    try:
        yield
    except InvalidInput as refusal:
        if refusal.field != "by":
            raise
        raise InvalidInput("--by", refusal.message) from None


def db_command(args: argparse.Namespace) -> int:
    revision = db.upgrade()
    _out(f"store at revision {revision}")
    return EXIT_OK


def refer(args: argparse.Namespace) -> int:
    from flows.cli import read_document
    from flows.pathway import run_pathway
    from flows.runtime import ensure_store

    text = read_document(args.file)
    ensure_store()
    referred = service.refer(text, actor=_by(None))
    if referred.duplicate:
        _out(f"{referred.ref}: this referral is already stored (nothing changed)")
    else:
        _out(
            f"{referred.ref}: referral stored "
            f"({'new child' if referred.created else 'known child, record updated'})"
        )
    today = _day(args.today, "--today")
    if _server_configured():
        from prefect.deployments import run_deployment

        from flows.runtime import PATHWAY_DEPLOYMENT, run_name, tags

        run = run_deployment(
            PATHWAY_DEPLOYMENT,
            parameters={"ref": referred.ref, "today": today},
            flow_run_name=run_name("pathway", referred.ref),
            tags=tags("pathway", referred.ref),
            timeout=0,
            as_subflow=False,
        )
        run_id = getattr(run, "id", "?")  # run_deployment returns the run outside an event loop
        _out(
            f"{referred.ref}: pathway run {run_id} started; the plan waits for approval "
            "(Prefect UI form, or sidflows approve)"
        )
        return EXIT_OK
    status = run_pathway(referred.ref, today=today)
    _out(f"{referred.ref}: {str(status).replace('_', ' ')}")
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    from flows.cli import print_json
    from flows.runtime import ensure_store
    from sidflows.store.patients import get_patient
    from sidflows.store.plans import show_document

    ensure_store()
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=args.ref)
        document = show_document(session=session, patient=patient)
        state = patient.state
    if args.json:
        print_json(
            document or {"patient_ref": args.ref, "plan_version": None, "patient_state": state}
        )
        return EXIT_OK
    if document is None:
        _out(f"{args.ref}: {state}, no plan yet")
        return EXIT_OK
    _out(
        f"{args.ref}: {state}; plan v{document['plan_version']} {document['plan_status']}"
        f"{' approved by ' + document['approved_by'] if document.get('approved_by') else ''}"
    )
    _out(
        f"  immunosuppression {document['grading']['level']}, "
        f"protocol {document['protocol_version']}"
    )
    for item in document["items"]:
        _out(f"  {item['due']}  {item['status']:<9} {item['key']}")
    for deferral in document["deferred"]:
        _out(f"  deferred {deferral['vaccine']} until {deferral['until'] or 'a cause ends'}")
    return EXIT_OK


async def _resume_pathway(ref: str, run_input: dict[str, Any]) -> bool:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.flow_runs import aresume_flow_run

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"ref:{ref}", "step:pathway"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.ID_DESC,
            limit=20,
        )
        for run in runs:
            await aresume_flow_run(run.id, run_input=run_input)
        return bool(runs)


def _activate_here_or_there(ref: str, run_input: dict[str, Any] | None) -> str:
    """Resume the suspended pathway run (a unit's server), or activate in this process."""
    if (
        _server_configured()
        and run_input is not None
        and asyncio.run(_resume_pathway(ref, run_input))
    ):
        return "the pathway run resumes with the answer"
    from flows.pathway import run_activate

    return run_activate(ref).replace("_", " ")


def approve(args: argparse.Namespace) -> int:
    from flows.runtime import ensure_store

    ensure_store()
    by = _by(args.by)
    with _by_option():
        result = service.decide(args.ref, decision="approve", by=by)
    _out(f"{args.ref}: {result.message}")
    if result.changed or (result.plan is not None and result.plan.status == "proposed"):
        run_input = {"decision": "approve", "approver": by}
        _out(f"{args.ref}: {_activate_here_or_there(args.ref, run_input)}")
    return EXIT_OK


def consent(args: argparse.Namespace) -> int:
    from flows.runtime import ensure_store

    ensure_store()
    with _by_option():
        recorded = service.consent(args.ref, by=_by(args.by))
    _out(
        f"{args.ref}: family consent to the cost "
        f"{'recorded' if recorded else 'was already recorded'}"
    )
    _out(f"{args.ref}: {_activate_here_or_there(args.ref, None)}")
    return EXIT_OK


def _replan_after(ref: str, reason: str) -> str:
    """Through the server's event trigger when there is one, else here."""
    if _server_configured():
        from prefect.events.worker import EventsWorker

        from flows.pathway import request_replan

        request_replan(ref, reason)
        EventsWorker.drain_all()
        return "re-plan requested (event sent; the replan deployment runs it)"
    from flows.pathway import run_replan

    return run_replan(ref, reason)


def treatment_change(args: argparse.Namespace) -> int:
    from flows.cli import read_document
    from flows.runtime import ensure_store

    text = read_document(args.file)
    ensure_store()
    changes = service.record_treatment_change(args.ref, text, actor=_by(None))
    for change in changes:
        _out(f"{args.ref}: {change['drug']} {change['action']}")
    _out(f"{args.ref}: {_replan_after(args.ref, 'treatment change')}")
    return EXIT_OK


def lab_result(args: argparse.Namespace) -> int:
    from flows.cli import read_document
    from flows.runtime import ensure_store

    text = read_document(args.file)
    ensure_store()
    count = service.record_lab_result(args.ref, text, actor=_by(None))
    _out(f"{args.ref}: {count} result(s) recorded")
    _out(f"{args.ref}: {_replan_after(args.ref, 'new lab result')}")
    return EXIT_OK


def sweep(args: argparse.Namespace) -> int:
    from flows.pathway import run_sweep
    from flows.runtime import ensure_store

    ensure_store()
    summary = run_sweep(_day(args.date, "--date"), reconcile=_server_configured())
    _out(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    from prefect import serve as prefect_serve

    from flows.deployments import deployments
    from flows.runtime import ensure_store
    from sidflows.settings import get_settings
    from sidflows.staff import load_staff

    ensure_store()
    load_staff(get_settings().staff)  # a bad roster stops here, not at the first approval
    prefect_serve(*deployments())
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(
        children=args.children,
        months=args.months,
        seed=args.seed,
        local_receivers=args.local_receivers,
    )
