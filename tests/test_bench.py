"""The benchmarks run, in quick mode, so that they cannot rot between two `make bench`.

No timing is asserted here: figures belong to `make bench` on a known machine. What is asserted
is that every benchmark module runs through the one entry point and returns sensible rows, that
the pinned (one core) run works, and that the table says what failed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import Result, discover, run_worker, select, table
from bench.common import Row

ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str, json_out: Path, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(json_out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_every_benchmark_module_is_found() -> None:
    names = discover()
    assert {"bench_ocpp", "bench_startup", "bench_charging", "bench_flood"} <= set(names)
    assert all(name.startswith("bench_") for name in names)


@pytest.mark.timeout(170)
@pytest.mark.parametrize("name", discover())
def test_benchmark_runs_in_quick_mode(name: str, tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = _bench("--only", name, "--no-pin", json_out=out)
    assert done.returncode == 0, done.stderr[-4000:]
    [result] = json.loads(out.read_text())
    assert result["module"] == name and not result["error"]
    rows = [Row(**fields) for fields in result["rows"]]
    assert rows, f"{name} returned no rows"
    for row in rows:
        assert row.figure
        assert math.isfinite(row.value), row
        if row.baseline is not None:
            assert math.isfinite(row.baseline) and row.baseline_name, row
        if row.goal:
            assert row.met in (True, False), row
        assert row.figure in done.stdout  # ... and it is in the printed table


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) not installed")
def test_each_benchmark_runs_again_pinned_to_one_core(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = _bench("--only", "startup", json_out=out)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert [r["cores"] for r in results] == [
        f"all ({os.cpu_count()})",
        "1 (taskset -c 0)",
    ]
    assert all(r["rows"] and not r["error"] for r in results)
    assert "1 (taskset -c 0)" in done.stdout


def test_only_names_a_benchmark_that_exists() -> None:
    assert select(["bench_ocpp", "bench_startup"], ["ocpp"]) == ["bench_ocpp"]
    assert select(["bench_ocpp"], ["bench_ocpp"]) == ["bench_ocpp"]
    with pytest.raises(SystemExit, match="no benchmark bench_nope"):
        select(["bench_ocpp"], ["nope"])


def test_a_failing_benchmark_is_reported_not_hidden() -> None:
    result = run_worker("bench_does_not_exist", quick=True, pin=False, timeout=60)
    assert result.error.startswith("exit status 1")
    assert "No module named" in result.error
    text = table([result])
    assert "bench_does_not_exist: FAILED (exit status 1)" in text


def test_the_table_shows_value_baseline_ratio_goal_and_met() -> None:
    rows = (
        Row("CPU per round trip", 120.0, "µs", 100.0, "bare websockets + json", "≤ 1.5x", True),
        Row("Peak RSS", 50.0, "MB", 25.0, "bare websockets + json", "< 45 MB", False),
        Row("Cold start", 150.0, "ms", 50.0, 'python -c "import websockets"'),
    )
    text = table([Result("bench_x", "all (2)", rows)])
    lines = text.splitlines()
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    assert header == ["figure", "cores", "value", "baseline", "ratio", "goal", "met"]
    assert "| 120 µs" in text and "| 100 µs [1]" in text and "| 1.20x" in text
    assert "| NO " in text and "| yes " in text
    assert "[1] baseline: bare websockets + json" in text
    assert '[2] baseline: python -c "import websockets"' in text


def test_a_plain_run_imports_neither_the_ocpp_library_nor_jsonschema() -> None:
    """Cold start: `hilsim run` validates with compiled schemas, not the library's machinery."""
    code = (
        "import sys, json, hilsim.cli, hilsim.service;"
        "print(json.dumps(sorted(m for m in ('ocpp', 'jsonschema') if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
