"""The commands that move a child's plan on: refer, show, approve, consent, treatment change,
lab result.

Each stores what it was given in one transaction (sidflows.service), with the
intent of what must follow in Prefect (a pathway, a re-plan), then asks the
orchestrator (flows/orchestrator.py) to carry this child's intents out: on the
unit's Prefect server, or here. When Prefect cannot be reached the command says
so and exits 0: the intent is stored, and `serve`'s every-minute pass or the
sweep carries it out. A document reaches these commands already validated
(flows/cli/parser.py reads it before it loads this module, the store or Prefect).
"""

from __future__ import annotations

import argparse

from flows import runtime
from flows.cli.io import EXIT_OK, by, by_option, day, out, print_json
from flows.orchestrator import pick
from flows.runtime import ensure_store
from sidflows import service
from sidflows.store import db
from sidflows.store.models import PatientState
from sidflows.store.patients import get_patient
from sidflows.store.views import show_document


def refer(args: argparse.Namespace) -> int:
    today = day(args.today, "--today")
    ensure_store()
    referred = service.refer(args.document, unit=runtime.unit(), actor=by(None), today=today)
    if referred.duplicate:
        out(f"{referred.ref}: this referral is already stored (nothing changed)")
        if referred.state != PatientState.referred:
            out(f"{referred.ref}: its pathway has already run ({referred.state}); no new run")
            return EXIT_OK
    else:
        out(
            f"{referred.ref}: referral stored "
            f"({'new child' if referred.created else 'known child, record updated'})"
        )
    out(f"{referred.ref}: {pick().start_pathway(referred, today=today)}")
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
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
        out(f"{args.ref}: {state}, no plan yet")
        return EXIT_OK
    out(
        f"{args.ref}: {state}; plan v{document['plan_version']} {document['plan_status']}"
        f"{' approved by ' + document['approved_by'] if document.get('approved_by') else ''}"
    )
    out(
        f"  immunosuppression {document['grading']['level']}, "
        f"protocol {document['protocol_version']}"
    )
    for item in document["items"]:
        out(f"  {item['due']}  {item['status']:<9} {item['key']}")
    for deferral in document["deferred"]:
        out(f"  deferred {deferral['vaccine']} until {deferral['until'] or 'a cause ends'}")
    return EXIT_OK


def approve(args: argparse.Namespace) -> int:
    ensure_store()
    approver = by(args.by)
    with by_option():
        result = service.decide(args.ref, unit=runtime.unit(), decision="approve", by=approver)
    out(f"{args.ref}: {result.message}")
    if result.changed or (result.plan is not None and result.plan.status == "proposed"):
        answer = {"decision": "approve", "approver": approver}
        out(f"{args.ref}: {pick().answered(args.ref, answer)}")
    return EXIT_OK


def consent(args: argparse.Namespace) -> int:
    ensure_store()
    with by_option():
        recorded = service.consent(args.ref, unit=runtime.unit(), by=by(args.by))
    out(
        f"{args.ref}: family consent to the cost "
        f"{'recorded' if recorded else 'was already recorded'}"
    )
    out(f"{args.ref}: {pick().answered(args.ref, None)}")
    return EXIT_OK


def treatment_change(args: argparse.Namespace) -> int:
    ensure_store()
    changes = service.record_treatment_change(args.ref, args.document, actor=by(None))
    for change in changes:
        out(f"{args.ref}: {change['drug']} {change['action']}")
    if not changes:
        out(f"{args.ref}: this treatment change is already recorded (nothing changed)")
    out(f"{args.ref}: {pick().replan(args.ref, 'treatment change')}")
    return EXIT_OK


def lab_result(args: argparse.Namespace) -> int:
    ensure_store()
    count = service.record_lab_result(args.ref, args.document, actor=by(None))
    out(f"{args.ref}: {count} new result(s) recorded")
    out(f"{args.ref}: {pick().replan(args.ref, 'new lab result')}")
    return EXIT_OK
