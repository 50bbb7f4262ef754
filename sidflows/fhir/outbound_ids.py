"""Ids and references of the outbound Bundle (:mod:`sidflows.fhir.outbound`): stable
FHIR ids, the ``urn:uuid`` fullUrls, References and Periods, and an item's stream. Pure."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

_NAMESPACE = uuid.UUID("6f1e0c4e-6b43-5b39-9a57-5f1d3c0e2a10")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
OPEN_STATUSES = frozenset({"proposed", "planned", "scheduled", "due", "deferred"})


def stream_of(item: dict[str, Any]) -> str:
    """The item's stream (as sidflows.store.views.stream_of, without the store)."""
    kind = str(item["kind"])
    if kind == "vaccine_dose":
        return f"vaccine_dose:{item['vaccine']}"
    if kind == "prophylaxis":
        return f"prophylaxis:{item['drug']}"
    return kind


def fhir_id(prefix: str, ref: str, *rest: str) -> str:
    """A stable FHIR id (``[A-Za-z0-9-.]{1,64}``): ``<prefix>-<ref>-<rest>`` when that
    fits (item keys lose ``_`` and ``:`` becomes ``-``), else ``<prefix>-`` and a
    digest of the parts (a ref holding ``_``, which FHIR ids cannot)."""
    tail = [re.sub(r"[^A-Za-z0-9.-]", "", p.replace(":", "-").replace(" ", "-")) for p in rest]
    candidate = "-".join([prefix, ref, *tail])
    if "_" not in ref and _FHIR_ID.fullmatch(candidate):
        return candidate
    digest = hashlib.sha256("\x1f".join([prefix, ref, *rest]).encode()).hexdigest()
    return f"{prefix}-{digest[: 63 - len(prefix)]}"


def full_url(resource_type: str, resource_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}/{resource_id}')}"


def reference_to(
    resource_type: str, resource_id: str, display: str | None = None
) -> dict[str, str]:
    ref = {"reference": full_url(resource_type, resource_id), "type": resource_type}
    if display:
        ref["display"] = display
    return ref


def period_of(start: str | None, end: str | None) -> dict[str, str]:
    out = {}
    if start:
        out["start"] = start
    if end:
        out["end"] = end
    return out
