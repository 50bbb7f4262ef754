"""Plan items: the status machine, outcomes and what follows them, and their audit trail."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlmodel import col, select

from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.store import db, items, patients
from sidflows.store.models import (
    AuditEntry,
    CarePlan,
    IgDose,
    ItemStatus,
    Lab,
    PatientState,
    PlanItem,
    PlanStatus,
    Vaccination,
)
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, example, refer_and_activate

IG_SESSION = "ig_session:2026-12-01"
VACCINE = "vaccine_dose:IIV:2026:1"
TROUGH = "ig_trough:2027-03-23"
REVIEW = "plan_review:2027-03-01"


@pytest.fixture
def ref(database_url: str) -> str:
    """EX-0001 on an active plan v1: IV immunoglobulin, vaccines, troughs, reviews."""
    return refer_and_activate(example("all-after-maintenance"))


def _outcome(ref: str, key: str, outcome: dict[str, Any], on: date) -> service.ItemStep:
    return service.item_outcome(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        plan_version=1,
        item_key=key,
        outcome=outcome,
        actor="nurse.day-unit",
        on=on,
    )


def _item(ref: str, key: str) -> PlanItem:
    with db.session_scope() as session:
        return items.get_item(session=session, ref=ref, key=key, version=1)


def _audit(item: PlanItem) -> list[AuditEntry]:
    with db.session_scope() as session:
        return list(
            session.exec(
                select(AuditEntry)
                .where(AuditEntry.entity == "item", AuditEntry.entity_id == item.id)
                .order_by(col(AuditEntry.id))
            )
        )


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((ItemStatus.due, ItemStatus.done), ItemStatus.planned),
        ((ItemStatus.due, ItemStatus.missed), ItemStatus.due),
        ((ItemStatus.cancelled,), ItemStatus.scheduled),
        ((), ItemStatus.done),
    ],
    ids=["done-to-planned", "missed-to-due", "cancelled-to-scheduled", "planned-to-done"],
)
def test_status_machine_refuses_illegal_moves(
    ref: str, path: tuple[ItemStatus, ...], illegal: ItemStatus
) -> None:
    """An illegal transition is refused with InvalidInput and leaves the item as it was."""
    with db.session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=VACCINE)
        for status in path:
            assert items.set_item_status(session=session, item=item, status=status, actor="t")
    reached = path[-1] if path else ItemStatus.planned
    with db.session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=VACCINE)
        with pytest.raises(InvalidInput) as refused:
            items.set_item_status(session=session, item=item, status=illegal, actor="t")
    assert refused.value.field == "status"
    assert f"from {reached} to {illegal}" in str(refused.value)
    assert _item(ref, VACCINE).status == reached


def test_a_repeated_move_changes_nothing(ref: str) -> None:
    """Moving an item to the status it has is a no-op and writes no audit entry."""
    with db.session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=VACCINE)
        assert items.set_item_status(session=session, item=item, status=ItemStatus.due, actor="t")
        assert not items.set_item_status(
            session=session, item=item, status=ItemStatus.due, actor="t"
        )
    assert [e.action for e in _audit(_item(ref, VACCINE))] == ["due"]


def test_ig_session_given_records_the_dose(ref: str) -> None:
    """An IG session given creates an IgDose linked to the item; the item is done."""
    step = _outcome(
        ref, IG_SESSION, {"result": "given", "dose_g": 10.0, "lot": "L1"}, date(2026, 12, 1)
    )
    assert step.status == ItemStatus.done
    assert step.next_run is not None
    assert step.next_run.item_key == "ig_session:2026-12-29"
    item = _item(ref, IG_SESSION)
    with db.session_scope() as session:
        (dose,) = session.exec(select(IgDose).where(IgDose.item_id == item.id)).all()
    assert (dose.date, dose.grams, dose.route, dose.lot) == (date(2026, 12, 1), 10.0, "iv", "L1")
    assert dose.g_per_kg == pytest.approx(10.0 / 27.0, abs=1e-3)
    assert item.outcome == {"result": "given", "dose_g": 10.0, "lot": "L1"}


def test_outcome_recorded_twice_counts_once(ref: str) -> None:
    """The same outcome again is recognised: no second dose."""
    _outcome(ref, IG_SESSION, {"result": "given"}, date(2026, 12, 1))
    again = _outcome(ref, IG_SESSION, {"result": "given"}, date(2026, 12, 1))
    assert again.follow is not None
    assert again.follow.notes == [f"{IG_SESSION} already recorded as done"]
    with db.session_scope() as session:
        assert len(session.exec(select(IgDose).where(col(IgDose.item_id).is_not(None))).all()) == 1


def test_the_forms_empty_dose_records_the_planned_dose(ref: str) -> None:
    """The nurse's form sends dose_g None when the planned dose was given."""
    form: dict[str, Any] = {"result": "given", "dose_g": None, "lot": None, "values": {}}
    _outcome(ref, IG_SESSION, form, date(2026, 12, 1))
    item = _item(ref, IG_SESSION)
    with db.session_scope() as session:
        (dose,) = session.exec(select(IgDose).where(IgDose.item_id == item.id)).all()
    assert dose.grams == item.details["dose_g"]


