"""Only the pseudonymous ref reaches Prefect: no name, record number or birth date."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from processes import everything_prefect_holds

from flows import pathway as p
from sidflows import service
from sidflows.cohort import synthetic_referrals
from sidflows.store import db
from sidflows.store.patients import get_patient
from sidflows.store.plans import show_document

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)


def test_no_identity_anywhere_in_prefect(prefect_server: str, store: str) -> None:
    """A whole pathway with identity values leaves none of them in Prefect's API."""
    documents = list(
        synthetic_referrals(3, seed=11, received=TODAY - dt.timedelta(days=2), prefix="ID")
    )
    secrets: set[str] = set()
    refs = []
    for document in documents:
        secrets |= {
            document["identity"]["name"],
            document["identity"]["mrn"],
            document["patient"]["birth_date"],
        }
        secrets |= {part for part in document["identity"]["name"].split() if len(part) > 3}
        refs.append(service.refer(json.dumps(document), actor="test").ref)
    for ref in refs:
        p.run_pathway(ref, today=TODAY)
        service.decide(ref, decision="approve", by="Dr Test")
        service.consent(ref, by="coordinator")
        p.run_activate(ref)
        with db.session_scope() as session:
            doc = show_document(session=session, patient=get_patient(session=session, ref=ref))
        assert doc is not None
        first = doc["items"][0]
        p.run_item(
            ref,
            doc["plan_version"],
            first["key"],
            first["kind"],
            outcome={"result": "given", "lot": "L1", "dose_g": first.get("dose_g")},
            today=dt.date.fromisoformat(first["due"]),
        )
        p.run_replan(ref, "plan review", TODAY)
    p.run_sweep(TODAY)
    time.sleep(6)  # the server persists events in batches
    held = everything_prefect_holds(prefect_server)
    assert all(ref in held for ref in refs)  # the check itself sees the data
    leaked = sorted(s for s in secrets if s in held)
    assert leaked == []
