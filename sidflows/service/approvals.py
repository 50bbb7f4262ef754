"""What the approval page (single sign-on, docs/sso.md) reads: the plans waiting for a
clinician, and one proposal with its decisions, its items and what it changes.

Store reads only; the page's answer goes through ``service.decide`` with the proven
identity. Refs only, unless the unit's setting shows identity on its protected page.
"""

from __future__ import annotations

from typing import Any

from sidflows.errors import InvalidInput
from sidflows.service.plans import held
from sidflows.service.worklist import proposal_view
from sidflows.store import exports, patients
from sidflows.store import versions as plan_versions
from sidflows.store import worklist as store
from sidflows.store.db import session_scope
from sidflows.store.models import PlanStatus

LIMIT = 500


def waiting(*, limit: int = LIMIT) -> dict[str, Any]:
    """Proposed plans no clinician has answered: the longest waiting first."""
    with session_scope() as session:
        listed = store.awaiting_approval(session=session, limit=limit)
    return {
        "count": listed.count,
        "plans": [
            {
                "ref": p.ref,
                "version": p.version,
                "reason": p.reason,
                "replan": p.replan,
                "since": p.proposed_at,
            }
            for p in listed.rows
        ],
    }


def proposal(ref: str, *, identity: bool = False) -> dict[str, Any]:
    """The child's proposed plan as the clinician answers it; ``InvalidInput`` on ``ref``
    when none waits for approval (answered already, or never proposed)."""
    with session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        proposed = plan_versions.latest_plan(
            session=session, patient=patient, status=PlanStatus.proposed
        )
        if proposed is None or proposed.approved_by is not None:
            answered = "" if proposed is None else f" (v{proposed.version} was approved)"
            raise InvalidInput("ref", f"{ref} has no plan waiting for approval{answered}")
        view = proposal_view(session=session, patient=patient)
        who = exports.identity_of(session=session, patient=patient) if identity else None
        document = dict(proposed.document)
        version, reason = proposed.version, proposed.reason
    return {
        "ref": ref,
        "version": version,
        "reason": reason,
        "document": document,
        "changes": view["proposal"],
        "held": held(ref),
        "identity": who,
    }
