"""``sidflows benchmark notifications``: the real dispatcher against Apprise alone.

For each worker count, against one local receiver process for the whole
benchmark (the HTTP receiver of ``sidflows.testing.receivers``, ``json://``):
a fresh store (a SQLite temporary file unless ``--database-url`` names a
PostgreSQL database called *bench*) is filled with N pending messages under N
distinct keys over four routes (not timed). Then, each in a fresh process:

1. Apprise alone: the same messages (subjects, bodies with their key line), the
   same URLs with the same timeouts, the same number of worker threads, no
   outbox: each worker keeps an ``apprise.Apprise`` object per URL and sends.
2. The real dispatcher (claim with lease, send with the workers, record each
   result) sends the whole outbox.

After each, the receiver tallies what it accepted key by key: every message
once, none twice, none missing; and the store's count of sent messages is
compared with what arrived. The figures: messages per second, CPU ms per message
of the sender's process and of the receiver's, the dispatcher's peak memory, and
the dispatcher's rate as a share of Apprise's own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apprise

from flows.bench.common import fresh_store, peak_rss_mib, refuse_unless_bench
from sidflows.notify.config import NotificationConfig, load_notifications
from sidflows.notify.dispatch import dispatch
from sidflows.notify.messages import Notice
from sidflows.notify.outbox import counts, insert_new, messages
from sidflows.notify.routes import Url, env_name, route_for
from sidflows.store import db
from sidflows.store.models import NotificationStatus
from sidflows.store.reports import unsent_errors
from sidflows.testing import receivers
from sidflows.testing.receivers import KEY, HttpReceiver

# (event, role, referring service): one message each, round robin over four routes.
SHAPES = (
    ("ig_session_missed", "coordinators", None),
    ("ig_session_missed", "clinicians", None),
    ("ig_session_missed", "day_unit", None),
    ("plan_replanned", "referrers", "oncology"),
)
UI_URL = "http://127.0.0.1:4200"
CHUNK = 5000
BACKLOG = 128  # the receiver's listen queue


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


def _process_cpu_seconds(pid: int) -> float:
    """User and system time of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Tally:
    """What the receiver accepted since the last tally: copies, and copies per key."""

    total: int
    distinct: int
    doubled: int  # keys that arrived more than once
    extra: int  # copies beyond the first

    @property
    def once(self) -> int:
        return self.distinct - self.doubled


@dataclass
class Receiver:
    """The benchmark's receiver process: one HTTP receiver (``json://``) for every phase."""

    process: subprocess.Popen[str]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return _process_cpu_seconds(self.pid)

    def tally(self) -> Tally:
        """What arrived since the last tally, key by key (and start counting afresh)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("tally\n")
        self.process.stdin.flush()
        return Tally(**json.loads(self.process.stdout.readline()))


@contextmanager
def receiver_process() -> Iterator[Receiver]:
    """``python -m flows.bench.notifications receiver`` in its own process: the local
    HTTP receiver of ``sidflows.testing.receivers``, tallied on request."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.bench.notifications", "receiver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError("the receiver process did not print its port")
        yield Receiver(process, int(line))
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_receiver() -> None:
    """The receiver process: prints its port, answers each ``tally`` line on stdin with
    what arrived since the last one (JSON on one line), ends when stdin closes."""
    # socketserver listens with a backlog of 5: connections arriving in a burst from
    # several workers overflow it, and each dropped SYN costs its sender a second's
    # retransmission, noise that falls on either sender at random. A webhook server
    # listens with a backlog of a hundred or more (nginx: 511).
    receivers._QuietServer.request_queue_size = BACKLOG
    receiver = HttpReceiver().start()
    print(receiver.port, flush=True)
    for line in sys.stdin:
        if line.strip() != "tally":
            continue
        received = receiver.received
        with received.lock:
            bodies = [body for _, _, body in received.messages]
            received.messages.clear()
        copies = Counter(m.group(1) for b in bodies if (m := KEY.search(b)))
        print(
            json.dumps(
                {
                    "total": len(bodies),
                    "distinct": len(copies),
                    "doubled": sum(1 for n in copies.values() if n > 1),
                    "extra": sum(n - 1 for n in copies.values()),
                }
            ),
            flush=True,
        )
    receiver.stop()


