"""Intake of referrals: duplicates recognised, identity kept apart, nothing stored on error."""

from __future__ import annotations

import json

import pytest
from sqlmodel import SQLModel, select

from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.store import db
from sidflows.store.models import AuditEntry, CostConsent, Identity, Patient
from sidflows.unit import Unit

from .support import dump_table, example, row_counts, synthetic


def test_same_referral_twice_is_one_patient(database_url: str) -> None:
    """The same referral again is recognised as a duplicate and changes nothing."""
    text_ = example("all-after-maintenance")
    first = service.refer(text_, unit=Unit(), actor="intake")
    before = row_counts(database_url)
    second = service.refer(text_, unit=Unit(), actor="intake")
    assert (first.ref, first.created, first.duplicate) == ("EX-0001", True, False)
    assert (second.ref, second.created, second.duplicate) == ("EX-0001", False, True)
    assert row_counts(database_url) == before
    assert before["patient"] == before["referral"] == 1


def test_duplicate_with_other_identity_is_still_recognised(database_url: str) -> None:
    """Identity is not part of what makes a referral the same document."""
    document = json.loads(example("all-after-maintenance"))
    service.refer(json.dumps(document), unit=Unit(), actor="intake")
    document["identity"] = {"name": "Someone Else", "mrn": "OTHER-1"}
    assert service.refer(json.dumps(document), unit=Unit(), actor="intake").duplicate
    assert row_counts(database_url)["referral"] == 1


def test_a_new_referral_of_a_known_child_adds_to_the_record(database_url: str) -> None:
    """A later referral of the same ref updates the child and adds only what is new."""
    document = json.loads(example("all-after-maintenance"))
    service.refer(json.dumps(document), unit=Unit(), actor="intake")
    document["received"] = "2026-11-21"
    document["patient"]["weight_kg"] = 27.5
    document["labs"].append({"date": "2026-11-20", "igg_g_l": 3.9})
    result = service.refer(json.dumps(document), unit=Unit(), actor="intake")
    assert (result.created, result.duplicate) == (False, False)
    counts = row_counts(database_url)
    assert (counts["patient"], counts["referral"], counts["lab"], counts["infection"]) == (
        1,
        2,
        2,
        2,
    )
    with db.session_scope() as session:
        assert session.exec(select(Patient)).one().weight_kg == 27.5


def test_identity_lives_only_in_the_identity_table(database_url: str) -> None:
    """Name and record number are stored in the identity table and in no other table."""
    documents = [*synthetic(4), json.loads(example("all-after-maintenance"))]
    for document in documents:
        service.refer(json.dumps(document), unit=Unit(), actor="intake")
    identities = [d["identity"] for d in documents]
    with db.session_scope() as session:
        stored = {(i.name, i.mrn) for i in session.exec(select(Identity))}
    assert stored == {(i["name"], i["mrn"]) for i in identities}
    for table in SQLModel.metadata.tables:
        if table == "identity":
            continue
        dump = dump_table(database_url, table)
        for identity in identities:
            assert identity["name"] not in dump, f"name found in {table}"
            assert identity["mrn"] not in dump, f"record number found in {table}"


@pytest.mark.parametrize(
    ("text_", "field"),
    [
        ("{not json", "document"),
        (json.dumps({**json.loads(example("lupus-on-rituximab")), "colour": "red"}), "colour"),
        (
            example("lupus-on-rituximab").replace('"weight_kg": 48.0', '"weight_kg": 480.0'),
            "patient.weight_kg",
        ),
    ],
    ids=["malformed", "unknown-field", "weight"],
)
def test_invalid_referral_stores_nothing(database_url: str, text_: str, field: str) -> None:
    """A refused referral names the field and leaves every table empty."""
    with pytest.raises(InvalidInput) as refused:
        service.refer(text_, unit=Unit(), actor="intake")
    assert refused.value.field.startswith(field)
    assert set(row_counts(database_url).values()) == {0}


def test_intake_is_audited_and_keeps_the_referral_consent(database_url: str) -> None:
    """Intake writes one audit entry (actor, time) and the consent the referral carries."""
    service.refer(example("all-after-maintenance"), unit=Unit(), actor="dr.intake")
    with db.session_scope() as session:
        (entry,) = session.exec(select(AuditEntry)).all()
        consent = session.exec(select(CostConsent)).one()
    assert (entry.actor, entry.patient_ref, entry.action) == (
        "dr.intake",
        "EX-0001",
        "referral received",
    )
    assert entry.at is not None
    assert (consent.accepted, consent.source) == (True, "referral")


def test_codes_survive_into_the_record_the_rules_replan_from(database_url: str) -> None:
    """A coded diagnosis and coded drugs are kept, so a re-plan decides from the codes too.

    docs/clinical-reference.md §8: decisions that depend on the diagnosis use its code.
    """
    import datetime as dt

    from sidflows.store import patients

    ref = service.refer(example("b-all-after-car-t-coded"), unit=Unit(), actor="intake").ref
    original = json.loads(example("b-all-after-car-t-coded"))
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        record = patients.referral_for(
            session=session, patient=patient, today=dt.date(2026, 11, 24)
        )
    assert (record.diagnosis.code, record.diagnosis.system) == (
        original["diagnosis"]["code"],
        original["diagnosis"]["system"],
    )
    coded = {t["drug"]: (t.get("code"), t.get("system")) for t in original["treatments"]}
    assert {t.drug: (t.code, t.system) for t in record.treatments} == coded
