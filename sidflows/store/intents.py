"""Intents: what must happen in Prefect because of a committed change, kept in the store.

The store is the record and Prefect its projection. A change that needs Prefect
(a child's pathway to start, a re-plan after a treatment change or a result, an
activation after consent) writes an intent in its own transaction, under a key
that is also the Prefect run's idempotency key. Whoever comes next (the command
itself, `serve`'s every-minute pass, the sweep) claims the pending ones and
carries them out; Prefect's idempotency keys make a repeat return the same run,
so an intent is carried out once even if two passes race or one dies mid-way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, func, select

from sidflows.store.models import Intent, IntentStatus, utcnow

KINDS = ("pathway", "replan", "activate")
BACKOFF_FIRST = dt.timedelta(seconds=30)
BACKOFF_MAX = dt.timedelta(minutes=10)
CLAIM_FOR = dt.timedelta(minutes=2)  # a pass that dies leaves its claim to run out


@dataclass(frozen=True)
class Pending:
    """An intent to carry out (ref-only parameters)."""

    id: int
    key: str
    kind: str
    ref: str
    parameters: Mapping[str, Any]
    attempts: int


def add(*, session: Session, kind: str, ref: str, key: str, parameters: Mapping[str, Any]) -> bool:
    """Write the intent unless its key is already held; True when it is new."""
    assert kind in KINDS, kind
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    row = {
        "key": key,
        "kind": kind,
        "ref": ref,
        "parameters": dict(parameters),
        "status": IntentStatus.pending,
        "attempts": 0,
        "created_at": utcnow(),
    }
    statement = (
        make(Intent).values(**row).on_conflict_do_nothing(index_elements=["key"])
    ).returning(col(Intent.id))
    # RETURNING, not rowcount: the drivers disagree on an insert that did nothing
    return session.execute(statement).first() is not None


def claim(
    *, session: Session, now: dt.datetime, limit: int = 100, ref: str | None = None
) -> list[Pending]:
    """The pending intents whose time has come (this child's, or all), oldest first,
    claimed for a while.

    A claim only moves ``next_attempt_at`` forward: a pass that dies holding it
    leaves the intent to the pass after the claim runs out. Each row is moved by a
    conditional update, so of two passes racing for it only one gets it.
    """
    query = select(Intent).where(
        Intent.status == IntentStatus.pending,
        or_(col(Intent.next_attempt_at).is_(None), col(Intent.next_attempt_at) <= now),
    )
    if ref is not None:
        query = query.where(Intent.ref == ref)
    rows = session.exec(query.order_by(col(Intent.id)).limit(limit)).all()
    claimed: list[Pending] = []
    for row in rows:
        assert row.id is not None
        moved = session.execute(
            update(Intent)
            .where(
                col(Intent.id) == row.id,
                col(Intent.status) == IntentStatus.pending,
                or_(col(Intent.next_attempt_at).is_(None), col(Intent.next_attempt_at) <= now),
            )
            .values(next_attempt_at=now + CLAIM_FOR)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0):
            claimed.append(
                Pending(row.id, row.key, row.kind, row.ref, row.parameters, row.attempts)
            )
    return claimed


def done(*, session: Session, intent_id: int, run_id: str | None, now: dt.datetime) -> None:
    session.execute(
        update(Intent)
        .where(col(Intent.id) == intent_id)
        .values(status=IntentStatus.done, run_id=run_id, done_at=now, last_error=None)
        .execution_options(synchronize_session=False)
    )


def failed(*, session: Session, intent_id: int, error: str, now: dt.datetime) -> dt.datetime:
    """An attempt that did not reach Prefect: try again after a doubling wait."""
    row = session.get(Intent, intent_id)
    assert row is not None
    wait = min(BACKOFF_FIRST * (2**row.attempts), BACKOFF_MAX)
    row.attempts += 1
    row.last_error = error[:300]
    row.next_attempt_at = now + wait
    session.add(row)
    return row.next_attempt_at


def settle(*, session: Session, ref: str, kind: str, now: dt.datetime) -> int:
    """This child's pending intents of ``kind`` are fulfilled (their flow ran here); how many."""
    moved = session.execute(
        update(Intent)
        .where(
            col(Intent.ref) == ref,
            col(Intent.kind) == kind,
            col(Intent.status) == IntentStatus.pending,
        )
        .values(status=IntentStatus.done, done_at=now, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(moved, "rowcount", 0) or 0)


def carried_since(*, session: Session, since: dt.datetime) -> list[Intent]:
    """The intents carried out as a run on the server since ``since``: the runs to look
    at, since an intent is done when its run exists, not when the run has done its work."""
    return list(
        session.exec(
            select(Intent)
            .where(
                Intent.status == IntentStatus.done,
                col(Intent.done_at) >= since,
                col(Intent.run_id).is_not(None),
                col(Intent.settled_at).is_(None),
            )
            .order_by(col(Intent.id))
        ).all()
    )


def mark_settled(*, session: Session, intent_ids: list[int], now: dt.datetime) -> int:
    """Intents whose runs need no more watching (completed, or their child moved on):
    one statement; the passes after it do not ask Prefect about them again."""
    if not intent_ids:
        return 0
    settled = session.execute(
        update(Intent)
        .where(col(Intent.id).in_(intent_ids), col(Intent.status) == IntentStatus.done)
        .values(settled_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(settled, "rowcount", 0) or 0)


def attempt_of(key: str) -> tuple[str, int]:
    """An intent key's root and attempt: ``replan:R:d`` is attempt 1, ``replan:R:d#2`` the
    second (the item runs' convention, flows/runtime.py)."""
    root, _, n = key.partition("#")
    return root, int(n) if n.isdigit() else 1


def _leave_done(session: Session, intent_id: int, **values: Any) -> bool:
    """Move a done intent on (replaced, failed) by a conditional update: of two passes
    racing for it only one moves it. True for that one."""
    moved = session.execute(
        update(Intent)
        .where(col(Intent.id) == intent_id, col(Intent.status) == IntentStatus.done)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(moved, "rowcount", 0))


def again(*, session: Session, intent_id: int, now: dt.datetime) -> str | None:
    """The next attempt of an intent whose run died, written pending beside it (its key
    holds the dead run, so the next run needs a key of its own); the dead one is marked
    replaced. Its key, or None when another pass got there first."""
    if not _leave_done(session, intent_id, status=IntentStatus.replaced, done_at=now):
        return None
    row = session.get(Intent, intent_id)
    assert row is not None
    root, attempt = attempt_of(row.key)
    key = f"{root[: 300 - 4]}#{attempt + 1}"
    add(session=session, kind=row.kind, ref=row.ref, key=key, parameters=row.parameters)
    return key


def given_up(*, session: Session, intent_id: int, error: str, now: dt.datetime) -> bool:
    """The intent's run died on its last attempt: marked failed, for a person to look at."""
    return _leave_done(
        session, intent_id, status=IntentStatus.failed, last_error=error[:300], done_at=now
    )


def by_key(*, session: Session, key: str) -> Intent | None:
    return session.exec(select(Intent).where(Intent.key == key)).first()


def pending_count(*, session: Session, ref: str | None = None) -> int:
    query = select(func.count()).select_from(Intent).where(Intent.status == IntentStatus.pending)
    if ref is not None:
        query = query.where(Intent.ref == ref)
    return int(session.exec(query).one())


def waiting(*, session: Session, ref: str) -> list[Intent]:
    """This child's intents not yet carried out (``show`` lists them)."""
    return list(
        session.exec(
            select(Intent)
            .where(Intent.ref == ref, Intent.status == IntentStatus.pending)
            .order_by(col(Intent.id))
        ).all()
    )