def store_counts(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Messages per status, and the last errors of those not sent."""
    with db.session_scope(url) as session:
        return counts(session=session), unsent_errors(session=session)


def _config_with(workers: int) -> NotificationConfig:
    base = load_notifications()
    return base.model_copy(
        update={"dispatch": base.dispatch.model_copy(update={"workers": workers})}
    )


def measure(url: str, workers: int, port: int) -> dict[str, Any]:
    """In a fresh process: the real dispatcher sends the whole outbox with ``workers``."""
    os.environ["SIDFLOWS_DATABASE_URL"] = url
    config = _config_with(workers)
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


def measure_apprise(count: int, workers: int, port: int) -> dict[str, Any]:
    """In a fresh process: the same messages sent with Apprise alone, no outbox.

    The same subjects and bodies (the key line included), the same URLs with the
    same timeouts, the same number of worker threads taking one message at a time;
    each worker keeps one ``apprise.Apprise`` object per URL, made on first use, as
    an application that sends often would. Rendering the messages is not timed.
    """
    config = _config_with(workers)
    environ = routes_environ(port)
    timeout = config.dispatch.timeout_seconds
    now = dt.datetime.now(dt.UTC)
    sends: list[tuple[str, str, str]] = []
    for i in range(count):
        for row in messages(_notice(i), config=config, ui_url=UI_URL, now=now):
            url = Url(environ[env_name(row["route"])]).with_timeout(timeout)
            sends.append((url, row["subject"], f"{row['body']}\n\n[sidflows {row['key']}]"))
    logging.getLogger("apprise").setLevel(logging.WARNING)
    local = threading.local()

    def send(message: tuple[str, str, str]) -> bool:
        url, subject, body = message
        made: dict[str, apprise.Apprise] | None = getattr(local, "made", None)
        if made is None:
            made = local.made = {}
        if url not in made:
            made[url] = apprise.Apprise()
            made[url].add(url)
        return bool(made[url].notify(body=body, title=subject))

    rss_before = peak_rss_mib()
    started = time.perf_counter()
    cpu_started = time.process_time()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        delivered = sum(pool.map(send, sends))
    wall = time.perf_counter() - started
    return {
        "seconds": wall,
        "cpu_seconds": time.process_time() - cpu_started,
        "sent": delivered,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }


def _in_fresh_process(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "flows.bench.notifications", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the benchmark's process failed: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@dataclass
class Phase:
    """One sender's figures: Apprise alone, or the dispatcher."""

    messages: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    receiver_cpu_seconds: float
    tally: Tally

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.messages if self.messages else 0.0

    @property
    def receiver_cpu_ms(self) -> float:
        return 1000 * self.receiver_cpu_seconds / self.messages if self.messages else 0.0

    @property
    def missing(self) -> int:
        return max(0, self.messages - self.tally.distinct)


def _phase(receiver: Receiver, count: int, args: Sequence[str]) -> Phase:
    idle = receiver.cpu_seconds()
    figures = _in_fresh_process(*args)
    busy = receiver.cpu_seconds() - idle
    return Phase(
        messages=count,
        seconds=figures["seconds"],
        cpu_seconds=figures["cpu_seconds"],
        peak_rss_mib=figures["peak_rss_mib"],
        receiver_cpu_seconds=busy,
        tally=receiver.tally(),
    )


@dataclass
class Round:
    """Apprise alone, then the dispatcher, on a freshly filled outbox."""

    apprise: Phase
    dispatcher: Phase
    store_sent: int
    left: dict[str, int]
    errors: dict[str, int]

    @property
    def sent(self) -> int:
        """Messages both marked sent in the store and received (the smaller of the two)."""
        return min(self.store_sent, self.dispatcher.tally.distinct)

    @property
    def duplicates(self) -> int:
        """Copies the receiver got beyond the first, and acceptances the store did not
        record (each route has one URL, so any extra acceptance is a second copy)."""
        tally = self.dispatcher.tally
        return max(tally.extra, tally.total - self.store_sent, 0)

    @property
    def ratio(self) -> float:
        base = self.apprise.per_second
        return self.dispatcher.per_second / base if base else 0.0


@dataclass
class Run:
    """One worker count: ``ROUNDS`` rounds, each sender's best, the dispatcher's share."""

    workers: int
    messages: int
    rounds: list[Round]

    @property
    def apprise(self) -> Phase:
        return max((r.apprise for r in self.rounds), key=lambda p: p.per_second)

    @property
    def dispatcher(self) -> Phase:
        return max((r.dispatcher for r in self.rounds), key=lambda p: p.per_second)

    @property
    def sent(self) -> int:
        """Per round: sent and received (the worst round)."""
        return min(r.sent for r in self.rounds)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.rounds)

    @property
    def ratio(self) -> float:
        """The dispatcher's best rate as a share of Apprise's best."""
        base = self.apprise.per_second
        return self.dispatcher.per_second / base if base else 0.0

    @property
    def cpu_ratio(self) -> float:
        """CPU per message, the dispatcher's against Apprise's (each sender's least)."""
        least = min(r.apprise.cpu_ms for r in self.rounds)
        return min(r.dispatcher.cpu_ms for r in self.rounds) / least if least else 0.0


