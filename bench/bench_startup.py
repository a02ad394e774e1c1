"""Cold start: from ``exec`` of ``hilsim run`` to its BootNotification arriving at the CSMS.

The baseline is the least a Python charge point on `websockets` can do: start the same
interpreter and ``import websockets`` (``python -c "import websockets"``, until it exits). Both
are started the same way from this process, each run in a fresh process with the page cache
warm (one unmeasured run of each first), alternating; the figure is the median.

hilsim's bytecode is compiled first, as pip does when it installs a wheel (an editable install
run with PYTHONDONTWRITEBYTECODE set would otherwise compile every module on every start, which
is not what a Pi does).
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import time
from pathlib import Path

from bench.common import Row
from bench.harness import (
    CP_ID,
    Child,
    hilsim_run,
    median,
    peer,
    peer_url,
    python_command,
    running,
    scratch_dir,
    write_config,
)

GOAL = 3.0


def run(quick: bool = False) -> list[Row]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    runs = 3 if quick else 9
    _compile_hilsim()
    hilsim_ms: list[float] = []
    bare_ms: list[float] = []
    with scratch_dir() as directory:
        csms = peer(directory, report=("BootNotification", "StatusNotification"))
        async with running(csms):
            url = await peer_url(csms)
            config = write_config(directory, url)
            for attempt in range(runs + 1):
                hilsim = await _hilsim_cold_start(csms, directory, str(config))
                bare = await _bare_cold_start()
                if attempt > 0:  # the first of each only warms the page cache
                    hilsim_ms.append(hilsim)
                    bare_ms.append(bare)
    value, baseline = median(hilsim_ms), median(bare_ms)
    return [
        Row(
            "Cold start to BootNotification at the CSMS",
            round(value, 1),
            "ms",
            round(baseline, 1),
            'python -c "import websockets"',
            f"≤ {GOAL:g}x",
            value <= GOAL * baseline,
        )
    ]


async def _hilsim_cold_start(csms: Child, directory: Path, config: str) -> float:
    child = hilsim_run(config, directory)
    started = time.monotonic_ns()
    await child.start()
    try:
        boot = await csms.expect(
            "call", lambda e: e["action"] == "BootNotification" and e["cp"] == CP_ID, timeout=30
        )
        # Stop it once it is up: the last status sent after the boot says so.
        await csms.expect(
            "call",
            lambda e: e["action"] == "StatusNotification" and e["payload"]["connectorId"] == 2,
            timeout=30,
        )
    finally:
        status = await child.stop()
    if status not in (0, None):
        raise RuntimeError(f"hilsim run exited with status {status}: {child.tail()}")
    await csms.expect("disconnected", lambda e: e["cp"] == CP_ID, timeout=10)
    return (int(boot["t"]) - started) / 1e6


def _compile_hilsim() -> None:
    spec = importlib.util.find_spec("hilsim")
    assert spec is not None and spec.submodule_search_locations
    package = next(iter(spec.submodule_search_locations))
    subprocess.run(python_command("-m", "compileall", "-q", package), check=True)


async def _bare_cold_start() -> float:
    started = time.monotonic_ns()
    process = await asyncio.create_subprocess_exec(*python_command("-c", "import websockets"))
    status = await process.wait()
    took = (time.monotonic_ns() - started) / 1e6
    if status != 0:
        raise RuntimeError(f'python -c "import websockets" exited with status {status}')
    return took
