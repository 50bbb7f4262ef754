"""Only the pseudonymous ref reaches Prefect: no name, record number or birth date."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from processes import everything_prefect_holds

from flows.deployments import register
from flows.item import run_item
from flows.referral import run_activate, run_pathway
from flows.replan import run_replan
from flows.sweep import run_sweep
from sidflows import service
from sidflows.store import db
from sidflows.store.patients import get_patient
from sidflows.store.views import show_document
from sidflows.testing.cohort import synthetic_referrals
from sidflows.unit import Unit

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module", autouse=True)
def deployments(prefect_server: str) -> None:
    """The deployments on the test server, as `sidflows serve` makes them (runs go into them)."""
    register()


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
        refs.append(service.refer(json.dumps(document), unit=Unit(), actor="test").ref)
    for ref in refs:
        run_pathway(ref, today=TODAY)
        service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
        service.consent(ref, unit=Unit(), by="coordinator")
        run_activate(ref)
        with db.session_scope() as session:
            doc = show_document(session=session, patient=get_patient(session=session, ref=ref))
        assert doc is not None
        first = doc["items"][0]
        run_item(
            ref,
            doc["plan_version"],
            first["key"],
            first["kind"],
            outcome={"result": "given", "lot": "L1", "dose_g": first.get("dose_g")},
            today=dt.date.fromisoformat(first["due"]),
        )
        run_replan(ref, "plan review", TODAY)
    run_sweep(TODAY)
    time.sleep(6)  # the server persists events in batches
    held = everything_prefect_holds(prefect_server)
    assert all(ref in held for ref in refs)  # the check itself sees the data
    leaked = sorted(s for s in secrets if s in held)
    assert leaked == []
