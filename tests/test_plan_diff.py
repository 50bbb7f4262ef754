"""What a proposal changes against the active plan: the pure item comparison
(sidflows/plan_diff.py) as a table, then `sidflows show` printing it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from flows.cli import main
from sidflows import service
from sidflows.plan_diff import diff_document, diff_items
from sidflows.store.views import stream_of
from sidflows.unit import Unit
from tests.store.support import CALENDAR, PROTOCOL, TODAY, example, iv_child, refer_and_activate


def ig(due: str, grams: float = 11.0, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "ig_session",
        "key": f"ig_session:{due}",
        "due": due,
        "route": "iv",
        "dose_g": grams,
        "earliest": due,
        "latest": due,
        **extra,
    }


def vaccine(code: str, dose: int, due: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "vaccine_dose",
        "key": f"vaccine_dose:{code}:{dose}",
        "due": due,
        "vaccine": code,
        "dose_number": dose,
        **extra,
    }


def summary(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison in short: added and removed keys, moves (from key, key), changed fields."""
    found = diff_document(diff_items(before, after, stream=lambda i: stream_of(dict(i))))
    return {
        "added": [i["key"] for i in found["added"]],
        "removed": [i["key"] for i in found["removed"]],
        "moved": [
            (m["from_key"], m["key"], [c["field"] for c in m["changes"]]) for m in found["moved"]
        ],
        "changed": [(c["key"], [(x["field"], x["before"], x["after"]) for x in c["changes"]])
                    for c in found["changed"]],
    }  # fmt: skip


def nothing(**changes: Any) -> dict[str, Any]:
    return {"added": [], "removed": [], "moved": [], "changed": [], **changes}


