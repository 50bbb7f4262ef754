"""`sidflows record`: an item's outcome from the command line, refused with one line naming
the option (exit 2; exit 3 for an unknown ref) and nothing written (docs/formats.md §13).

The outcomes that reach Prefect (a suspended run resumed, or recorded here when none
waits) are in tests/flows/test_record_runs.py, on the session's Prefect server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, store_snapshot

from flows.cli import main
from flows.item import ItemOutcome
from sidflows import service
from sidflows.errors import InvalidInput
from sidflows.service.items import RESULT_FIELDS, outcome_recorder, result_field
from sidflows.unit import Unit

SIDFLOWS = str(Path(sys.executable).parent / "sidflows")
TODAY = dt.date(2026, 11, 24)
SESSION = "ig_session:2026-12-01"
TROUGH = "ig_trough:2027-03-23"
REVIEW = "plan_review:2027-03-01"
NURSE = ["--by", "Nurse Test"]


def active_child(ref: str = "REC-CLI-1") -> str:
    """EX-0001 (IV immunoglobulin, consent given) under ``ref``, its plan v1 active (no Prefect)."""
    sample = json.loads((EXAMPLES / "all-after-maintenance.json").read_text())
    sample["patient"]["ref"] = ref
    ref = service.refer(json.dumps(sample), unit=Unit(), actor="test").ref
    service.propose(ref, unit=Unit(), today=TODAY, reason="referral", actor="test")
    service.decide(ref, unit=Unit(), decision="approve", by="Dr Test")
    service.consent(ref, unit=Unit(), by="coordinator")
    assert service.activate(ref, unit=Unit(), actor="test").status == "activated"
    return ref


# (what, the arguments after `record REF`, the one line's start after "invalid input: ")
BAD = [
    ("result unknown", [SESSION, "gave"], "RESULT: 'gave' is not an outcome"),
    (
        "result of another kind",
        [SESSION, "continue", "--by", "Dr Test"],
        "RESULT: 'continue' is not an outcome of a",
    ),
    ("dose not a number", [SESSION, "given", "--dose-g", "eleven"], "--dose-g: not a number"),
    ("dose NaN", [SESSION, "given", "--dose-g", "nan"], "--dose-g: not a number: 'nan'"),
    ("dose 1_1", [SESSION, "given", "--dose-g", "1_1"], "--dose-g: not a number: '1_1'"),
    ("dose zero", [SESSION, "given", "--dose-g", "0"], "--dose-g: 0 g is out of range"),
    ("dose too much", [SESSION, "given", "--dose-g", "250"], "--dose-g: 250 g is out of range"),
    ("dose of a missed", [SESSION, "missed", "--dose-g", "11"], "--dose-g: a ig_session missed"),
    ("dose of a trough", [TROUGH, "done", "--dose-g", "11"], "--dose-g: a ig_trough done has no"),
    ("lot empty", [SESSION, "given", "--lot", "  "], "--lot: empty"),
    ("lot too long", [SESSION, "given", "--lot", "L" * 101], "--lot: longer than 100"),
    ("lot control", [SESSION, "given", "--lot", "L\x07"], "--lot: holds a control character"),
    (
        "IgG out of range",
        [TROUGH, "done", "--value", "IgG=61"],
        "--value IgG: 61 g/L is out of range 0-40",
    ),
    (
        "IgG negative",
        [TROUGH, "done", "--value", "igg_g_l=-1"],
        "--value IgG: -1 g/L is out of range 0-40",
    ),
    (
        "IgA out of range",
        [TROUGH, "done", "--value", "IgA=21"],
        "--value IgA: 21 g/L is out of range 0-20",
    ),
    (
        "CD4 out of range",
        [TROUGH, "done", "--value", "CD4=20000"],
        "--value CD4: 20000 cells/uL is out",
    ),
    (
        "CD4% out of range",
        [TROUGH, "done", "--value", "CD4%=101"],
        "--value CD4%: 101 % of lymphocytes",
    ),
    (
        "LLN zero",
        [TROUGH, "done", "--value", "IgG-LLN=0"],
        "--value IgG-LLN: 0 g/L is out of range more than 0",
    ),
    ("ANC out of range", [TROUGH, "done", "--value", "neutrophils=200000"], "--value ANC: 200000"),
    (
        "value not a number",
        [TROUGH, "done", "--value", "IgG=six"],
        "--value IgG: not a number: 'six'",
    ),
    ("value no =", [TROUGH, "done", "--value", "IgG"], "--value: expected NAME=NUMBER"),
    ("value unknown", [TROUGH, "done", "--value", "IgE=1"], "--value: unknown result 'IgE'"),
    (
        "value twice",
        [TROUGH, "done", "--value", "IgG=6", "--value", "igg_g_l=6"],
        "--value IgG: given twice",
    ),
    (
        "values of a session",
        [SESSION, "given", "--value", "IgG=6.1"],
        "--value: a ig_session given has no",
    ),
    (
        "values of a missed",
        [TROUGH, "missed", "--value", "IgG=6.1"],
        "--value: a ig_trough missed has no",
    ),
    ("date impossible", [SESSION, "given", "--date", "2026-02-30"], "--date: impossible date"),
    ("date not a date", [SESSION, "given", "--date", "tomorrow"], "--date: not a date"),
    (
        "item unknown",
        ["ig_session:2031-01-01", "given"],
        "ITEM: REC-CLI-1 has no item ig_session:2031-01-01",
    ),
    ("not on the roster", [SESSION, "given", "--by", "Nobody"], "--by: 'Nobody' is not listed"),
    ("by empty", [SESSION, "given", "--by", " "], "--by: empty"),
    (
        "a pharmacist",
        [SESSION, "given", "--by", "Pharmacist Test"],
        "--by: 'Pharmacist Test' is pharmacist",
    ),
    (
        "a coordinator gives",
        [SESSION, "given", "--by", "coordinator"],
        "--by: 'coordinator' is coordinator",
    ),
    (
        "a nurse discharges",
        [REVIEW, "discharge"],
        "--by: 'Nurse Test' is nurse in the staff roster: a discharge",
    ),
]


@pytest.mark.parametrize(("what", "words", "line"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_in_one_line_and_nothing_written(
    store: str, capsys: pytest.CaptureFixture[str], what: str, words: list[str], line: str
) -> None:
    ref = active_child()
    before = store_snapshot(store)
    argv = ["record", ref, *words]
    code = main([*argv, *(NURSE if "--by" not in words else [])])
    err = capsys.readouterr()
    assert code == 2, err
    assert err.out == ""
    assert err.err.count("\n") == 1, err.err
    assert err.err.startswith(f"sidflows: invalid input: {line}"), err.err
    assert store_snapshot(store) == before


def test_unknown_ref_exits_3(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = store_snapshot(store)
    assert main(["record", "NOBODY-1", SESSION, "given", *NURSE]) == 3
    assert capsys.readouterr().err == "sidflows: unknown patient ref 'NOBODY-1'\n"
    assert store_snapshot(store) == before


def test_an_item_with_nothing_to_record_is_refused(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cancelled item (a re-plan dropped it) has nothing left to record."""
    from sidflows.store import db, items
    from sidflows.store.models import ItemStatus

    ref = active_child()
    with db.session_scope() as session:
        item = items.get_item(session=session, ref=ref, key=SESSION)
        items.set_item_status(session=session, item=item, status=ItemStatus.cancelled, actor="test")
    before = store_snapshot(store)
    assert main(["record", ref, SESSION, "given", *NURSE]) == 2
    assert capsys.readouterr().err == (
        f"sidflows: invalid input: ITEM: {SESSION} is cancelled: there is nothing to record\n"
    )
    assert store_snapshot(store) == before


