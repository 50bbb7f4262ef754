"""A plan's life through the service steps: propose, decide, consent, activate, re-plan, close."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.store import db, patients, versions, views
from sidflows.store.models import (
    ITEM_TRANSITIONS,
    AuditEntry,
    Booking,
    CarePlan,
    ItemStatus,
    PatientState,
    PlanItem,
    PlanStatus,
)
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, example, iv_child, refer_and_activate

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
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason=reason,
        actor="test",
    )


def _activate(ref: str) -> service.Activated:
    return service.activate(ref, unit=Unit(calendar=CALENDAR), actor="test")


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
    ref = service.refer(example("lupus-on-rituximab"), unit=Unit(), actor="intake").ref
    proposed = _propose(ref)
    assert (proposed.version, proposed.status) == (1, PlanStatus.proposed)
    assert _state(ref) == PatientState.awaiting_approval
    assert _activate(ref).status == "awaiting_approval"

    approval = service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    assert approval.changed
    assert _activate(ref).status == "awaiting_consent"
    assert _state(ref) == PatientState.awaiting_consent
    assert _items(ref, 1) == []

    assert service.consent(ref, unit=Unit(), by="family liaison") is True
    assert service.consent(ref, unit=Unit(), by="family liaison") is False  # recorded once
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
    ref = service.refer(example("lupus-on-rituximab"), unit=Unit(), actor="intake").ref
    assert _propose(ref).version == 1
    assert _propose(ref).version == 1
    assert _plans(ref) == {1: PlanStatus.proposed}


def test_approving_twice_activates_once(database_url: str) -> None:
    """A second approval and a second activation change nothing: one plan, items made once."""
    ref = service.refer(
        example("all-after-maintenance"), unit=Unit(), actor="intake"
    ).ref  # consent given
    _propose(ref)
    assert service.decide(ref, unit=Unit(), decision="approve", by="dr.one").changed
    again = service.decide(ref, unit=Unit(), decision="approve", by="dr.two")
    assert not again.changed
    assert "already approved by dr.one" in again.message
    first, second = _activate(ref), _activate(ref)
    assert (first.status, second.status) == ("activated", "already_active")
    assert first.bookings > 0
    assert second.bookings == 0
    after = service.decide(ref, unit=Unit(), decision="approve", by="dr.three")
    assert (after.changed, after.message) == (False, "plan v1 is already active")
    assert _plans(ref) == {1: PlanStatus.active}
    items = _items(ref, 1)
    assert len(items) == len(_plan(ref, 1).document["items"])
    assert len({i.key for i in items}) == len(items)
    iv_sessions = [i for i in items if i.kind == "ig_session" and i.details["route"] == "iv"]
    assert len(_bookings(items)) == len(iv_sessions) == first.bookings


def test_an_approved_plan_left_inactive_is_found_until_activated(database_url: str) -> None:
    """Approved (consent given or not needed) yet not active: the sweep's to finish, once."""
    waiting = service.refer(
        example("lupus-on-rituximab"), unit=Unit(), actor="intake"
    ).ref  # no consent
    ready = service.refer(
        example("all-after-maintenance"), unit=Unit(), actor="intake"
    ).ref  # consent given
    _propose(waiting)
    _propose(ready)
    assert service.unfinished_activations() == []  # nobody approved yet
    service.decide(waiting, unit=Unit(), decision="approve", by="dr.approver")
    service.decide(ready, unit=Unit(), decision="approve", by="dr.approver")
    assert service.unfinished_activations() == [ready]  # the other waits for the family
    service.consent(waiting, unit=Unit(), by="family liaison")
    assert service.unfinished_activations() == sorted([ready, waiting])
    assert _activate(ready).status == "activated"
    assert service.unfinished_activations() == [waiting]