CASES = [
    ("identical", [ig("2026-12-01")], [ig("2026-12-01")], nothing()),
    ("both empty", [], [], nothing()),
    (
        "an item added",
        [ig("2026-12-01")],
        [ig("2026-12-01"), vaccine("PCV", 1, "2026-12-03")],
        nothing(added=["vaccine_dose:PCV:1"]),
    ),
    (
        "an item removed",
        [ig("2026-12-01"), vaccine("MMR", 1, "2026-12-03")],
        [ig("2026-12-01")],
        nothing(removed=["vaccine_dose:MMR:1"]),
    ),
    (
        "the same key on another day",
        [vaccine("PCV", 2, "2027-01-10")],
        [vaccine("PCV", 2, "2027-01-17")],
        nothing(moved=[("vaccine_dose:PCV:2", "vaccine_dose:PCV:2", [])]),
    ),
    (
        "the same key and day, another dose",
        [ig("2026-12-01", 11.0)],
        [ig("2026-12-01", 12.5)],
        nothing(changed=[("ig_session:2026-12-01", [("dose_g", 11.0, 12.5)])]),
    ),
    (
        "a stream a week later: each session moved, its window with it",
        [ig("2026-12-01"), ig("2026-12-29")],
        [ig("2026-12-08"), ig("2027-01-05")],
        nothing(
            moved=[
                ("ig_session:2026-12-01", "ig_session:2026-12-08", []),
                ("ig_session:2026-12-29", "ig_session:2027-01-05", []),
            ]
        ),
    ),
    (
        "moved and a new dose",
        [ig("2026-12-01", 11.0)],
        [ig("2026-12-08", 12.0)],
        nothing(moved=[("ig_session:2026-12-01", "ig_session:2026-12-08", ["dose_g"])]),
    ),
    (
        "a date of its own that did not move with the item is a change",
        [
            {
                "kind": "prophylaxis",
                "key": "prophylaxis:co-trimoxazole",
                "due": "2026-12-01",
                "drug": "co-trimoxazole",
                "review": "2027-03-01",
            }
        ],
        [
            {
                "kind": "prophylaxis",
                "key": "prophylaxis:co-trimoxazole",
                "due": "2026-12-15",
                "drug": "co-trimoxazole",
                "review": "2027-03-08",
            }
        ],
        nothing(moved=[("prophylaxis:co-trimoxazole", "prophylaxis:co-trimoxazole", ["review"])]),
    ),
    (
        "an item that kept its key stops a pairing across it",
        [ig("2026-12-01"), ig("2026-12-29")],
        [ig("2026-12-29"), ig("2027-01-26")],
        nothing(added=["ig_session:2027-01-26"], removed=["ig_session:2026-12-01"]),
    ),
    (
        "items of two streams never pair",
        [vaccine("MMR", 1, "2027-01-10")],
        [vaccine("VAR", 1, "2027-01-10")],
        nothing(added=["vaccine_dose:VAR:1"], removed=["vaccine_dose:MMR:1"]),
    ),
    (
        "more new items than gone: the first pair in date order, the rest added",
        [ig("2026-12-01")],
        [ig("2026-12-08"), ig("2027-01-05")],
        nothing(
            moved=[("ig_session:2026-12-01", "ig_session:2026-12-08", [])],
            added=["ig_session:2027-01-05"],
        ),
    ),
    (
        "where an item stands in the store is not compared",
        [ig("2026-12-01", status="scheduled", booking={"day": "2026-12-01", "chair": 2})],
        [ig("2026-12-01", status="proposed")],
        nothing(),
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_item_comparison(
    before: list[dict[str, Any]], after: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    assert summary(before, after) == expected


def test_a_comparison_is_falsy_when_nothing_changed() -> None:
    stream = lambda i: stream_of(dict(i))  # noqa: E731
    assert not diff_items([ig("2026-12-01")], [ig("2026-12-01")], stream=stream)
    assert diff_items([], [ig("2026-12-01")], stream=stream)


# ----------------------------------------------------------------------------- sidflows show


def _show(capsys: pytest.CaptureFixture[str], ref: str, *extra: str) -> str:
    assert main(["show", ref, *extra]) == 0
    return capsys.readouterr().out


def _replan(ref: str, days: int = 14) -> None:
    service.propose(
        ref,
        unit=Unit(protocol=PROTOCOL, calendar=CALENDAR),
        today=TODAY + dt.timedelta(days=days),
        reason="new lab result",
        actor="test",
    )


def test_show_lists_what_a_waiting_re_plan_changes(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two weeks on, the IV sessions of the re-plan move: show says so, item by item."""
    ref = refer_and_activate(iv_child("DIFF-1"))
    _replan(ref)
    shown = json.loads(_show(capsys, ref, "--json"))
    proposal = shown["proposal"]
    assert (proposal["version"], proposal["against_version"], proposal["waiting_for"]) == (
        2,
        1,
        "approval",
    )
    assert set(proposal["items"]) == {"added", "removed", "moved", "changed"}
    moved = [m for m in proposal["items"]["moved"] if m["kind"] == "ig_session"]
    assert moved
    assert all(m["from"] < m["to"] for m in moved)
    assert isinstance(proposal["decisions"], list)
    assert [(v["version"], v["status"], v["consent"]) for v in shown["versions"]] == [
        (2, "proposed", "recorded"),
        (1, "active", "recorded"),
    ]
    text = _show(capsys, ref)
    assert (
        "  proposal v2 (new lab result) waits for a clinician's approval; against active v1:"
        in text
    )
    first = moved[0]
    assert f"    moved     {first['from']} -> {first['to']}  {first['key']}" in text
    assert "  v2 proposed   consent recorded" in text
    assert "  v1 active     consent recorded" in text


def test_show_without_a_proposal(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    ref = refer_and_activate(iv_child("DIFF-2"))
    shown = json.loads(_show(capsys, ref, "--json"))
    assert shown["proposal"] is None
    assert [v["version"] for v in shown["versions"]] == [1]
    assert "proposal" not in _show(capsys, ref)


def test_show_of_a_first_plan_waiting(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A first plan has nothing active to compare with; its consent is still to be recorded."""
    text = json.loads(example("lupus-on-rituximab"))
    text.pop("consent", None)
    ref = service.refer(json.dumps(text), unit=Unit(), actor="intake").ref
    service.propose(
        ref, unit=Unit(protocol=PROTOCOL, calendar=CALENDAR), today=TODAY, reason="referral",
        actor="test",
    )  # fmt: skip
    shown = json.loads(_show(capsys, ref, "--json"))
    assert shown["proposal"]["against_version"] is None
    assert shown["proposal"]["waiting_for"] == "approval"
    out = _show(capsys, ref)
    assert "waits for a clinician's approval; first plan: no active plan to compare" in out
    assert "  v1 proposed   consent" in out
