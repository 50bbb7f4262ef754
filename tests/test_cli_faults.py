"""Faults an operator meets at the console: refused before anything is written, one line,
no traceback, a closed pipe ends quietly. Real processes (the `sidflows` script)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES

from flows.quiet import OneLine

SIDFLOWS = str(Path(sys.executable).parent / "sidflows")
ROOT = Path(__file__).resolve().parent.parent
REFERRAL = EXAMPLES / "all-after-maintenance.json"


def run(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the tests check the exit code
        [SIDFLOWS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
        cwd=cwd,
    )


def broken(tmp_path: Path, name: str) -> Path:
    """The shipped file with one field made wrong."""
    text = (ROOT / "config" / name).read_text()
    path = tmp_path / name
    if name == "protocol.toml":
        text = text.replace("every_months = 3", 'every_months = "three"', 1)
    elif name == "notifications.toml":
        text = text.replace(
            '[events.plan_activated]\nroles = ["',
            '[events.plan_activated]\nroles = ["nobody", "',
            1,
        )
    else:  # pragma: no cover
        raise AssertionError(name)
    path.write_text(text)
    return path


SETTING = {"protocol.toml": "SIDFLOWS_PROTOCOL", "notifications.toml": "SIDFLOWS_NOTIFICATIONS"}


@pytest.mark.parametrize("name", list(SETTING))
@pytest.mark.parametrize("command", ["refer", "serve", "sweep"])
def test_a_broken_file_stops_the_command_before_anything_is_stored(
    tmp_path: Path, name: str, command: str
) -> None:
    """Every file of the unit is read before the store is touched: exit 1, one line naming
    the file, no store created (serve: before it talks to Prefect)."""
    store = tmp_path / "store.db"
    env = {
        SETTING[name]: str(broken(tmp_path, name)),
        "SIDFLOWS_DATABASE_URL": f"sqlite:///{store}",
    }
    args = {"refer": ["refer", str(REFERRAL)], "serve": ["serve"], "sweep": ["sweep"]}[command]
    started = time.monotonic()
    done = run(*args, env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sidflows: configuration:")
    assert name.split(".", maxsplit=1)[0] in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert not store.exists(), "nothing is stored before the refusal"
    assert time.monotonic() - started < 30, "refused before any server starts"


@pytest.mark.parametrize(
    "args",
    [["schema"], ["propose", str(REFERRAL), "--today", "2026-11-24"]],
    ids=["schema", "propose"],
)
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """`sidflows ... | head -1`: the reader goes away; no BrokenPipeError, no traceback."""
    process = subprocess.Popen(
        [SIDFLOWS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as head does after its line
    error = process.stderr.read().decode()
    code = process.wait(timeout=60)
    assert first.strip()
    assert error == "", error
    assert code in (0, 141)


def test_a_failing_database_is_one_line(tmp_path: Path) -> None:
    """The store unreachable: one line (the driver's hint lines dropped), the debug hint."""
    env = {"SIDFLOWS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    done = run("sweep", env=env, cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "OperationalError" in lines[0]
    assert "SIDFLOWS_DEBUG=1" in lines[0]
    debug = run("sweep", env={**env, "SIDFLOWS_DEBUG": "1"}, cwd=tmp_path)
    assert "Traceback" in debug.stderr


def test_a_logged_traceback_becomes_one_line() -> None:
    """What Prefect logs with a traceback reaches the console as one line naming the error."""
    try:
        raise RuntimeError("the store went away\nsecond line of the driver")
    except RuntimeError:
        record = logging.LogRecord(
            "prefect.task_runs",
            logging.ERROR,
            __file__,
            1,
            "Task run failed: %s",
            ("x",),
            sys.exc_info(),
        )
    assert OneLine().filter(record)
    assert record.exc_info is None
    assert record.exc_text is None
    assert record.getMessage() == (
        "Task run failed: x (RuntimeError: the store went away; "
        "SIDFLOWS_DEBUG=1 shows the traceback)"
    )
