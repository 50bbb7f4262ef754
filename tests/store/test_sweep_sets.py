"""The sweep's notification part in set-based statements gives the rows the item-by-item
reading gave: each overdue item escalated once per step, reminders once, digests grouped
per route, and a second sweep the same day adds nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, inspect, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from sidflows.notify import outbox
from sidflows.notify.config import load_notifications
from sidflows.notify.messages import Notice, item_facts
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.referral import validate_referral
from sidflows.store import bulk, db
from sidflows.store.models import (
    OPEN_ITEM_STATUSES,
    AuditEntry,
    Booking,
    CarePlan,
    ItemStatus,
    Notification,
    NotificationStatus,
    Patient,
    PlanItem,
    PlanStatus,
)

from .support import CALENDAR, PROTOCOL, TODAY, iv_child, refer_and_activate, synthetic

CONFIG = load_notifications()
UI = "http://sidflows.test"


def _registry(children: int) -> None:
    """Synthetic children on active plans (bulk), one child through the whole pathway
    (bookings: chairs in the messages), an item on hold and a superseded plan."""
    plans = []
    for document in synthetic(children, prefix="SET"):
        referral = validate_referral(document)
        plan = propose_plan(referral, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR)
        plans.append(
            bulk.ActiveChild(
                ref=document["patient"]["ref"],
                birth_date=dt.date.fromisoformat(document["patient"]["birth_date"]),
                # One item per key, as the store holds them.
                items=list({i["key"]: i for i in plan_document(plan)["items"]}.values()),
            )
        )
    with db.session_scope() as session:
        bulk.load_active_plans(session=session, children=plans, as_of=TODAY, label="test")
    refer_and_activate(iv_child("SET-IV"))
    with db.session_scope() as session:
        first, second = session.exec(select(PlanItem.id).order_by(col(PlanItem.due)).limit(2))
        session.execute(
            update(PlanItem).where(col(PlanItem.id) == first).values(hold_reason="asked")
        )
        plan_id = session.exec(select(PlanItem.plan_id).where(PlanItem.id == second)).one()
        session.execute(
            update(CarePlan).where(col(CarePlan.id) == plan_id).values(status=PlanStatus.superseded)
        )


def _open_items(session: Any) -> list[Any]:
    return list(
        session.exec(
            select(PlanItem, Patient.ref, CarePlan.version, Booking.chair)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .join(Patient, col(Patient.id) == PlanItem.patient_id)
            .outerjoin(Booking, col(Booking.item_id) == PlanItem.id)
            .where(
                col(CarePlan.status) == PlanStatus.active,
                col(PlanItem.status).in_(OPEN_ITEM_STATUSES),
                col(PlanItem.hold_reason).is_(None),
            )
        )
    )


def _notice(event: str, item: PlanItem, ref: str, version: int, chair: int | None) -> Notice:
    facts = item_facts(
        kind=item.kind,
        due=item.due.isoformat(),
        details=item.details,
        chair=chair,
        language=CONFIG.language,
    )
    return Notice(event, ref, facts, item_id=item.id, item_key=item.key, plan_version=version)


def _expected(on: dt.date) -> tuple[dict[str, tuple[Any, ...]], dict[int, int], Counter[int]]:
    """Item by item, as the sweep read it before: the messages (key -> content), the
    escalation level of each item that climbs, and its audit rows."""
    until = CALENDAR.add_working_days(on, CONFIG.reminders.lead_working_days)
    steps = CONFIG.escalation
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows: dict[str, tuple[Any, ...]] = {}
    levels: dict[int, int] = {}
    audits: Counter[int] = Counter()
    with db.session_scope() as session:
        reminded = set(
            session.exec(select(Notification.item_id).where(Notification.event == "item_reminder"))
        )
        for item, ref, version, chair in _open_items(session):
            notices: list[Notice] = []
            if on <= item.due <= until and item.id not in reminded:
                notices.append(_notice("item_reminder", item, ref, version, chair))
            if item.due < on and item.escalations < len(steps):
                late = sum(1 for _ in CALENDAR.working_days(item.due + dt.timedelta(days=1), on))
                reached = sum(1 for s in steps if late >= s.after_working_days)
                for index in range(item.escalations, reached):
                    base = _notice("item_overdue", item, ref, version, chair)
                    notices.append(
                        Notice(
                            "item_overdue",
                            ref,
                            {**base.facts, "days": late, "step": index + 1},
                            item_id=item.id,
                            item_key=item.key,
                            plan_version=version,
                            roles=steps[index].roles,
                            suffix=f"step{index + 1}",
                        )
                    )
                if reached > item.escalations:
                    assert item.id is not None
                    levels[item.id] = reached
                    audits[item.id] += 1
            for notice in notices:
                for row in outbox.messages(notice, config=CONFIG, ui_url=UI, now=now):
                    rows[row["key"]] = (row["item_id"], row["route"], row["subject"], row["body"])
    return rows, levels, audits


def _item_rows() -> dict[str, tuple[Any, ...]]:
    with db.session_scope() as session:
        return {
            n.key: (n.item_id, n.route, n.subject, n.body)
            for n in session.exec(
                select(Notification).where(
                    col(Notification.event).in_(["item_reminder", "item_overdue"])
                )
            )
        }


def _sweep(on: dt.date) -> dict[str, int]:
    with db.session_scope() as session:
        return outbox.queue_day(
            session=session, on=on, calendar=CALENDAR, config=CONFIG, ui_url=UI, actor="sweep"
        ).counts()


def _check_day(on: dt.date) -> dict[str, int]:
    before = _item_rows()
    expected, levels, audits = _expected(on)
    with db.session_scope() as session:
        audited = session.exec(select(func.count()).select_from(AuditEntry)).one()
        digested = session.exec(
            select(func.count()).select_from(Notification).where(Notification.event == "digest")
        ).one()
    counts = _sweep(on)
    after = _item_rows()
    new = {k: v for k, v in after.items() if k not in before}
    assert new == expected  # the same messages, word for word, and no others
    assert counts["reminders"] + counts["escalations"] == len(expected)
    with db.session_scope() as session:
        escalated = session.exec(
            select(AuditEntry).where(AuditEntry.action == "escalated", col(AuditEntry.id) > audited)
        ).all()
        assert Counter(a.entity_id for a in escalated) == audits  # once per item
        for audit in escalated:
            assert audit.after is not None
            assert audit.after["escalations"] == levels[audit.entity_id]
        for item_id, level in levels.items():
            assert session.get(PlanItem, item_id).escalations == level  # type: ignore[union-attr]
        held = session.exec(select(PlanItem).where(col(PlanItem.hold_reason).is_not(None))).one()
        assert held.escalations == 0
        # Digests: one per route that had queued messages, listing exactly them.
        assert (
            session.exec(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status == NotificationStatus.queued)
            ).one()
            == 0
        )
        digests = session.exec(
            select(Notification)
            .where(Notification.event == "digest")
            .order_by(col(Notification.id))
        ).all()[digested:]
        assert len(digests) == counts["digests"]
        assert len({d.route for d in digests}) == len(digests)
        for digest in digests:
            members = session.exec(
                select(Notification).where(Notification.digest_id == digest.id)
            ).all()
            assert members
            assert all(m.route == digest.route for m in members)
            assert all(m.status == NotificationStatus.digested for m in members)
            assert f"{len(members)} items" in digest.subject
            for m in members:
                assert m.subject.removeprefix("sidflows ") in digest.body
        waiting = {
            key
            for key in new
            if CONFIG.events[key.split("|", 1)[0]].digest  # collected in the digests
        }
        filed = {
            n.key
            for n in session.exec(
                select(Notification).where(col(Notification.key).in_(sorted(waiting)))
            )
            if n.digest_id in {d.id for d in digests}
        }
        assert filed == waiting
    return counts


@pytest.mark.parametrize("children", [12])
def test_catch_up_then_daily_sweeps_match_the_item_by_item_rows(
    database_url: str, children: int
) -> None:
    _registry(children)
    last = CALENDAR.next_working_day(TODAY)
    _check_day(last)
    catch_up = CALENDAR.next_working_day(last + dt.timedelta(days=30))
    counts = _check_day(catch_up)
    assert counts["escalations"] > 0
    assert counts["reminders"] > 0
    assert counts["digests"] > 0
    with db.session_scope() as session:
        levels = Counter(session.exec(select(PlanItem.escalations)))
    assert levels[2] > 0
    assert levels[1] > 0
    assert _sweep(catch_up) == {"reminders": 0, "escalations": 0, "digests": 0}
    with db.session_scope() as session:  # the month recorded but for a few
        session.execute(
            update(PlanItem)
            .where(col(PlanItem.due) < catch_up, col(PlanItem.id) % 7 != 0)
            .values(status=ItemStatus.done)
        )
    for day in (CALENDAR.add_working_days(catch_up, 1), CALENDAR.add_working_days(catch_up, 6)):
        _check_day(day)
        assert _sweep(day) == {"reminders": 0, "escalations": 0, "digests": 0}


@pytest.mark.parametrize("steps", [[1, 5], [0, 3, 10], [2]])
def test_escalation_thresholds_are_the_last_due_days_that_reach_each_step(
    steps: list[int],
) -> None:
    """late(d) >= n exactly for the due days up to the step's threshold (no store)."""
    for offset in range(0, 40):
        on = TODAY + dt.timedelta(days=offset)
        thresholds = outbox.escalation_thresholds(on, CALENDAR, steps)
        for n, threshold in zip(sorted(steps), thresholds, strict=True):
            for back in range(1, 30):
                due = on - dt.timedelta(days=back)
                late = sum(1 for _ in CALENDAR.working_days(due + dt.timedelta(days=1), on))
                assert (due <= threshold) == (late >= n), (on, due, n, threshold)


