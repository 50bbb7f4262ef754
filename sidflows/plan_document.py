"""The plan as the JSON document of docs/formats.md (``propose`` and ``show --json``)."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import Any

from sidflows.rules.model import Item, Plan

_ITEM_BASE = ("kind", "key", "due")


def _value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value


def item_document(item: Item, publicly_funded: dict[str, bool]) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": item.kind, "key": item.key, "due": item.due.isoformat()}
    for f in fields(item):
        if f.name not in _ITEM_BASE:
            doc[f.name] = _value(getattr(item, f.name))
    doc["publicly_funded"] = publicly_funded.get(item.kind, False)
    return doc


def plan_document(plan: Plan) -> dict[str, Any]:
    """Plain JSON types only; field order follows docs/formats.md."""
    items = [item_document(i, plan.publicly_funded) for i in plan.items]
    unfunded = sorted({i["kind"] for i in items if not i["publicly_funded"]})
    return {
        "patient_ref": plan.patient_ref,
        "protocol_version": plan.protocol_version,
        "as_of": plan.as_of.isoformat(),
        "horizon_end": plan.horizon_end.isoformat(),
        "grading": {
            "level": plan.grading.level,
            "transient": plan.grading.transient,
            "reasons": list(plan.grading.reasons),
        },
        "decisions": [
            {"topic": d.topic, "decision": d.decision, "rationale": d.rationale, "source": d.source}
            for d in plan.decisions
        ],
        "items": items,
        "deferred": [
            {"vaccine": d.vaccine, "until": _value(d.until), "reasons": list(d.reasons)}
            for d in plan.deferred
        ],
        "funding": {
            "not_publicly_funded": unfunded,
            "consent_required": bool(unfunded),
            "consent_recorded": plan.consent_recorded,
        },
    }
