"""A unit's store with something in every list of the worklist, written row by row.

The worklist reads the store as the pathway leaves it; this builds that state
directly (children, active and proposed plans, items, chairs, doses, consents,
intents, outbox messages) so each section has known contents on ``DAY``. Every
child has an identity, a birth date and a record number that must never appear
in the worklist's output (``SECRETS``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sidflows.store import db
from sidflows.store.models import (
    Booking,
    CarePlan,
    CostConsent,
    Identity,
    IgDose,
    Intent,
    Notification,
    Patient,
    PlanItem,
)
from sidflows.store.views import stream_of

DAY = dt.date(2027, 1, 12)  # a Tuesday, a working day in Catalonia
BIRTH = dt.date(2015, 3, 14)
SECRETS = ("Secret Child", "MRN-SECRET", BIRTH.isoformat())
NOON = dt.time(12, 0, tzinfo=dt.UTC)
AGO = dt.timedelta


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, NOON)


def item(kind: str, key: str, due: dt.date, status: str = "scheduled", **details: Any) -> dict:
    hospital = details.pop("hospital", details.get("setting") != "home")
    return {"kind": kind, "key": key, "due": due, "status": status, "hospital": hospital, **details}


def iv(due: dt.date, grams: float, per_kg: float, minutes: int, **extra: Any) -> dict:
    return item(
        "ig_session",
        f"ig_session:{due}",
        due,
        route="iv",
        dose_g=grams,
        dose_g_per_kg=per_kg,
        setting="day_unit",
        session_minutes=minutes,
        loading=False,
        **extra,
    )


def sc(due: dt.date, setting: str, grams: float = 8.0) -> dict:
    return item(
        "ig_session",
        f"ig_session:{due}",
        due,
        route="sc",
        dose_g=grams,
        dose_g_per_kg=0.2,
        setting=setting,
        session_minutes=None,
        loading=False,
    )


def document(items: list[dict], *, consent_required: bool = True) -> dict[str, Any]:
    return {
        "patient_ref": "",
        "protocol_version": "test",
        "as_of": "2026-12-01",
        "horizon_end": "2027-12-01",
        "grading": {"level": "low", "transient": False, "reasons": []},
        "decisions": [],
        "items": [_plain(i) for i in items],
        "deferred": [],
        "funding": {
            "not_publicly_funded": ["ig_session"] if consent_required else [],
            "consent_required": consent_required,
            "consent_recorded": False,
        },
    }


def _plain(spec: dict) -> dict[str, Any]:
    """An item spec as the plan document holds it: dates as text, no store state."""
    return {
        k: (v.isoformat() if isinstance(v, dt.date) else v)
        for k, v in spec.items()
        if k != "status"
    }


@dataclass
class Child:
    ref: str
    state: str = "active"
    active: list[dict] | None = None  # the active plan's items (None: no active plan)
    proposed: bool = False
    approved: bool = False
    consent: bool | None = None  # the family's answer on record (None: none)
    consent_required: bool = True
    proposed_on: dt.date = DAY
    chairs: dict[str, tuple[int, int]] = field(default_factory=dict)  # key: (chair, minutes)
    holds: dict[str, tuple[str, int]] = field(default_factory=dict)  # key: (why, version)
    ig_doses: list[dt.date] = field(default_factory=list)
    superseded: list[dict] = field(default_factory=list)  # items of an old version


def add_children(url: str, children: list[Child]) -> None:
    with db.session_scope(url) as session:
        for child in children:
            patient = Patient(
                ref=child.ref,
                birth_date=BIRTH,
                sex="female",
                weight_kg=27.0,
                diagnosis_category="oncology",
                diagnosis_label="acute lymphoblastic leukaemia",
                referrer_service="oncology",
                state=child.state,
            )
            session.add(patient)
            session.flush()
            assert patient.id is not None
            session.add(Identity(patient_id=patient.id, name=SECRETS[0], mrn=SECRETS[1]))
            version = 0
            if child.superseded:
                version += 1
                _plan(session, patient, version, "superseded", child.superseded, child)
            if child.active is not None:
                version += 1
                _plan(session, patient, version, "active", child.active, child)
            if child.proposed:
                version += 1
                row = CarePlan(
                    patient_id=patient.id,
                    version=version,
                    status="proposed",
                    as_of=child.proposed_on,
                    protocol_version="test",
                    reason="new lab result" if child.active is not None else "referral",
                    document=document(
                        # One item, funded or not: what needs_consent reads.
                        [
                            item(
                                "plan_review",
                                f"plan_review:{DAY + AGO(90)}",
                                DAY + AGO(90),
                                reason="periodic review",
                                publicly_funded=not child.consent_required,
                            )
                        ],
                        consent_required=child.consent_required,
                    ),
                    approved_by="Dr Test Clinician" if child.approved else None,
                    approved_at=at(child.proposed_on) if child.approved else None,
                    created_at=at(child.proposed_on),
                )
                session.add(row)
            if child.consent is not None:
                session.add(
                    CostConsent(
                        patient_id=patient.id,
                        accepted=child.consent,
                        recorded_by="Family Liaison",
                        source="test",
                    )
                )
            for given in child.ig_doses:
                session.add(IgDose(patient_id=patient.id, date=given, g_per_kg=0.4, route="iv"))


def _plan(
    session: Any, patient: Patient, version: int, status: str, items: list[dict], child: Child
) -> None:
    assert patient.id is not None
    plan = CarePlan(
        patient_id=patient.id,
        version=version,
        status=status,
        as_of=dt.date(2026, 12, 1),
        protocol_version="test",
        reason="referral",
        document=document(items, consent_required=child.consent_required),
        approved_by="Dr Test Clinician",
        approved_at=at(dt.date(2026, 12, 1)),
        activated_at=at(dt.date(2026, 12, 1)),
    )
    session.add(plan)
    session.flush()
    assert plan.id is not None
    for spec in items:
        details = _plain(spec)
        why, held_for = child.holds.get(spec["key"], (None, None))
        row = PlanItem(
            plan_id=plan.id,
            patient_id=patient.id,
            key=spec["key"],
            kind=spec["kind"],
            stream=stream_of(details),
            due=spec["due"],
            hospital=spec["hospital"],
            status=spec["status"],
            details=details,
            hold_reason=why,
            held_for=held_for,
        )
        session.add(row)
        session.flush()
        if spec["key"] in child.chairs and status == "active":
            chair, minutes = child.chairs[spec["key"]]
            assert row.id is not None
            session.add(Booking(item_id=row.id, day=spec["due"], chair=chair, minutes=minutes))


def add_intent(url: str, ref: str, kind: str = "pathway", attempts: int = 3) -> None:
    with db.session_scope(url) as session:
        session.add(
            Intent(
                key=f"{kind}:{ref}:test",
                kind=kind,
                ref=ref,
                parameters={"ref": ref},
                attempts=attempts,
                last_error="ConnectError: [Errno 111] Connection refused",
                created_at=at(DAY - dt.timedelta(days=1)),
            )
        )


def add_message(url: str, ref: str | None, route: str, status: str, event: str) -> None:
    with db.session_scope(url) as session:
        session.add(
            Notification(
                key=f"{event}|{ref}|-|v1|{route}|{status}",
                event=event,
                ref=ref,
                route=route,
                subject=f"sidflows {event} {ref}",
                body="-",
                status=status,
                attempts=6 if status == "failed" else 0,
                last_error="HTTP 500" if status == "failed" else f"no route for {route}",
                created_at=at(DAY - dt.timedelta(days=2)),
            )
        )


def add_replaced(url: str, ref: str, key: str, *, attempts: int, days_ago: int) -> None:
    """The outbox rows a replaced run writes (service/day.py runs_replaced): one per
    route and attempt, event item_run_replaced."""
    with db.session_scope(url) as session:
        for attempt in range(1, attempts + 1):
            for route in ("coordinators", "day_unit"):
                session.add(
                    Notification(
                        key=f"item_run_replaced|{ref}|{key}|v1|{route}|attempt{attempt}",
                        event="item_run_replaced",
                        ref=ref,
                        item_key=key,
                        plan_version=1,
                        route=route,
                        subject=f"sidflows: {ref} {key} has a fresh run",
                        body="-",
                        status="sent",
                        created_at=at(DAY - dt.timedelta(days=days_ago)),
                    )
                )


def unit_scenario(url: str) -> None:
    """The unit of the worklist tests (what each list holds on DAY: see the tests)."""
    d = DAY
    add_children(
        url,
        [
            # Day unit: two IV sessions today; one never had IG (first), one had it 4 weeks ago.
            Child(
                "DU-1",
                active=[iv(d, 11.0, 0.41, 184), iv(d + AGO(28), 11.0, 0.41, 164)],
                chairs={f"ig_session:{d}": (2, 184), f"ig_session:{d + AGO(28)}": (1, 164)},
            ),
            Child(
                "DU-2",
                active=[iv(d, 20.5, 0.54, 150), iv(d - AGO(5), 20.5, 0.54, 150)],
                chairs={f"ig_session:{d}": (1, 150), f"ig_session:{d - AGO(5)}": (3, 150)},
                ig_doses=[d - AGO(28)],
            ),
            # Home care: a supervised SC session (the nurse's visit) and a home one.
            Child("HC-1", active=[sc(d, "supervised")]),
            Child("HC-2", active=[sc(d, "home", 6.0)]),
            # Labs: a trough and a reassessment.
            Child(
                "LB-1",
                active=[
                    item("ig_trough", f"ig_trough:{d}", d, target_g_l=7.0),
                    item("reassessment", f"reassessment:{d}", d, panel=["IgG", "CD19"]),
                ],
            ),
            # Vaccines: an inactivated one today, a live one held by a safety hold, one overdue.
            Child(
                "VX-1",
                active=[
                    item("vaccine_dose", "vaccine_dose:PCV:2", d, vaccine="PCV", dose_number=2),
                    item(
                        "vaccine_dose",
                        "vaccine_dose:MMR:1",
                        d,
                        vaccine="MMR",
                        dose_number=1,
                        live=True,
                    ),
                    item(
                        "vaccine_dose",
                        "vaccine_dose:HepB:3",
                        d - AGO(10),
                        vaccine="HepB",
                        dose_number=3,
                        live=False,
                    ),
                    item(
                        "vaccine_dose",
                        "vaccine_dose:DTaP:3",
                        d - AGO(30),
                        "done",
                        vaccine="DTaP",
                        dose_number=3,
                    ),
                    item(
                        "vaccine_dose",
                        "vaccine_dose:Hib:3",
                        d,
                        "cancelled",
                        vaccine="Hib",
                        dose_number=3,
                    ),
                ],
                holds={"vaccine_dose:MMR:1": ("live vaccine after a new anti-CD20 (§4.8)", 3)},
                superseded=[
                    item("vaccine_dose", "vaccine_dose:IPV:1", d, vaccine="IPV", dose_number=1)
                ],
                proposed=True,
            ),
            # Other work (coordinator): a plan review and a prophylaxis start.
            Child(
                "OT-1",
                active=[
                    item("plan_review", f"plan_review:{d}", d, reason="periodic review"),
                    item(
                        "prophylaxis",
                        "prophylaxis:co-trimoxazole",
                        d,
                        drug="co-trimoxazole",
                        regimen="TMP 68 mg",
                        review="2027-04-01",
                        indication="ALL",
                    ),
                ],
            ),
            # Plans waiting: a first plan for a clinician (3 days), a re-plan for one (today),
            # one for the family's consent, one approved and consented but not active.
            Child("AP-1", state="awaiting_approval", proposed=True, proposed_on=d - AGO(3)),
            Child("AP-2", active=[], proposed=True, proposed_on=d),
            Child(
                "CS-1",
                state="awaiting_consent",
                proposed=True,
                approved=True,
                proposed_on=d - AGO(2),
            ),
            Child(
                "CS-2",
                state="awaiting_consent",
                proposed=True,
                approved=True,
                consent=False,
                proposed_on=d - AGO(1),
            ),
            Child(
                "UA-1",
                state="awaiting_consent",
                proposed=True,
                approved=True,
                consent=True,
                proposed_on=d - AGO(1),
            ),
            # Discharged: nothing of theirs is waiting.
            Child("DC-1", state="discharged", active=None),
        ],
    )
    add_intent(url, "AP-1")
    add_message(url, "DU-1", "day_unit", "failed", "item_reminder")
    add_message(url, "AP-1", "clinicians", "unrouted", "plan_awaiting_approval")
    add_message(url, "DU-1", "coordinators", "sent", "plan_activated")
    # Runs replaced: DU-2's session twice this week, HC-1's once 10 days ago (not listed).
    add_replaced(url, "DU-2", f"ig_session:{d - AGO(5)}", attempts=2, days_ago=1)
    add_replaced(url, "HC-1", f"ig_session:{d}", attempts=1, days_ago=10)
