"""The worklist's store queries on SQLite and PostgreSQL: contents, windows, set-based reads,
and what ``show`` compares a waiting proposal with."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from sidflows import service
from sidflows.service.worklist import proposal_view, worklist
from sidflows.store import db, patients
from sidflows.unit import Unit

from .support import CALENDAR, PROTOCOL, TODAY, iv_child, refer_and_activate
from .worklist_scenario import AGO, DAY, SECRETS, Child, add_children, iv, unit_scenario


def refs(listed: dict[str, Any] | None) -> list[str]:
    assert listed is not None
    return [i["ref"] for i in listed["items"]]


@contextmanager
def statements(url: str) -> Iterator[list[str]]:
    """Every SQL statement the store runs inside the block."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    engine = db.get_engine(url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_every_list_of_the_day_and_of_what_is_stuck(database_url: str) -> None:
    """The unit's worklist holds each section's items, the stuck lists, and no identity."""
    unit_scenario(database_url)
    found = worklist(unit=Unit(), on=DAY)
    today, stuck = found["today"], found["stuck"]
    assert [(i["chair"], i["ref"], i["first_infusion"]) for i in today["day_unit"]["items"]] == [
        (1, "DU-2", False),
        (2, "DU-1", True),
    ]
    assert [(i["ref"], i["nurse_visit"]) for i in today["home_care"]["items"]] == [
        ("HC-1", True),
        ("HC-2", False),
    ]
    assert [i["kind"] for i in today["labs"]["items"]] == ["ig_trough", "reassessment"]
    assert [(i["vaccine"], bool(i["held"])) for i in today["vaccines"]["items"]] == [
        ("MMR", True),
        ("PCV", False),
    ]
    assert [i["kind"] for i in today["other"]["items"]] == ["plan_review", "prophylaxis"]
    assert [(i["ref"], i["days_late"]) for i in stuck["overdue"]["items"]] == [
        ("VX-1", 10),
        ("DU-2", 5),
    ]
    assert [(i["key"], i["held_for"]) for i in stuck["held"]["items"]] == [
        ("vaccine_dose:MMR:1", 3)
    ]
    assert [
        (i["ref"], i["days_waiting"], i["replan"]) for i in stuck["awaiting_approval"]["items"]
    ] == [
        ("AP-1", 3, False),
        ("AP-2", 0, True),
        ("VX-1", 0, True),
    ]
    assert refs(stuck["awaiting_consent"]) == ["CS-1", "CS-2"]
    assert refs(stuck["unfinished_activations"]) == ["UA-1"]
    assert refs(stuck["pending_intents"]) == ["AP-1"]
    assert stuck["outbox"]["by_status"] == {"failed": 1, "unrouted": 1}
    text = json.dumps(found)
    assert not [secret for secret in SECRETS if secret in text]


def test_each_list_holds_at_most_the_limit_and_counts_them_all(database_url: str) -> None:
    unit_scenario(database_url)
    found = worklist(unit=Unit(), on=DAY, limit=1)
    for section in ("day_unit", "home_care", "labs", "vaccines", "other"):
        listed = found["today"][section]
        assert (listed["count"], len(listed["items"])) == (2, 1), section
    assert refs(found["today"]["day_unit"]) == ["DU-2"]  # chair 1 first
    overdue = found["stuck"]["overdue"]
    assert (overdue["count"], refs(overdue)) == (2, ["VX-1"])  # the latest first
    approval = found["stuck"]["awaiting_approval"]
    assert (approval["count"], refs(approval)) == (3, ["AP-1"])  # the longest waiting first


def test_a_role_reads_only_its_sections(database_url: str) -> None:
    unit_scenario(database_url)
    found = worklist(unit=Unit(), on=DAY, role="day-unit")
    assert [k for k, v in found["today"].items() if v is not None] == ["day_unit"]
    assert refs(found["stuck"]["overdue"]) == ["DU-2"]
    assert found["stuck"]["held"]["count"] == 0
    assert found["stuck"]["awaiting_approval"] is None
    assert [g["route"] for g in found["stuck"]["outbox"]["groups"]] == ["day_unit"]


