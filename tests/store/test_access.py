"""Who may answer for a plan: the staff roster checked in the service, refusals audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import SQLModel, col, select

from sidflows import service
from sidflows.errors import InvalidInput, UnknownPatient
from sidflows.settings import get_settings
from sidflows.store import db
from sidflows.store.models import AuditEntry, CarePlan
from sidflows.store.versions import Decision
from sidflows.unit import Unit

from .support import dump_table, example, refer_and_propose


def _proposed(referral: str = "lupus-on-rituximab") -> str:
    return refer_and_propose(example(referral))


def _trail(ref: str) -> list[AuditEntry]:
    with db.session_scope() as session:
        return list(
            session.exec(
                select(AuditEntry).where(AuditEntry.patient_ref == ref).order_by(col(AuditEntry.id))
            )
        )


def _everything_but_the_audit(url: str) -> dict[str, str]:
    return {
        table: dump_table(url, table)
        for table in SQLModel.metadata.tables
        if table != AuditEntry.__tablename__
    }


@pytest.mark.parametrize(
    ("decision", "action"),
    [
        ("approve", "approval refused"),
        ("modify", "modification refused"),
        ("reject", "rejection refused"),
    ],
)
@pytest.mark.parametrize("who", ["Nurse Test", "Dr Nobody"])
def test_a_non_clinician_decision_is_refused_audited_and_changes_nothing(
    database_url: str, decision: Decision, action: str, who: str
) -> None:
    """Approve, modify or reject by a nurse or a stranger: refused, audited, the plan untouched."""
    ref = _proposed()
    before = _everything_but_the_audit(database_url)
    trail = _trail(ref)
    with pytest.raises(InvalidInput) as refused:
        service.decide(
            ref, unit=Unit(), decision=decision, by=who, note="looks fine", remove_items=()
        )
    assert refused.value.field == "by"
    assert f"{who!r} is not a clinician in the staff roster" in refused.value.message
    assert "config/staff.toml" in refused.value.message
    assert _everything_but_the_audit(database_url) == before
    new = _trail(ref)[len(trail) :]
    assert [(e.actor, e.action, e.entity) for e in new] == [(who, action, "patient")]
    assert new[0].at is not None
    assert new[0].after == {"reason": refused.value.message}


def test_a_blank_approver_is_refused_and_audited(database_url: str) -> None:
    """An empty name is refused like any other, and the attempt is still recorded."""
    ref = _proposed()
    with pytest.raises(InvalidInput, match="by: empty"):
        service.decide(ref, unit=Unit(), decision="approve", by="   ")
    assert [(e.actor, e.action) for e in _trail(ref)][-1] == ("(no name)", "approval refused")


def test_a_clinician_is_matched_loosely_and_recorded_as_on_the_roster(database_url: str) -> None:
    """`  DR TEST ` approves as "Dr Test": the roster's spelling is what the plan and trail keep."""
    ref = _proposed()
    result = service.decide(ref, unit=Unit(), decision="approve", by="  DR TEST ")
    assert result.changed
    assert result.plan is not None
    with db.session_scope() as session:
        plan = session.exec(select(CarePlan).where(CarePlan.id == result.plan.id)).one()
    assert plan.approved_by == "Dr Test"
    assert (_trail(ref)[-1].actor, _trail(ref)[-1].action) == ("Dr Test", "plan v1 approved")


def test_an_approval_refused_then_given_by_a_clinician(database_url: str) -> None:
    """A refusal leaves the plan waiting: a clinician's approval afterwards goes through."""
    ref = _proposed()
    with pytest.raises(InvalidInput):
        service.decide(ref, unit=Unit(), decision="approve", by="Nurse Test")
    assert service.decide(ref, unit=Unit(), decision="approve", by="dr.approver").changed
    actions = [e.action for e in _trail(ref)]
    assert actions[-2:] == ["approval refused", "plan v1 approved"]


def test_consent_is_recorded_by_anyone_on_the_roster_only(database_url: str) -> None:
    """Any staff role may record the family's consent; someone not listed is refused and audited."""
    ref = _proposed()
    before = _everything_but_the_audit(database_url)
    with pytest.raises(InvalidInput, match="'Uncle Bob' is not listed in the staff roster"):
        service.consent(ref, unit=Unit(), by="Uncle Bob")
    assert _everything_but_the_audit(database_url) == before
    assert [(e.actor, e.action) for e in _trail(ref)][-1] == ("Uncle Bob", "consent refused")
    assert service.consent(ref, unit=Unit(), by="nurse test") is True
    assert [(e.actor, e.action) for e in _trail(ref)][-1] == ("Nurse Test", "cost consent recorded")


def test_a_units_own_roster_replaces_the_shipped_one(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SIDFLOWS_STAFF set, only the unit's clinicians approve (the shipped names do not)."""
    ref = _proposed()
    roster = tmp_path / "staff.toml"
    roster.write_text('[[staff]]\nname = "Dr Ana Ruiz"\nroles = ["clinician"]\n')
    monkeypatch.setenv("SIDFLOWS_STAFF", str(roster))
    get_settings.cache_clear()
    with pytest.raises(InvalidInput) as refused:
        service.decide(ref, unit=Unit(), decision="approve", by="dr.approver")
    assert f"not a clinician in the staff roster ({roster})" in str(refused.value)
    assert service.decide(ref, unit=Unit(), decision="approve", by="dr ana ruiz").changed


def test_an_unknown_ref_is_unknown_before_anything_is_refused(database_url: str) -> None:
    """A refusal for a child the store does not know is `unknown ref`; nothing is recorded."""
    with pytest.raises(UnknownPatient):
        service.decide("NOBODY-1", unit=Unit(), decision="approve", by="Nurse Test")
    assert _trail("NOBODY-1") == []
