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

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from sidflows.errors import InvalidInput
from sidflows.fhir import tables as t
from sidflows.referral import (
    field_path,
    parse_lab_report,
    parse_treatment_change,
    validate_referral,
)

__all__ = [
    "derive_ref",
    "lab_result_from_bundle",
    "referral_from_bundle",
    "treatment_change_from_bundle",
]

BUNDLE_TYPES = frozenset({"collection", "transaction", "document"})
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
_SKIPPED_STATUS = frozenset({"entered-in-error", "not-done", "cancelled"})
_ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
_FULL_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(T.*)?")
_MIN_SECRET = 16


def derive_ref(system: str | None, value: str, *, ref_secret: bytes) -> str:
    """The pseudonymous ref of a record number: ``SF-`` + 10 base32 characters of
    HMAC-SHA256(ref_secret, system|value). The same record number (and system)
    always gives the same ref; without the secret it cannot be turned back."""
    if len(ref_secret) < _MIN_SECRET:
        raise ValueError(f"ref_secret: at least {_MIN_SECRET} bytes are needed")
    digest = hmac.new(ref_secret, f"{system or ''}|{value}".encode(), hashlib.sha256).digest()
    return "SF-" + base64.b32encode(digest).decode("ascii")[:10]


# --------------------------------------------------------------------------- the bundle


@dataclass
class _Entry:
    index: int
    resource: dict[str, Any]

    @property
    def path(self) -> str:
        return f"entry[{self.index}].resource"

    @property
    def type(self) -> str:
        return str(self.resource.get("resourceType"))

    def at(self, *parts: int | str) -> str:
        return self.path + ("." + field_path(parts) if parts else "")


@dataclass
class _Bundle:
    entries: list[_Entry]
    timestamp: str | None
    by_key: dict[str, _Entry] = field(default_factory=dict)

    def of(self, *types: str) -> Iterator[_Entry]:
        return (e for e in self.entries if e.type in types)

    def resolve(self, reference: Any, path: str) -> _Entry | None:
        """The entry a Reference points to; None for a Reference with only a display."""
        if not isinstance(reference, dict) or "reference" not in reference:
            return None
        target = str(reference["reference"])
        found = self.by_key.get(target)
        if found is None:
            raise InvalidInput(f"{path}.reference", f"{target!r} refers to nothing in the bundle")
        return found


def _open(bundle: Any, allowed: tuple[str, ...]) -> _Bundle:
    if not isinstance(bundle, dict):
        raise InvalidInput("document", "must be a JSON object (a FHIR Bundle)")
    if bundle.get("resourceType") != "Bundle":
        raise InvalidInput("resourceType", f"expected 'Bundle', got {bundle.get('resourceType')!r}")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise InvalidInput(
            "type", f"must be 'collection', 'transaction' or 'document', got {bundle.get('type')!r}"
        )
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise InvalidInput("entry", "must be a list")
    for i, entry in enumerate(raw):  # before fhir.resources, which fails on unknown types
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise InvalidInput(f"entry[{i}].resource", "required field missing")
        kind = resource.get("resourceType")
        if kind not in allowed:
            raise InvalidInput(
                f"entry[{i}].resource.resourceType",
                f"{kind!r} is not mapped here (expected {', '.join(allowed)})",
            )
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = str(error["msg"]).removeprefix("Value error, ")
        path = field_path(loc) or "document"
        choice = re.search(r"Expect any of field value from this list \['([A-Za-z]+)'", message)
        if choice:  # a required choice element (occurrence[x]) absent
            path, message = f"{path}.{choice[1]}", "missing (a dated entry is needed)"
        raise InvalidInput(path, message) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("entry", f"not a FHIR R4 Bundle ({exc})") from None
    out = _Bundle([_Entry(i, e["resource"]) for i, e in enumerate(raw)], bundle.get("timestamp"))
    for e in out.entries:
        keys = [str(raw[e.index].get("fullUrl", ""))]
        if e.resource.get("id"):
            keys.append(f"{e.type}/{e.resource['id']}")
        for key in filter(None, keys):
            if key in out.by_key:
                raise InvalidInput(
                    e.at("id"), f"{key!r} already used by entry[{out.by_key[key].index}]"
                )
            out.by_key[key] = e
    return out


