"""``sidflows benchmark notifications``: the real dispatcher against a local receiver.

For each worker count: a fresh store (a SQLite temporary file unless
``--database-url`` names a PostgreSQL database called *bench*) is filled with N
pending messages under N distinct keys over four routes; the local HTTP
receiver starts in a process of its own (``python -m sidflows.testing.receivers
http``); the routes point at it; and the real dispatcher (claim with lease,
send with the workers, record each result) sends everything, in a fresh
process so that its peak memory is its own. Then the receiver's count and the
store's are compared: every message sent once, none twice.

Duplicates are counted as what the receiver accepted minus what the store
marked sent: each route has one URL, each sent message was accepted at least
once, so any extra acceptance is a second copy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.bench.common import fresh_store, peak_rss_mib, refuse_unless_bench
from sidflows.notify.config import NotificationConfig, load_notifications
from sidflows.notify.dispatch import dispatch
from sidflows.notify.messages import Notice
from sidflows.notify.outbox import counts, insert_new, messages
from sidflows.notify.routes import env_name, route_for
from sidflows.store import db
from sidflows.store.models import NotificationStatus
from sidflows.store.reports import unsent_errors

# (event, role, referring service): one message each, round robin over four routes.
SHAPES = (
    ("ig_session_missed", "coordinators", None),
    ("ig_session_missed", "clinicians", None),
    ("ig_session_missed", "day_unit", None),
    ("plan_replanned", "referrers", "oncology"),
)
UI_URL = "http://127.0.0.1:4200"
CHUNK = 5000


def _notice(index: int) -> Notice:
    event, role, service = SHAPES[index % len(SHAPES)]
    due = (dt.date(2026, 12, 1) + dt.timedelta(days=index % 300)).isoformat()
    facts: dict[str, Any] = {
        "what": "IV immunoglobulin 10 g",
        "due": due,
        "where": "day unit, chair 2",
        "kind": "ig_session",
        "hospital": True,
        "version": 2,
        "reason": "treatment change",
        "changes": "- IV immunoglobulin every 4 weeks instead of 3",
    }
    return Notice(
        event,
        f"BENCH-{index:07d}",
        facts,
        item_key=f"ig_session:{due}",
        plan_version=2,
        service=service,
        roles=(role,),
    )


def fill_outbox(url: str, count: int, config: NotificationConfig) -> int:
    """``count`` pending messages, ``count`` distinct keys (not timed)."""
    now = dt.datetime.now(dt.UTC)
    made = 0
    for start in range(0, count, CHUNK):
        rows = [
            row
            for i in range(start, min(count, start + CHUNK))
            for row in messages(_notice(i), config=config, ui_url=UI_URL, now=now)
        ]
        with db.session_scope(url) as session:
            made += insert_new(session, rows)
    return made


def routes_environ(port: int) -> dict[str, str]:
    """SIDFLOWS_NOTIFY_<ROUTE> for the benchmark's routes, all at the one receiver."""
    routes = {route_for(role, service=service) for _, role, service in SHAPES}
    return {env_name(r): f"json://127.0.0.1:{port}/{r.replace(':', '-')}" for r in routes}


@dataclass
class Receiver:
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User and system time of the receiver's process so far (Linux; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def receiver_process() -> Iterator[Receiver]:
    """``python -m sidflows.testing.receivers http`` in its own process (port and pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sidflows.testing.receivers", "http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError("the receiver process did not print its port")
        yield Receiver(int(line), process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def received_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return int(json.load(response)["count"])


def store_counts(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Messages per status, and the last errors of those not sent."""
    with db.session_scope(url) as session:
        return counts(session=session), unsent_errors(session=session)


