"""Conditions (diagnosis, infections, GVHD) and Procedures (the stem cell
transplant) of an inbound Bundle. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidflows.errors import InvalidInput
from sidflows.fhir import tables as t
from sidflows.fhir.inbound_bundle import (
    BundleEntries,
    Entry,
    Provenance,
    codings_of,
    concept_text,
    full_date,
    is_skipped,
    required_date,
)
from sidflows.fhir.inbound_patient import check_subject

_ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})


# --------------------------------------------------------------------------- conditions


@dataclass
class Conditions:
    # (entry, label, category, (system, code) of the coding that named it)
    diagnosis: tuple[Entry, str, t.Category, tuple[str, str]] | None = None
    infections: list[dict[str, Any]] = field(default_factory=list)
    gvhd: list[tuple[Entry, bool]] = field(default_factory=list)


def _icd10_category(code: str) -> tuple[t.Category, str] | None:
    best: tuple[str, t.Category, str] | None = None
    for prefix, cat, what in t.ICD10_CATEGORIES:
        if code.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, cat, what)
    return None if best is None else (best[1], best[2])


def conditions_of(
    b: BundleEntries, doc: Provenance, patient: Entry, transplanted: bool
) -> Conditions:
    out = Conditions()
    for e in b.of("Condition"):
        check_subject(b, e, patient)
        if is_skipped(e.resource):
            continue
        r = e.resource
        concept = r.get("code")
        snomed = codings_of(concept, t.SNOMED)
        icd = codings_of(concept, t.ICD10)
        if not snomed and not icd:
            raise InvalidInput(e.at("code", "coding"), "no ICD-10 or SNOMED CT coding")
        status = [c for _, c, _ in codings_of(r.get("clinicalStatus"), _CLINICAL)]
        active = not status or status[0] in _ACTIVE_CLINICAL
        gvhd = any(c in t.GVHD_SNOMED for _, c, _ in snomed) or (
            transplanted and any(c.startswith(t.GVHD_ICD10) for _, c, _ in icd)
        )
        if gvhd:
            out.gvhd.append((e, active))
            continue
        infection = next(((j, c) for j, c, _ in snomed if c in t.INFECTION_SNOMED), None)
        if infection is not None:
            onset = full_date(r.get("onsetDateTime"), e.at("onsetDateTime"))
            severity = codings_of(r.get("severity"), t.SNOMED)
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
                    "kind": concept_text(concept) or t.INFECTION_SNOMED[infection[1]],
                    "serious": t.SEVERITY_SERIOUS[severity[0][1]],
                }
            )
            continue
        category: tuple[t.Category, str] | None = None
        coded: tuple[str, str] | None = None
        for _, code, _ in icd:
            if category is None and (category := _icd10_category(code)) is not None:
                coded = (t.ICD10, code)
        for _, code, _ in snomed:
            if category is None and (category := t.SNOMED_DIAGNOSES.get(code)) is not None:
                coded = (t.SNOMED, code)
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
        label = concept_text(concept) or category[1]
        assert coded is not None
        out.diagnosis = (e, label, category[0], coded)
    return out


_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def latest_transplant(b: BundleEntries, patient: Entry) -> tuple[Entry, dict[str, Any]] | None:
    latest: tuple[Entry, dict[str, Any]] | None = None
    for e in b.of("Procedure"):
        check_subject(b, e, patient)
        if is_skipped(e.resource):
            continue
        r = e.resource
        codes = codings_of(r.get("code"), t.SNOMED)
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
            text = (concept_text(r.get("code")) or "").lower()
            kinds = [k for k in ("autologous", "allogeneic") if k in text]
            if len(kinds) != 1:
                raise InvalidInput(
                    e.at("code", "text"), "say autologous or allogeneic (or code 444360002)"
                )
            kind = "autologous" if kinds[0] == "autologous" else "allogeneic"
        day, _ = required_date(r, e.path, "performedDateTime", "performedPeriod.start")
        if latest is None or day.isoformat() >= latest[1]["date"]:
            latest = (e, {"date": day.isoformat(), "type": kind, "active_gvhd": False})
    return latest
