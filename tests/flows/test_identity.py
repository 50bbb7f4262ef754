"""Only the pseudonymous ref reaches Prefect: no name, record number or birth date."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
import pytest

from flows import pathway as p
from sidflows import service
from sidflows.cohort import synthetic_referrals
from sidflows.store import db
from sidflows.store.patients import get_patient
from sidflows.store.plans import show_document

pytestmark = pytest.mark.prefect
TODAY = dt.date(2026, 11, 24)


def everything_prefect_holds(base: str) -> str:
    """Runs, task runs, logs, artifacts, events, deployments: all of it, as text."""
    dumps: list[Any] = []
    for path, body in (
        ("/flow_runs/filter", {"sort": "ID_DESC"}),
        ("/task_runs/filter", {"sort": "ID_DESC"}),
        ("/logs/filter", {"sort": "TIMESTAMP_ASC"}),
        ("/artifacts/filter", {"sort": "ID_DESC"}),
        ("/deployments/filter", {"sort": "NAME_ASC"}),
        ("/automations/filter", {}),
    ):
        offset = 0
        while True:
            response = httpx.post(
                f"{base}{path}", json={"limit": 200, "offset": offset, **body}, timeout=30
            )
            response.raise_for_status()
            page = response.json()
            dumps.append(page)
            if len(page) < 200:
                break
            offset += 200
    response = httpx.post(f"{base}/events/filter", json={"limit": 50}, timeout=30)
    response.raise_for_status()
    page = response.json()
    dumps.append(page["events"])
    while page.get("next_page"):
        response = httpx.get(page["next_page"], timeout=30)
        response.raise_for_status()
        page = response.json()
        dumps.append(page["events"])
    return json.dumps(dumps)


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