@pytest.mark.parametrize(
    ("key", "outcome", "field"),
    [
        (IG_SESSION, {"result": "discharge"}, "result"),
        (TROUGH, {"result": "done", "values": {"igg": 5.2}}, "values.igg"),
        (IG_SESSION, {"result": "given", "dose_g": -1}, "dose_g"),
    ],
    ids=["discharge-at-a-session", "unknown-lab-name", "negative-dose"],
)
def test_an_outcome_the_rule_refuses_writes_nothing(
    ref: str, key: str, outcome: dict[str, Any], field: str
) -> None:
    """Refused before any write: the item keeps its status, the record gains nothing."""
    before = _item(ref, key)
    with pytest.raises(InvalidInput) as refused:
        _outcome(ref, key, outcome, date(2026, 12, 1))
    assert refused.value.field == field
    after = _item(ref, key)
    assert (after.status, after.outcome) == (before.status, before.outcome)
    assert _audit(after) == _audit(before)
    with db.session_scope() as session:
        assert session.exec(select(IgDose).where(col(IgDose.item_id).is_not(None))).all() == []
        assert session.exec(select(Lab).where(col(Lab.item_id).is_not(None))).all() == []


def test_vaccine_given_records_the_vaccination(ref: str) -> None:
    """A vaccine dose given creates a Vaccination linked to the item."""
    _outcome(ref, VACCINE, {"result": "given", "lot": "FLU-26"}, date(2026, 12, 1))
    item = _item(ref, VACCINE)
    with db.session_scope() as session:
        (vaccination,) = session.exec(
            select(Vaccination).where(Vaccination.item_id == item.id)
        ).all()
    assert (vaccination.vaccine, vaccination.date, vaccination.lot) == (
        "IIV",
        date(2026, 12, 1),
        "FLU-26",
    )
    assert item.status == ItemStatus.done


def test_trough_below_target_asks_for_a_review(ref: str) -> None:
    """A trough IgG below the target stores the lab and gives a review reason."""
    step = _outcome(ref, TROUGH, {"values": {"igg_g_l": 5.2}}, date(2027, 3, 23))
    assert step.follow is not None
    assert step.follow.review_reason == "trough IgG 5.2 g/L below target 7"
    item = _item(ref, TROUGH)
    with db.session_scope() as session:
        (lab,) = session.exec(select(Lab).where(Lab.item_id == item.id)).all()
    assert lab.values == {"igg_g_l": 5.2}


def test_missed_item_escalates(ref: str) -> None:
    """A missed session is recorded as missed, escalated and re-planned."""
    step = _outcome(ref, IG_SESSION, {"result": "missed"}, date(2026, 12, 1))
    assert step.status == ItemStatus.missed
    assert step.follow is not None
    assert (step.follow.escalate, step.follow.replan) == (True, True)
    with db.session_scope() as session:
        assert session.exec(select(IgDose).where(col(IgDose.item_id).is_not(None))).all() == []


def test_discharge_at_plan_review_closes_the_pathway(ref: str) -> None:
    """A review that discharges is done, the plan closed, every other open item cancelled."""
    step = _outcome(ref, REVIEW, {"result": "discharge"}, date(2027, 3, 1))
    assert step.status == ItemStatus.done
    assert step.follow is not None
    assert "discharged" in step.follow.notes
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        plan = session.exec(select(CarePlan)).one()
        statuses = {i.key: i.status for i in session.exec(select(PlanItem))}
    assert patient.state == PatientState.discharged
    assert plan.status == PlanStatus.closed
    assert statuses.pop(REVIEW) == ItemStatus.done
    assert set(statuses.values()) == {ItemStatus.cancelled}


def test_every_item_change_is_audited(ref: str) -> None:
    """Each move of an item writes who, when, before and after."""
    _outcome(ref, IG_SESSION, {"result": "given"}, date(2026, 12, 1))
    entries = _audit(_item(ref, IG_SESSION))
    assert [(e.action, e.before, (e.after or {}).get("status")) for e in entries] == [
        ("due", {"status": "planned"}, "due"),
        ("done", {"status": "due"}, "done"),
    ]
    for entry in entries:
        assert (entry.actor, entry.patient_ref) == ("nurse.day-unit", ref)
        assert entry.at is not None
