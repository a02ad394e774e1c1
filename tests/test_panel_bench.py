"""The panel benchmark runs, shortened, and returns rows every figure of which was measured."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# bench/ is a top-level package of the checkout, not of the installed hilsim: run it from there.
RUN = (
    "import dataclasses, json; from bench.bench_panel import run; "
    "print(json.dumps([dataclasses.asdict(row) for row in run(quick=True)]))"
)


def test_panel_benchmark_quick_run() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    figures = [row["figure"] for row in rows]
    assert len(rows) == 8
    assert figures[0].startswith("mock pin edge -> StatusNotification at the CSMS, p50")
    assert any("hilsim ctl over the control socket" in f for f in figures)
    assert any("`hilsim ctl plug 1` (a new process)" in f for f in figures)
    assert figures[-1] == "bare websocket round trip, p99"
    for row in rows:
        assert row["unit"] == "ms" and math.isfinite(row["value"]) and row["value"] > 0, row
    pin_p50, pin_p99 = rows[0], rows[1]
    assert pin_p50["value"] <= pin_p99["value"]
    assert pin_p50["baseline_name"] == "bare websocket round trip"
    assert 0 < pin_p50["baseline"] < pin_p50["value"]
    assert pin_p50["met"] is not None  # compared with `hilsim ctl` in the same run
    assert pin_p50["goal"] == "<= hilsim ctl (control socket)"
    assert pin_p99["goal"] == "< 5 ms" and pin_p99["met"] == (pin_p99["value"] < 5.0)