def _day(value: Any, path: str) -> date:
    found = _FULL_DATE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(path, f"a full date (YYYY-MM-DD) is needed, got {value!r}")
    try:
        return date.fromisoformat(found[1])
    except ValueError:
        raise InvalidInput(path, f"impossible date {found[1]!r}") from None


def _required_day(resource: dict[str, Any], path: str, *names: str) -> tuple[date, str]:
    """The first of ``names`` present (``effectivePeriod.start`` style allowed)."""
    for name in names:
        value: Any = resource
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return _day(value, f"{path}.{name}"), name
    raise InvalidInput(f"{path}.{names[0]}", "missing (a dated entry is needed)")


def _codings(concept: Any, system: str) -> list[tuple[int, str, dict[str, Any]]]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return [
        (j, str(c["code"]).strip(), c)
        for j, c in enumerate(codings)
        if c.get("system") == system and str(c.get("code", "")).strip()
    ]


def _text(concept: Any) -> str | None:
    """CodeableConcept.text, else the first coding's display."""
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding", []):
        if c.get("display"):
            return str(c["display"])
    return None


def _skipped(resource: dict[str, Any]) -> bool:
    status = resource.get("status")
    if status in _SKIPPED_STATUS:
        return True
    verification = _codings(
        resource.get("verificationStatus"),
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    )
    return any(code in {"refuted", "entered-in-error"} for _, code, _ in verification)


def _number(x: float) -> float | int:
    """Converted values: rounded off the float noise, whole numbers as ints (as typed)."""
    rounded = round(x, 6)
    return int(rounded) if rounded == int(rounded) and abs(rounded) < 1e15 else rounded


# --------------------------------------------------------------------------- provenance


class _Doc:
    """The document being built, and which entry each of its fields came from."""

    def __init__(self) -> None:
        self.origin: dict[str, str] = {}

    def note(self, doc_path: str, entry_path: str) -> None:
        self.origin.setdefault(doc_path, entry_path)

    def refuse_from(self, error: InvalidInput) -> InvalidInput:
        """A refusal of the mapped document, named by the entry it came from."""
        path = error.field
        while path:
            if path in self.origin:
                return InvalidInput(self.origin[path], f"{error.field}: {error.message}")
            path = re.sub(r"(\.[^.\[]+|\[[0-9]+\])$", "", path) if path != "document" else ""
        return error


# --------------------------------------------------------------------------- patient


def _patient(b: _Bundle, *, ref_secret: bytes, required: bool) -> tuple[_Entry | None, str | None]:
    patients = list(b.of("Patient"))
    if len(patients) > 1:
        raise InvalidInput(
            patients[1].path, f"a second Patient (entry[{patients[0].index}] is the first)"
        )
    if not patients:
        if required:
            raise InvalidInput("entry", "no Patient")
        return None, None
    p = patients[0]
    if len(ref_secret) < _MIN_SECRET:
        raise ValueError(f"ref_secret: at least {_MIN_SECRET} bytes are needed")
    identifiers = p.resource.get("identifier", [])
    for i, ident in enumerate(identifiers):
        if ident.get("system") == t.REF_SYSTEM:
            if not ident.get("value"):
                raise InvalidInput(p.at("identifier", i, "value"), "required field missing")
            return p, str(ident["value"])
    record = _record_number(identifiers)
    if record is None:
        if required:
            raise InvalidInput(
                p.at("identifier"),
                f"missing: a record number (type MR) or a {t.REF_SYSTEM} identifier gives the ref",
            )
        return p, None
    return p, derive_ref(record.get("system"), str(record["value"]), ref_secret=ref_secret)


def _record_number(identifiers: list[dict[str, Any]]) -> dict[str, Any] | None:
    usable = [i for i in identifiers if i.get("value") and i.get("system") != t.REF_SYSTEM]
    for ident in usable:
        if any(code == "MR" for _, code, _ in _codings(ident.get("type"), t.V2_0203)):
            return ident
    return usable[0] if usable else None


def _identity(p: _Entry) -> dict[str, str]:
    identity: dict[str, str] = {}
    names = p.resource.get("name", [])
    if names:
        n = names[0]
        text = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")]).strip()
        if text:
            identity["name"] = str(text)
    record = _record_number(p.resource.get("identifier", []))
    if record is not None:
        identity["mrn"] = str(record["value"])
    return identity


