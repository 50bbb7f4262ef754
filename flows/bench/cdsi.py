"""``sidflows benchmark cdsi``: CDC's CDSi test-case workbooks through the engine.

Both workbooks of ``tests/cdsi/data`` (as ``sidflows cdsi-conformance`` reads them), every
case evaluated and forecast for its vaccine group in this one process: forecasts per
second, wall time and peak memory. Reading the workbooks (openpyxl) and parsing the
supporting data are timed apart from the engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from flows.bench.common import peak_rss_mib
from sidflows.cdsi.conformance import DEFAULT_WORKBOOKS, read_workbook, run_cases
from sidflows.cdsi.data import load


def benchmark_cdsi(*, workbooks: Sequence[Path] = DEFAULT_WORKBOOKS) -> dict[str, float]:
    """Run every case of ``workbooks`` through the CDSi engine once and print the figures."""
    started = time.perf_counter()
    load()
    data_seconds = time.perf_counter() - started
    tick = time.perf_counter()
    books = [(path.name, read_workbook(path)) for path in workbooks]
    read_seconds = time.perf_counter() - tick
    rss_before = peak_rss_mib()
    passed = cases = 0
    per_book: list[tuple[str, int, int]] = []
    tick = time.perf_counter()
    cpu_started = time.process_time()
    for name, book in books:
        results = run_cases(book)
        ok = sum(r.passed for r in results)
        per_book.append((name, ok, len(results)))
        passed += ok
        cases += len(results)
    wall = time.perf_counter() - tick
    cpu = time.process_time() - cpu_started
    total = time.perf_counter() - started
    rate = cases / wall if wall > 0 else 0.0
    figures = {
        "cases": float(cases),
        "passed": float(passed),
        "seconds": wall,
        "cpu_seconds": cpu,
        "forecasts_per_second": rate,
        "total_seconds": total,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }
    print(f"cdsi benchmark: {cases} CDC test cases ({len(books)} workbooks), one process, one core")
    print(f"  wall time        {wall:8.2f} s   (cpu {cpu:.2f} s; engine only)")
    print(f"  forecasts/s      {rate:8.0f}")
    print(f"  total            {total:8.2f} s   (supporting data {data_seconds:.2f} s, "
          f"workbooks {read_seconds:.2f} s)")  # fmt: skip
    for name, ok, count in per_book:
        share = 100.0 * ok / count if count else 100.0
        print(f"  {name}: {ok}/{count} ({share:.2f} %) pass")
    print(f"  peak memory      {figures['peak_rss_mib']:8.1f} MiB (process peak RSS; "
          f"{rss_before:.1f} MiB before the engine ran)")  # fmt: skip
    return figures