def measure(url: str, workers: int, port: int) -> dict[str, Any]:
    """In a fresh process: the real dispatcher sends the whole outbox with ``workers``."""
    os.environ["SIDFLOWS_DATABASE_URL"] = url
    base = load_notifications()
    config = base.model_copy(
        update={"dispatch": base.dispatch.model_copy(update={"workers": workers})}
    )
    environ = routes_environ(port)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    cpu_started = time.process_time()
    result = dispatch(config=config, ui_url=UI_URL, environ=environ)
    wall = time.perf_counter() - started
    return {
        "seconds": wall,
        "cpu_seconds": time.process_time() - cpu_started,
        "claimed": result.claimed,
        "sent": result.sent,
        "retrying": result.retrying,
        "failed": result.failed,
        "unrouted": result.unrouted,
        "passes": result.passes,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }


def _measure_in_fresh_process(url: str, workers: int, port: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "flows.bench.notifications", url, str(workers), str(port)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the dispatcher's process failed: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@dataclass
class Run:
    workers: int
    messages: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    receiver_cpu_seconds: float
    received: int
    sent: int
    left: dict[str, int]
    errors: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def duplicates(self) -> int:
        return max(0, self.received - self.sent)


def run_once(url: str, count: int, workers: int, config: NotificationConfig) -> Run:
    fresh_store(url)
    filled = fill_outbox(url, count, config)
    if filled != count:
        raise RuntimeError(f"the outbox holds {filled} new messages, not {count}")
    db.dispose_engines()
    with receiver_process() as receiver:
        idle = receiver.cpu_seconds()
        figures = _measure_in_fresh_process(url, workers, receiver.port)
        receiver_cpu = receiver.cpu_seconds() - idle
        received = received_count(receiver.port)
    statuses, errors = store_counts(url)
    return Run(
        workers=workers,
        messages=count,
        seconds=figures["seconds"],
        cpu_seconds=figures["cpu_seconds"],
        peak_rss_mib=figures["peak_rss_mib"],
        receiver_cpu_seconds=receiver_cpu,
        received=received,
        sent=statuses.get(NotificationStatus.sent, 0),
        left={k: v for k, v in statuses.items() if k != NotificationStatus.sent},
        errors=errors,
    )


def benchmark_notifications(
    *, messages: int, workers: Sequence[int] = (), database_url: str | None = None
) -> list[Run]:
    """Print the figures of one run per worker count (default: the configured workers)."""
    if database_url is not None:
        refuse_unless_bench(database_url)
    config = load_notifications()
    counts = list(workers) or [config.dispatch.workers]
    with tempfile.TemporaryDirectory(prefix="sidflows-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'notifications.db'}"
        where = "SQLite temporary file" if database_url is None else url.split("@")[-1]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"notifications benchmark: {messages} messages, {len(SHAPES)} routes, "
            f"store {where}, receiver: local HTTP process (json://); "
            f"{os.cpu_count()} cores, load average {load}"
        )
        print(
            "  workers   seconds   msgs/s  cpu ms/msg  receiver ms/msg  peak MiB  received"
            "      sent  duplicates  left"
        )
        runs = []
        for count in counts:
            run = run_once(url, messages, count, config)
            runs.append(run)
            left = ", ".join(f"{k} {v}" for k, v in sorted(run.left.items())) or "-"
            print(
                f"  {run.workers:7d} {run.seconds:9.2f} {run.per_second:8.0f} "
                f"{1000 * run.cpu_seconds / messages:11.2f} "
                f"{1000 * run.receiver_cpu_seconds / messages:16.2f} "
                f"{run.peak_rss_mib:9.1f} {run.received:9d} "
                f"{run.sent:9d} {run.duplicates:11d}  {left}",
                flush=True,
            )
            for error, n in sorted(run.errors.items()):
                print(f"          not sent ({n}): {error}")
        db.dispose_engines()
    best = max(runs, key=lambda r: r.per_second)
    print(
        f"  best: {best.per_second:.0f} messages/s with {best.workers} workers "
        f"(dispatcher's peak RSS {best.peak_rss_mib:.1f} MiB, its own process). "
        "cpu ms/msg: the dispatcher's process; receiver ms/msg: the receiver's"
    )
    return runs


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