def test_the_reads_are_set_based_whatever_the_unit_size(database_url: str) -> None:
    """The same number of queries for 13 children as for 73: no query per child."""
    unit_scenario(database_url)
    with statements(database_url) as small:
        worklist(unit=Unit(), on=DAY)
    add_children(
        database_url,
        [
            Child(
                f"BIG-{n}",
                active=[iv(DAY, 10.0, 0.4, 150), iv(DAY - AGO(3), 10.0, 0.4, 150)],
                chairs={f"ig_session:{DAY}": (10 + n, 150)},
                ig_doses=[DAY - AGO(28)],
                proposed=n % 2 == 0,
            )
            for n in range(60)
        ],
    )
    with statements(database_url) as large:
        found = worklist(unit=Unit(), on=DAY)
    assert found["today"]["day_unit"]["count"] == 62
    assert found["stuck"]["overdue"]["count"] == 62
    assert len(large) == len(small)
    assert not [s for s in large if "identity" in s.lower() or "birth_date" in s.lower()]


def test_nothing_to_do_and_nothing_stuck(database_url: str) -> None:
    found = worklist(unit=Unit(), on=DAY)
    assert all(v["count"] == 0 for v in found["today"].values())
    assert all(v["count"] == 0 for v in found["stuck"].values())


def test_show_compares_a_waiting_re_plan_with_the_active_plan(database_url: str) -> None:
    """A re-plan two weeks on: the IV sessions move, consent per version is shown."""
    ref = refer_and_activate(iv_child("SHOW-1"))
    later = TODAY + dt.timedelta(days=14)
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=later,
        reason="new lab result",
        actor="test",
    )
    with db.session_scope() as session:
        patient = patients.get_patient(session=session, ref=ref)
        view = proposal_view(session=session, patient=patient)
    proposal = view["proposal"]
    assert proposal is not None
    assert (proposal["version"], proposal["against_version"], proposal["waiting_for"]) == (
        2,
        1,
        "approval",
    )
    items = proposal["items"]
    assert items["moved"] or items["added"] or items["removed"]
    assert all(m["from"] != m["to"] for m in items["moved"])
    assert [(v["version"], v["status"], v["consent"]) for v in view["versions"]] == [
        (2, "proposed", "recorded"),
        (1, "active", "recorded"),
    ]


@pytest.mark.parametrize("answer", [None, False])
def test_a_proposal_without_the_familys_consent_waits_for_it(
    database_url: str, answer: bool | None
) -> None:
    add_children(
        database_url,
        [Child("CS-9", state="awaiting_consent", proposed=True, approved=True, consent=answer)],
    )
    with db.session_scope() as session:
        view = proposal_view(
            session=session, patient=patients.get_patient(session=session, ref="CS-9")
        )
    assert view["proposal"]["waiting_for"] == "consent"
    assert view["proposal"]["against_version"] is None
    assert view["versions"][0]["consent"] == ("missing" if answer is None else "refused")


def test_the_board_counts_chairs_per_working_day_and_lists_replaced_runs(
    database_url: str,
) -> None:
    """The board (docs/formats.md §14): the coordinator's worklist with the runs replaced
    this week, and four weeks of chairs booked against the day unit's capacity, counting
    only open and recorded sessions of active plans (a superseded plan's chair is free)."""
    from sidflows.service.worklist import board

    unit_scenario(database_url)
    unit = Unit()
    found = board(unit=unit, on=DAY)
    assert found["format"] == "sidflows.board/1"
    assert found["worklist"]["role"] == "coordinator"
    replaced = found["worklist"]["stuck"]["replaced_runs"]
    assert [(i["ref"], i["replacements"]) for i in replaced["items"]] == [("DU-2", 2)]
    chairs = {c["date"]: c for c in found["chairs"]}
    capacity = unit.calendar.config.day_unit.chairs_per_day
    assert all(c["capacity"] == capacity for c in chairs.values())
    working = list(unit.calendar.working_days(DAY, DAY + AGO(27)))
    assert list(chairs) == [d.isoformat() for d in working]
    # Today DU-1 (chair 2) and DU-2 (chair 1); DU-1's next session in 4 weeks is day 28:
    # outside the window. Nothing else is booked inside it.
    assert chairs[DAY.isoformat()]["booked"] == 2
    assert sum(c["booked"] for c in chairs.values()) == 2
    # refs only: no secret of the scenario reaches the board
    text = json.dumps(found)
    assert not [s for s in SECRETS if s in text]
