"""Children in the store: intake of referrals, the clinical record, consent.

Data-access functions take keyword-only arguments and know nothing of Prefect.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, SQLModel, col, select

from sidflows.errors import InvalidInput, UnknownPatient
from sidflows.referral import LabReport, ReferralDocument, TreatmentChange, validate_referral
from sidflows.store.audit import audit
from sidflows.store.models import (
    BloodProduct,
    CostConsent,
    Identity,
    IgDose,
    Infection,
    Lab,
    Patient,
    PatientState,
    Treatment,
    Vaccination,
    utcnow,
)
from sidflows.store.models import Referral as ReferralRow


@dataclass(frozen=True)
class Intake:
    patient: Patient
    created: bool
    duplicate: bool


def document_digest(document: dict[str, Any]) -> str:
    """The same referral (identity aside) always has the same digest."""
    clinical = {k: v for k, v in document.items() if k != "identity"}
    canonical = json.dumps(clinical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def get_patient(*, session: Session, ref: str, lock: bool = False) -> Patient:
    """The child with that ref; ``lock`` holds the child until the transaction ends.

    PostgreSQL locks the row (FOR UPDATE). SQLite has no row locks and begins a
    transaction only at its first write, so what it read before could be stale by
    the time it writes: a no-op write takes the database's write lock first.
    """
    query = select(Patient).where(Patient.ref == ref)
    if lock:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("UPDATE patient SET ref = ref WHERE ref = :ref"), {"ref": ref})
        query = query.with_for_update()
    patient = session.exec(query).first()
    if patient is None:
        raise UnknownPatient(ref)
    return patient


def _treatment_row(patient_id: int, t: Any) -> Treatment:
    return Treatment(
        patient_id=patient_id,
        drug=t.drug,
        drug_class=t.drug_class,
        start=t.start,
        end=t.end,
        dose_mg_per_kg_day=t.dose_mg_per_kg_day,
        dose_mg_day=t.dose_mg_day,
        dose_mg_per_kg_week=t.dose_mg_per_kg_week,
        code=t.code,
        system=t.system,
    )


def _lab_values(lab: Any) -> dict[str, Any]:
    return {k: v for k, v in lab.model_dump(exclude={"date"}).items() if v is not None}


def intake(
    *, session: Session, referral: ReferralDocument, document: dict[str, Any], actor: str
) -> Intake:
    """Store a referral. The same document again is recognised and changes nothing."""
    digest = document_digest(document)
    existing = session.exec(
        select(ReferralRow).where(ReferralRow.document_sha256 == digest)
    ).first()
    if existing is not None:
        patient = session.get(Patient, existing.patient_id)
        assert patient is not None
        return Intake(patient, created=False, duplicate=True)
    patient = session.exec(select(Patient).where(Patient.ref == referral.ref)).first()
    created = patient is None
    if patient is None:
        patient = Patient(
            ref=referral.ref,
            birth_date=referral.patient.birth_date,
            sex=referral.patient.sex,
            weight_kg=referral.patient.weight_kg,
            diagnosis_category=referral.diagnosis.category,
            diagnosis_label=referral.diagnosis.label,
            diagnosis_code=referral.diagnosis.code,
            diagnosis_system=referral.diagnosis.system,
            referrer_service=referral.referrer.service,
        )
    elif patient.state == PatientState.discharged:
        patient.state = PatientState.referred  # a new referral reopens the pathway
    patient.weight_kg = referral.patient.weight_kg
    patient.hsct = referral.hsct.model_dump(mode="json") if referral.hsct else None
    patient.preferences = (
        referral.preferences.model_dump(mode="json") if referral.preferences else None
    )
    patient.updated_at = utcnow()
    session.add(patient)
    session.flush()
    assert patient.id is not None
    pid = patient.id
    if referral.identity is not None:
        identity = session.exec(select(Identity).where(Identity.patient_id == pid)).first()
        identity = identity or Identity(patient_id=pid)
        identity.name, identity.mrn = referral.identity.name, referral.identity.mrn
        session.add(identity)
    clinical = {k: v for k, v in document.items() if k != "identity"}
    session.add(
        ReferralRow(
            patient_id=pid,
            received=referral.received,
            referrer_clinician=referral.referrer.clinician,
            reason=referral.reason,
            document_sha256=digest,
            document=clinical,
        )
    )
    _merge_record(session, pid, referral)
    if referral.consent is not None:
        session.add(
            CostConsent(
                patient_id=pid,
                accepted=referral.consent.cost_accepted,
                recorded_by=referral.referrer.clinician or referral.referrer.service,
                source="referral",
            )
        )
    audit(
        session=session,
        actor=actor,
        entity="patient",
        entity_id=pid,
        ref=patient.ref,
        action="referral received" if created else "referral updated",
        after={"received": referral.received.isoformat(), "sha256": digest},
    )
    return Intake(patient, created=created, duplicate=False)


def _merge_record(session: Session, pid: int, referral: ReferralDocument) -> None:
    """Add what the referral knows that the store does not (never deletes history)."""
    for t in referral.treatments:
        _upsert_treatment(session, pid, t)
    known_labs = {
        (lab.date, json.dumps(lab.values, sort_keys=True))
        for lab in session.exec(select(Lab).where(Lab.patient_id == pid))
    }
    for lab in referral.labs:
        values = _lab_values(lab)
        if (lab.date, json.dumps(values, sort_keys=True)) not in known_labs:
            session.add(Lab(patient_id=pid, date=lab.date, values=values))
    _add_missing(
        session,
        Infection,
        pid,
        referral.infections,
        lambda x: (x.date, x.kind),
        lambda x: Infection(patient_id=pid, date=x.date, kind=x.kind, serious=x.serious),
    )
    _add_missing(
        session,
        IgDose,
        pid,
        referral.immunoglobulin_doses,
        lambda x: (x.date, x.route),
        lambda x: IgDose(patient_id=pid, date=x.date, g_per_kg=x.g_per_kg, route=x.route),
    )
    _add_missing(
        session,
        BloodProduct,
        pid,
        referral.blood_products,
        lambda x: (x.date, x.product),
        lambda x: BloodProduct(patient_id=pid, date=x.date, product=x.product),
    )
    _add_missing(
        session,
        Vaccination,
        pid,
        referral.vaccinations,
        lambda x: (x.date, x.vaccine),
        lambda x: Vaccination(patient_id=pid, vaccine=x.vaccine, date=x.date),
    )


def _add_missing(
    session: Session,
    model: Any,
    pid: int,
    incoming: tuple[Any, ...],
    key: Callable[[Any], tuple[Any, ...]],
    make: Callable[[Any], SQLModel],
) -> None:
    """Add the referral's events the store does not hold yet (matched by ``key``)."""
    known = {key(row) for row in session.exec(select(model).where(model.patient_id == pid))}
    for event in incoming:
        if key(event) not in known:
            session.add(make(event))


