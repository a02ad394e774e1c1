"""Cold start (issue 15): what a real `hilsim run` loads on its way to BootNotification.

`bench_startup` times the start; this keeps what makes it short from eroding unnoticed, in a
fresh process (the test process has loaded everything): a charge point without pins, charging
profiles, firmware transfers, systemd or a web page must not create their code at every start.
The same process then uses each deferred part for the first time, and each must work then.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession

from conftest import CP_ID, make_settings

ROOT = Path(__file__).resolve().parent.parent

#: Runs `hilsim run` and prints the hilsim modules it has loaded on each SIGUSR1.
CHILD = """
import signal, sys

def report(*_):
    print("LOADED", *sorted(m for m in sys.modules if m.startswith("hilsim")), flush=True)

signal.signal(signal.SIGUSR1, report)
from hilsim.cli import main

sys.exit(main(sys.argv[1:]))
"""

#: Loaded when first needed, never on the way to a plain BootNotification.
DEFERRED = (
    "hilsim.smart_charging",  # the schedule engine: with the first charging profile
    "hilsim.panel.pins",  # the pin types: with the first pin in the file
    "hilsim.panel.devices",  # gpiozero: likewise
    "hilsim.panel.backend",
    "hilsim.daemon.reload",  # the reload plan: at SIGHUP
    "hilsim.daemon.status",  # the systemd status line: under systemd only
    "hilsim.status",  # snapshots: `hilsim ctl status`, DataTransfer, diagnostics
    "hilsim.transfer",  # UpdateFirmware / GetDiagnostics transfers
    "hilsim.web",  # the demo page: with [web] listen
    "hilsim.meter.config",  # Modbus meters: with a [meter] table
    "hilsim.meter.modbus",
    "hilsim.ocpp201",  # OCPP 2.0.1: with ocpp_version = "2.0.1"
    "hilsim.csms",
)


@contextlib.asynccontextmanager
async def hilsim_run(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, "run", "--config", str(config),
            cwd=ROOT,  # `-c` puts the working directory first on sys.path: this checkout's hilsim
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def loaded(process: asyncio.subprocess.Process) -> set[str]:
    assert process.stdout is not None
    process.send_signal(signal.SIGUSR1)
    line = await asyncio.wait_for(process.stdout.readline(), 10)
    words = line.decode().split()
    assert words[:1] == ["LOADED"], line
    return set(words[1:])


def deferred_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith(DEFERRED))


async def test_a_plain_run_boots_without_what_it_does_not_use_and_loads_it_on_first_use(
    short_dir: Path, csms: CentralSystem
) -> None:
    settings = make_settings(short_dir, csms.url)
    async with hilsim_run(Path(settings.source), short_dir / "stderr.log") as process:
        session: ChargePointSession = await csms.wait_for_charge_point(CP_ID, timeout=30)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2, timeout=30)
        at_boot = await loaded(process)
        assert "hilsim.charging_limits" in at_boot and "hilsim.panel.panel" in at_boot
        assert deferred_in(at_boot) == []

        # First use of each, in this process: smart charging, a snapshot, a reload.
        assert await session.set_charging_profile(0, 5000.0, purpose="ChargePointMaxProfile") == (
            "Accepted"
        )
        composite = await session.get_composite_schedule(1, 60, "W")
        assert composite["status"] == "Accepted"
        assert composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 5000.0
        # SIGHUP reaches the event loop (its wakeup fd) before the request made after it.
        process.send_signal(signal.SIGHUP)
        status = await request(settings.control.socket, {"cmd": "status"})
        assert status["ok"], status
        result = status["result"]
        assert result["smart_charging"]["profiles"][0]["purpose"] == "ChargePointMaxProfile"
        assert [c["status"] for c in result["connectors"]] == ["Available", "Available"]
        cleared = await session.call_action("ClearChargingProfile", {"id": 1})
        assert cleared == {"status": "Accepted"}
        later = await loaded(process)
        assert {"hilsim.smart_charging", "hilsim.status", "hilsim.daemon.reload"} <= later
        assert "hilsim.panel.pins" not in later  # still no pin

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
