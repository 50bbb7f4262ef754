"""``sidflows benchmark cdsi`` through the CLI: both CDC workbooks, the figures printed."""

from __future__ import annotations

import pytest

from flows.cli import main


def test_benchmark_cdsi_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "cdsi"]) == 0
    out = capsys.readouterr().out
    assert "cdsi benchmark: 1350 CDC test cases (2 workbooks)" in out
    for label in ("wall time", "forecasts/s", "peak memory", "MiB"):
        assert label in out, label
    assert "cdsi-healthy-childhood-and-adult-test-cases-v4.45.xlsx: 1013/1013" in out
