"""Observations of an inbound Bundle: labs (LOINC, units converted with UCUM
factors) and the body weight. Pure."""

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
    is_skipped,
    required_date,
)
from sidflows.fhir.inbound_patient import check_subject

# --------------------------------------------------------------------------- observations


def _quantity(e: Entry, row: t.LoincRow, value: Any, path: str) -> float | int:
    if not isinstance(value, dict) or value.get("value") is None:
        raise InvalidInput(path, f"a quantity in {t.UNIT_NAMES[row.quantity]} is needed")
    unit = str(value.get("code") or value.get("unit") or "")
    factors = t.UNIT_FACTORS[row.quantity]
    if unit not in factors:
        where = f"{path}.code" if value.get("code") else path
        raise InvalidInput(
            where, f"unit {unit or '(none)'} not convertible to {t.UNIT_NAMES[row.quantity]}"
        )
    return as_number(float(value["value"]) * factors[unit])


def _observation(e: Entry) -> tuple[t.LoincRow, date, dict[str, float | int]] | None:
    r = e.resource
    codes = codings_of(r.get("code"), t.LOINC)
    if not codes:
        raise InvalidInput(e.at("code", "coding"), f"no LOINC coding (system {t.LOINC})")
    j, code, _ = codes[0]
    row = t.LOINC_ROWS.get(code)
    if row is None:
        raise InvalidInput(
            e.at("code", "coding", j, "code"), f"LOINC {code!r} not in the lab table"
        )
    day, _ = required_date(r, e.path, "effectiveDateTime", "effectivePeriod.start")
    values: dict[str, float | int] = {
        row.field: _quantity(e, row, r.get("valueQuantity"), e.at("valueQuantity"))
    }
    ranges = r.get("referenceRange", [])
    if row.lower_limit and ranges and ranges[0].get("low") is not None:
        values[row.lower_limit] = _quantity(
            e, row, ranges[0]["low"], e.at("referenceRange", 0, "low")
        )
    return row, day, values


def labs_of(
    b: BundleEntries, doc: Provenance, patient: Entry | None, *, weight_allowed: bool
) -> tuple[list[dict[str, Any]], tuple[float, Entry] | None]:
    """Labs (one entry per day, in order of first appearance) and the latest weight."""
    by_day: dict[date, dict[str, Any]] = {}
    seen: dict[tuple[date, str], int] = {}
    weight: tuple[date, float, Entry] | None = None
    for e in b.of("Observation"):
        check_subject(b, e, patient)
        if is_skipped(e.resource):
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
