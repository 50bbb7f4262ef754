"""Medication entries of an inbound Bundle: treatments (ATC class, dates, the dose
per day or week) and the immunoglobulin doses given. Pure."""

from __future__ import annotations

from datetime import date
from typing import Any

from sidflows.errors import InvalidInput
from sidflows.fhir import tables as t
from sidflows.fhir.inbound_bundle import (
    BundleEntries,
    Entry,
    Provenance,
    as_number,
    codings_of,
    concept_text,
    full_date,
    is_skipped,
    required_date,
)
from sidflows.fhir.inbound_patient import check_subject

# --------------------------------------------------------------------------- medications


def _atc(b: BundleEntries, e: Entry) -> tuple[str, str, str]:
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
    codes = codings_of(concept, t.ATC)
    if not codes:
        raise InvalidInput(f"{base}.coding", f"no ATC coding (system {t.ATC})")
    j, code, _ = codes[0]
    return code, f"{base}.coding[{j}].code", concept_text(concept) or code


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
        return {kinds.get(unit, "dose_mg_day"): as_number(value)}
    if unit == "mg/kg":
        key = "dose_mg_per_kg_day" if period == "d" else "dose_mg_per_kg_week"
        return {key: as_number(per)}
    if unit in {"mg", "g"}:
        if period != "d":
            raise InvalidInput(f"{path}.code", "mg per week: give the weekly dose in mg/kg")
        return {"dose_mg_day": as_number(per * (1000 if unit == "g" else 1))}
    raise InvalidInput(f"{path}.code", f"unit {unit or '(none)'} not convertible to mg or mg/kg")


def _treatment(b: BundleEntries, e: Entry, doc: Provenance, at: str) -> dict[str, Any]:
    code, code_path, drug = _atc(b, e)
    if code in t.IG_ROUTES:
        raise InvalidInput(
            code_path, "immunoglobulin doses are MedicationAdministrations (doses given)"
        )
    found = t.treatment_class(code)
    if found is None:
        raise InvalidInput(code_path, f"ATC {code!r} not in the treatment class table")
    r = e.resource
    out: dict[str, Any] = {"drug": drug, "class": found[0], "code": code, "system": t.ATC}
    if e.type == "MedicationRequest":
        dosages = r.get("dosageInstruction", [])
        first = dosages[0] if dosages else {}
        bounds = first.get("timing", {}).get("repeat", {}).get("boundsPeriod")
        dose_at = e.at("dosageInstruction", 0, "doseAndRate", 0, "doseQuantity")
        dose = (first.get("doseAndRate") or [{}])[0].get("doseQuantity")
        timing = first.get("timing")
        if bounds is not None:
            base = e.at("dosageInstruction", 0, "timing", "repeat", "boundsPeriod")
            out["start"] = full_date(bounds.get("start"), f"{base}.start")
            if bounds.get("end") is not None:
                out["end"] = full_date(bounds["end"], f"{base}.end")
        else:
            out["start"], _ = required_date(r, e.path, "authoredOn")
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
            out["start"] = full_date(period.get("start"), e.at("effectivePeriod", "start"))
            if period.get("end") is not None:
                out["end"] = full_date(period["end"], e.at("effectivePeriod", "end"))
        else:
            day, _ = required_date(r, e.path, "effectiveDateTime")
            out["start"] = out["end"] = day  # one day's treatment
    out.update(_dose_fields(dose, timing, dose_at))
    for name in ("drug", "class"):
        doc.note(f"{at}.{name}", code_path)
    for name in ("start", "end", "dose_mg_per_kg_day", "dose_mg_day", "dose_mg_per_kg_week"):
        doc.note(f"{at}.{name}", e.path)
    doc.note(at, e.path)
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in out.items()}


def treatments_of(
    b: BundleEntries, doc: Provenance, patient: Entry | None, prefix: str = "treatments"
) -> tuple[list[dict[str, Any]], list[Entry]]:
    """Treatments in bundle order; IG administrations set aside for the caller."""
    out: list[dict[str, Any]] = []
    ig: list[Entry] = []
    for e in b.of("MedicationStatement", "MedicationRequest", "MedicationAdministration"):
        check_subject(b, e, patient)
        if is_skipped(e.resource):
            continue
        if e.type == "MedicationAdministration" and _atc(b, e)[0] in t.IG_ROUTES:
            ig.append(e)
            continue
        out.append(_treatment(b, e, doc, f"{prefix}[{len(out)}]"))
    return out, ig


def ig_dose(
    b: BundleEntries, e: Entry, weight_kg: float, doc: Provenance, at: str
) -> dict[str, Any]:
    code, _, _ = _atc(b, e)
    r = e.resource
    day, _ = required_date(r, e.path, "effectiveDateTime", "effectivePeriod.start")
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
    routes = codings_of(dosage.get("route"), t.SNOMED)
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