def _subject_checked(b: _Bundle, e: _Entry, patient: _Entry | None) -> None:
    """A clinical entry's subject (or patient) is the bundle's Patient, when it says."""
    for name in ("subject", "patient"):
        ref = e.resource.get(name)
        if not isinstance(ref, dict) or "reference" not in ref:
            continue
        target = b.by_key.get(str(ref["reference"]))
        if target is None:
            if patient is None:  # a later document's bundle may name the child without it
                continue
            raise InvalidInput(
                e.at(name, "reference"), f"{ref['reference']!r} refers to nothing in the bundle"
            )
        if target is not patient:
            raise InvalidInput(e.at(name, "reference"), f"not the bundle's Patient ({target.type})")


# --------------------------------------------------------------------------- medications


def _atc(b: _Bundle, e: _Entry) -> tuple[str, str, str]:
    """(ATC code, its path, the drug's name) of a medication entry."""
    r = e.resource
    if "medicationCodeableConcept" in r:
        concept, base = r["medicationCodeableConcept"], e.at("medicationCodeableConcept")
    else:
        ref = r.get("medicationReference")
        target = b.resolve(ref, e.at("medicationReference"))
        if target is None or target.type != "Medication":
            raise InvalidInput(e.at("medicationReference"), "a Medication in the bundle is needed")
        concept, base = target.resource.get("code"), target.at("code")
    codes = _codings(concept, t.ATC)
    if not codes:
        raise InvalidInput(f"{base}.coding", f"no ATC coding (system {t.ATC})")
    j, code, _ = codes[0]
    return code, f"{base}.coding[{j}].code", _text(concept) or code


def _dose(dose: Any, path: str) -> tuple[str, float]:
    if not isinstance(dose, dict) or dose.get("value") is None:
        raise InvalidInput(path, "a dose quantity with a value is needed")
    unit = str(dose.get("code") or dose.get("unit") or "")
    return unit, float(dose["value"])


def _per_day(timing: Any) -> tuple[float, str]:
    """Doses per period and the period's unit (``d`` or ``wk``) of a Timing."""
    repeat = timing.get("repeat", {}) if isinstance(timing, dict) else {}
    frequency = float(repeat.get("frequency", 1))
    period = float(repeat.get("period", 1))
    unit = str(repeat.get("periodUnit", "d"))
    return frequency / period, unit


def _dose_fields(dose: Any, timing: Any, path: str) -> dict[str, float | int]:
    if dose is None:
        return {}
    unit, value = _dose(dose, path)
    rate, period = _per_day(timing)
    if period not in {"d", "wk"}:
        raise InvalidInput(f"{path}.code", f"a dose per {period} cannot be given as per day")
    per = value * rate
    if unit in {"mg/kg/d", "mg/kg/wk", "mg/d"}:
        kinds = {"mg/kg/d": "dose_mg_per_kg_day", "mg/kg/wk": "dose_mg_per_kg_week"}
        return {kinds.get(unit, "dose_mg_day"): _number(value)}
    if unit == "mg/kg":
        key = "dose_mg_per_kg_day" if period == "d" else "dose_mg_per_kg_week"
        return {key: _number(per)}
    if unit in {"mg", "g"}:
        if period != "d":
            raise InvalidInput(f"{path}.code", "mg per week: give the weekly dose in mg/kg")
        return {"dose_mg_day": _number(per * (1000 if unit == "g" else 1))}
    raise InvalidInput(f"{path}.code", f"unit {unit or '(none)'} not convertible to mg or mg/kg")