ROUNDS = 3  # interleaved: a load that comes and goes touches both senders alike


def run_round(
    url: str, count: int, workers: int, config: NotificationConfig, receiver: Receiver
) -> Round:
    """Apprise alone, then the dispatcher: the same messages, URLs, workers and receiver."""
    fresh_store(url)
    filled = fill_outbox(url, count, config)
    if filled != count:
        raise RuntimeError(f"the outbox holds {filled} new messages, not {count}")
    db.dispose_engines()
    receiver.tally()  # nothing before this round counts
    apprise_phase = _phase(
        receiver, count, ["apprise", str(count), str(workers), str(receiver.port)]
    )
    dispatcher_phase = _phase(receiver, count, [url, str(workers), str(receiver.port)])
    statuses, errors = store_counts(url)
    return Round(
        apprise=apprise_phase,
        dispatcher=dispatcher_phase,
        store_sent=statuses.get(NotificationStatus.sent, 0),
        left={k: v for k, v in statuses.items() if k != NotificationStatus.sent},
        errors=errors,
    )


def _line(label: str, what: str, phase: Phase, stored: str) -> str:
    tally = phase.tally
    return (
        f"  {label:>7}  {what:<10} {phase.seconds:8.2f} {phase.per_second:8.0f} "
        f"{phase.cpu_ms:11.2f} {phase.receiver_cpu_ms:16.2f} {phase.peak_rss_mib:9.1f} "
        f"{tally.total:9d} {tally.once:9d} {tally.doubled:7d} {phase.missing:8d}  {stored}"
    )


def benchmark_notifications(
    *, messages: int, workers: Sequence[int] = (), database_url: str | None = None
) -> list[Run]:
    """Print the figures of each worker count (default: the configured workers): Apprise
    alone and the dispatcher, side by side in interleaved rounds, and the dispatcher's share."""
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
            f"store {where}; one receiver process for both senders: local HTTP (json://); "
            f"{ROUNDS} rounds per worker count, Apprise alone then the dispatcher; "
            f"{os.cpu_count()} cores, load average {load}"
        )
        print(
            "  workers  sender      seconds   msgs/s  cpu ms/msg  receiver ms/msg  peak MiB"
            "  received      once  doubled  missing  store"
        )
        runs = []
        with receiver_process() as receiver:
            for count in counts:
                rounds = []
                for number in range(1, ROUNDS + 1):
                    done = run_round(url, messages, count, config, receiver)
                    rounds.append(done)
                    left = ", ".join(f"{k} {v}" for k, v in sorted(done.left.items()))
                    stored = f"sent {done.store_sent}" + (f", {left}" if left else "")
                    label = f"{count}/{number}"
                    print(_line(label, "apprise", done.apprise, "-"))
                    print(_line(label, "dispatcher", done.dispatcher, stored), flush=True)
                    for error, n in sorted(done.errors.items()):
                        print(f"          not sent ({n}): {error}")
                run = Run(count, messages, rounds)
                runs.append(run)
                print(
                    f"  {count:7d}  best of {ROUNDS}: apprise {run.apprise.per_second:.0f}/s, "
                    f"dispatcher {run.dispatcher.per_second:.0f}/s: {run.ratio:.2f}x the "
                    f"messages/s; CPU per message {run.cpu_ratio:.2f}x; rounds "
                    + ", ".join(f"{r.ratio:.2f}x" for r in rounds),
                    flush=True,
                )
        db.dispose_engines()
    best = max(runs, key=lambda r: r.dispatcher.per_second)
    print(
        f"  best: the dispatcher {best.dispatcher.per_second:.0f} messages/s with "
        f"{best.workers} workers, {best.ratio:.2f}x Apprise alone "
        f"({best.apprise.per_second:.0f}/s); dispatcher peak RSS "
        f"{best.dispatcher.peak_rss_mib:.1f} MiB, its own process. cpu ms/msg: the sender's "
        "process; receiver ms/msg: the receiver's; received/once/doubled/missing: the "
        "receiver's count, key by key; duplicates in all: "
        f"{sum(r.duplicates for r in runs)}"
    )
    return runs


def main(argv: Sequence[str]) -> int:
    """The benchmark's child processes: the receiver, Apprise alone, the dispatcher."""
    if argv[:1] == ["receiver"]:
        serve_receiver()
    elif argv[:1] == ["apprise"]:
        print(json.dumps(measure_apprise(int(argv[1]), int(argv[2]), int(argv[3]))))
    else:
        print(json.dumps(measure(argv[0], int(argv[1]), int(argv[2]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
