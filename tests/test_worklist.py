"""`sidflows worklist` through the command line: each section and role, the --json document,
a day with nothing, bad options, the real console script, and no Prefect, no identity.

In-process through ``flows.cli.main`` (argv, captured output) on a SQLite store;
the store-level reads on both engines are tests/store/test_worklist.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from tests.store.support import iv_child, refer_and_activate
from tests.store.worklist_scenario import DAY, SECRETS, unit_scenario

SIDFLOWS = str(Path(sys.executable).parent / "sidflows")
SECTIONS = ("day_unit", "home_care", "labs", "vaccines", "other")
STUCK = (
    "overdue",
    "held",
    "awaiting_approval",
    "awaiting_consent",
    "unfinished_activations",
    "pending_intents",
    "replaced_runs",
    "outbox",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["worklist", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--date", DAY.isoformat(), "--json", *argv)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


@pytest.fixture
def unit_store(store: str) -> str:
    unit_scenario(store)
    return store


def test_the_json_document_has_its_documented_shape(
    unit_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/formats.md §10: format, date, role, limit, today's sections, the stuck lists."""
    found = as_json(capsys)
    assert set(found) == {"format", "date", "role", "limit", "today", "stuck"}
    assert (found["format"], found["date"], found["role"], found["limit"]) == (
        "sidflows.worklist/1",
        DAY.isoformat(),
        "coordinator",
        200,
    )
    assert tuple(found["today"]) == SECTIONS
    assert tuple(found["stuck"]) == STUCK
    for listed in [*found["today"].values(), *found["stuck"].values()]:
        assert {"count", "items"} <= set(listed)
        assert len(listed["items"]) <= listed["count"]
    chair = found["today"]["day_unit"]["items"][0]
    assert set(chair) == {
        "chair", "start", "end", "minutes", "ref", "plan_version", "key", "kind", "status",
        "held", "product", "route", "dose_g", "dose_g_per_kg", "loading", "first_infusion",
    }  # fmt: skip


