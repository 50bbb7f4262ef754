"""Safety holds while a re-plan waits, in the store (SQLite and PostgreSQL): §4.8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest_rules import ago, lab, make_doc, treatment, vaccination
from sqlmodel import col, select

from sidflows import service
from sidflows.notify.config import load_notifications
from sidflows.store import db
from sidflows.store.models import AuditEntry, Notification, PlanItem
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY

LIVE = {"vaccine_dose:MMR:2", "vaccine_dose:VAR:2"}
CONFIG = Path(__file__).resolve().parents[2] / "config" / "notifications.toml"


def child(ref: str) -> str:
    """A child with arthritis off treatment, one MMR and one varicella dose: both completed."""
    doc = make_doc(
        ref=ref,
        category="immune_mediated",
        label="juvenile idiopathic arthritis",
        labs=[lab(ago(days=10), igg_g_l=9.0, cd19_per_ul=300, cd4_per_ul=900)],
        vaccinations=[vaccination("MMR", "2017-06-20"), vaccination("VAR", "2017-06-20")],
    )
    return json.dumps(doc)


CHANGE = json.dumps(
    {
        "date": TODAY.isoformat(),
        "treatments": [
            treatment("methotrexate", "antimetabolite", TODAY, None, dose_mg_per_kg_week=0.3)
        ],
    }
)


def unit() -> Unit:
    return Unit(protocol=PROTOCOL, calendar=CALENDAR)


def active_child(ref: str) -> str:
    ref = service.refer(child(ref), unit=Unit(), actor="intake").ref
    service.propose(ref, unit=unit(), today=TODAY, reason="referral", actor="test")
    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    service.consent(ref, unit=Unit(), by="family liaison")
    assert service.activate(ref, unit=unit(), actor="test").status == "activated"
    return ref


def treatment_change(ref: str, *, on_unit: Unit | None = None) -> service.Proposed:
    service.record_treatment_change(ref, CHANGE, actor="dr.rheum")
    return service.propose(
        ref, unit=on_unit or unit(), today=TODAY, reason="treatment change", actor="test"
    )


def items_of(version: int) -> dict[str, PlanItem]:
    from sidflows.store.models import CarePlan

    with db.session_scope() as session:
        rows = session.exec(
            select(PlanItem)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .where(CarePlan.version == version)
        ).all()
        return {i.key: i for i in rows}


def audit_actions(ref: str) -> list[tuple[str, dict[str, Any] | None]]:
    with db.session_scope() as session:
        return [
            (a.action, a.after)
            for a in session.exec(
                select(AuditEntry)
                .where(AuditEntry.patient_ref == ref, AuditEntry.entity == "item")
                .order_by(col(AuditEntry.id))
            )
        ]


def test_replan_holds_the_live_vaccines_in_its_transaction(database_url: str) -> None:
    """A new immunosuppressant: v2 proposed, v1's MMR and varicella held with the block named."""
    ref = active_child("HOLD-1")
    proposed = treatment_change(ref)
    assert (proposed.version, proposed.status) == (2, "proposed")
    held = {h["key"]: h for h in service.held(ref)}
    assert set(held) == LIVE
    assert all(h["held_for"] == 2 and h["plan_version"] == 1 for h in held.values())
    assert "live vaccine blocked" in held["vaccine_dose:MMR:2"]["reason"]
    assert "methotrexate (since 2026-11-24, ongoing)" in held["vaccine_dose:MMR:2"]["reason"]
    assert "§4.8" in held["vaccine_dose:MMR:2"]["reason"]
    assert [a for a, _ in audit_actions(ref)].count("held") == 2
    assert all(items_of(1)[k].status in ("planned", "scheduled") for k in LIVE)


def test_a_long_hold_reason_is_kept_whole(database_url: str) -> None:
    """A hold's reason joins its rules' rationales, each with figures and sources: one
    of 1,100 characters (a B-cell depletion, its CD19 count and lab limit, the IG
    interval) was refused by PostgreSQL's VARCHAR(1000), and the re-plan failed."""
    from sidflows.store.items import hold_item

    ref = active_child("HOLD-LONG")
    treatment_change(ref)
    reason = "; ".join(
        f"vaccine blocked on 2027-03-0{n}: B-cell depletion after R-CHOP (last dose "
        "2026-09-04): CD19 39/uL below the lab's lower limit 100/uL, "
        "docs/clinical-reference.md §2.6, §2.13, §4.8"
        for n in range(1, 10)
    )
    assert len(reason) > 1000
    with db.session_scope() as session:
        item = session.exec(
            select(PlanItem).where(PlanItem.key == "vaccine_dose:MMR:2", PlanItem.held_for == 2)
        ).one()
        assert hold_item(session=session, item=item, reason=reason, version=2, actor="test")
    held = {h["key"]: h for h in service.held(ref)}
    assert held["vaccine_dose:MMR:2"]["reason"] == reason


