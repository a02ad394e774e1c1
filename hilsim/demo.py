"""`hilsim demo`: a whole charging session against the built-in CSMS, with a readable trace.

It drives the charge point through its control socket, i.e. with exactly the events the panel's
buttons produce, and plays the CSMS's part through the built-in CSMS's API. It is a product
feature (the first thing a new user runs) and a smoke test of the whole stack: it exits 1 if the
CSMS's ledger does not hold one complete transaction per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hilsim.config import Settings, embedded_defaults
from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.ocpp.transport import Backoff
from hilsim.ocpp.wire import ActionNamer, Frame, format_frame
from hilsim.service import Service

TAG = "04A2B3C4"
STEP_TIMEOUT = 10.0


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


class Demo:
    def __init__(self, settings: Settings, session: ChargePointSession, out: Callable[[str], None]):
        self.settings = settings
        self.session = session
        self.out = out

    def say(self, text: str) -> None:
        self.out(f"{_stamp()}  ▶ {text}")

    async def ctl(self, cmd: str, connector: int, **extra: Any) -> None:
        payload = {"cmd": cmd, "connector": connector, **extra}
        answer = await request(self.settings.control.socket, payload)
        if not answer.get("ok"):
            raise RuntimeError(f"ctl {cmd} {connector}: {answer.get('error')}")

    async def status(self, connector: int, status: str) -> None:
        await self.session.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == connector and p["status"] == status,
            timeout=STEP_TIMEOUT,
        )

    async def samples(self, connector: int, count: int) -> list[dict[str, Any]]:
        return [
            await self.session.wait_for(
                "MeterValues", lambda p: p["connectorId"] == connector, timeout=STEP_TIMEOUT
            )
            for _ in range(count)
        ]

    async def play(self) -> None:
        s = self.session
        await self.status(2, "Available")
        self.say("CSMS sets MeterValueSampleInterval to 1 s")
        await s.change_configuration("MeterValueSampleInterval", "1")

        self.say("EV plugged into connector 1")
        await self.ctl("plug", 1)
        await self.status(1, "Preparing")
        self.say(f"RFID tag {TAG} presented at connector 1")
        await self.ctl("tag", 1, id_tag=TAG)
        start = await s.wait_for("StartTransaction", timeout=STEP_TIMEOUT)
        await self.status(1, "Charging")
        tx1 = _transaction_of(s, start)
        await self.samples(1, 3)
        self.say("CSMS limits connector 1 to 16 A (3.7 kW at 230 V) with SetChargingProfile")
        await s.set_charging_profile(
            1, 16, "A", purpose="TxProfile", transaction_id=tx1, profile_id=10, stack_level=1
        )
        await self.samples(1, 3)
        self.say(f"CSMS stops transaction {tx1} remotely")
        await s.remote_stop(tx1)
        await s.wait_for("StopTransaction", timeout=STEP_TIMEOUT)
        await self.status(1, "Finishing")
        self.say("EV unplugged from connector 1")
        await self.ctl("unplug", 1)
        await self.status(1, "Available")

        self.say("EV plugged into connector 2; CSMS starts remotely without naming a connector")
        await self.ctl("plug", 2)
        await self.status(2, "Preparing")
        await s.remote_start("DEADBEEF")
        await s.wait_for("StartTransaction", timeout=STEP_TIMEOUT)
        await self.status(2, "Charging")
        await self.samples(2, 2)
        self.say("EV unplugged from connector 2 while charging")
        await self.ctl("unplug", 2)
        await s.wait_for("StopTransaction", timeout=STEP_TIMEOUT)
        await self.status(2, "Available")


def _transaction_of(session: ChargePointSession, start: dict[str, Any]) -> int:
    """The id the CSMS gave the StartTransaction it just received."""
    for tx_id, record in session.central.ledger.items():
        if record.active and record.connector_id == start["connectorId"]:
            return tx_id
    raise RuntimeError("the CSMS has no record of the transaction it just started")


async def play(trace: bool = True, out: Callable[[str], None] = print) -> int:
    with tempfile.TemporaryDirectory(prefix="hilsim-demo-") as tmp:
        settings = embedded_defaults(base_dir=Path(tmp))
        namer = ActionNamer()

        def show(frame: Frame) -> None:
            if trace:
                out(format_frame(frame, namer=namer, local="CP", remote="CSMS"))

        async with CentralSystem("127.0.0.1", 0, id_tags=settings.csms.id_tags) as csms:
            cp = replace(settings.charge_point, csms_url=csms.url)
            settings = replace(settings, charge_point=cp)
            service = Service(settings, frame_listeners=[show], backoff=Backoff(0.2, 2.0, 2.0))
            out(f"{_stamp()}  ▶ built-in CSMS on {csms.url}; charge point {cp.id} connecting")
            runner = asyncio.create_task(service.run())
            try:
                session = await csms.wait_for_charge_point(cp.id, timeout=STEP_TIMEOUT)
                demo = Demo(settings, session, out)
                await demo.play()
            finally:
                service.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runner, STEP_TIMEOUT)
            return _summary(csms, session, out)


def _summary(csms: CentralSystem, session: ChargePointSession, out: Callable[[str], None]) -> int:
    problems = list(session.violations)
    out("")
    out("Transactions held by the CSMS:")
    for tx_id, record in sorted(csms.ledger.items()):
        samples = len(record.meter_values)
        out(
            f"  #{tx_id} connector {record.connector_id} idTag {record.id_tag}: "
            f"{record.meter_start} → {record.meter_stop} Wh, {samples} MeterValues, "
            f"stopped: {record.reason}"
        )
        if record.meter_stop is None:
            problems.append(f"transaction {tx_id} was never stopped")
    if len(csms.ledger) != 2:
        problems.append(f"expected 2 transactions, the CSMS holds {len(csms.ledger)}")
    for problem in problems:
        out(f"PROBLEM: {problem}")
    out("demo finished: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 0 if not problems else 1