def test_each_section_of_the_day(unit_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    today = as_json(capsys)["today"]
    du = today["day_unit"]["items"]
    assert [(i["chair"], i["start"], i["end"], i["ref"]) for i in du] == [
        (1, "08:00", "10:30", "DU-2"),
        (2, "08:00", "11:04", "DU-1"),
    ]
    assert [(i["product"], i["dose_g"], i["first_infusion"]) for i in du] == [
        ("IVIG", 20.5, False),
        ("IVIG", 11.0, True),
    ]
    assert [(i["ref"], i["setting"], i["nurse_visit"]) for i in today["home_care"]["items"]] == [
        ("HC-1", "supervised", True),
        ("HC-2", "home", False),
    ]
    labs = today["labs"]["items"]
    assert [(i["what"], i["target_g_l"], i["panel"]) for i in labs] == [
        ("trough IgG", 7.0, []),
        ("reassessment", None, ["IgG", "CD19"]),
    ]
    vaccines = today["vaccines"]["items"]
    assert [(i["vaccine"], i["dose_number"], i["live"]) for i in vaccines] == [
        ("MMR", 1, True),
        ("PCV", 2, False),
    ]
    assert vaccines[0]["held"]
    assert vaccines[1]["held"] is None
    assert [i["what"] for i in today["other"]["items"]] == [
        "plan review",
        "co-trimoxazole prophylaxis",
    ]


def test_what_is_stuck(unit_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    stuck = as_json(capsys)["stuck"]
    assert [(i["ref"], i["key"], i["days_late"]) for i in stuck["overdue"]["items"]] == [
        ("VX-1", "vaccine_dose:HepB:3", 10),
        ("DU-2", "ig_session:2027-01-07", 5),
    ]
    assert [(i["key"], i["held_for"]) for i in stuck["held"]["items"]] == [
        ("vaccine_dose:MMR:1", 3)
    ]
    approval = stuck["awaiting_approval"]["items"]
    assert [(i["ref"], i["plan_version"], i["days_waiting"]) for i in approval] == [
        ("AP-1", 1, 3),
        ("AP-2", 2, 0),
        ("VX-1", 3, 0),
    ]
    consent = stuck["awaiting_consent"]["items"]
    assert [(i["ref"], i["days_waiting"]) for i in consent] == [("CS-1", 2), ("CS-2", 1)]
    assert [i["ref"] for i in stuck["unfinished_activations"]["items"]] == ["UA-1"]
    assert [(i["ref"], i["attempts"]) for i in stuck["pending_intents"]["items"]] == [("AP-1", 3)]
    # Replaced runs of the last 7 days, per item (two routes, two attempts: 2 replacements).
    replaced = stuck["replaced_runs"]
    assert replaced["count"] == 1
    assert [(i["ref"], i["key"], i["replacements"]) for i in replaced["items"]] == [
        ("DU-2", "ig_session:2027-01-07", 2)
    ]
    outbox = stuck["outbox"]
    assert outbox["by_status"] == {"failed": 1, "unrouted": 1}
    assert [(m["status"], m["route"], m["ref"]) for m in outbox["items"]] == [
        ("failed", "day_unit", "DU-1"),
        ("unrouted", "clinicians", "AP-1"),
    ]


@pytest.mark.parametrize(
    ("role", "sections", "stuck", "overdue", "routes"),
    [
        ("day-unit", ["day_unit"], ["overdue", "held", "outbox"], ["DU-2"], ["day_unit"]),
        ("home-care", ["home_care"], ["overdue", "held", "outbox"], [], []),
        ("labs", ["labs"], ["overdue", "held"], [], None),
        ("vaccines", ["vaccines"], ["overdue", "held"], ["VX-1"], None),
        ("coordinator", list(SECTIONS), list(STUCK), ["VX-1", "DU-2"], ["day_unit", "clinicians"]),
    ],
)
def test_a_role_sees_its_own_work(
    unit_store: str,
    capsys: pytest.CaptureFixture[str],
    role: str,
    sections: list[str],
    stuck: list[str],
    overdue: list[str],
    routes: list[str] | None,
) -> None:
    """--role filters: the other sections are null; overdue and outbox are the role's."""
    found = as_json(capsys, "--role", role)
    assert found["role"] == role
    assert [k for k, v in found["today"].items() if v is not None] == sections
    assert [k for k, v in found["stuck"].items() if v is not None] == stuck
    assert [i["ref"] for i in found["stuck"]["overdue"]["items"]] == overdue
    outbox = found["stuck"]["outbox"]
    assert (None if outbox is None else [m["route"] for m in outbox["items"]]) == routes


def test_the_text_is_one_table_per_list(
    unit_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--date", DAY.isoformat())
    assert (code, err) == (0, "")
    assert out.startswith(f"Worklist {DAY} (coordinator)\n")
    for line in [
        "Day unit: 2",
        "Home care: 2",
        "Labs and troughs to draw: 2",
        "Vaccines to give: 2",
        "Prophylaxis and plan reviews: 2",
        "Overdue: 2",
        "Held by a safety hold until a re-plan is answered: 1",
        "Plans waiting for a clinician: 3",
        "Plans waiting for the family's consent: 2",
        "Approved plans not yet active (the sweep finishes them): 1",
        "Not yet carried out in Prefect: 1",
        "Messages failed or without a route: 2",
    ]:
        assert f"\n{line}\n" in out, line
    rows = out.splitlines()
    chair_1 = next(r for r in rows if "DU-2" in r and "IVIG" in r).split()
    assert chair_1[:5] == ["1", "08:00-10:30", "DU-2", "IVIG", "20.5"]
    assert next(r for r in rows if "DU-1" in r and "IVIG" in r).split()[-2:] == ["yes", "scheduled"]
    assert any("MMR" in r and "HELD (scheduled)" in r for r in rows)
    assert any("[Errno 111]" in r for r in rows)  # printed as it is, not read as markup
    assert "\x1b[" not in out  # no colour codes when the output is not a terminal


def test_a_role_prints_only_its_tables(unit_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--date", DAY.isoformat(), "--role", "labs")
    assert code == 0
    assert "Labs and troughs to draw: 2" in out
    assert not [t for t in ("Day unit", "Vaccines", "Messages") if t in out]
    assert "Overdue, held by a safety hold until a re-plan is answered: nothing" in out


def test_refs_only_never_identity(unit_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Names, record numbers and birth dates stay in the store, in text and JSON, every role."""
    for role in ("day-unit", "home-care", "labs", "vaccines", "coordinator"):
        for extra in ([], ["--json"]):
            code, out, _ = run(capsys, "--date", DAY.isoformat(), "--role", role, *extra)
            assert code == 0
            assert not [s for s in SECRETS if s in out], (role, extra)


def test_limit_caps_each_list_and_says_so(
    unit_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = as_json(capsys, "--limit", "1")
    assert found["limit"] == 1
    assert (found["today"]["day_unit"]["count"], len(found["today"]["day_unit"]["items"])) == (2, 1)
    code, out, _ = run(capsys, "--date", DAY.isoformat(), "--limit", "1")
    assert code == 0
    assert "Day unit: 2 (1 shown, --limit for more)" in out


def test_a_day_with_nothing(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty unit: every list counted 0; the text names them in one line each part."""
    found = as_json(capsys)
    assert all(v["count"] == 0 and v["items"] == [] for v in found["today"].values())
    assert all(v["count"] == 0 for v in found["stuck"].values())
    code, out, _ = run(capsys, "--date", DAY.isoformat())
    assert code == 0
    assert out.splitlines() == [
        f"Worklist {DAY} (coordinator)",
        "",
        "Today",
        "Day unit, home care, labs and troughs to draw, vaccines to give, "
        "prophylaxis and plan reviews: nothing",
        "",
        "Stuck",
        "Overdue, held by a safety hold until a re-plan is answered, plans waiting for a "
        "clinician, plans waiting for the family's consent, approved plans not yet active "
        "(the sweep finishes them), not yet carried out in Prefect, runs replaced after "
        "ending without recording their item (last 7 days), messages failed or "
        "without a route: nothing",
    ]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--date", "2027-02-30"], "--date: impossible date '2027-02-30'"),
        (["--date", "next tuesday"], "--date: not a date"),
        (["--role", "nurse"], "--role: unknown role 'nurse'"),
        (["--role", ""], "--role: unknown role ''"),
        (["--limit", "0"], "--limit: must lie between 1 and 100,000"),
        (["--limit", "many"], "--limit: not a whole number"),
    ],
    ids=["impossible date", "not a date", "unknown role", "empty role", "limit 0", "limit text"],
)
def test_a_bad_option_exits_2_with_one_line_naming_it(
    store: str, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"sidflows: invalid input: {line}"), err


def test_a_real_pathway_on_its_first_session_day(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child referred and activated through the service: its first IV session's chair."""
    ref = refer_and_activate(iv_child("REAL-1"))
    assert main(["show", ref, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    first = next(i for i in shown["items"] if i["kind"] == "ig_session")
    code, out, _ = run(capsys, "--date", first["due"], "--role", "day-unit", "--json")
    assert code == 0
    (row,) = json.loads(out)["today"]["day_unit"]["items"]
    assert (row["ref"], row["key"], row["chair"]) == (ref, first["key"], first["booking"]["chair"])
    assert (row["dose_g"], row["first_infusion"]) == (first["dose_g"], True)
    assert row["minutes"] == first["session_minutes"]
    assert not [s for s in ("Child REAL-1", "MRN-REAL-1", "2016-10-02") if s in out]


def test_the_console_script(unit_store: str) -> None:
    """The installed `sidflows worklist` prints the same document, exit 0."""
    done = subprocess.run(  # the test checks the exit code
        [SIDFLOWS, "worklist", "--date", DAY.isoformat(), "--role", "day-unit", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SIDFLOWS_DATABASE_URL": unit_store},
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [i["ref"] for i in found["today"]["day_unit"]["items"]] == ["DU-2", "DU-1"]
    bad = subprocess.run(  # the test checks the exit code
        [SIDFLOWS, "worklist", "--role", "pharmacy"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SIDFLOWS_DATABASE_URL": unit_store},
    )
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("sidflows: invalid input: --role: unknown role 'pharmacy'")


def test_the_worklist_never_loads_prefect(unit_store: str) -> None:
    """As light as `propose`: the store, never Prefect, the orchestrator or a flow."""
    code = (
        "import sys; from flows.cli import main; "
        f"code = main(['worklist', '--date', '{DAY}']); "
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'prefect' "
        "or m in ('flows.orchestrator', 'flows.runtime', 'flows.tasks')]; "
        "print('EXIT', code, 'LOADED', heavy, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PATH": "/usr/bin:/bin", "SIDFLOWS_DATABASE_URL": unit_store},
    )
    assert "EXIT 0 LOADED []" in done.stderr, done.stderr
