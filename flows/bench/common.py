"""What the benchmarks share: the fixed day, peak memory, a store wiped for a run."""

from __future__ import annotations

import resource
from datetime import date
from pathlib import Path

from sidflows.errors import InvalidInput
from sidflows.store import bulk

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
    bulk.wipe(url)
