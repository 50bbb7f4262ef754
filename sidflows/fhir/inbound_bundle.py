"""The Bundle read in (FHIR R4 in, :mod:`sidflows.fhir.inbound`): the envelope checked
and validated with ``fhir.resources``, its entries and the references between them,
the small readers every mapping shares (dates, codings, text, status) and the
provenance of the mapped document's fields. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from sidflows.documents import field_path
from sidflows.errors import InvalidInput

BUNDLE_TYPES = frozenset({"collection", "transaction", "document"})


_SKIPPED_STATUS = frozenset({"entered-in-error", "not-done", "cancelled"})


_FULL_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(T.*)?")


# --------------------------------------------------------------------------- the bundle


@dataclass
class Entry:
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
class BundleEntries:
    entries: list[Entry]
    timestamp: str | None
    by_key: dict[str, Entry] = field(default_factory=dict)

    def of(self, *types: str) -> Iterator[Entry]:
        return (e for e in self.entries if e.type in types)

    def resolve(self, reference: Any, path: str) -> Entry | None:
        """The entry a Reference points to; None for a Reference with only a display."""
        if not isinstance(reference, dict) or "reference" not in reference:
            return None
        target = str(reference["reference"])
        found = self.by_key.get(target)
        if found is None:
            raise InvalidInput(f"{path}.reference", f"{target!r} refers to nothing in the bundle")
        return found


def open_bundle(bundle: Any, allowed: tuple[str, ...]) -> BundleEntries:
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
    out = BundleEntries(
        [Entry(i, e["resource"]) for i, e in enumerate(raw)], bundle.get("timestamp")
    )
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


def full_date(value: Any, path: str) -> date:
    found = _FULL_DATE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(path, f"a full date (YYYY-MM-DD) is needed, got {value!r}")
    try:
        return date.fromisoformat(found[1])
    except ValueError:
        raise InvalidInput(path, f"impossible date {found[1]!r}") from None


def required_date(resource: dict[str, Any], path: str, *names: str) -> tuple[date, str]:
    """The first of ``names`` present (``effectivePeriod.start`` style allowed)."""
    for name in names:
        value: Any = resource
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return full_date(value, f"{path}.{name}"), name
    raise InvalidInput(f"{path}.{names[0]}", "missing (a dated entry is needed)")


def codings_of(concept: Any, system: str) -> list[tuple[int, str, dict[str, Any]]]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return [
        (j, str(c["code"]).strip(), c)
        for j, c in enumerate(codings)
        if c.get("system") == system and str(c.get("code", "")).strip()
    ]


def concept_text(concept: Any) -> str | None:
    """CodeableConcept.text, else the first coding's display."""
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding", []):
        if c.get("display"):
            return str(c["display"])
    return None


def is_skipped(resource: dict[str, Any]) -> bool:
    status = resource.get("status")
    if status in _SKIPPED_STATUS:
        return True
    verification = codings_of(
        resource.get("verificationStatus"),
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    )
    return any(code in {"refuted", "entered-in-error"} for _, code, _ in verification)


def as_number(x: float) -> float | int:
    """Converted values: rounded off the float noise, whole numbers as ints (as typed)."""
    rounded = round(x, 6)
    return int(rounded) if rounded == int(rounded) and abs(rounded) < 1e15 else rounded


# --------------------------------------------------------------------------- provenance


class Provenance:
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
