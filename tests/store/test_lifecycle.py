"""A plan's life through the service steps: propose, decide, consent, activate, re-plan, close."""

from __future__ import annotations

import json

import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.store import db, patients, plans
from sidflows.store.models import (
    AuditEntry,
    Booking,
    CarePlan,
    ItemStatus,
    PatientState,
    PlanItem,
    PlanStatus,
)

from .support import CALENDAR, PROTOCOL, TODAY, example, refer_and_activate

RELAPSE = json.dumps(
    {
        "date": "2026-11-23",
        "treatments": [
            {"drug": "relapse induction", "class": "chemotherapy", "start": "2026-11-22"}
        ],
    }
)


def _propose(ref: str, reason: str = "referral") -> service.Proposed:
    return service.propose(
        ref, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR, reason=reason, actor="test"
    )


def _activate(ref: str) -> service.Activated:
    return service.activate(ref, calendar=CALENDAR, actor="test")


def _plans(ref: str) -> dict[int, str]:
    """{version: status} of the child's plans."""
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        rows = session.exec(select(CarePlan).where(CarePlan.patient_id == patient.id)).all()
        return {p.version: p.status for p in rows}


def _state(ref: str) -> str:
    with db.session_scope() as session:
        return patients.get_patient(session=session, ref=ref).state


def _plan(ref: str, version: int) -> CarePlan:
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        return session.exec(
            select(CarePlan).where(CarePlan.patient_id == patient.id, CarePlan.version == version)
        ).one()


def _items(ref: str, version: int) -> list[PlanItem]:
    plan = _plan(ref, version)
    with db.session_scope() as session:
        return list(session.exec(select(PlanItem).where(PlanItem.plan_id == plan.id)))


def _bookings(items: list[PlanItem]) -> list[Booking]:
    with db.session_scope() as session:
        return list(
            session.exec(select(Booking).where(col(Booking.item_id).in_([i.id for i in items])))
        )


def test_proposal_waits_for_approval_then_consent_then_activates(database_url: str) -> None:
    """Awaiting approval -> approved -> awaiting consent (none in the referral) -> activated."""
    ref = service.refer(example("lupus-on-rituximab"), actor="intake").ref
    proposed = _propose(ref)
    assert (proposed.version, proposed.status) == (1, PlanStatus.proposed)
    assert _state(ref) == PatientState.awaiting_approval
    assert _activate(ref).status == "awaiting_approval"

    approval = service.decide(ref, decision="approve", by="dr.approver")
    assert approval.changed
    assert _activate(ref).status == "awaiting_consent"
    assert _state(ref) == PatientState.awaiting_consent
    assert _items(ref, 1) == []

    assert service.consent(ref, by="family liaison") is True
    assert service.consent(ref, by="family liaison") is False  # recorded once
    activated = _activate(ref)
    assert (activated.status, activated.version) == ("activated", 1)
    assert activated.runs, "the next item of each stream gets a run"
    assert _state(ref) == PatientState.active
    assert _plans(ref) == {1: PlanStatus.active}
    plan = _plan(ref, 1)
    assert {i.key for i in _items(ref, 1)} == {i["key"] for i in plan.document["items"]}
    assert (plan.approved_by, plan.activated_at is not None) == ("dr.approver", True)


def test_proposing_the_same_plan_again_is_recognised(database_url: str) -> None:
    """The same assessment on the same day does not make a new version."""
    ref = service.refer(example("lupus-on-rituximab"), actor="intake").ref
    assert _propose(ref).version == 1
    assert _propose(ref).version == 1
    assert _plans(ref) == {1: PlanStatus.proposed}


def test_approving_twice_activates_once(database_url: str) -> None:
    """A second approval and a second activation change nothing: one plan, items made once."""
    ref = service.refer(example("all-after-maintenance"), actor="intake").ref  # consent given
    _propose(ref)
    assert service.decide(ref, decision="approve", by="dr.one").changed
    again = service.decide(ref, decision="approve", by="dr.two")
    assert not again.changed
    assert "already approved by dr.one" in again.message
    first, second = _activate(ref), _activate(ref)
    assert (first.status, second.status) == ("activated", "already_active")
    assert first.bookings > 0
    assert second.bookings == 0
    after = service.decide(ref, decision="approve", by="dr.three")
    assert (after.changed, after.message) == (False, "plan v1 is already active")
    assert _plans(ref) == {1: PlanStatus.active}
    items = _items(ref, 1)
    assert len(items) == len(_plan(ref, 1).document["items"])
    assert len({i.key for i in items}) == len(items)
    iv_sessions = [i for i in items if i.kind == "ig_session" and i.details["route"] == "iv"]
    assert len(_bookings(items)) == len(iv_sessions) == first.bookings