def test_a_long_replan_reason_is_kept_whole(database_url: str) -> None:
    """New results that change the plan re-plan with what they change as the reason
    (sidflows/rules/outcomes.py): a long list was refused by PostgreSQL's VARCHAR(200)."""
    from sidflows.store.models import CarePlan

    ref = active_child("REASON-LONG")
    service.record_treatment_change(ref, CHANGE, actor="dr.rheum")
    reason = "results change the plan: vaccination: now " + ", ".join(
        f"vaccine_dose:V{n}:{n} on 2027-0{1 + n % 9}-01" for n in range(20)
    )
    assert len(reason) > 200
    proposed = service.propose(ref, unit=unit(), today=TODAY, reason=reason, actor="test")
    assert proposed.version == 2
    with db.session_scope() as session:
        stored = session.exec(select(CarePlan.reason).where(CarePlan.version == 2)).one()
    assert stored == reason


def test_a_referral_from_a_service_with_a_long_name_is_stored(database_url: str) -> None:
    """Its notices go to "referrers:<service>": with a 200-character service name the
    route is 210 characters, refused by PostgreSQL's VARCHAR(120) with the referral."""
    doc = json.loads(child("LONG-SERVICE"))
    doc["referrer"]["service"] = ("Paediatric Haematology, Oncology and Bone Marrow " * 4)[:200]
    ref = service.refer(json.dumps(doc), unit=Unit(), actor="intake").ref
    with db.session_scope() as session:
        routes = session.exec(select(Notification.route).where(Notification.ref == ref)).all()
    assert any(len(route) > 120 for route in routes), routes


def test_the_same_treatment_change_twice_holds_once(database_url: str) -> None:
    ref = active_child("HOLD-2")
    treatment_change(ref)
    before = audit_actions(ref)
    again = treatment_change(ref)
    assert again.version == 2
    assert audit_actions(ref) == before
    assert {h["key"] for h in service.held(ref)} == LIVE


def test_rejecting_the_proposal_releases_the_held_items(database_url: str) -> None:
    ref = active_child("HOLD-3")
    treatment_change(ref)
    service.decide(ref, unit=Unit(), decision="reject", by="dr.approver", note="keep v1")
    assert service.held(ref) == []
    released = [after for action, after in audit_actions(ref) if action == "released"]
    assert len(released) == 2
    assert all(after and "rejected" in after["why"] for after in released)
    items = items_of(1)
    assert all(
        items[k].status in ("planned", "scheduled") and not items[k].hold_reason for k in LIVE
    )


def test_approving_the_proposal_cancels_what_it_dropped(database_url: str) -> None:
    """Approved v2 has no live dose: v1's held doses are cancelled, the reason kept."""
    ref = active_child("HOLD-4")
    treatment_change(ref)
    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    items = items_of(1)
    assert all(items[k].status == "cancelled" for k in LIVE)
    assert all("methotrexate" in (items[k].hold_reason or "") for k in LIVE)
    ended = [after for action, after in audit_actions(ref) if action == "hold ended: cancelled"]
    assert len(ended) == 2
    assert all(after and "methotrexate" in after["why"] for after in ended)
    activated = service.activate(ref, unit=unit(), actor="test")
    assert activated.status == "activated"
    assert {f"v1:{k}" for k in LIVE} <= set(activated.cancelled)
    assert not LIVE & set(items_of(2))
    assert service.held(ref) == []


def test_modified_plan_that_keeps_an_item_releases_it(database_url: str) -> None:
    """A held item the approved (modified) plan still gives on its day is released."""
    ref = active_child("HOLD-5")
    treatment_change(ref)
    from sidflows.store import items as store_items
    from sidflows.store.models import CarePlan

    with db.session_scope() as session:
        # The routine IPV catch-up (§4.16): arthritis off treatment has no PCV reinforcement.
        pcv = session.exec(
            select(PlanItem)
            .join(CarePlan, col(CarePlan.id) == PlanItem.plan_id)
            .where(CarePlan.version == 1, PlanItem.key == "vaccine_dose:IPV:1")
        ).one()
        store_items.hold_item(
            session=session, item=pcv, reason="test hold", version=2, actor="test"
        )
    service.decide(
        ref,
        unit=Unit(),
        decision="modify",
        by="dr.approver",
        remove_items=("vaccine_dose:IIV:2026:1",),
    )
    items = items_of(1)
    assert items["vaccine_dose:IPV:1"].hold_reason is None
    assert items["vaccine_dose:IPV:1"].status in ("planned", "scheduled")
    assert all(items[k].status == "cancelled" for k in LIVE)


def test_coordinators_hear_once_per_proposal(database_url: str) -> None:
    """The shipped items_held event reaches the coordinators, one message per proposal."""
    routed = Unit(protocol=PROTOCOL, calendar=CALENDAR, notifications=load_notifications(CONFIG))
    ref = active_child("HOLD-6")
    treatment_change(ref, on_unit=routed)
    treatment_change(ref, on_unit=routed)
    with db.session_scope() as session:
        rows = session.exec(select(Notification).where(Notification.event == "items_held")).all()
    assert len(rows) == 1
    assert rows[0].plan_version == 2
    assert rows[0].ref == ref
    assert "2 item(s) held while plan v2 waits" in rows[0].subject
    assert "vaccine_dose:MMR:2" in rows[0].body
    assert "Child" not in rows[0].body
