"""A referral, a treatment change, a result: stored with the intents they give."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sidflows.documents import load_json_document
from sidflows.errors import InvalidInput
from sidflows.notify.messages import Notice
from sidflows.referral import parse_lab_report, parse_referral, parse_treatment_change
from sidflows.service.common import (
    Referred,
    queue,
)
from sidflows.store import intents, patients
from sidflows.store.db import session_scope
from sidflows.store.models import (
    PatientState,
)
from sidflows.unit import Unit


def refer(text: str | bytes, *, unit: Unit, actor: str, today: dt.date | None = None) -> Referred:
    """Validate and store a referral (nothing stored when it is refused).

    In the same transaction: the intent to start the child's pathway (unless the
    same referral's pathway has already run), carried out by whoever reaches
    Prefect first, once.
    """
    referral = parse_referral(text)
    document = load_json_document(text)
    digest = patients.document_digest(document)
    with session_scope() as session:
        result = patients.intake(session=session, referral=referral, document=document, actor=actor)
        ref = result.patient.ref
        if not (result.duplicate and result.patient.state != PatientState.referred):
            intents.add(
                session=session,
                kind="pathway",
                ref=ref,
                key=pathway_key(ref, digest),
                parameters={"ref": ref, "today": today.isoformat() if today else None},
            )
        if not result.duplicate:
            received = referral.received.isoformat()
            queue(
                session,
                unit,
                Notice(
                    "referral_received",
                    result.patient.ref,
                    {"service": referral.referrer.service, "received": received},
                    item_key=f"referral:{received}",
                    service=referral.referrer.service,
                ),
            )
        return Referred(ref, result.created, result.duplicate, digest, result.patient.state)


def pathway_key(ref: str, digest: str) -> str:
    """The pathway run's idempotency key: the same referral sent again finds its run."""
    return f"pathway:{ref}:{digest}"


def _replan_intent(session: Any, ref: str, reason: str, *, changed: bool) -> None:
    """A re-plan to run once for a change that changed the record.

    The same change sent again changes nothing and stores no intent (one re-plan). A change
    that does change the record always stores a new one, also when its document was seen
    before: A, then B, then A again is three changes of the record and three re-plans (a
    key of the document alone made the third a duplicate of the first, and it was lost).
    """
    if not changed:
        return
    key = f"replan:{ref}:{uuid.uuid4().hex}"
    intents.add(
        session=session,
        kind="replan",
        ref=ref,
        key=key[:300],
        parameters={"ref": ref, "reason": reason},
    )


def record_treatment_change(ref: str, text: str | bytes, *, actor: str) -> list[dict[str, Any]]:
    """Record the change and, in the same transaction, the intent to re-plan."""
    change = parse_treatment_change(text)
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        changes = patients.record_treatment_change(
            session=session, patient=patient, change=change, actor=actor
        )
        _replan_intent(session, ref, "treatment change", changed=bool(changes))
        return changes


def record_lab_result(ref: str, text: str | bytes, *, actor: str) -> int:
    """Store new results (``{"labs": [...]}``, shaped as a referral's labs); how many were new."""
    report = parse_lab_report(text)
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        if patient.state == PatientState.discharged:
            raise InvalidInput("ref", f"{ref} was discharged: refer the child again first")
        count = patients.record_lab_report(
            session=session, patient=patient, report=report, actor=actor
        )
        _replan_intent(session, ref, "new lab result", changed=count > 0)
        return count