def test_an_approved_plan_left_inactive_is_found_until_activated(database_url: str) -> None:
    """Approved (consent given or not needed) yet not active: the sweep's to finish, once."""
    waiting = service.refer(example("lupus-on-rituximab"), actor="intake").ref  # no consent
    ready = service.refer(example("all-after-maintenance"), actor="intake").ref  # consent given
    _propose(waiting)
    _propose(ready)
    assert service.unfinished_activations() == []  # nobody approved yet
    service.decide(waiting, decision="approve", by="dr.approver")
    service.decide(ready, decision="approve", by="dr.approver")
    assert service.unfinished_activations() == [ready]  # the other waits for the family
    service.consent(waiting, by="family liaison")
    assert service.unfinished_activations() == sorted([ready, waiting])
    assert _activate(ready).status == "activated"
    assert service.unfinished_activations() == [waiting]


def test_reject_closes_the_proposal(database_url: str) -> None:
    """A rejected proposal is closed, the child is back to referred and nothing activates."""
    ref = service.refer(example("all-after-maintenance"), actor="intake").ref
    _propose(ref)
    result = service.decide(ref, decision="reject", by="dr.approver", note="wrong weight")
    assert result.changed
    assert _plans(ref) == {1: PlanStatus.closed}
    assert _state(ref) == PatientState.referred
    assert _activate(ref).status == "none"
    with pytest.raises(InvalidInput, match="no plan waiting for approval"):
        service.decide(ref, decision="approve", by="dr.approver")


def test_modify_removes_items_in_a_new_approved_version(database_url: str) -> None:
    """Modify makes v+1, approved by the clinician, without the removed items."""
    ref = service.refer(example("all-after-maintenance"), actor="intake").ref
    _propose(ref)
    keys = [i["key"] for i in _plan(ref, 1).document["items"]]
    removed = tuple(k for k in keys if k.startswith("prophylaxis:"))
    assert removed
    result = service.decide(
        ref, decision="modify", by="dr.approver", note="no prophylaxis", remove_items=removed
    )
    assert result.plan is not None
    assert (result.plan.version, result.plan.approved_by) == (2, "dr.approver")
    assert _plans(ref) == {1: PlanStatus.superseded, 2: PlanStatus.proposed}
    assert _activate(ref).status == "activated"
    assert _plans(ref) == {1: PlanStatus.superseded, 2: PlanStatus.active}
    active_keys = {i.key for i in _items(ref, 2)}
    assert active_keys == set(keys) - set(removed)


def test_modify_refuses_an_unknown_item(database_url: str) -> None:
    """Removing an item that is not in the plan is refused, naming remove_items."""
    ref = service.refer(example("all-after-maintenance"), actor="intake").ref
    _propose(ref)
    with pytest.raises(InvalidInput) as refused:
        service.decide(ref, decision="modify", by="dr.approver", remove_items=("no_such:item",))
    assert refused.value.field == "remove_items"
    assert "no_such:item" in str(refused.value)
    assert _plans(ref) == {1: PlanStatus.proposed}


def test_treatment_change_replans_and_the_new_version_replaces_the_old(database_url: str) -> None:
    """Re-plan: v2 waits while v1 stays active; activating v2 supersedes v1, frees its chairs."""
    ref = refer_and_activate(example("all-after-maintenance"))
    v1_items = _items(ref, 1)
    assert _bookings(v1_items)

    changes = service.record_treatment_change(ref, RELAPSE, actor="dr.oncology")
    assert [(c["drug"], c["action"]) for c in changes] == [("relapse induction", "added")]
    proposed = _propose(ref, reason="treatment change")
    assert (proposed.version, proposed.status) == (2, PlanStatus.proposed)
    assert _plans(ref) == {1: PlanStatus.active, 2: PlanStatus.proposed}
    assert _state(ref) == PatientState.active
    with db.session_scope() as session:
        shown = plans.show_document(
            session=session, patient=patients.get_patient(session=session, ref=ref)
        )
    assert shown is not None
    assert (shown["plan_version"], shown["proposed_version"]) == (1, 2)

    service.decide(ref, decision="approve", by="dr.approver")
    activated = _activate(ref)
    assert (activated.status, activated.version) == ("activated", 2)
    assert _plans(ref) == {1: PlanStatus.superseded, 2: PlanStatus.active}
    v1_after = _items(ref, 1)
    assert {i.status for i in v1_after} == {ItemStatus.cancelled}
    assert sorted(activated.cancelled) == sorted(f"v1:{i.key}" for i in v1_items)
    assert _bookings(v1_after) == []
    assert len(_bookings(_items(ref, 2))) == activated.bookings
    with db.session_scope() as session:
        active = session.exec(select(CarePlan).where(CarePlan.status == PlanStatus.active)).all()
    assert [p.version for p in active] == [2]


