"""FHIR R4 Bundles in: a referral, a treatment change or a lab result document.

Each function validates the Bundle with ``fhir.resources`` (R4B models,
R4-compatible), maps its entries into the document of docs/formats.md and
validates that with the ordinary parser, so everything downstream is unchanged.
An entry that cannot be mapped is refused with :class:`InvalidInput` whose field
is the entry's path (``entry[6].resource.valueQuantity.code: unit [fur_us] not
convertible to g/L``). The mapping and its code tables: docs/fhir.md,
:mod:`sidflows.fhir.tables`. Pure: no clock, no store, no environment.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sidflows.errors import InvalidInput
from sidflows.fhir import tables as t
from sidflows.fhir.inbound_bundle import (
    BUNDLE_TYPES,
    BundleEntries,
    Entry,
    Provenance,
    concept_text,
    full_date,
    open_bundle,
    required_date,
)
from sidflows.fhir.inbound_clinical import conditions_of, latest_transplant
from sidflows.fhir.inbound_immunizations import consent_of, vaccinations_of
from sidflows.fhir.inbound_medications import ig_dose, treatments_of
from sidflows.fhir.inbound_observations import labs_of
from sidflows.fhir.inbound_patient import (
    MIN_SECRET,
    bundle_patient,
    check_subject,
    derive_ref,
    identity_of,
)
from sidflows.referral import parse_lab_report, parse_treatment_change, validate_referral

__all__ = [
    "BUNDLE_TYPES",
    "derive_ref",
    "lab_result_from_bundle",
    "referral_from_bundle",
    "treatment_change_from_bundle",
]

_REFERRAL_TYPES = (
    "Patient", "ServiceRequest", "Condition", "Procedure", "MedicationStatement",
    "MedicationRequest", "MedicationAdministration", "Observation", "Immunization",
    "Consent", "Practitioner", "PractitionerRole", "Organization", "Medication",
    "Composition",
)  # fmt: skip
_TREATMENT_TYPES = (
    "Patient", "MedicationStatement", "MedicationRequest", "MedicationAdministration",
    "Medication",
)  # fmt: skip
_LAB_TYPES = ("Patient", "Observation")


# --------------------------------------------------------------------------- the referral


def _referrer(b: BundleEntries, sr: Entry) -> dict[str, str]:
    requester = sr.resource.get("requester")
    path = sr.at("requester")
    if not isinstance(requester, dict):
        raise InvalidInput(path, "required field missing (the referring service)")
    target = b.resolve(requester, path)
    if target is None:
        if not requester.get("display"):
            raise InvalidInput(path, "a reference or a display naming the service is needed")
        return {"service": str(requester["display"])}
    r = target.resource
    if target.type == "Organization":
        if not r.get("name"):
            raise InvalidInput(target.at("name"), "required field missing (the service)")
        return {"service": str(r["name"])}
    if target.type == "PractitionerRole":
        service = next((concept_text(s) for s in r.get("specialty", []) if concept_text(s)), None)
        if service is None and isinstance(r.get("organization"), dict):
            org = b.resolve(r["organization"], target.at("organization"))
            service = org.resource.get("name") if org else r["organization"].get("display")
        if not service:
            raise InvalidInput(target.at("specialty"), "required field missing (the service)")
        out = {"service": str(service)}
        who = r.get("practitioner")
        if isinstance(who, dict):
            person = b.resolve(who, target.at("practitioner"))
            clinician = who.get("display")
            if person is not None and person.resource.get("name"):
                n = person.resource["name"][0]
                clinician = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")])
            if clinician:
                out["clinician"] = str(clinician).strip()
        return out
    raise InvalidInput(
        f"{path}.reference", f"a PractitionerRole or an Organization is needed, not {target.type}"
    )


def _one(b: BundleEntries, kind: str, what: str) -> Entry:
    found = list(b.of(kind))
    if not found:
        raise InvalidInput("entry", f"no {kind} ({what})")
    if len(found) > 1:
        raise InvalidInput(found[1].path, f"a second {kind} (entry[{found[0].index}] is the first)")
    return found[0]


def referral_from_bundle(bundle: dict[str, Any], *, ref_secret: bytes) -> dict[str, Any]:
    """A FHIR R4 Bundle (collection, transaction or document) as a referral document.

    The result is the dict of docs/formats.md §4, already checked by
    :func:`sidflows.referral.validate_referral` (a refusal of that check is named by
    the entry it came from). ``ref_secret`` keys the ref derived from a record
    number when the Patient has no ``urn:sidflows:ref`` identifier.
    """
    b = open_bundle(bundle, _REFERRAL_TYPES)
    doc = Provenance()
    p, ref = bundle_patient(b, ref_secret=ref_secret, required=True)
    assert p is not None and ref is not None
    doc.note("patient.ref", p.at("identifier"))
    birth = full_date(p.resource.get("birthDate"), p.at("birthDate"))
    doc.note("patient.birth_date", p.at("birthDate"))
    sex = str(p.resource.get("gender") or "unknown")
    doc.note("patient", p.path)
    sr = _one(b, "ServiceRequest", "the referral")
    check_subject(b, sr, p)
    received, _ = required_date(sr.resource, sr.path, "authoredOn")
    doc.note("received", sr.at("authoredOn"))
    referrer = _referrer(b, sr)
    doc.note("referrer", sr.at("requester"))
    labs, weight = labs_of(b, doc, p, weight_allowed=True)
    if weight is None:
        raise InvalidInput("entry", f"no body weight Observation (LOINC {t.BODY_WEIGHT})")
    doc.note("patient.weight_kg", weight[1].at("valueQuantity"))
    transplant = latest_transplant(b, p)
    conditions = conditions_of(b, doc, p, transplant is not None)
    if conditions.diagnosis is None:
        raise InvalidInput("entry", "no Condition giving the diagnosis")
    dx, label, category, (dx_system, dx_code) = conditions.diagnosis
    doc.note("diagnosis", dx.path)
    treatments, ig_entries = treatments_of(b, doc, p)
    ig_doses = [
        ig_dose(b, e, weight[0], doc, f"immunoglobulin_doses[{i}]")
        for i, e in enumerate(ig_entries)
    ]
    out: dict[str, Any] = {
        "patient": {
            "ref": ref,
            "birth_date": birth.isoformat(),
            "sex": sex,
            "weight_kg": weight[0],
        }
    }
    identity = identity_of(p)
    if identity:
        out["identity"] = identity
        doc.note("identity", p.path)
    out["received"] = received.isoformat()
    out["referrer"] = referrer
    reason = _reason(b, sr)
    if reason:
        out["reason"] = reason
        doc.note("reason", sr.at("reasonCode"))
    hsct: dict[str, Any] | None = None
    if transplant is not None:
        hsct = transplant[1]
        doc.note("hsct", transplant[0].path)
        category = "hsct"  # the unit plans from the transplant (docs/fhir.md)
        hsct["active_gvhd"] = any(active for _, active in conditions.gvhd)
    elif conditions.gvhd:
        raise InvalidInput(
            conditions.gvhd[0][0].path,
            "graft-versus-host disease without a stem cell transplant Procedure",
        )
    out["diagnosis"] = {
        "category": category,
        "label": label,
        "code": dx_code,
        "system": dx_system,
    }
    if hsct is not None:
        out["hsct"] = hsct
    out["treatments"] = treatments
    out["labs"] = labs
    out["infections"] = conditions.infections
    out["immunoglobulin_doses"] = ig_doses
    out["vaccinations"] = vaccinations_of(b, doc, p)
    route = _ig_route_preference(sr)
    if route is not None:
        out["preferences"] = {"ig_route": route}
        doc.note("preferences", sr.at("extension"))
    consent = consent_of(b, p)
    if consent is not None:
        out["consent"] = consent
    try:
        validate_referral(out)
    except InvalidInput as exc:
        raise doc.refuse_from(exc) from None
    return out


def _reason(b: BundleEntries, sr: Entry) -> str | None:
    parts = [concept_text(c) for c in sr.resource.get("reasonCode", [])]
    for i, ref in enumerate(sr.resource.get("reasonReference", [])):
        target = b.resolve(ref, sr.at("reasonReference", i))
        parts.append(concept_text(target.resource.get("code")) if target else ref.get("display"))
    text = "; ".join(p for p in parts if p)
    return text or None


def _ig_route_preference(sr: Entry) -> str | None:
    for i, ext in enumerate(sr.resource.get("extension", [])):
        if ext.get("url") == t.IG_ROUTE_EXTENSION:
            value = ext.get("valueCode")
            if value not in {"iv", "sc"}:
                raise InvalidInput(sr.at("extension", i, "valueCode"), "must be 'iv' or 'sc'")
            return str(value)
    return None


# --------------------------------------------------------------------------- later documents


def treatment_change_from_bundle(
    bundle: dict[str, Any], *, changed_on: date | None = None
) -> dict[str, Any]:
    """A Bundle of MedicationStatements / MedicationRequests / MedicationAdministrations
    as a treatment change document (§5). Its ``date`` is ``changed_on``, else the
    Bundle's ``timestamp``. A Patient may be present (one); the subject references
    may also name the child without it."""
    b = open_bundle(bundle, _TREATMENT_TYPES)
    doc = Provenance()
    patient, _ = bundle_patient(b, ref_secret=b"\0" * MIN_SECRET, required=False)
    if changed_on is None:
        if b.timestamp is None:
            raise InvalidInput("timestamp", "missing (the date of the change)")
        changed_on = full_date(b.timestamp, "timestamp")
    treatments, ig = treatments_of(b, doc, patient)
    if ig:
        raise InvalidInput(ig[0].path, "an immunoglobulin dose is not a treatment change")
    if not treatments:
        raise InvalidInput("entry", "no MedicationStatement, MedicationRequest or -Administration")
    out = {"date": changed_on.isoformat(), "treatments": treatments}
    try:
        parse_treatment_change(json.dumps(out))
    except InvalidInput as exc:
        raise doc.refuse_from(exc) from None
    return out


def lab_result_from_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A Bundle of Observations (LOINC, UCUM) as a lab result document (§6)."""
    b = open_bundle(bundle, _LAB_TYPES)
    doc = Provenance()
    patient, _ = bundle_patient(b, ref_secret=b"\0" * MIN_SECRET, required=False)
    labs, _ = labs_of(b, doc, patient, weight_allowed=False)
    if not labs:
        raise InvalidInput("entry", "no Observation")
    out = {"labs": labs}
    try:
        parse_lab_report(json.dumps(out))
    except InvalidInput as exc:
        raise doc.refuse_from(exc) from None
    return out