def _treatment(b: _Bundle, e: _Entry, doc: _Doc, at: str) -> dict[str, Any]:
    code, code_path, drug = _atc(b, e)
    if code in t.IG_ROUTES:
        raise InvalidInput(
            code_path, "immunoglobulin doses are MedicationAdministrations (doses given)"
        )
    found = t.treatment_class(code)
    if found is None:
        raise InvalidInput(code_path, f"ATC {code!r} not in the treatment class table")
    r = e.resource
    out: dict[str, Any] = {"drug": drug, "class": found[0]}
    if e.type == "MedicationRequest":
        dosages = r.get("dosageInstruction", [])
        first = dosages[0] if dosages else {}
        bounds = first.get("timing", {}).get("repeat", {}).get("boundsPeriod")
        dose_at = e.at("dosageInstruction", 0, "doseAndRate", 0, "doseQuantity")
        dose = (first.get("doseAndRate") or [{}])[0].get("doseQuantity")
        timing = first.get("timing")
        if bounds is not None:
            base = e.at("dosageInstruction", 0, "timing", "repeat", "boundsPeriod")
            out["start"] = _day(bounds.get("start"), f"{base}.start")
            if bounds.get("end") is not None:
                out["end"] = _day(bounds["end"], f"{base}.end")
        else:
            out["start"], _ = _required_day(r, e.path, "authoredOn")
    else:
        if e.type == "MedicationStatement":
            dosage = (r.get("dosage") or [{}])[0]
            dose_at = e.at("dosage", 0, "doseAndRate", 0, "doseQuantity")
            dose = (dosage.get("doseAndRate") or [{}])[0].get("doseQuantity")
            timing = dosage.get("timing")
        else:  # MedicationAdministration: the dose of the day given
            dose_at = e.at("dosage", "dose")
            dose = r.get("dosage", {}).get("dose")
            timing = None
        if "effectivePeriod" in r:
            period = r["effectivePeriod"]
            out["start"] = _day(period.get("start"), e.at("effectivePeriod", "start"))
            if period.get("end") is not None:
                out["end"] = _day(period["end"], e.at("effectivePeriod", "end"))
        else:
            day, _ = _required_day(r, e.path, "effectiveDateTime")
            out["start"] = out["end"] = day  # one day's treatment
    out.update(_dose_fields(dose, timing, dose_at))
    for name in ("drug", "class"):
        doc.note(f"{at}.{name}", code_path)
    for name in ("start", "end", "dose_mg_per_kg_day", "dose_mg_day", "dose_mg_per_kg_week"):
        doc.note(f"{at}.{name}", e.path)
    doc.note(at, e.path)
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in out.items()}


def _treatments(
    b: _Bundle, doc: _Doc, patient: _Entry | None, prefix: str = "treatments"
) -> tuple[list[dict[str, Any]], list[_Entry]]:
    """Treatments in bundle order; IG administrations set aside for the caller."""
    out: list[dict[str, Any]] = []
    ig: list[_Entry] = []
    for e in b.of("MedicationStatement", "MedicationRequest", "MedicationAdministration"):
        _subject_checked(b, e, patient)
        if _skipped(e.resource):
            continue
        if e.type == "MedicationAdministration" and _atc(b, e)[0] in t.IG_ROUTES:
            ig.append(e)
            continue
        out.append(_treatment(b, e, doc, f"{prefix}[{len(out)}]"))
    return out, ig


def _ig_dose(b: _Bundle, e: _Entry, weight_kg: float, doc: _Doc, at: str) -> dict[str, Any]:
    code, _, _ = _atc(b, e)
    r = e.resource
    day, _ = _required_day(r, e.path, "effectiveDateTime", "effectivePeriod.start")
    dosage = r.get("dosage", {})
    unit, value = _dose(dosage.get("dose"), e.at("dosage", "dose"))
    if unit == "g/kg":
        g_per_kg = value
    elif unit in {"g", "mg"}:
        g_per_kg = value / (1000 if unit == "mg" else 1) / weight_kg
    else:
        raise InvalidInput(
            e.at("dosage", "dose", "code"), f"unit {unit or '(none)'} not convertible to g"
        )
    route = t.IG_ROUTES[code]
    routes = _codings(dosage.get("route"), t.SNOMED)
    if routes:
        j, rc, _ = routes[0]
        if rc not in t.ROUTE_SNOMED:
            raise InvalidInput(
                e.at("dosage", "route", "coding", j, "code"), f"route {rc!r} is not IV or SC"
            )
        route = t.ROUTE_SNOMED[rc]
    doc.note(at, e.path)
    doc.note(f"{at}.g_per_kg", e.at("dosage", "dose"))
    return {"date": day.isoformat(), "g_per_kg": round(g_per_kg, 3), "route": route}


# --------------------------------------------------------------------------- observations


def _quantity(e: _Entry, row: t.LoincRow, value: Any, path: str) -> float | int:
    if not isinstance(value, dict) or value.get("value") is None:
        raise InvalidInput(path, f"a quantity in {t.UNIT_NAMES[row.quantity]} is needed")
    unit = str(value.get("code") or value.get("unit") or "")
    factors = t.UNIT_FACTORS[row.quantity]
    if unit not in factors:
        where = f"{path}.code" if value.get("code") else path
        raise InvalidInput(
            where, f"unit {unit or '(none)'} not convertible to {t.UNIT_NAMES[row.quantity]}"
        )
    return _number(float(value["value"]) * factors[unit])