def test_rejecting_a_replan_keeps_the_active_plan(database_url: str) -> None:
    """A rejected re-plan is closed; the child stays active on the plan in force."""
    ref = refer_and_activate(example("all-after-maintenance"))
    service.record_treatment_change(ref, RELAPSE, actor="dr.oncology")
    assert _propose(ref, reason="treatment change").version == 2
    service.decide(ref, decision="reject", by="dr.approver", note="not yet")
    assert _plans(ref) == {1: PlanStatus.active, 2: PlanStatus.closed}
    assert _state(ref) == PatientState.active


def test_treatment_change_of_a_discharged_child_is_refused(database_url: str) -> None:
    """After discharge a treatment change (and a re-plan) is refused with a message."""
    ref = refer_and_activate(example("all-after-maintenance"))
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        plans.close_pathway(session=session, patient=patient, actor="dr.review", why="recovered")
    assert _state(ref) == PatientState.discharged
    assert _plans(ref) == {1: PlanStatus.closed}
    assert {i.status for i in _items(ref, 1)} == {ItemStatus.cancelled}
    with pytest.raises(InvalidInput, match="discharged"):
        service.record_treatment_change(ref, RELAPSE, actor="dr.oncology")
    with pytest.raises(InvalidInput, match="discharged"):
        _propose(ref, reason="treatment change")


def test_every_plan_change_is_audited(database_url: str) -> None:
    """Proposal, approval, consent, activation and state changes each leave who and when."""
    ref = service.refer(example("lupus-on-rituximab"), actor="dr.intake").ref
    service.propose(
        ref, today=TODAY, protocol=PROTOCOL, calendar=CALENDAR, reason="referral", actor="planner"
    )
    service.decide(ref, decision="approve", by="dr.approver")
    _activate(ref)
    service.consent(ref, by="family liaison")
    _activate(ref)
    with db.session_scope() as session:
        entries = session.exec(
            select(AuditEntry).where(AuditEntry.patient_ref == ref).order_by(col(AuditEntry.id))
        ).all()
    trail = [(e.actor, e.action) for e in entries if e.entity != "item"]
    assert trail == [
        ("dr.intake", "referral received"),
        ("planner", "plan v1 proposed"),
        ("planner", "state"),
        ("dr.approver", "plan v1 approved"),
        ("test", "state"),
        ("family liaison", "cost consent recorded"),
        ("test", "plan v1 active"),
        ("test", "state"),
    ]
    states = [(e.before, e.after) for e in entries if e.action == "state"]
    assert states == [
        ({"state": "referred"}, {"state": "awaiting_approval"}),
        ({"state": "awaiting_approval"}, {"state": "awaiting_consent"}),
        ({"state": "awaiting_consent"}, {"state": "active"}),
    ]
    assert all(e.at is not None for e in entries)


def test_a_new_referral_reopens_a_discharged_pathway(database_url: str) -> None:
    """A discharged child referred again is back to referred and gets the next version."""
    ref = refer_and_activate(example("all-after-maintenance"))
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        plans.close_pathway(session=session, patient=patient, actor="dr.review", why="recovered")
    document = json.loads(example("all-after-maintenance"))
    document["received"] = "2026-11-23"
    document["reason"] = "relapse"
    assert not service.refer(json.dumps(document), actor="intake").duplicate
    assert _state(ref) == PatientState.referred
    assert _propose(ref).version == 2
    assert _plans(ref) == {1: PlanStatus.closed, 2: PlanStatus.proposed}
