"""The command line as a new user meets it: real processes, real files, exit codes."""

from __future__ import annotations

import json
import os
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


# ----------------------------------------------------- commands that need no Prefect, and the
# ----------------------------------------------------- local server the others reuse


def _loaded_after(argv: list[str], store_url: str, prepare: str = "") -> str:
    """Run ``main(argv)`` in a fresh interpreter; its exit code and whether prefect loaded."""
    code = (
        "import sys; from flows.cli import main; "
        f"{prepare}"
        f"code = main({argv!r}); "
        "loaded = any(m.split('.')[0] == 'prefect' for m in sys.modules); "
        "print('EXIT', code, 'PREFECT' if loaded else 'NO_PREFECT', file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SIDFLOWS_DATABASE_URL": store_url, "HOME": "/nonexistent"},
    )
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.stdout


STORE_ONLY = [
    ["show", "EX-0002"],
    ["show", "EX-0002", "--json"],
    ["show", "EX-0002", "--fhir"],
    ["worklist", "--date", "2026-11-25"],
    ["calendar", "EX-0002"],
    ["notifications", "--json"],
    ["db", "upgrade"],
]


@pytest.mark.parametrize("argv", STORE_ONLY, ids=[" ".join(a) for a in STORE_ONLY])
def test_a_command_that_reads_the_store_never_loads_prefect(
    argv: list[str], tmp_path: Path
) -> None:
    """`show` and the store's other commands answer without importing Prefect (no server)."""
    # A child with a proposed plan, stored through the service (no Prefect either).
    sample = EXAMPLES / "lupus-on-rituximab.json"
    prepare = (
        "from flows import runtime; from sidflows import service; runtime.ensure_store(); "
        f"r = service.refer(open({str(sample)!r}).read(), unit=runtime.unit(), actor='t'); "
        "import datetime as dt; "
        "service.propose(r.ref, unit=runtime.unit(), today=dt.date(2026, 11, 24), "
        "reason='referral', actor='t'); assert r.ref == 'EX-0002', r.ref; "
    )
    answer = _loaded_after(argv, f"sqlite:///{tmp_path / 'store.db'}", prepare)
    assert answer == "EXIT 0 NO_PREFECT", answer


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_commands_reuse_the_local_server_until_it_stops(tmp_path: Path) -> None:
    """`sidflows server start`: `refer` runs its pathway here on that server (no temporary
    one), the run is in that server's history; `server stop` ends it and the file."""
    import httpx

    home = tmp_path / "prefect"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(home),
        "SIDFLOWS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    port = _free_port()

    def sidflows(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # the test checks the exit code
            [SIDFLOWS, *args], capture_output=True, text=True, timeout=180, check=False, env=env
        )

    started = sidflows("server", "start", "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        api = f"http://127.0.0.1:{port}/api"
        assert api in started.stdout
        assert sidflows("server", "start", "--port", str(port)).stdout.count("already running")
        referred = sidflows(
            "refer", str(EXAMPLES / "lupus-on-rituximab.json"), "--today", "2026-11-24"
        )
        assert referred.returncode == 0, referred.stderr
        assert "EX-0002: awaiting approval" in referred.stdout  # the pathway ran here
        assert "temporary server" not in referred.stdout + referred.stderr
        runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 50}, timeout=30).json()
        assert "pathway-EX-0002" in {r["name"] for r in runs}
        assert api in sidflows("server", "status").stdout
    finally:
        stopped = sidflows("server", "stop")
    assert stopped.stdout.strip() == "local Prefect server stopped"
    assert not (home / "sidflows-server.json").exists()
    assert "no local Prefect server" in sidflows("server", "status").stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=5)


@pytest.mark.parametrize(
    ("option", "value"), [("--children", "0"), ("--children", "-3"), ("--months", "x")]
)
def test_demo_counts_out_of_range_exit_2_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    """A demo of no children or no months is refused before anything starts."""
    done = subprocess.run(  # the test checks the exit code
        [SIDFLOWS, "demo", option, value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert f"argument {option}: a whole number from 1 to" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".sidflows").exists()


@pytest.mark.parametrize(
    ("api_url", "given", "wanted"),
    [
        ("", None, "one"),  # Prefect's temporary server: plain HTTP on loopback
        ("http://prefect.unit.example:4200/api", None, "one"),
        ("https://prefect.unit.example/api", None, "unset"),  # TLS: certifi's bundle, as before
        ("http://127.0.0.1:4200/api", "/etc/unit/ca.pem", "given"),  # the unit's own CA file
    ],
)
def test_a_plain_http_client_loads_one_certificate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_url: str,
    given: str | None,
    wanted: str,
) -> None:
    """The Prefect client's CA file (loaded at each client made, 26 ms with the whole bundle)
    is one certificate where no TLS is spoken; an https API keeps its verification."""
    import ssl

    from flows.cli.local_server import plain_http_client

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    for name, value in (("PREFECT_API_URL", api_url), ("PREFECT_API_SSL_CERT_FILE", given)):
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    plain_http_client()
    chosen = os.environ.get("PREFECT_API_SSL_CERT_FILE")
    if wanted == "unset":
        assert chosen is None
    elif wanted == "given":
        assert chosen == given
    else:
        assert chosen == str(tmp_path / "home" / "plain-http-ca.pem")
        context = ssl.create_default_context(cafile=chosen)  # a CA file Prefect can load
        assert context.cert_store_stats()["x509_ca"] == 1
        plain_http_client()  # again: the same file, still whole
        assert Path(chosen).read_text().count("BEGIN CERTIFICATE") == 1


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("profiles", '[profiles.unit]\nPREFECT_API_URL = "https://prefect.unit.example/api"\n'),
        ("profiles", '[profiles.unit]\nPREFECT_API_SSL_CERT_FILE = "/etc/pki/unit-ca.pem"\n'),
        (".env", "PREFECT_API_URL=https://prefect.unit.example/api\n"),
        ("prefect.toml", '[api]\nurl = "https://prefect.unit.example/api"\n'),
        ("pyproject.toml", '[tool.prefect.api]\nurl = "https://prefect.unit.example/api"\n'),
    ],
)
def test_an_api_a_prefect_settings_file_may_name_is_left_to_prefect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, text: str
) -> None:
    """With no PREFECT_API_URL in the environment, a profile or a settings file in the
    working directory may give Prefect an https API and its CA: the CA file is left alone
    (only Prefect resolves those files)."""
    from flows.cli.local_server import plain_http_client

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    (home / "profiles.toml" if where == "profiles" else tmp_path / where).write_text(text)
    plain_http_client()
    assert "PREFECT_API_SSL_CERT_FILE" not in os.environ


def test_a_spoilt_certificate_file_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty or foreign file where the one certificate goes is replaced, not trusted."""
    import ssl

    from flows.cli.local_server import PLAIN_HTTP_CA, plain_http_client

    home = tmp_path / "home"
    home.mkdir()
    (home / PLAIN_HTTP_CA).write_text("")
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    plain_http_client()
    context = ssl.create_default_context(cafile=str(home / PLAIN_HTTP_CA))
    assert context.cert_store_stats()["x509_ca"] == 1
    assert [p.name for p in home.iterdir()] == [PLAIN_HTTP_CA], "no partial file left"
