"""The outbox: each step of the pathway queues its messages in its own transaction,
once per key, with the minimum content and never an identity."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.notify import outbox
from sidflows.notify.config import load_notifications
from sidflows.store import db
from sidflows.store.models import AuditEntry, Notification, NotificationStatus, PlanItem
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, example, iv_child, refer_and_activate

CONFIG = load_notifications()


def _rows(ref: str | None = None) -> list[Notification]:
    with db.session_scope() as session:
        query = select(Notification).order_by(col(Notification.id))
        if ref is not None:
            query = query.where(Notification.ref == ref)
        return list(session.exec(query))


def _events(ref: str) -> set[tuple[str, str]]:
    return {(n.event, n.route) for n in _rows(ref)}


def _day(on: dt.date) -> dict[str, int]:
    return service.notify_day(on, unit=Unit(calendar=CALENDAR), actor="sweep")


def test_referral_tells_the_coordinators_and_acknowledges_to_the_referring_service(
    database_url: str,
) -> None:
    """A referral queues one message for the coordinators and one for its service's referrers."""
    ref = service.refer(example("lupus-on-rituximab"), unit=Unit(), actor="intake").ref
    service.refer(
        example("lupus-on-rituximab"), unit=Unit(), actor="intake"
    )  # the same document again
    found = _rows(ref)
    assert {(n.event, n.route) for n in found} == {
        ("referral_received", "coordinators"),
        ("referral_received", "referrers:rheumatology"),
    }
    assert all(n.status == NotificationStatus.pending for n in found)
    ack = next(n for n in found if n.route.startswith("referrers"))
    assert "was received" in ack.subject


def test_the_pathway_queues_approval_consent_and_activation_messages(database_url: str) -> None:
    """Approval waits -> clinicians; consent waits -> coordinators; active -> each role its part."""
    ref = service.refer(example("lupus-on-rituximab"), unit=Unit(), actor="intake").ref
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="referral",
        actor="t",
    )
    assert ("plan_awaiting_approval", "clinicians") in _events(ref)
    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    service.activate(ref, unit=Unit(calendar=CALENDAR), actor="t")
    service.activate(
        ref, unit=Unit(calendar=CALENDAR), actor="t"
    )  # a repeated run queues nothing new
    consent = [n for n in _rows(ref) if n.event == "plan_awaiting_consent"]
    assert [n.route for n in consent] == ["coordinators"]
    assert "sidflows consent" in consent[0].body
    service.consent(ref, unit=Unit(), by="family liaison")
    service.activate(ref, unit=Unit(calendar=CALENDAR), actor="t")
    activated = {n.route: n for n in _rows(ref) if n.event == "plan_activated"}
    # No immunoglobulin in this plan: neither the day unit nor the pharmacy nor home care.
    assert set(activated) == {"coordinators", "referrers:rheumatology"}
    assert "Please tell the unit before changing" in activated["referrers:rheumatology"].body


def test_an_iv_plan_tells_the_day_unit_its_chairs_and_the_pharmacy_its_grams(
    database_url: str,
) -> None:
    """The day unit gets each booked chair; the pharmacy the grams of each session and the total."""
    ref = refer_and_activate(iv_child("IV-1"))
    activated = {n.route: n for n in _rows(ref) if n.event == "plan_activated"}
    assert {"day_unit", "pharmacy", "coordinators"} <= set(activated)
    assert "home_care" not in activated
    with db.session_scope() as session:
        sessions = session.exec(select(PlanItem).where(PlanItem.kind == "ig_session")).all()
        grams = sum(float(s.details["dose_g"]) for s in sessions)
    assert activated["day_unit"].body.count(", chair ") == len(sessions)
    assert activated["pharmacy"].body.count(" g IV") == len(sessions)
    assert f"= {grams:g} g" in activated["pharmacy"].body


def test_home_sc_training_goes_to_home_care(database_url: str) -> None:
    """A child starting subcutaneous IG at home: home care hears of the supervised sessions."""
    document = json.loads(iv_child("SC-1"))
    document["preferences"] = {"ig_route": "sc"}
    try:
        ref = refer_and_activate(json.dumps(document))
    except Exception as exc:  # pragma: no cover - the referral format is the contract
        pytest.fail(f"SC referral refused: {exc}")
    activated = {n.route: n for n in _rows(ref) if n.event == "plan_activated"}
    assert "home_care" in activated
    assert "with the home-care nurse" in activated["home_care"].body
    assert "day_unit" not in activated


def test_reminders_go_out_once_within_the_lead_time_and_are_digested(database_url: str) -> None:
    """Items due within 2 working days get one reminder each; the roles get one digest a day."""
    ref = refer_and_activate(iv_child("IV-2"))
    with db.session_scope() as session:
        first_due = min(i.due for i in session.exec(select(PlanItem)))
    day = first_due - dt.timedelta(days=1)
    while not CALENDAR.is_working_day(day):
        day -= dt.timedelta(days=1)
    counts = _day(day)
    assert counts["reminders"] > 0
    assert counts["digests"] > 0
    reminders = [n for n in _rows(ref) if n.event == "item_reminder"]
    assert reminders
    assert all(n.status == NotificationStatus.digested for n in reminders)
    assert {n.route for n in reminders} >= {"coordinators", "day_unit", "pharmacy"}
    due = CALENDAR.add_working_days(day, CONFIG.reminders.lead_working_days)
    with db.session_scope() as session:
        covered = {n.item_id for n in reminders}
        expected = {i.id for i in session.exec(select(PlanItem)) if day <= i.due <= due}
    assert covered == expected
    digests = [n for n in _rows() if n.event == "digest"]
    assert len(digests) == len({n.route for n in reminders})
    for digest in digests:
        members = [n for n in reminders if n.digest_id == digest.id]
        assert members
        assert f"{len(members)} items" in digest.subject
    again = _day(day)
    assert again == {"reminders": 0, "escalations": 0, "digests": 0}


