"""The demo page benchmark runs, shortened, and returns rows of measured figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# bench/ is a top-level package of the checkout, not of the installed hilsim: run it from there.
RUN = (
    "import dataclasses, json; from bench.bench_web import run; "
    "print(json.dumps([dataclasses.asdict(row) for row in run(quick=True)]))"
)


def test_web_benchmark_quick_run() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    assert [row["figure"].split(",")[0] for row in rows] == [
        "button (ctl) -> StatusNotification at the CSMS",
        "button (ctl) -> StatusNotification at the CSMS",
        "CPU share",
        "messages pushed to each open page while charging (no button pressed)",
    ]
    for row in rows:
        assert math.isfinite(row["value"]) and row["value"] > 0, row
    p50, p99, cpu, pushed = rows
    assert p50["value"] <= p99["value"]
    for row in (p50, p99, cpu):
        assert row["baseline_name"] == "no page open"
        assert row["baseline"] > 0
    assert p99["met"] is not None and cpu["met"] is not None
    # Charging with pages open: about one push a second (the charts) plus the MeterValues
    # frames, batched into those pushes; never a message per frame per page.
    assert 0.5 <= pushed["value"] <= 4
