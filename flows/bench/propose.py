"""``sidflows benchmark propose``: planning throughput and memory, in one process."""

from __future__ import annotations

import json
import time

from flows.bench.common import BENCH_TODAY, peak_rss_mib
from sidflows.calendar import load_calendar
from sidflows.plan_document import plan_document
from sidflows.planning import propose_plan
from sidflows.protocol import load_protocol
from sidflows.referral import parse_referral
from sidflows.testing.cohort import synthetic_referrals


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
