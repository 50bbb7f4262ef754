"""What the pathway writes for others to collect: FHIR plan Bundles, calendar feeds.

- ``export_plans``: each plan version of a child, when it is proposed and when it
  becomes active, as a FHIR Bundle (sidflows.fhir.plan_bundle) into
  SIDFLOWS_FHIR_EXPORT: a directory (one file per version and status, written
  whole then renamed; an existing file is not written again) or an http(s) URL
  (a POST per version and status, FHIR conditional create on the Bundle's stable
  identifier, recorded in the audit trail once accepted, retried by the task's
  retries). Refs only, unless SIDFLOWS_FHIR_EXPORT_IDENTITY says the target is secure.
- ``write_calendars``: the daily sweep's feeds into SIDFLOWS_CALENDAR_DIR.

Logs carry the ref only, never a URL or identity.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import runtime
from sidflows.service.calendars import write_atomically, write_feeds
from sidflows.settings import get_settings
from sidflows.store import db
from sidflows.store import exports as store
from sidflows.store.models import CarePlan, Patient
from sidflows.store.patients import get_patient
from sidflows.store.views import version_document

EXPORT_SYSTEM = "urn:sidflows:export"
HTTP_TIMEOUT = 30.0
# How far back the served feeds reach (so a calendar sees last month's cancellations).
FEED_PAST_DAYS = 31


def export_key(ref: str, plan: CarePlan) -> str:
    """The stable name of one export: ``<ref>-v<N>-<status>`` (a file name, an identifier)."""
    return f"{ref}-v{plan.version}-{plan.status}"


def _bundle(session: Any, patient: Patient, plan: CarePlan, identity: bool) -> dict[str, Any]:
    # The FHIR models load here, when a plan is exported: not in every flow-run process.
    from sidflows.fhir import plan_bundle

    calendar = runtime.unit().calendar.config
    bundle = plan_bundle(
        version_document(session=session, patient=patient, plan=plan),
        previous_version=store.previous_version(
            session=session, patient=patient, version=plan.version
        ),
        identity=store.identity_of(session=session, patient=patient) if identity else None,
        timezone=calendar.timezone,
        day_unit_opens=calendar.day_unit.opens,
    )
    # Which export this is: a receiver (FHIR conditional create) keeps each one once.
    bundle["identifier"] = {"system": EXPORT_SYSTEM, "value": export_key(patient.ref, plan)}
    return bundle


def _text(bundle: dict[str, Any]) -> bytes:
    return (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode()


@task(name="export-plan", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10)
def export_plans(ref: str) -> int:
    """The child's versions not yet exported in their present status; how many were written."""
    settings = get_settings()
    target = settings.fhir_export
    if not target:
        return 0
    identity = settings.fhir_export_identity
    http = target.lower().startswith(("http://", "https://"))
    written = 0
    with db.session_scope() as session:
        patient = get_patient(session=session, ref=ref)
        plans = store.versions_to_export(session=session, patient=patient)
    for plan in plans:
        key = export_key(ref, plan)
        if http:
            # One transaction per export: an accepted POST is recorded at once.
            with db.session_scope() as session:
                patient = get_patient(session=session, ref=ref)
                if store.was_exported(session=session, plan=plan, to="http"):
                    continue
                _post(target, _bundle(session, patient, plan, identity), key)
                store.record_export(
                    session=session,
                    patient=patient,
                    plan=plan,
                    to="http",
                    key=key,
                    identity=identity,
                    actor=runtime.ACTOR,
                )
        else:
            path = Path(target) / f"{key}.json"
            if path.exists():
                continue
            with db.session_scope() as session:
                patient = get_patient(session=session, ref=ref)
                write_atomically(path, _text(_bundle(session, patient, plan, identity)))
        written += 1
        get_run_logger().info("%s: plan v%s (%s) exported as FHIR", ref, plan.version, plan.status)
    return written


def _post(url: str, bundle: dict[str, Any], key: str) -> None:
    """POST the Bundle; a receiver that already holds this export answers 200 and keeps one."""
    response = httpx.post(
        url,
        content=_text(bundle),
        headers={
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
            "If-None-Exist": f"identifier={EXPORT_SYSTEM}|{key}",
        },
        timeout=HTTP_TIMEOUT,
    )
    if response.status_code >= 300:
        # The task's retries try again; the message names no URL (it may hold a token).
        raise RuntimeError(f"FHIR export {key}: the endpoint answered {response.status_code}")


@task(name="calendar-feeds", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def write_calendars(day: dt.date) -> int | None:
    """The feeds the unit serves, rewritten whole where they changed; None when off."""
    directory = get_settings().calendar_dir
    if directory is None:
        return None
    written = write_feeds(
        directory, unit=runtime.unit(), start=day - dt.timedelta(days=FEED_PAST_DAYS)
    )
    get_run_logger().info("calendar feeds: %d rewritten", len(written))
    return len(written)
