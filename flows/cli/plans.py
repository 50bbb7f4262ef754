"""The commands that move a child's plan on: refer, show, approve, consent, treatment change,
lab result.

Each stores what it was given in one transaction (sidflows.service), with the
intent of what must follow in Prefect (a pathway, a re-plan), then asks the
orchestrator (flows/orchestrator.py) to carry this child's intents out: on the
unit's Prefect server, or here. When Prefect cannot be reached the command says
so and exits 0: the intent is stored, and `serve`'s every-minute pass or the
sweep carries it out. A document reaches these commands already validated
(flows/cli/parser.py reads it before it loads this module, the store or Prefect).
``show`` reads the store only: Prefect is imported by the commands that ask the
orchestrator for something (``_orchestrator``), not by this module.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from flows import runtime
from flows.cli.io import EXIT_OK, by, by_option, day, out, print_json
from flows.cli.local_server import before_prefect
from flows.runtime import ensure_store
from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.service.worklist import proposal_view
from sidflows.store import db, exports
from sidflows.store.models import PatientState
from sidflows.store.patients import get_patient
from sidflows.store.views import show_document

if TYPE_CHECKING:
    from flows.orchestrator import Orchestrator


def pick() -> Orchestrator:
    """The orchestrator (flows/orchestrator.py): Prefect is imported here, when one is needed,
    on the local server of ``sidflows server start`` when one answers."""
    before_prefect()
    from flows.orchestrator import pick as choose  # Prefect loads here: `show` stays light

    return choose()


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
    # --- the plan as FHIR (docs/fhir.md) ------------------------------------------------
    if getattr(args, "identity", False) and not getattr(args, "fhir", False):
        raise InvalidInput("--identity", "only with --fhir")
    if getattr(args, "fhir", False):
        return _show_fhir(args)
    # --- end of the plan as FHIR --------------------------------------------------------
    ensure_store()
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=args.ref)
        document = show_document(session=session, patient=patient)
        state = patient.state
        if document is not None:
            # The proposal waiting beside the active plan, what it changes; consent per version.
            document = {**document, **proposal_view(session=session, patient=patient)}
    # --- safety holds while a re-plan waits (docs/clinical-reference.md §4.8) ---------
    held = service.held(args.ref) if document is not None else []
    if document is not None:
        document["held"] = held
        reasons = {h["key"]: h for h in held}
        for entry in document["items"]:
            if entry["key"] in reasons:
                entry["hold"] = {
                    "reason": reasons[entry["key"]]["reason"],
                    "held_for": reasons[entry["key"]]["held_for"],
                }
    # --- end of safety holds ----------------------------------------------------------
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
        status = "held" if "hold" in item else item["status"]
        out(f"  {item['due']}  {status:<9} {item['key']}")
    for deferral in document["deferred"]:
        out(f"  deferred {deferral['vaccine']} until {deferral['until'] or 'a cause ends'}")
    # --- safety holds while a re-plan waits (docs/clinical-reference.md §4.8) ---------
    if held:
        waits = sorted({f"v{h['held_for']}" for h in held if h["held_for"] is not None})
        out(f"  held while plan {', '.join(waits)} waits for a clinician:")
        for h in held:
            out(f"    {h['due']}  {h['key']}: {h['reason']}")
    # --- end of safety holds ----------------------------------------------------------
    _show_proposal(document.get("proposal"))
    _show_consents(document.get("versions", []))
    return EXIT_OK


def _show_fhir(args: argparse.Namespace) -> int:
    """`show --fhir`: the current plan as a FHIR R4 collection Bundle; identity on request."""
    ensure_store()
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=args.ref)
        document = show_document(session=session, patient=patient)
        if document is None:
            raise InvalidInput("REF", f"{args.ref} has no plan yet")
        version = int(document["plan_version"])
        previous = exports.previous_version(session=session, patient=patient, version=version)
        identity = exports.identity_of(session=session, patient=patient) if args.identity else None
    # The FHIR models load for `show --fhir` only: every other command stays lighter.
    from sidflows.fhir import plan_bundle

    calendar = runtime.unit().calendar.config
    print_json(
        plan_bundle(
            document,
            previous_version=previous,
            identity=identity,
            timezone=calendar.timezone,
            day_unit_opens=calendar.day_unit.opens,
        )
    )
    return EXIT_OK


WAITING_FOR = {
    "approval": "waits for a clinician's approval",
    "consent": "approved, waits for the family's consent to the cost",
    "activation": "approved, waits for its activation (the sweep finishes it)",
}


def _changes(changes: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c['field']} {c['before']} -> {c['after']}" for c in changes)


def _show_proposal(proposal: dict[str, Any] | None) -> None:
    """`show`: the version waiting beside the active plan, and what it changes (item by item)."""
    if proposal is None:
        return
    head = f"  proposal v{proposal['version']} ({proposal['reason']}) "
    head += WAITING_FOR[proposal["waiting_for"]]
    if proposal["against_version"] is None:
        out(f"{head}; first plan: no active plan to compare")
        return
    out(f"{head}; against active v{proposal['against_version']}:")
    for decision in proposal["decisions"]:
        out(f"    decision  {decision}")
    items = proposal["items"]
    for item in items["added"]:
        out(f"    added     {item['due']}  {item['key']}")
    for item in items["removed"]:
        out(f"    removed   {item['due']}  {item['key']}")
    for item in items["moved"]:
        renamed = f" (was {item['from_key']})" if item["from_key"] != item["key"] else ""
        extra = f"; {_changes(item['changes'])}" if item["changes"] else ""
        out(f"    moved     {item['from']} -> {item['to']}  {item['key']}{renamed}{extra}")
    for item in items["changed"]:
        out(f"    changed   {item['due']}  {item['key']}: {_changes(item['changes'])}")
    if not (proposal["decisions"] or any(items.values())):
        out("    no change to the items still to come or to the decisions")


def _show_consents(versions: list[dict[str, Any]]) -> None:
    """`show`: the family's consent to the cost, version by version (newest first)."""
    for v in versions:
        consent = str(v["consent"]).replace("_", " ")
        if v["consent_recorded_at"]:
            consent += f" {v['consent_recorded_at'][:10]} by {v['consent_recorded_by']}"
        out(f"  v{v['version']} {v['status']:<10} consent {consent}")


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
    out(f"{args.ref}: {pick().replan(args.ref, 'treatment change', new=bool(changes))}")
    return EXIT_OK


def lab_result(args: argparse.Namespace) -> int:
    ensure_store()
    count = service.record_lab_result(args.ref, args.document, actor=by(None))
    out(f"{args.ref}: {count} new result(s) recorded")
    out(f"{args.ref}: {pick().replan(args.ref, 'new lab result', new=count > 0)}")
    return EXIT_OK