def _observation(e: _Entry) -> tuple[t.LoincRow, date, dict[str, float | int]] | None:
    r = e.resource
    codes = _codings(r.get("code"), t.LOINC)
    if not codes:
        raise InvalidInput(e.at("code", "coding"), f"no LOINC coding (system {t.LOINC})")
    j, code, _ = codes[0]
    row = t.LOINC_ROWS.get(code)
    if row is None:
        raise InvalidInput(
            e.at("code", "coding", j, "code"), f"LOINC {code!r} not in the lab table"
        )
    day, _ = _required_day(r, e.path, "effectiveDateTime", "effectivePeriod.start")
    values: dict[str, float | int] = {
        row.field: _quantity(e, row, r.get("valueQuantity"), e.at("valueQuantity"))
    }
    ranges = r.get("referenceRange", [])
    if row.lower_limit and ranges and ranges[0].get("low") is not None:
        values[row.lower_limit] = _quantity(
            e, row, ranges[0]["low"], e.at("referenceRange", 0, "low")
        )
    return row, day, values


def _labs(
    b: _Bundle, doc: _Doc, patient: _Entry | None, *, weight_allowed: bool
) -> tuple[list[dict[str, Any]], tuple[float, _Entry] | None]:
    """Labs (one entry per day, in order of first appearance) and the latest weight."""
    by_day: dict[date, dict[str, Any]] = {}
    seen: dict[tuple[date, str], int] = {}
    weight: tuple[date, float, _Entry] | None = None
    for e in b.of("Observation"):
        _subject_checked(b, e, patient)
        if _skipped(e.resource):
            continue
        found = _observation(e)
        assert found is not None
        row, day, values = found
        if row.field == "weight_kg":
            if not weight_allowed:
                raise InvalidInput(e.at("code"), "body weight is not a lab result of the format")
            if weight is None or day >= weight[0]:
                weight = (day, float(values["weight_kg"]), e)
            continue
        lab = by_day.setdefault(day, {"date": day.isoformat()})
        at = f"labs[{list(by_day).index(day)}]"
        doc.note(at, e.path)
        for name, value in values.items():
            if (day, name) in seen:
                raise InvalidInput(
                    e.path, f"{name} of {day} given twice (entry[{seen[(day, name)]}])"
                )
            seen[(day, name)] = e.index
            lab[name] = value
            doc.note(f"{at}.{name}", e.at("valueQuantity"))
    return list(by_day.values()), (None if weight is None else (weight[1], weight[2]))


# --------------------------------------------------------------------------- conditions


@dataclass
class _Conditions:
    diagnosis: tuple[_Entry, str, t.Category] | None = None
    infections: list[dict[str, Any]] = field(default_factory=list)
    gvhd: list[tuple[_Entry, bool]] = field(default_factory=list)


def _icd10_category(code: str) -> tuple[t.Category, str] | None:
    best: tuple[str, t.Category, str] | None = None
    for prefix, cat, what in t.ICD10_CATEGORIES:
        if code.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, cat, what)
    return None if best is None else (best[1], best[2])


