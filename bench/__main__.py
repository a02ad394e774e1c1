"""``python -m bench`` (``make bench``): run every benchmark, again pinned to one core, one table.

Every ``bench/bench_<name>.py`` with ``run(quick: bool = False) -> list[Row]`` is found by
itself. Each runs in a fresh worker process, once with all cores and once under
``taskset -c 0`` to approximate a small board (its children inherit the single core; the
benchmark CSMS steps off it when the machine has another). A benchmark that fails is reported
in the table and makes the exit status 1; the others still run.

    python -m bench                    # everything, the full durations
    python -m bench --quick            # everything, shortened (what tests/test_bench.py runs)
    python -m bench --only ocpp        # one benchmark (repeatable); --no-pin skips the 1-core run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import json
import math
import os
import pkgutil
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench
from bench.common import Row

ROOT = Path(__file__).resolve().parent.parent
PIN = ["taskset", "-c", "0"]
ALL_CORES = f"all ({os.cpu_count()})"
ONE_CORE = "1 (taskset -c 0)"


@dataclass(frozen=True, slots=True)
class Result:
    """The rows of one benchmark run, or why there are none."""

    module: str
    cores: str
    rows: tuple[Row, ...] = ()
    error: str = ""
    seconds: float = 0.0


def discover() -> list[str]:
    """Every benchmark module's name (``bench_ocpp``, ...), sorted."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith("bench_") and not info.ispkg
    )


def select(names: Sequence[str], only: Sequence[str]) -> list[str]:
    if not only:
        return list(names)
    wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in only}
    unknown = wanted - set(names)
    if unknown:
        known = ", ".join(n.removeprefix("bench_") for n in names)
        raise SystemExit(f"bench: no benchmark {', '.join(sorted(unknown))} (have: {known})")
    return [name for name in names if name in wanted]


# -- the worker: one module in this process ---------------------------------------------------


def work(module_name: str, quick: bool, out: Path) -> int:
    module = importlib.import_module(f"bench.{module_name}")
    rows = module.run(quick=quick)
    if not isinstance(rows, list) or not all(isinstance(row, Row) for row in rows):
        raise TypeError(f"{module_name}.run() must return a list of bench.common.Row")
    out.write_text(json.dumps([dataclasses.asdict(row) for row in rows]))
    return 0


def run_worker(module: str, *, quick: bool, pin: bool, timeout: float) -> Result:
    cores = ONE_CORE if pin else ALL_CORES
    with tempfile.TemporaryDirectory(prefix="hilsim-bench-") as scratch:
        out = Path(scratch) / "rows.json"
        log = Path(scratch) / "worker.log"
        argv = [sys.executable, "-m", "bench", "--worker", module, "--out", str(out)]
        if quick:
            argv.append("--quick")
        if pin:
            argv = [*PIN, *argv]
        started = time.monotonic()
        with log.open("wb") as sink:
            try:
                status = subprocess.run(
                    argv,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=sink,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                status = None
        took = time.monotonic() - started
        if status == 0 and out.exists():
            rows = tuple(Row(**fields) for fields in json.loads(out.read_text()))
            return Result(module, cores, rows, seconds=took)
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        why = f"timed out after {timeout:g} s" if status is None else f"exit status {status}"
        return Result(module, cores, error="\n".join([why, *tail]), seconds=took)


# -- the table ----------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):d}"
    return (
        f"{value:.3g}"
        if abs(value) < 1
        else f"{value:.1f}"
        if abs(value) < 1000
        else f"{value:.0f}"
    )


def table(results: Sequence[Result]) -> str:
    """One markdown table; baselines are named in footnotes so the columns stay narrow."""
    names: list[str] = []
    lines = [["figure", "cores", "value", "baseline", "ratio", "goal", "met"]]
    for result in results:
        if result.error:
            first = result.error.splitlines()[0]
            lines.append([f"{result.module}: FAILED ({first})", result.cores, "", "", "", "", ""])
            continue
        for row in result.rows:
            mark = ""
            if row.baseline is not None and row.baseline_name:
                if row.baseline_name not in names:
                    names.append(row.baseline_name)
                mark = f" [{names.index(row.baseline_name) + 1}]"
            ratio = row.ratio
            lines.append(
                [
                    row.figure,
                    result.cores,
                    f"{_number(row.value)} {row.unit}",
                    f"{_number(row.baseline)} {row.unit}{mark}" if row.baseline is not None else "",
                    f"{ratio:.2f}x" if ratio is not None else "",
                    row.goal,
                    {True: "yes", False: "NO", None: ""}[row.met],
                ]
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = []
    for index, line in enumerate(lines):
        text.append(
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        )
        if index == 0:
            text.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text.append("")
    text.extend(f"[{i}] baseline: {name}" for i, name in enumerate(names, 1))
    return "\n".join(text)


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {system}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shortened runs (the smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (ocpp or bench_ocpp; repeatable)",
    )
    parser.add_argument("--no-pin", action="store_true", help="skip the run pinned to one core")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return work(args.worker, args.quick, args.out)
    names = select(discover(), args.only)
    if args.list:
        print("\n".join(n.removeprefix("bench_") for n in names))
        return 0
    pin = not args.no_pin
    if pin and shutil.which("taskset") is None:
        print("bench: taskset not found (util-linux): skipping the 1-core runs", file=sys.stderr)
        pin = False
    timeout = 180.0 if args.quick else 900.0
    started = time.monotonic()
    results: list[Result] = []
    for name in names:
        for pinned in (False, True) if pin else (False,):
            cores = ONE_CORE if pinned else ALL_CORES
            print(
                f"bench: {name.removeprefix('bench_')}, cores {cores} ...",
                file=sys.stderr,
                flush=True,
            )
            result = run_worker(name, quick=args.quick, pin=pinned, timeout=timeout)
            results.append(result)
            if result.error:
                print(
                    f"bench: {name} FAILED:\n  " + result.error.replace("\n", "\n  "),
                    file=sys.stderr,
                )
            else:
                print(f"bench: {name} done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
    mode = " --quick" if args.quick else ""
    print(f"python -m bench{mode}: {datetime.date.today().isoformat()}, {machine()}")
    print(f"took {time.monotonic() - started:.0f} s\n")
    print(table(results))
    if args.json:
        payload: list[dict[str, Any]] = [
            {
                "module": r.module,
                "cores": r.cores,
                "error": r.error,
                "rows": [dataclasses.asdict(row) for row in r.rows],
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