def test_reject_closes_the_proposal(database_url: str) -> None:
    """A rejected proposal is closed, the child is back to referred and nothing activates."""
    ref = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake").ref
    _propose(ref)
    result = service.decide(
        ref, unit=Unit(), decision="reject", by="dr.approver", note="wrong weight"
    )
    assert result.changed
    assert _plans(ref) == {1: PlanStatus.closed}
    assert _state(ref) == PatientState.referred
    assert _activate(ref).status == "none"
    with pytest.raises(InvalidInput, match="no plan waiting for approval"):
        service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")


def test_modify_removes_items_in_a_new_approved_version(database_url: str) -> None:
    """Modify makes v+1, approved by the clinician, without the removed items."""
    ref = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake").ref
    _propose(ref)
    keys = [i["key"] for i in _plan(ref, 1).document["items"]]
    removed = tuple(k for k in keys if k.startswith("prophylaxis:"))
    assert removed
    result = service.decide(
        ref,
        unit=Unit(),
        decision="modify",
        by="dr.approver",
        note="no prophylaxis",
        remove_items=removed,
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
    ref = service.refer(example("all-after-maintenance"), unit=Unit(), actor="intake").ref
    _propose(ref)
    with pytest.raises(InvalidInput) as refused:
        service.decide(
            ref, unit=Unit(), decision="modify", by="dr.approver", remove_items=("no_such:item",)
        )
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
        shown = views.show_document(
            session=session, patient=patients.get_patient(session=session, ref=ref)
        )
    assert shown is not None
    assert (shown["plan_version"], shown["proposed_version"]) == (1, 2)

    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
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
    service.decide(ref, unit=Unit(), decision="reject", by="dr.approver", note="not yet")
    assert _plans(ref) == {1: PlanStatus.active, 2: PlanStatus.closed}
    assert _state(ref) == PatientState.active


def test_treatment_change_of_a_discharged_child_is_refused(database_url: str) -> None:
    """After discharge a treatment change (and a re-plan) is refused with a message."""
    ref = refer_and_activate(example("all-after-maintenance"))
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref, lock=True)
        versions.close_pathway(session=session, patient=patient, actor="dr.review", why="recovered")
    assert _state(ref) == PatientState.discharged
    assert _plans(ref) == {1: PlanStatus.closed}
    assert {i.status for i in _items(ref, 1)} == {ItemStatus.cancelled}
    with pytest.raises(InvalidInput, match="discharged"):
        service.record_treatment_change(ref, RELAPSE, actor="dr.oncology")
    with pytest.raises(InvalidInput, match="discharged"):
        _propose(ref, reason="treatment change")


def test_every_plan_change_is_audited(database_url: str) -> None:
    """Proposal, approval, consent, activation and state changes each leave who and when."""
    ref = service.refer(example("lupus-on-rituximab"), unit=Unit(), actor="dr.intake").ref
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY,
        reason="referral",
        actor="planner",
    )
    service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    _activate(ref)
    service.consent(ref, unit=Unit(), by="family liaison")
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
        versions.close_pathway(session=session, patient=patient, actor="dr.review", why="recovered")
    document = json.loads(example("all-after-maintenance"))
    document["received"] = "2026-11-23"
    document["reason"] = "relapse"
    assert not service.refer(json.dumps(document), unit=Unit(), actor="intake").duplicate
    assert _state(ref) == PatientState.referred
    assert _propose(ref).version == 2
    assert _plans(ref) == {1: PlanStatus.closed, 2: PlanStatus.proposed}