def _upsert_treatment(
    session: Session, pid: int, t: Any
) -> tuple[Treatment, dict[str, Any] | None]:
    row = session.exec(
        select(Treatment).where(
            Treatment.patient_id == pid, Treatment.drug == t.drug, Treatment.start == t.start
        )
    ).first()
    if row is None:
        row = _treatment_row(pid, t)
        session.add(row)
        return row, None
    before = row.model_dump(mode="json", exclude={"id", "patient_id"})
    fresh = _treatment_row(pid, t)
    for name in ("drug_class", "end", "dose_mg_per_kg_day", "dose_mg_day", "dose_mg_per_kg_week"):
        setattr(row, name, getattr(fresh, name))
    if fresh.code is not None:  # an entry without its code keeps the one recorded
        row.code, row.system = fresh.code, fresh.system
    session.add(row)
    return row, before


def record_treatment_change(
    *, session: Session, patient: Patient, change: TreatmentChange, actor: str
) -> list[dict[str, Any]]:
    """Apply a treatment change; returns what changed (for the re-plan and the audit).

    An entry the record already holds as it is changes nothing: the same change
    sent twice is recorded (and audited) once.
    """
    if patient.state == PatientState.discharged:
        raise InvalidInput("ref", f"{patient.ref} was discharged: refer the child again first")
    assert patient.id is not None
    changes: list[dict[str, Any]] = []
    for i, t in enumerate(change.treatments):
        if t.start < patient.birth_date:
            raise InvalidInput(f"treatments[{i}].start", "before birth_date")
        _row, before = _upsert_treatment(session, patient.id, t)
        after = _treatment_row(patient.id, t).model_dump(mode="json", exclude={"id", "patient_id"})
        if before == after:
            continue
        changes.append(
            {
                "drug": t.drug,
                "action": "added" if before is None else "updated",
                "before": before,
                "after": after,
            }
        )
    if not changes:
        return changes
    session.flush()
    audit(
        session=session,
        actor=actor,
        entity="patient",
        entity_id=patient.id,
        ref=patient.ref,
        action="treatment change",
        after={"date": change.date.isoformat(), "changes": changes},
    )
    return changes


