"""Benchmarks that print figures (never timed tests): planning throughput and memory."""

from __future__ import annotations

import json
import os
import resource
import time
from datetime import date
from pathlib import Path

from sqlalchemy import text as sql

from sidflows.calendar import load_calendar
from sidflows.cohort import synthetic_referrals
from sidflows.errors import InvalidInput
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import parse_referral
from sidflows.store import db

BENCH_TODAY = date(2026, 11, 24)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's VmHWM is this process's own high-water mark; ``ru_maxrss`` would
    also carry the parent's peak across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refuse_unless_bench(url: str, *, option: str = "--database-url") -> None:
    """A benchmark wipes its PostgreSQL database: only one whose name says *bench*."""
    name = url.rsplit("/", 1)[-1].partition("?")[0]
    if url.startswith("postgresql") and "bench" not in name:
        raise InvalidInput(option, "the benchmark wipes its database: name it *bench*")


def fresh_store(url: str, *, option: str = "--database-url") -> None:
    """Wipe the store at ``url`` and bring it to the newest schema.

    A PostgreSQL database is wiped only if its name says it is a benchmark's
    (``*bench*``): a mistyped URL must not empty a unit's store.
    """
    refuse_unless_bench(url, option=option)
    if url.startswith("postgresql"):
        with db.get_engine(url).begin() as conn:
            conn.execute(sql("DROP SCHEMA public CASCADE"))
            conn.execute(sql("CREATE SCHEMA public"))
    else:
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    db.dispose_engines()
    db.upgrade(url)


def benchmark_propose(*, children: int, seed: int) -> dict[str, float]:
    """Validate, plan and serialise ``children`` synthetic referrals in this one process."""
    protocol = load_protocol()
    calendar = load_calendar()
    documents = [json.dumps(d) for d in synthetic_referrals(children, seed=seed)]
    # Warm the caches (holidays per year, vial sums) as a long-running process would.
    propose_plan(
        parse_referral(documents[0]), today=BENCH_TODAY, protocol=protocol, calendar=calendar
    )
    rss_before = peak_rss_mib()
    items = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for text in documents:
        plan = propose_plan(
            parse_referral(text), today=BENCH_TODAY, protocol=protocol, calendar=calendar
        )
        items += len(plan.items)
        json.dumps(plan_document(plan))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    figures = {
        "children": float(children),
        "seconds": wall,
        "cpu_seconds": cpu,
        "plans_per_second": children / wall,
        "items": float(items),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }
    print(f"propose benchmark: {children} synthetic children (seed {seed}), one process, one core")
    print(f"  wall time        {wall:8.2f} s   (cpu {cpu:.2f} s)")
    print(f"  plans per second {children / wall:8.0f}     (target >= 1000)")
    print(f"  items planned    {items:8d}     ({items / children:.1f} per child, 12 months)")
    print(f"  peak memory      {figures['peak_rss_mib']:8.1f} MiB (process peak RSS; "
          f"{rss_before:.1f} MiB before planning)")  # fmt: skip
    return figures
