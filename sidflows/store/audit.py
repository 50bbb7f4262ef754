"""The append-only audit trail: who, when, what, before and after."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sidflows.store.models import AuditEntry


def audit(
    *,
    session: Session,
    actor: str,
    entity: str,
    entity_id: int,
    ref: str,
    action: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Record one change, in the same transaction as the change itself."""
    session.add(
        AuditEntry(
            actor=actor,
            entity=entity,
            entity_id=entity_id,
            patient_ref=ref,
            action=action,
            before=before,
            after=after,
        )
    )
