"""``sidflows serve``: Prefect's runner for the unit's deployments, that stops when told.

Prefect's runner answers SIGTERM by stopping, then tells the server (it pauses
the deployments' schedules). With the server gone that last call waits out its
retries, and serve would hang for minutes after SIGTERM or Ctrl-C. Here the
first signal starts a clean stop and a watchdog: if the stop has not finished
within ``STOP_GRACE_S`` (the server does not answer), the process ends anyway.
The store is the record, so nothing is lost by not telling the server: its
runs are reconciled by the next sweep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.runner import Runner

STOP_GRACE_S = 10.0


def _watchdog(code: int) -> None:
    def expire() -> None:
        print(
            f"sidflows serve: the Prefect server did not answer within {STOP_GRACE_S:g} s "
            "of the stop; stopped without it",
            file=sys.stderr,
            flush=True,
        )
        os._exit(code)

    timer = threading.Timer(STOP_GRACE_S, expire)
    timer.daemon = True
    timer.start()


class UnitRunner(Runner):
    """Prefect's runner, with a watchdog armed by the first SIGTERM."""

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        # Prefect's own handler calls the runner's async stop without awaiting it; leaving
        # start() by SystemExit is what stops the runner (its context exit).
        _watchdog(0)
        self._logger.info("SIGTERM received, stopping")
        sys.exit(0)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _watchdog(130)
    raise KeyboardInterrupt


def serve_until_stopped(made: Sequence[RunnerDeployment], *, heartbeat: int) -> None:
    """Serve the deployments (flow runs send a heartbeat every ``heartbeat`` s)."""
    runner = UnitRunner(heartbeat_seconds=heartbeat)
    for deployment in made:
        runner.add_deployment(deployment)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in made)
    print(f"sidflows serve: serving {names} (Ctrl-C or SIGTERM stops)", flush=True)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        print("sidflows serve: stopped (SIGINT)", file=sys.stderr, flush=True)
    except SystemExit:
        print("sidflows serve: stopped (SIGTERM)", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
