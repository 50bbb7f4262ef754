"""A document as the hospital's record sends it: FHIR R4 Bundle or sidflows JSON.

The command line reads a referral, a treatment change or a lab result; when the
JSON is a FHIR Bundle (``"resourceType": "Bundle"``) it is mapped into the
sidflows document first, so validation and everything downstream are the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sidflows.documents import load_json_document
from sidflows.errors import InvalidInput

MIN_SECRET = 16  # bytes of the unit's secret, as sidflows.fhir.inbound_patient requires


Mapping = Callable[[dict[str, Any]], dict[str, Any]]


def _as_sidflows(text: bytes, mapping: Callable[[Any], Mapping]) -> bytes:
    data = load_json_document(text)
    if not (isinstance(data, dict) and data.get("resourceType") == "Bundle"):
        return text  # the sidflows format: validated as it is
    # fhir.resources loads only for a Bundle: `sidflows propose` of a JSON document stays light.
    from sidflows.fhir import inbound  # noqa: PLC0415

    return json.dumps(mapping(inbound)(data), ensure_ascii=False).encode()


def referral_text(text: bytes, *, ref_secret: str | None) -> bytes:
    """The referral document: given as such, or mapped from a FHIR Bundle."""
    secret = (ref_secret or "").encode()
    if len(secret) >= MIN_SECRET:
        return _as_sidflows(
            text,
            lambda inbound: lambda bundle: inbound.referral_from_bundle(bundle, ref_secret=secret),
        )
    return _as_sidflows(text, lambda inbound: lambda bundle: _needs_secret(inbound, bundle))


def _needs_secret(inbound: Any, bundle: dict[str, Any]) -> dict[str, Any]:
    """Without the unit's secret only a Bundle that carries the ref itself can be read."""
    mapped: dict[str, Any] = inbound.referral_from_bundle(bundle, ref_secret=b"\0" * MIN_SECRET)
    identifiers = [
        e.get("resource", {}).get("identifier", [])
        for e in bundle.get("entry", [])
        if isinstance(e, dict) and e.get("resource", {}).get("resourceType") == "Patient"
    ]
    carried = any(
        isinstance(i, dict) and i.get("system") == "urn:sidflows:ref"
        for found in identifiers
        for i in found
    )
    if not carried:
        raise InvalidInput(
            "SIDFLOWS_REF_SECRET",
            f"not set (at least {MIN_SECRET} characters): a Bundle whose Patient has no "
            "urn:sidflows:ref identifier gets its ref from the record number under the "
            "unit's secret",
        )
    return mapped


def treatment_change_text(text: bytes) -> bytes:
    return _as_sidflows(text, lambda inbound: inbound.treatment_change_from_bundle)


def lab_result_text(text: bytes) -> bytes:
    return _as_sidflows(text, lambda inbound: inbound.lab_result_from_bundle)