def test_a_bulk_load_with_its_indexes_deferred_ends_with_every_index(database_url: str) -> None:
    """The benchmark's registry build drops the item indexes while it loads: all come back,
    the unique (plan, key) constraint included, and the rows are the ones given."""

    def indexes() -> set[tuple[str, tuple[str, ...], bool]]:
        found = inspect(db.get_engine(database_url))
        named = {
            (i["name"] or "", tuple(c or "" for c in i["column_names"]), bool(i["unique"]))
            for i in found.get_indexes("planitem")
        }
        unique = {
            (u["name"] or "", tuple(u["column_names"]), True)
            for u in found.get_unique_constraints("planitem")
        }
        return named | unique

    before = indexes()
    assert any(columns == ("status", "due") for _, columns, _ in before)
    children = [
        bulk.ActiveChild(
            ref=f"IDX-{n}",
            birth_date=dt.date(2020, 1, 1),
            items=[
                {"key": f"k{k}", "kind": "plan_review", "due": "2026-12-01", "hospital": True}
                for k in range(3)
            ],
        )
        for n in range(4)
    ]
    with db.session_scope() as session, bulk.indexes_deferred(session, "planitem"):
        loaded = bulk.load_active_plans(session=session, children=children, as_of=TODAY, label="t")
    assert loaded == 12
    assert indexes() == before
    with db.session_scope() as session:
        assert session.exec(select(func.count()).select_from(PlanItem)).one() == 12
        assert set(session.exec(select(PlanItem.escalations))) == {0}
    with pytest.raises(IntegrityError), db.session_scope() as session:
        bulk.load_active_plans(
            session=session,
            children=[
                bulk.ActiveChild(
                    ref="IDX-9",
                    birth_date=dt.date(2020, 1, 1),
                    items=[children[0].items[0], children[0].items[0]],
                )
            ],
            as_of=TODAY,
            label="t",
        )