def record_lab_report(
    *, session: Session, patient: Patient, report: LabReport, actor: str, item_id: int | None = None
) -> int:
    """Add the report's results the record does not hold yet (same day, same values).

    Returns how many were new: the same report sent twice is recorded (and audited) once.
    """
    assert patient.id is not None
    known = {
        (lab.date, json.dumps(lab.values, sort_keys=True))
        for lab in session.exec(select(Lab).where(Lab.patient_id == patient.id))
    }
    new = []
    for i, lab in enumerate(report.labs):
        if lab.date < patient.birth_date:
            raise InvalidInput(f"labs[{i}].date", "before birth_date")
        values = _lab_values(lab)
        if (lab.date, json.dumps(values, sort_keys=True)) not in known:
            known.add((lab.date, json.dumps(values, sort_keys=True)))
            session.add(Lab(patient_id=patient.id, date=lab.date, values=values, item_id=item_id))
            new.append(lab)
    if new:
        audit(
            session=session,
            actor=actor,
            entity="patient",
            entity_id=patient.id,
            ref=patient.ref,
            action="lab result",
            after={"labs": [lab.model_dump(mode="json", exclude_none=True) for lab in new]},
        )
    return len(new)


def record_consent(
    *, session: Session, patient: Patient, by: str, source: str = "command line"
) -> bool:
    """Record the family's consent to the cost. Returns False when it was already recorded."""
    assert patient.id is not None
    if has_consent(session=session, patient=patient):
        return False
    session.add(CostConsent(patient_id=patient.id, accepted=True, recorded_by=by, source=source))
    audit(
        session=session,
        actor=by,
        entity="patient",
        entity_id=patient.id,
        ref=patient.ref,
        action="cost consent recorded",
        after={"accepted": True, "source": source},
    )
    return True


def has_consent(*, session: Session, patient: Patient) -> bool:
    latest = session.exec(
        select(CostConsent)
        .where(CostConsent.patient_id == patient.id)
        .order_by(col(CostConsent.id).desc())
    ).first()
    return bool(latest and latest.accepted)


def referral_for(*, session: Session, patient: Patient, today: dt.date) -> ReferralDocument:
    """The child's whole record as a referral document, as of ``today``, for the rules."""
    pid = patient.id
    rows = session.exec(
        select(ReferralRow)
        .where(ReferralRow.patient_id == pid)
        .order_by(col(ReferralRow.id).desc())
    ).first()
    referrer = (rows.document.get("referrer") if rows else None) or {
        "service": patient.referrer_service
    }

    def dated(model: Any) -> list[Any]:
        return list(session.exec(select(model).where(model.patient_id == pid).order_by(model.date)))

    treatments = session.exec(
        select(Treatment).where(Treatment.patient_id == pid).order_by(col(Treatment.start))
    ).all()
    events = [
        *dated(Lab),
        *dated(Infection),
        *dated(IgDose),
        *dated(BloodProduct),
        *dated(Vaccination),
    ]
    received = max([today, *(e.date for e in events)])
    document: dict[str, Any] = {
        "patient": {
            "ref": patient.ref,
            "birth_date": patient.birth_date.isoformat(),
            "sex": patient.sex,
            "weight_kg": patient.weight_kg,
        },
        "received": received.isoformat(),
        "referrer": referrer,
        "diagnosis": {
            "category": patient.diagnosis_category,
            "label": patient.diagnosis_label,
            **(
                {"code": patient.diagnosis_code, "system": patient.diagnosis_system}
                if patient.diagnosis_code
                else {}
            ),
        },
        "treatments": [
            {
                "drug": t.drug,
                "class": t.drug_class,
                "start": t.start.isoformat(),
                "end": t.end.isoformat() if t.end else None,
                **{
                    k: v
                    for k, v in (
                        ("dose_mg_per_kg_day", t.dose_mg_per_kg_day),
                        ("dose_mg_day", t.dose_mg_day),
                        ("dose_mg_per_kg_week", t.dose_mg_per_kg_week),
                        ("code", t.code),
                        ("system", t.system),
                    )
                    if v is not None
                },
            }
            for t in treatments
        ],
        "labs": [{"date": lab.date.isoformat(), **lab.values} for lab in dated(Lab)],
        "infections": [
            {"date": i.date.isoformat(), "kind": i.kind, "serious": i.serious}
            for i in dated(Infection)
        ],
        "immunoglobulin_doses": [
            {"date": d.date.isoformat(), "g_per_kg": d.g_per_kg, "route": d.route}
            for d in dated(IgDose)
        ],
        "blood_products": [
            {"date": b.date.isoformat(), "product": b.product} for b in dated(BloodProduct)
        ],
        "vaccinations": [
            {"vaccine": v.vaccine, "date": v.date.isoformat()} for v in dated(Vaccination)
        ],
        "consent": {"cost_accepted": has_consent(session=session, patient=patient)},
    }
    if patient.hsct:
        document["hsct"] = patient.hsct
    if patient.preferences:
        document["preferences"] = patient.preferences
    return validate_referral(document)
