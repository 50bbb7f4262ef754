"""The command line as a new user meets it: real processes, real files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
SIDFLOWS = str(Path(sys.executable).parent / "sidflows")
SAMPLES = sorted(EXAMPLES.glob("*.json"))


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the tests check the exit code
        [SIDFLOWS, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_propose_prints_the_plan_document(sample: Path) -> None:
    """`propose` prints a plan document with every field docs/formats.md names."""
    done = run("propose", str(sample), "--today", "2026-11-24")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert set(plan) >= {
        "patient_ref",
        "protocol_version",
        "as_of",
        "grading",
        "decisions",
        "items",
        "deferred",
    }
    assert plan["as_of"] == "2026-11-24"
    assert plan["grading"]["level"] in ("high", "low", "none")
    assert all({"topic", "decision", "rationale", "source"} <= set(d) for d in plan["decisions"])
    assert all(d["source"] for d in plan["decisions"])
    kinds = {
        "ig_session",
        "ig_trough",
        "vaccine_dose",
        "prophylaxis",
        "reassessment",
        "plan_review",
    }
    assert all(i["kind"] in kinds and "due" in i for i in plan["items"])
    assert all("2026-11-24" <= i["due"] <= "2027-11-24" for i in plan["items"])


def test_propose_reads_standard_input() -> None:
    """`propose -` reads the referral from standard input."""
    text = SAMPLES[0].read_text()
    done = run("propose", "-", "--today", "2026-11-24", stdin=text)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["patient_ref"]


@pytest.mark.parametrize(
    ("args", "stdin", "field"),
    [
        (("propose", "-"), "{not json", "document: malformed JSON"),
        (("propose", "-"), "[]", "document: must be a JSON object"),
        (("propose", "/nonexistent/referral.json"), None, "FILE: no such file"),
        (
            ("propose", str(EXAMPLES / "lupus-on-rituximab.json"), "--today", "2026-02-30"),
            None,
            "--today: impossible date",
        ),
    ],
    ids=["malformed", "not an object", "missing file", "impossible --today"],
)
def test_bad_input_exits_2_with_one_line(
    args: tuple[str, ...], stdin: str | None, field: str
) -> None:
    """Bad input: exit 2, one line on stderr naming the field, nothing on stdout, no traceback."""
    done = run(*args, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert field in lines[0]
    assert "Traceback" not in done.stderr


def test_propose_never_loads_prefect() -> None:
    """`propose` answers without importing prefect (and so without a server)."""
    code = (
        "import sys; from flows.cli import main; "
        f"main(['propose', {str(SAMPLES[0])!r}, '--today', '2026-11-24']); "
        "print('PREFECT_LOADED' if any(m == 'prefect' or m.startswith('prefect.') "
        "for m in sys.modules) else 'NO_PREFECT', file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "NO_PREFECT" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["refer", "-"],
        ["refer", "-", "--today", "2026-02-30"],
        ["treatment-change", "EX-0001", "-"],
        ["lab-result", "EX-0001", "-"],
    ],
    ids=["refer", "refer --today", "treatment-change", "lab-result"],
)
def test_a_refused_document_never_loads_prefect_or_the_store(argv: list[str]) -> None:
    """A document (or --today) the command refuses is refused before Prefect or the store load."""
    code = (
        "import sys; from flows.cli import main; "
        f"code = main({argv!r}); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('prefect', 'sqlmodel') "
        "or m in ('sidflows.service', 'flows.orchestrator')]; "
        "print('EXIT', code, 'LOADED', heavy, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input="[]",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "EXIT 2 LOADED []" in done.stderr, done.stderr


def test_sidflows_package_never_imports_prefect() -> None:
    """No module of sidflows/ imports prefect (flows/ is the only layer that does)."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "sidflows").rglob("*.py")
        if any(
            line.strip().startswith(("import prefect", "from prefect"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_published_schema_is_current() -> None:
    """config/referral.schema.json is what `sidflows schema` prints."""
    done = run("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == json.loads(
        (ROOT / "config" / "referral.schema.json").read_text()
    )


def test_unknown_ref_exits_3(tmp_path: Path) -> None:
    """`show` of a ref the store does not know: exit 3 and a message."""
    env_url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        [SIDFLOWS, "show", "NOBODY-1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SIDFLOWS_DATABASE_URL": env_url},
    )
    assert done.returncode == 3
    assert "NOBODY-1" in done.stderr
