"""``sidflows demo`` and ``sidflows benchmark``: the synthetic cohort and the speed figures.

Nothing here imports Prefect when it is loaded: the demo sets Prefect's home and
database before Prefect first reads its settings (flows/demo/run.py).
"""

from __future__ import annotations

import argparse

from flows.bench.cdsi import benchmark_cdsi
from flows.bench.notifications import benchmark_notifications
from flows.bench.propose import benchmark_propose
from flows.bench.sweep import benchmark_sweep
from flows.cli.io import EXIT_CONFIG, EXIT_OK
from flows.demo.run import run_demo


def demo(args: argparse.Namespace) -> int:
    return run_demo(
        children=args.children,
        months=args.months,
        seed=args.seed,
        local_receivers=args.local_receivers,
    )


def benchmark(args: argparse.Namespace) -> int:
    if args.what == "cdsi":
        benchmark_cdsi()
        return EXIT_OK
    if args.what == "propose":
        benchmark_propose(children=args.children, seed=args.seed)
        return EXIT_OK
    if args.what == "notifications":
        runs = benchmark_notifications(
            messages=args.messages, workers=args.workers or (), database_url=args.database_url
        )
        return (
            EXIT_OK
            if all(r.duplicates == 0 and r.sent == r.messages for r in runs)
            else EXIT_CONFIG
        )
    if args.what == "prefect":
        # only when asked for: Prefect loads with it
        from flows.bench.prefect_share import benchmark_prefect, parse_sizes

        benchmark_prefect(
            sizes=parse_sizes(args.sizes),
            seed=args.seed,
            database_url=args.database_url,
            admin_url=args.prefect_postgres,
        )
        return EXIT_OK
    if args.what == "workers":
        # only when asked for: Prefect loads with it
        from flows.bench.workers import benchmark_workers

        benchmark_workers(
            runs=args.runs, workers=args.workers or (1, 2), admin_url=args.prefect_postgres
        )
        return EXIT_OK
    benchmark_sweep(
        children=args.children,
        seed=args.seed,
        database_url=args.database_url,
        daily_only=args.daily_only,
    )
    return EXIT_OK
