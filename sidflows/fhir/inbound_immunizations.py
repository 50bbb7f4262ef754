"""Immunizations (CVX, the vaccines given) and the Consent of an inbound Bundle. Pure."""

from __future__ import annotations

from sidflows.errors import InvalidInput
from sidflows.fhir import tables as t
from sidflows.fhir.inbound_bundle import (
    BundleEntries,
    Entry,
    Provenance,
    codings_of,
    is_skipped,
    required_date,
)
from sidflows.fhir.inbound_patient import check_subject


def consent_of(b: BundleEntries, patient: Entry) -> dict[str, bool] | None:
    found: dict[str, bool] | None = None
    first: Entry | None = None
    for e in b.of("Consent"):
        check_subject(b, e, patient)
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


def vaccinations_of(b: BundleEntries, doc: Provenance, patient: Entry) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for e in b.of("Immunization"):
        check_subject(b, e, patient)
        if is_skipped(e.resource):
            continue
        codes = codings_of(e.resource.get("vaccineCode"), t.CVX)
        if not codes:
            raise InvalidInput(e.at("vaccineCode", "coding"), f"no CVX coding (system {t.CVX})")
        j, code, _ = codes[0]
        row = t.CVX_VACCINES.get(t.norm_cvx(code))
        if row is None:
            raise InvalidInput(
                e.at("vaccineCode", "coding", j, "code"), f"CVX {code!r} not in the vaccine table"
            )
        day, _ = required_date(e.resource, e.path, "occurrenceDateTime")
        for vaccine in row[0]:
            doc.note(f"vaccinations[{len(out)}]", e.path)
            out.append({"vaccine": vaccine, "date": day.isoformat()})
    return out
