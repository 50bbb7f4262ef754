"""The CLI commands that touch the store and Prefect (``sidflows refer``, ``approve`` ...).

With PREFECT_API_URL set (a unit's ``prefect server start`` + ``sidflows serve``)
events go to the server and its triggers run the flows; without it the flows
run here, on Prefect's temporary local server.

A command that reads a document validates it before it loads the store or
Prefect (each imported where it is used): bad input is refused fast, and
nothing of the store is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sidflows.errors import InvalidInput
from sidflows.referral import iso_day

EXIT_OK = 0


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")


def _server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _day(value: str | None, field: str) -> dt.date | None:
    return None if value is None else iso_day(value, field)


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


def _checked(path: str, parse: Callable[[bytes], object]) -> bytes:
    """The document at FILE, refused (InvalidInput, exit 2) before the store is even loaded."""
    from flows.cli import read_document

    text = read_document(path)
    parse(text)
    return text


def db_command(args: argparse.Namespace) -> int:
    from sidflows.store import db

    revision = db.upgrade()
    _out(f"store at revision {revision}")
    return EXIT_OK


def refer(args: argparse.Namespace) -> int:
    from sidflows.referral import parse_referral

    today = _day(args.today, "--today")
    return _refer(_checked(args.file, parse_referral), today)


def _refer(text: bytes, today: dt.date | None) -> int:
    from flows.runtime import ensure_store
    from sidflows import service
    from sidflows.store.models import PatientState

    ensure_store()
    referred = service.refer(text, actor=_by(None))
    if referred.duplicate:
        _out(f"{referred.ref}: this referral is already stored (nothing changed)")
        if referred.state != PatientState.referred:
            _out(f"{referred.ref}: its pathway has already run ({referred.state}); no new run")
            return EXIT_OK
    else:
        _out(
            f"{referred.ref}: referral stored "
            f"({'new child' if referred.created else 'known child, record updated'})"
        )
    if _server_configured():
        from prefect.deployments import run_deployment

        from flows.runtime import PATHWAY_DEPLOYMENT, run_name, tags

        run = run_deployment(
            PATHWAY_DEPLOYMENT,
            parameters={"ref": referred.ref, "today": today},
            flow_run_name=run_name("pathway", referred.ref),
            tags=tags("pathway", referred.ref),
            # The same referral sent again finds the run it started (Prefect keeps one per key).
            idempotency_key=f"pathway:{referred.ref}:{referred.sha256}",
            timeout=0,
            as_subflow=False,
        )
        run_id = getattr(run, "id", "?")  # run_deployment returns the run outside an event loop
        _out(
            f"{referred.ref}: pathway run {run_id}; the plan waits for approval "
            "(Prefect UI form, or sidflows approve)"
        )
        return EXIT_OK
    from flows.pathway import run_pathway

    status = run_pathway(referred.ref, today=today)
    _out(f"{referred.ref}: {str(status).replace('_', ' ')}")
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    from flows.cli import print_json
    from flows.runtime import ensure_store
    from sidflows.store import db
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
    from sidflows import service

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
    from sidflows import service

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
    from sidflows.referral import parse_treatment_change

    return _treatment_change(args.ref, _checked(args.file, parse_treatment_change))


def _treatment_change(ref: str, text: bytes) -> int:
    from flows.runtime import ensure_store
    from sidflows import service

    ensure_store()
    changes = service.record_treatment_change(ref, text, actor=_by(None))
    for change in changes:
        _out(f"{ref}: {change['drug']} {change['action']}")
    if not changes:
        _out(f"{ref}: this treatment change is already recorded (nothing changed)")
    _out(f"{ref}: {_replan_after(ref, 'treatment change')}")
    return EXIT_OK


def lab_result(args: argparse.Namespace) -> int:
    from sidflows.referral import parse_lab_report

    return _lab_result(args.ref, _checked(args.file, parse_lab_report))


def _lab_result(ref: str, text: bytes) -> int:
    from flows.runtime import ensure_store
    from sidflows import service

    ensure_store()
    count = service.record_lab_result(ref, text, actor=_by(None))
    _out(f"{ref}: {count} new result(s) recorded")
    _out(f"{ref}: {_replan_after(ref, 'new lab result')}")
    return EXIT_OK


def sweep(args: argparse.Namespace) -> int:
    from flows.pathway import run_sweep
    from flows.runtime import ensure_store

    day = _day(args.date, "--date")
    ensure_store()
    summary = run_sweep(day, reconcile=_server_configured())
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