def test_overdue_items_escalate_to_coordinators_then_clinicians_once_each(
    database_url: str,
) -> None:
    """1 working day late: coordinators; 5: clinicians; never twice; each step audited."""
    ref = refer_and_activate(iv_child("IV-3"))
    with db.session_scope() as session:
        item = session.exec(select(PlanItem).order_by(col(PlanItem.due))).first()
        assert item is not None
        due, key = item.due, item.key
    one = CALENDAR.add_working_days(due, 1)
    _day(one)
    _day(one)
    overdue = [n for n in _rows(ref) if n.event == "item_overdue" and n.item_key == key]
    assert [n.route for n in overdue] == ["coordinators"]
    assert "1 working days overdue" in overdue[0].body
    five = CALENDAR.add_working_days(due, 5)
    _day(five)
    _day(five + dt.timedelta(days=7))
    overdue = [n for n in _rows(ref) if n.event == "item_overdue" and n.item_key == key]
    assert sorted(n.route for n in overdue) == ["clinicians", "coordinators"]
    with db.session_scope() as session:
        escalated = session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "escalated", AuditEntry.patient_ref == ref
            )
        ).all()
        item = session.exec(select(PlanItem).where(PlanItem.key == key)).one()
    assert item.escalations == 2
    assert any(a.after and a.after["escalations"] == 2 for a in escalated)


def test_missed_session_and_low_trough_alert_the_right_people(database_url: str) -> None:
    """A missed IV session: coordinators, clinicians, day unit; a low trough: clinicians."""
    ref = refer_and_activate(iv_child("IV-4"))
    with db.session_scope() as session:
        items = session.exec(select(PlanItem).order_by(col(PlanItem.due))).all()
        session_item = next(i for i in items if i.kind == "ig_session")
        trough = next(i for i in items if i.kind == "ig_trough")
        plan_version = 1
    service.item_outcome(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        plan_version=plan_version,
        item_key=session_item.key,
        outcome={"result": "missed"},
        actor="nurse",
        on=session_item.due,
    )
    missed = {n.route for n in _rows(ref) if n.event == "ig_session_missed"}
    assert missed == {"coordinators", "clinicians", "day_unit"}
    service.item_outcome(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        plan_version=plan_version,
        item_key=trough.key,
        outcome={"result": "done", "values": {"igg_g_l": 3.1}},
        actor="lab",
        on=trough.due,
    )
    low = [n for n in _rows(ref) if n.event == "trough_below_target"]
    assert [n.route for n in low] == ["clinicians"]
    assert "3.1 g/L" in low[0].body


def test_a_replan_says_what_changes_to_clinicians_coordinators_and_the_referrer(
    database_url: str,
) -> None:
    """A treatment change's re-plan lists the changes, to the referring service too."""
    ref = refer_and_activate(example("all-after-maintenance"))
    change = {
        "date": "2026-11-23",
        "treatments": [
            {"drug": "relapse induction", "class": "chemotherapy", "start": "2026-11-22"}
        ],
    }
    service.record_treatment_change(ref, json.dumps(change), actor="oncology")
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="treatment change",
        actor="t",
    )
    replanned = {n.route: n for n in _rows(ref) if n.event == "plan_replanned"}
    assert set(replanned) == {"clinicians", "coordinators", "referrers:oncology"}
    assert "treatment change" in replanned["clinicians"].subject
    assert replanned["clinicians"].body.count("\n- ") >= 1


def test_no_message_carries_identity(database_url: str) -> None:
    """Names and record numbers never enter the outbox, whatever the event."""
    ref = refer_and_activate(iv_child("ID-1"))
    with db.session_scope() as session:
        first = min(i.due for i in session.exec(select(PlanItem)))
    _day(first - dt.timedelta(days=1))
    _day(CALENDAR.add_working_days(first, 6))
    text = "\n".join(f"{n.subject}\n{n.body}\n{n.key}" for n in _rows())
    assert ref in text
    assert "Child ID-1" not in text
    assert "MRN-ID-1" not in text
    assert "2016-10-02" not in text  # no birth date


def test_a_failed_transaction_queues_nothing(database_url: str) -> None:
    """The outbox row and the change share one transaction: a rollback takes both."""
    ref = service.refer(example("lupus-on-rituximab"), unit=Unit(), actor="intake").ref
    before = len(_rows())

    def change_that_fails() -> None:
        with db.session_scope() as session:
            outbox.enqueue(
                session,
                [outbox.Notice("plan_awaiting_approval", ref, {"version": 9}, plan_version=9)],
                config=CONFIG,
                ui_url="http://ui",
            )
            raise RuntimeError("the change failed after the message was queued")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert len(_rows()) == before
