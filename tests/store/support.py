"""Helpers of the store tests: the day, the unit's files, referrals, table dumps."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import SQLModel

from sidflows import service
from sidflows.calendar import load_calendar
from sidflows.protocol import load_protocol
from sidflows.store import db
from sidflows.testing.cohort import synthetic_referrals
from sidflows.unit import Unit

TODAY = date(2026, 11, 24)
PROTOCOL = load_protocol()
CALENDAR = load_calendar()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "referrals"


def example(name: str) -> str:
    """The text of one of the sample referrals in examples/referrals/."""
    return (EXAMPLES / f"{name}.json").read_text()


def synthetic(count: int, *, prefix: str = "SYN", seed: int = 7) -> list[dict[str, Any]]:
    return list(synthetic_referrals(count, seed=seed, prefix=prefix))


def iv_child(ref: str) -> str:
    """EX-0001 (IV immunoglobulin in the day unit, consent given) under another ref."""
    document = json.loads(example("all-after-maintenance"))
    document["patient"]["ref"] = ref
    document["identity"] = {"name": f"Child {ref}", "mrn": f"MRN-{ref}"}
    return json.dumps(document)


def refer_and_propose(text_: str) -> str:
    """A referral with its plan v1 proposed (waiting for a clinician); returns the ref."""
    ref = service.refer(text_, unit=Unit(), actor="intake").ref
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="referral",
        actor="test",
    )
    return ref


def refer_and_activate(text_: str, *, by: str = "dr.approver") -> str:
    """A referral taken all the way to an active plan v1; returns the ref."""
    ref = service.refer(text_, unit=Unit(), actor="intake").ref
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="referral",
        actor="test",
    )
    service.decide(ref, unit=Unit(), decision="approve", by=by)
    service.consent(ref, unit=Unit(), by="family liaison")
    activated = service.activate(ref, unit=Unit(calendar=CALENDAR), actor="test")
    assert activated.status in ("activated", "already_active"), activated
    return ref


def row_counts(url: str) -> dict[str, int]:
    """Rows per table of the store (alembic's own table aside)."""
    with db.get_engine(url).connect() as conn:
        return {
            table: conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in SQLModel.metadata.tables
        }


def dump_table(url: str, table: str) -> str:
    """Every row of ``table`` as text, for looking for values that must not be there."""
    with db.get_engine(url).connect() as conn:
        rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
    return "\n".join(json.dumps(list(row), default=str) for row in rows)


def snapshot(url: str) -> dict[str, list[str]]:
    """Every row of every table of the store, as sorted text: equal snapshots, equal stores."""
    return {
        table: sorted(dump_table(url, table).splitlines()) for table in SQLModel.metadata.tables
    }