def _conditions(b: _Bundle, doc: _Doc, patient: _Entry, transplanted: bool) -> _Conditions:
    out = _Conditions()
    for e in b.of("Condition"):
        _subject_checked(b, e, patient)
        if _skipped(e.resource):
            continue
        r = e.resource
        concept = r.get("code")
        snomed = _codings(concept, t.SNOMED)
        icd = _codings(concept, t.ICD10)
        if not snomed and not icd:
            raise InvalidInput(e.at("code", "coding"), "no ICD-10 or SNOMED CT coding")
        status = [c for _, c, _ in _codings(r.get("clinicalStatus"), _CLINICAL)]
        active = not status or status[0] in _ACTIVE_CLINICAL
        gvhd = any(c in t.GVHD_SNOMED for _, c, _ in snomed) or (
            transplanted and any(c.startswith(t.GVHD_ICD10) for _, c, _ in icd)
        )
        if gvhd:
            out.gvhd.append((e, active))
            continue
        infection = next(((j, c) for j, c, _ in snomed if c in t.INFECTION_SNOMED), None)
        if infection is not None:
            onset = _day(r.get("onsetDateTime"), e.at("onsetDateTime"))
            severity = _codings(r.get("severity"), t.SNOMED)
            if not severity or severity[0][1] not in t.SEVERITY_SERIOUS:
                raise InvalidInput(
                    e.at("severity"), "missing or unknown: severe, moderate or mild (SNOMED CT)"
                )
            at = f"infections[{len(out.infections)}]"
            doc.note(at, e.path)
            doc.note(f"{at}.date", e.at("onsetDateTime"))
            out.infections.append(
                {
                    "date": onset.isoformat(),
                    "kind": _text(concept) or t.INFECTION_SNOMED[infection[1]],
                    "serious": t.SEVERITY_SERIOUS[severity[0][1]],
                }
            )
            continue
        category: tuple[t.Category, str] | None = None
        for _, code, _ in icd:
            category = category or _icd10_category(code)
        for _, code, _ in snomed:
            category = category or t.SNOMED_DIAGNOSES.get(code)
        if category is None:
            j, code, coding = (icd or snomed)[0]
            system = "ICD-10" if coding.get("system") == t.ICD10 else "SNOMED CT"
            raise InvalidInput(
                e.at("code", "coding", j, "code"),
                f"{system} {code!r} not in the diagnosis, infection or GVHD tables",
            )
        if out.diagnosis is not None:
            raise InvalidInput(
                e.path, f"a second diagnosis (entry[{out.diagnosis[0].index}] is the first)"
            )
        label = _text(concept) or category[1]
        out.diagnosis = (e, label, category[0])
    return out


_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _transplant(b: _Bundle, patient: _Entry) -> tuple[_Entry, dict[str, Any]] | None:
    latest: tuple[_Entry, dict[str, Any]] | None = None
    for e in b.of("Procedure"):
        _subject_checked(b, e, patient)
        if _skipped(e.resource):
            continue
        r = e.resource
        codes = _codings(r.get("code"), t.SNOMED)
        if not codes:
            raise InvalidInput(e.at("code", "coding"), "no SNOMED CT coding")
        j, code, _ = codes[0]
        if code not in t.TRANSPLANT_SNOMED:
            raise InvalidInput(
                e.at("code", "coding", j, "code"),
                f"SNOMED CT {code!r} is not a stem cell transplant",
            )
        kind = t.TRANSPLANT_SNOMED[code][0]
        if kind is None:
            text = (_text(r.get("code")) or "").lower()
            kinds = [k for k in ("autologous", "allogeneic") if k in text]
            if len(kinds) != 1:
                raise InvalidInput(
                    e.at("code", "text"), "say autologous or allogeneic (or code 444360002)"
                )
            kind = "autologous" if kinds[0] == "autologous" else "allogeneic"
        day, _ = _required_day(r, e.path, "performedDateTime", "performedPeriod.start")
        if latest is None or day.isoformat() >= latest[1]["date"]:
            latest = (e, {"date": day.isoformat(), "type": kind, "active_gvhd": False})
    return latest


# --------------------------------------------------------------------------- the referral


def _referrer(b: _Bundle, sr: _Entry) -> dict[str, str]:
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
        service = next((_text(s) for s in r.get("specialty", []) if _text(s)), None)
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


def _consent(b: _Bundle, patient: _Entry) -> dict[str, bool] | None:
    found: dict[str, bool] | None = None
    first: _Entry | None = None
    for e in b.of("Consent"):
        _subject_checked(b, e, patient)
        status = e.resource.get("status")
        if status not in {"active", "rejected"}:
            continue  # draft, proposed, inactive, entered-in-error: no consent recorded
        if first is not None:
            raise InvalidInput(e.path, f"a second Consent (entry[{first.index}] is the first)")
        first = e
        permit = e.resource.get("provision", {}).get("type")
        if status == "active" and permit not in {"permit", "deny"}:
            raise InvalidInput(e.at("provision", "type"), "must be 'permit' or 'deny'")
        found = {"cost_accepted": status == "active" and permit == "permit"}
    return found