class AuditedSteps:
    """Runs service steps and checks that each row a step changed has its audit entry.

    Before and after each step every careplan and planitem row is read in full:
    a plan created or changed needs an entry for that plan in the step, an item
    changed needs one for that item, and new items need their plan's activation
    entry. Every entry of the step names who (a non-empty actor) and when.
    """

    def __init__(self) -> None:
        self.rows = self._rows()
        self.last_entry = 0
        self.steps = 0

    @staticmethod
    def _rows() -> dict[tuple[str, int | None], dict[str, Any]]:
        with db.session_scope() as session:
            rows = {
                ("plan", p.id): p.model_dump(mode="json") for p in session.exec(select(CarePlan))
            }
            items = session.exec(select(PlanItem))
            return rows | {("item", i.id): i.model_dump(mode="json") for i in items}

    def __call__(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = call(*args, **kwargs)
        self.steps += 1
        rows = self._rows()
        with db.session_scope() as session:
            entries = session.exec(
                select(AuditEntry).where(col(AuditEntry.id) > self.last_entry)
            ).all()
        self.last_entry = max([self.last_entry, *(e.id or 0 for e in entries)])
        audited = {(e.entity, e.entity_id): e for e in entries}
        assert set(self.rows) <= set(rows), "a plan or an item was deleted"
        for key, row in rows.items():
            if self.rows.get(key) == row:
                continue
            if key[0] == "item" and key not in self.rows:
                activation = audited.get(("plan", row["plan_id"]))
                assert activation is not None, f"{call.__name__}: item {key} made without audit"
                assert activation.action.endswith(" active"), activation.action
                continue
            changed = {k for k, v in row.items() if (self.rows.get(key) or {}).get(k) != v}
            assert key in audited, f"{call.__name__}: {key} changed ({sorted(changed)}), no audit"
        for entry in entries:
            assert entry.actor.strip(), f"{entry.action}: no actor"
            assert entry.at is not None, f"{entry.action}: no time"
        self.rows = rows
        return result


def _replay_the_trail() -> tuple[int, int]:
    """Rebuild every plan's and item's status (and item due day, outcome) from the trail alone.

    Plans start proposed, items planned at their plan document's day; each entry
    carrying a status (or a due day) must start from where the last one left off
    and make a legal move. The result must be the rows as they are. Returns how
    many status moves and due-day moves were replayed.
    """
    with db.session_scope() as session:
        plans_ = {p.id: p for p in session.exec(select(CarePlan))}
        items = {i.id: i for i in session.exec(select(PlanItem))}
        entries = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
    status: dict[tuple[str, int], str] = {}
    due: dict[int, str] = {}
    outcome: dict[int, Any] = {}
    approvers: dict[int, set[str]] = {}
    activations: dict[int, AuditEntry] = {}
    moves = days = 0
    for entry in entries:
        key = (entry.entity, entry.entity_id)
        if entry.entity == "plan":
            status.setdefault(key, PlanStatus.proposed)  # the first entry is the proposal
            if "approved" in entry.action:
                approvers.setdefault(entry.entity_id, set()).add(entry.actor)
        elif entry.entity == "item":
            item = items[entry.entity_id]
            status.setdefault(key, ItemStatus.planned)
            due.setdefault(entry.entity_id, item.details["due"])
        else:
            continue
        before, after = entry.before or {}, entry.after or {}
        if "status" in after:
            assert before.get("status") == status[key], f"{key} {entry.action}: not from {before}"
            if entry.entity == "item":
                assert ItemStatus(after["status"]) in ITEM_TRANSITIONS[ItemStatus(status[key])]
            status[key] = after["status"]
            moves += 1
            if after["status"] == PlanStatus.active and entry.entity == "plan":
                activations[entry.entity_id] = entry
        if after.get("outcome") is not None:
            outcome[entry.entity_id] = after["outcome"]
        if "due" in after:
            assert before.get("due") == due[entry.entity_id], f"{key}: moved from {before}"
            due[entry.entity_id] = after["due"]
            days += 1
    for plan in plans_.values():
        assert plan.id is not None
        assert status[("plan", plan.id)] == plan.status, f"v{plan.version}"
        assert (plan.activated_at is not None) == (plan.id in activations), f"v{plan.version}"
        if plan.approved_by is not None:
            assert plan.approved_by in approvers.get(plan.id, set()), f"v{plan.version}"
        made = [i for i in items.values() if i.plan_id == plan.id]
        if made:
            assert (activations[plan.id].after or {})["items"] == len(made)
    for item in items.values():
        assert item.id is not None
        assert status.get(("item", item.id), ItemStatus.planned) == item.status, item.key
        assert due.get(item.id, item.details["due"]) == item.due.isoformat(), item.key
        assert outcome.get(item.id) == item.outcome, item.key
    return moves, days


def test_a_whole_lifecycle_is_audited_row_by_row(database_url: str) -> None:
    """Every change of a plan or item, from referral to discharge, has its entry: who and when."""
    step = AuditedSteps()
    chairs = CALENDAR.config.day_unit.chairs_per_day

    def referred_and_activated(text: str) -> service.Activated:
        ref = step(service.refer, text, unit=Unit(), actor="dr.intake").ref
        step(_propose, ref)
        step(service.decide, ref, unit=Unit(), decision="approve", by="dr.approver")
        activated: service.Activated = step(_activate, ref)
        assert activated.status == "activated"
        return activated

    for i in range(chairs):  # the day unit is full on the child's days: sessions move
        referred_and_activated(iv_child(f"FULL-{i}"))
    v1 = referred_and_activated(iv_child("AU-1"))
    ref = v1.ref
    # The scheduler records each run; a reconciliation that recreates a lost run records again.
    step(service.record_run_ids, {(ref, 1, r.item_key): f"run-{r.item_key}" for r in v1.runs})
    step(service.record_run_ids, {(ref, 1, r.item_key): f"again-{r.item_key}" for r in v1.runs})

    def outcome(key: str, version: int, result: dict[str, Any]) -> service.ItemStep:
        return step(
            service.item_outcome,
            ref,
            plan_version=version,
            item_key=key,
            outcome=result,
            actor="nurse.day-unit",
            on=TODAY,
            unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        )

    step(service.item_due, ref, plan_version=1, item_key="ig_session:2026-12-01", actor="runner")
    outcome("ig_session:2026-12-01", 1, {"result": "given", "dose_g": 10.0, "lot": "L-1"})
    step(service.item_due, ref, plan_version=1, item_key="vaccine_dose:IIV:2026:1", actor="runner")
    outcome("vaccine_dose:IIV:2026:1", 1, {"result": "missed"})
    outcome("ig_trough:2027-03-23", 1, {"result": "done", "values": {"igg_g_l": 5.2}})

    step(service.record_treatment_change, ref, RELAPSE, actor="dr.oncology")
    assert step(_propose, ref, "treatment change").version == 2
    modified = step(
        service.decide,
        ref,
        unit=Unit(),
        decision="modify",
        by="dr.two",
        note="no azithromycin",
        remove_items=("prophylaxis:azithromycin",),
    )
    assert modified.plan is not None
    assert modified.plan.version == 3
    activated = step(_activate, ref)
    assert (activated.status, activated.version) == ("activated", 3)
    step(service.record_run_ids, {(ref, 3, r.item_key): f"v3-{r.item_key}" for r in activated.runs})
    outcome("plan_review:2027-03-01", 3, {"result": "discharge"})
    assert _state(ref) == PatientState.discharged

    lupus = step(service.refer, example("lupus-on-rituximab"), unit=Unit(), actor="dr.intake").ref
    step(_propose, lupus)
    step(service.decide, lupus, unit=Unit(), decision="approve", by="dr.approver")
    assert step(_activate, lupus).status == "awaiting_consent"
    step(service.consent, lupus, unit=Unit(), by="family liaison")
    assert step(_activate, lupus).status == "activated"
    step(service.record_treatment_change, lupus, RELAPSE, actor="dr.oncology")
    step(_propose, lupus, "treatment change")
    step(service.decide, lupus, unit=Unit(), decision="reject", by="dr.approver", note="not yet")

    assert step.steps > 40
    moves, days = _replay_the_trail()
    assert moves > 80, "status moves replayed from the trail"
    assert days > 0, "sessions moved to another day were replayed from the trail"
