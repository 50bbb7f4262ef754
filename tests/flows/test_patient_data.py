"""After a demo with identity values, none of them is in Prefect's database, the
logs, or the notifications; the Apprise URLs are in no log either."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.prefect]
BIN = Path(sys.executable).parent


def _dump_sqlite(path: Path) -> str:
    """Every text and JSON cell of every table of a SQLite file."""
    found: list[str] = []
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                found.extend(str(cell) for cell in row if isinstance(cell, (str, bytes)))
    return "\n".join(found)


def test_a_demo_year_leaves_no_identity_in_prefect_logs_or_notifications(tmp_path: Path) -> None:
    """Names, record numbers and birth dates stay in the store; routes stay out of the logs."""
    env = {
        **os.environ,
        "SIDFLOWS_DEMO_PREFECT_DB": "sqlite",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env = {k: v for k, v in env.items() if not k.startswith(("SIDFLOWS_NOTIFY_", "PREFECT_API"))}
    done = subprocess.run(
        [str(BIN / "sidflows"), "demo", "--children", "3", "--months", "2", "--local-receivers"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs[-3000:]
    base = tmp_path / ".sidflows" / "demo"
    with sqlite3.connect(base / "sidflows.db") as store:
        identities = [
            v for row in store.execute("SELECT name, mrn FROM identity") for v in row if v
        ]
        births = [str(r[0]) for r in store.execute("SELECT birth_date FROM patient")]
        refs = [str(r[0]) for r in store.execute("SELECT ref FROM patient")]
        outbox = "\n".join(
            f"{s}\n{b}" for s, b in store.execute("SELECT subject, body FROM notification")
        )
        sent = store.execute("SELECT count(*) FROM notification WHERE status = 'sent'").fetchone()
    assert len(identities) >= 6, "the demo's children carry names and record numbers"
    prefect = _dump_sqlite(base / "prefect" / "prefect.db")
    assert any(ref in prefect for ref in refs), "Prefect does hold the refs"
    assert any(ref in outbox for ref in refs)
    server_logs = "\n".join(
        p.read_text(errors="replace") for p in (base / "prefect").rglob("*.log")
    )
    for value in [*identities, *births]:
        assert value not in prefect, f"{value!r} is in Prefect's database"
        assert value not in logs, f"{value!r} is in the demo's output"
        assert value not in server_logs, f"{value!r} is in a log file"
        assert value not in outbox, f"{value!r} is in a notification"
    assert sent[0] > 0
    assert "json://" not in logs
    assert "mailto://" not in logs
    assert "json://" not in prefect
    assert "mailto://" not in prefect