def _vaccinations(b: _Bundle, doc: _Doc, patient: _Entry) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for e in b.of("Immunization"):
        _subject_checked(b, e, patient)
        if _skipped(e.resource):
            continue
        codes = _codings(e.resource.get("vaccineCode"), t.CVX)
        if not codes:
            raise InvalidInput(e.at("vaccineCode", "coding"), f"no CVX coding (system {t.CVX})")
        j, code, _ = codes[0]
        row = t.CVX_VACCINES.get(t.norm_cvx(code))
        if row is None:
            raise InvalidInput(
                e.at("vaccineCode", "coding", j, "code"), f"CVX {code!r} not in the vaccine table"
            )
        day, _ = _required_day(e.resource, e.path, "occurrenceDateTime")
        for vaccine in row[0]:
            doc.note(f"vaccinations[{len(out)}]", e.path)
            out.append({"vaccine": vaccine, "date": day.isoformat()})
    return out


def _one(b: _Bundle, kind: str, what: str) -> _Entry:
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
    b = _open(bundle, _REFERRAL_TYPES)
    doc = _Doc()
    p, ref = _patient(b, ref_secret=ref_secret, required=True)
    assert p is not None and ref is not None
    doc.note("patient.ref", p.at("identifier"))
    birth = _day(p.resource.get("birthDate"), p.at("birthDate"))
    doc.note("patient.birth_date", p.at("birthDate"))
    sex = str(p.resource.get("gender") or "unknown")
    doc.note("patient", p.path)
    sr = _one(b, "ServiceRequest", "the referral")
    _subject_checked(b, sr, p)
    received, _ = _required_day(sr.resource, sr.path, "authoredOn")
    doc.note("received", sr.at("authoredOn"))
    referrer = _referrer(b, sr)
    doc.note("referrer", sr.at("requester"))
    labs, weight = _labs(b, doc, p, weight_allowed=True)
    if weight is None:
        raise InvalidInput("entry", f"no body weight Observation (LOINC {t.BODY_WEIGHT})")
    doc.note("patient.weight_kg", weight[1].at("valueQuantity"))
    transplant = _transplant(b, p)
    conditions = _conditions(b, doc, p, transplant is not None)
    if conditions.diagnosis is None:
        raise InvalidInput("entry", "no Condition giving the diagnosis")
    dx, label, category = conditions.diagnosis
    doc.note("diagnosis", dx.path)
    treatments, ig_entries = _treatments(b, doc, p)
    ig_doses = [
        _ig_dose(b, e, weight[0], doc, f"immunoglobulin_doses[{i}]")
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
    identity = _identity(p)
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
    out["diagnosis"] = {"category": category, "label": label}
    if hsct is not None:
        out["hsct"] = hsct
    out["treatments"] = treatments
    out["labs"] = labs
    out["infections"] = conditions.infections
    out["immunoglobulin_doses"] = ig_doses
    out["vaccinations"] = _vaccinations(b, doc, p)
    route = _ig_route_preference(sr)
    if route is not None:
        out["preferences"] = {"ig_route": route}
        doc.note("preferences", sr.at("extension"))
    consent = _consent(b, p)
    if consent is not None:
        out["consent"] = consent
    try:
        validate_referral(out)
    except InvalidInput as exc:
        raise doc.refuse_from(exc) from None
    return out


def _reason(b: _Bundle, sr: _Entry) -> str | None:
    parts = [_text(c) for c in sr.resource.get("reasonCode", [])]
    for i, ref in enumerate(sr.resource.get("reasonReference", [])):
        target = b.resolve(ref, sr.at("reasonReference", i))
        parts.append(_text(target.resource.get("code")) if target else ref.get("display"))
    text = "; ".join(p for p in parts if p)
    return text or None


def _ig_route_preference(sr: _Entry) -> str | None:
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
    b = _open(bundle, _TREATMENT_TYPES)
    doc = _Doc()
    patient, _ = _patient(b, ref_secret=b"\0" * _MIN_SECRET, required=False)
    if changed_on is None:
        if b.timestamp is None:
            raise InvalidInput("timestamp", "missing (the date of the change)")
        changed_on = _day(b.timestamp, "timestamp")
    treatments, ig = _treatments(b, doc, patient)
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
    b = _open(bundle, _LAB_TYPES)
    doc = _Doc()
    patient, _ = _patient(b, ref_secret=b"\0" * _MIN_SECRET, required=False)
    labs, _ = _labs(b, doc, patient, weight_allowed=False)
    if not labs:
        raise InvalidInput("entry", "no Observation")
    out = {"labs": labs}
    try:
        parse_lab_report(json.dumps(out))
    except InvalidInput as exc:
        raise doc.refuse_from(exc) from None
    return out