CONSOLE = [
    ([SESSION, "given", "--value", "IgG=6.1"], "--value: a ig_session given has no results"),
    ([TROUGH, "done", "--value", "IgG=61"], "--value IgG: 61 g/L is out of range 0-40"),
    (["no:such:item", "given"], "ITEM: REC-CLI-1 has no item no:such:item in its active plan"),
    ([SESSION, "given", "--by", "Nobody"], "--by: 'Nobody' is not listed in the staff roster"),
    ([SESSION, "given", "--dose-g", "-3"], "--dose-g: -3 g is out of range"),
]


def test_the_console_script_refuses_in_one_line_and_writes_nothing(store: str) -> None:
    """The installed `sidflows`, as a nurse runs it: exit 2 (3 for an unknown ref), one line."""
    ref = active_child()
    before = store_snapshot(store)
    env = {**os.environ, "SIDFLOWS_DATABASE_URL": store}
    env.pop("PREFECT_API_URL", None)
    for words, line in [*CONSOLE, ([SESSION, "given"], "")]:
        target = "NOBODY-2" if not line else ref
        by = [] if "--by" in words else NURSE
        done = subprocess.run(  # the exit code is checked below
            [SIDFLOWS, "record", target, *words, *by],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        if not line:
            assert done.returncode == 3, done.stderr
            assert done.stderr == "sidflows: unknown patient ref 'NOBODY-2'\n"
            continue
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr == f"sidflows: invalid input: {line}\n" or done.stderr.startswith(
            f"sidflows: invalid input: {line}"
        ), done.stderr
        assert done.stderr.count("\n") == 1
    assert store_snapshot(store) == before


def test_who_may_record_what() -> None:
    """Nurses and clinicians record outcomes, coordinators missed ones, a clinician a review's
    continue or discharge; the roster's spelling is what is audited."""
    unit = Unit()
    assert outcome_recorder(unit, "  nurse   TEST ", "given") == "Nurse Test"
    assert outcome_recorder(unit, "Dr Test", "discharge") == "Dr Test"
    assert outcome_recorder(unit, "coordinator", "missed") == "coordinator"
    for who, result in [
        ("coordinator", "done"),
        ("Nurse Test", "continue"),
        ("family liaison", "missed"),
    ]:
        with pytest.raises(InvalidInput, match=r"^by: "):
            outcome_recorder(unit, who, result)


def test_the_form_has_a_typed_field_per_result_with_its_unit_and_range() -> None:
    """The Prefect form: one field per result a lab entry takes, unit and range described;
    an older answer's `values` dict is still read, both map to the same outcome."""
    schema = ItemOutcome.model_json_schema()["properties"]
    for result in RESULT_FIELDS:
        field = schema[result.field]
        assert result.unit in field["description"]
        assert result.limits() in field["description"]
    assert schema["igg_g_l"]["anyOf"][0] == {"maximum": 40, "minimum": 0, "type": "number"}
    typed = ItemOutcome.model_validate({"result": "done", "igg_g_l": 6.1, "cd19_per_ul": 80})
    older = ItemOutcome.model_validate(
        {"result": "done", "values": {"igg_g_l": 6.1, "cd19_per_ul": 80}}
    )
    assert (
        typed.outcome()
        == older.outcome()
        == {
            "result": "done",
            "dose_g": None,
            "lot": None,
            "values": {"igg_g_l": 6.1, "cd19_per_ul": 80},
        }
    )
    with pytest.raises(ValueError, match="igg_g_l"):
        ItemOutcome.model_validate({"result": "done", "igg_g_l": 61})
    assert result_field("igg").field == "igg_g_l"  # type: ignore[union-attr]
    assert result_field("Neutrophils").field == "anc_per_ul"  # type: ignore[union-attr]
