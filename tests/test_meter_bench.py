"""The meter benchmark runs, shortened, and returns rows every figure of which was measured."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# bench/ is a top-level package of the checkout, not of the installed hilsim: run it from there.
RUN = (
    "import dataclasses, json; from bench.bench_meter import run; "
    "print(json.dumps([dataclasses.asdict(row) for row in run(quick=True)]))"
)


def test_meter_benchmark_quick_run() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    assert [row["figure"] for row in rows] == [
        f"SDM630 poll (2 requests) over a pty at {baud} baud, {q}"
        for baud in (9600, 19200)
        for q in ("p50", "p99")
    ]
    # 2 requests: 8 + (5 + 2 * 74) and 8 + (5 + 2 * 6) bytes, 10 bits each at 8N1.
    assert [row["baseline"] for row in rows] == [193.75, 193.75, 96.875, 96.875]
    for row in rows:
        assert row["unit"] == "ms" and math.isfinite(row["value"]) and row["value"] > 0, row
        assert row["baseline_name"].startswith("wire time of its 186 bytes")
        assert row["met"] is not None
    assert rows[0]["value"] <= rows[1]["value"] and rows[2]["value"] <= rows[3]["value"]
