"""The Patient of an inbound Bundle: its ref (given, or derived from the record
number with :func:`derive_ref`), its identity, and the check that clinical entries
are about it. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from sidflows.errors import InvalidInput
from sidflows.fhir import tables as t
from sidflows.fhir.inbound_bundle import BundleEntries, Entry, codings_of

MIN_SECRET = 16


def derive_ref(system: str | None, value: str, *, ref_secret: bytes) -> str:
    """The pseudonymous ref of a record number: ``SF-`` + 10 base32 characters of
    HMAC-SHA256(ref_secret, system|value). The same record number (and system)
    always gives the same ref; without the secret it cannot be turned back."""
    if len(ref_secret) < MIN_SECRET:
        raise ValueError(f"ref_secret: at least {MIN_SECRET} bytes are needed")
    digest = hmac.new(ref_secret, f"{system or ''}|{value}".encode(), hashlib.sha256).digest()
    return "SF-" + base64.b32encode(digest).decode("ascii")[:10]


# --------------------------------------------------------------------------- patient


def bundle_patient(
    b: BundleEntries, *, ref_secret: bytes, required: bool
) -> tuple[Entry | None, str | None]:
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
    if len(ref_secret) < MIN_SECRET:
        raise ValueError(f"ref_secret: at least {MIN_SECRET} bytes are needed")
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
        if any(code == "MR" for _, code, _ in codings_of(ident.get("type"), t.V2_0203)):
            return ident
    return usable[0] if usable else None


def identity_of(p: Entry) -> dict[str, str]:
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


def check_subject(b: BundleEntries, e: Entry, patient: Entry | None) -> None:
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
