"""Intents in the store (SQLite and PostgreSQL): one per key, claimed by one pass at a time,
retried after a doubling wait, done once."""

from __future__ import annotations

import datetime as dt
import threading

from sidflows.store import db, intents
from sidflows.store.models import Intent, IntentStatus

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def _add(key: str, ref: str = "EX-0001", kind: str = "replan") -> bool:
    with db.session_scope() as session:
        return intents.add(
            session=session, kind=kind, ref=ref, key=key, parameters={"ref": ref, "reason": "x"}
        )


def _claim(now: dt.datetime = NOW, ref: str | None = None) -> list[intents.Pending]:
    with db.session_scope() as session:
        return intents.claim(session=session, now=now, ref=ref)


def _row(key: str) -> Intent:
    with db.session_scope() as session:
        row = intents.by_key(session=session, key=key)
        assert row is not None
        return row


def test_add_is_idempotent_by_key(database_url: str) -> None:
    assert _add("replan:EX-0001:a") is True
    assert _add("replan:EX-0001:a") is False
    assert _add("replan:EX-0001:b") is True
    with db.session_scope() as session:
        assert intents.pending_count(session=session) == 2
        assert intents.pending_count(session=session, ref="EX-0001") == 2
        assert intents.pending_count(session=session, ref="EX-0002") == 0
        assert [i.key for i in intents.waiting(session=session, ref="EX-0001")] == [
            "replan:EX-0001:a",
            "replan:EX-0001:b",
        ]


def test_claim_failed_done_lifecycle_with_backoff(database_url: str) -> None:
    _add("k")
    _add("other", ref="EX-0002")
    assert [p.key for p in _claim(ref="EX-0001")] == ["k"]
    assert _claim(ref="EX-0001") == []  # held by the claim for a while
    held = NOW + intents.CLAIM_FOR
    (again,) = _claim(held, ref="EX-0001")  # a pass that died: the claim ran out
    with db.session_scope() as session:
        retry_at = intents.failed(session=session, intent_id=again.id, error="refused", now=held)
    assert retry_at == held + intents.BACKOFF_FIRST
    row = _row("k")
    assert (row.status, row.attempts, row.last_error) == (IntentStatus.pending, 1, "refused")
    assert _claim(retry_at - dt.timedelta(seconds=1), ref="EX-0001") == []
    (third,) = _claim(retry_at, ref="EX-0001")
    assert third.attempts == 1
    with db.session_scope() as session:
        second_wait = intents.failed(session=session, intent_id=third.id, error="e", now=retry_at)
    assert second_wait - retry_at == 2 * intents.BACKOFF_FIRST  # doubling
    for _ in range(20):  # the wait never grows beyond its cap
        with db.session_scope() as session:
            last = intents.failed(session=session, intent_id=third.id, error="e", now=NOW)
    assert last - NOW == intents.BACKOFF_MAX
    (fourth,) = _claim(NOW + dt.timedelta(days=1), ref="EX-0001")
    with db.session_scope() as session:
        intents.done(session=session, intent_id=fourth.id, run_id="run-1", now=NOW)
    row = _row("k")
    assert (row.status, row.run_id, row.last_error) == (IntentStatus.done, "run-1", None)
    assert _claim(NOW + dt.timedelta(days=2), ref="EX-0001") == []
    assert _add("k") is False  # a done intent is not written again
    with db.session_scope() as session:
        assert intents.pending_count(session=session, ref="EX-0001") == 0
        assert intents.pending_count(session=session) == 1


def test_two_concurrent_claims_never_get_the_same_intent(database_url: str) -> None:
    keys = [f"pathway:C-{i}:d" for i in range(40)]
    for i, key in enumerate(keys):
        _add(key, ref=f"C-{i}", kind="pathway")
    threads = 8
    barrier = threading.Barrier(threads)
    got: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            got[i] = [p.key for p in _claim()]
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    claimed = [key for one in got for key in one]
    assert len(claimed) == len(set(claimed))  # never twice
    assert sorted(claimed) == sorted(keys)  # and none left behind
