"""`hilsim demo`: a whole charging session against the built-in CSMS, with a readable trace.

It drives the charge point through its control socket: the EV and RFID steps press the buttons
of the embedded config's panel on gpiozero mock pins (`ctl press`/`release`, so debounce and the
button callbacks run for real), and it plays the CSMS's part through the built-in CSMS's API.
It is a product feature (the first thing a new user runs) and a smoke test of the whole stack: it
exits 1 if the CSMS's ledger does not hold one complete transaction per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hilsim.config import Settings, embedded_defaults
from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.csms.session201 import ChargePointSession201, ResponseNamer
from hilsim.ocpp.transport import Backoff
from hilsim.ocpp.wire import ActionNamer, Frame, format_frame
from hilsim.panel import PanelSettings, load_panel_settings
from hilsim.service import Service
from hilsim.web import demo_listen, with_web

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
        self.panel: PanelSettings = load_panel_settings(settings)

    def say(self, text: str) -> None:
        self.out(f"{_stamp()}  ▶ {text}")

    async def click(self, pin: int, what: str) -> None:
        """Press and release a panel button on its mock pin, as a finger would."""
        self.say(f"button GPIO{pin} pressed: {what}")
        for cmd in ("press", "release"):
            answer = await request(self.settings.control.socket, {"cmd": cmd, "pin": pin})
            result = answer.get("result") or {}
            if not answer.get("ok") or str(result.get("result", "")).startswith("refused"):
                raise RuntimeError(f"ctl {cmd} {pin}: {answer.get('error') or result}")

    def plug_pin(self, connector: int) -> int:
        panel = self.panel.connector(connector)
        if panel is None or panel.plug is None:
            raise RuntimeError(f"the demo config has no plug button on connector {connector}")
        return panel.plug.pin

    def tag_pin(self, connector: int, id_tag: str) -> int:
        panel = self.panel.connector(connector)
        for tag in panel.tags if panel else ():
            if tag.id_tag == id_tag:
                return tag.button.pin
        raise RuntimeError(f"the demo config has no {id_tag} button on connector {connector}")

    async def show_lights(self, connector: int) -> None:
        """Narrate what the connector's LED and relay show, read back from the mock pins."""
        answer = await request(self.settings.control.socket, {"cmd": "pins"})
        pins = [p for p in answer["result"]["pins"] if p["connector"] == connector]
        lit = [p for p in pins if p["role"].startswith(("rgb_led", "led_")) and p["on"]]
        relays = [p for p in pins if p["role"] == "relay"]
        parts = []
        if lit:
            names = "/".join(f"GPIO{p['pin']}" for p in lit)
            parts.append(f"LED {lit[0]['colour']} {lit[0]['pattern']} ({names})")
        parts += [f"relay GPIO{p['pin']} {p['colour']}" for p in relays]
        self.say(f"connector {connector} panel: " + ", ".join(parts))

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

        await self.click(self.plug_pin(1), "EV plugged into connector 1")
        await self.status(1, "Preparing")
        await self.click(self.tag_pin(1, TAG), f"RFID tag {TAG} presented at connector 1")
        start = await s.wait_for("StartTransaction", timeout=STEP_TIMEOUT)
        await self.status(1, "Charging")
        await self.show_lights(1)
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
        await self.click(self.plug_pin(1), "EV unplugged from connector 1")
        await self.status(1, "Available")

        await self.click(self.plug_pin(2), "EV plugged into connector 2")
        await self.status(2, "Preparing")
        self.say("CSMS starts a transaction remotely without naming a connector")
        await s.remote_start("DEADBEEF")
        await s.wait_for("StartTransaction", timeout=STEP_TIMEOUT)
        await self.status(2, "Charging")
        await self.samples(2, 2)
        await self.show_lights(2)
        await self.click(self.plug_pin(2), "EV unplugged from connector 2 while charging")
        await s.wait_for("StopTransaction", timeout=STEP_TIMEOUT)
        await self.status(2, "Available")


def _transaction_of(session: ChargePointSession, start: dict[str, Any]) -> int:
    """The id the CSMS gave the StartTransaction it just received."""
    for tx_id, record in session.central.ledger.items():
        if record.active and record.connector_id == start["connectorId"]:
            return tx_id
    raise RuntimeError("the CSMS has no record of the transaction it just started")


class Demo201(Demo):
    """The same session, told to an OCPP 2.0.1 CSMS: the same buttons and lights, the CSMS's
    part in 2.0.1 (SetVariables, RequestStart/StopTransaction) and transactions as
    TransactionEvents with the charge point's own transaction ids."""

    session: ChargePointSession201  # type: ignore[assignment]

    async def status(self, connector: int, status: str) -> None:
        await self.session.wait_for(
            "StatusNotification",
            lambda p: p["evseId"] == connector and p["connectorStatus"] == status,
            timeout=STEP_TIMEOUT,
        )

    async def event(self, connector: int, event_type: str) -> dict[str, Any]:
        """The next TransactionEvent of that type from the connector's EVSE."""

        def ours(p: dict[str, Any]) -> bool:
            tx = self.session.central.ledger201.get(p["transactionInfo"]["transactionId"])
            return p["eventType"] == event_type and tx is not None and tx.evse_id == connector

        return await self.session.wait_for("TransactionEvent", ours, timeout=STEP_TIMEOUT)

    async def samples(self, connector: int, count: int) -> list[dict[str, Any]]:
        def periodic(p: dict[str, Any]) -> bool:
            tx = self.session.central.ledger201.get(p["transactionInfo"]["transactionId"])
            return (
                p["triggerReason"] == "MeterValuePeriodic"
                and tx is not None
                and tx.evse_id == connector
            )

        return [
            await self.session.wait_for("TransactionEvent", periodic, timeout=STEP_TIMEOUT)
            for _ in range(count)
        ]

    async def play(self) -> None:
        s = self.session
        await self.status(2, "Available")
        self.say("CSMS sets SampledDataCtrlr.TxUpdatedInterval to 1 s")
        await _accepted(s.set_variable("SampledDataCtrlr", "TxUpdatedInterval", "1"))

        await self.click(self.plug_pin(1), "EV plugged into connector 1")
        await self.status(1, "Occupied")
        await self.click(self.tag_pin(1, TAG), f"RFID tag {TAG} presented at connector 1")
        started = await self.event(1, "Started")
        tx1 = str(started["transactionInfo"]["transactionId"])
        await self.samples(1, 3)  # 2.0.1 has no Charging status: the samples say it charges
        await self.show_lights(1)
        self.say("CSMS limits connector 1 to 16 A (3.7 kW at 230 V) with SetChargingProfile")
        await _accepted(s.set_charging_profile(1, _limit_16_A(tx1)))
        await self.samples(1, 3)
        self.say(f"CSMS stops transaction {tx1} remotely")
        await _accepted(s.request_stop(tx1))
        await self.event(1, "Ended")
        await self.click(self.plug_pin(1), "EV unplugged from connector 1")
        await self.status(1, "Available")

        await self.click(self.plug_pin(2), "EV plugged into connector 2")
        await self.status(2, "Occupied")
        self.say("CSMS starts a transaction remotely without naming an EVSE")
        answer = await s.request_start("DEADBEEF", remote_start_id=2)
        if answer.get("status") != "Accepted":
            raise RuntimeError(f"RequestStartTransaction answered {answer}")
        await self.event(2, "Started")
        await self.samples(2, 2)
        await self.show_lights(2)
        await self.click(self.plug_pin(2), "EV unplugged from connector 2 while charging")
        await self.event(2, "Ended")
        await self.status(2, "Available")


async def _accepted(call: Awaitable[str]) -> None:
    status = await call
    if status != "Accepted":
        raise RuntimeError(f"the charge point answered {status}")


def _limit_16_A(transaction_id: str) -> dict[str, Any]:
    """A 2.0.1 TxProfile holding the transaction to 16 A from now on."""
    return {
        "id": 10,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": transaction_id,
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
            }
        ],
    }


async def play(
    trace: bool = True, out: Callable[[str], None] = print, ocpp_version: str = "1.6"
) -> int:
    with tempfile.TemporaryDirectory(prefix="hilsim-demo-") as tmp:
        settings = embedded_defaults(base_dir=Path(tmp))
        namer = ResponseNamer() if ocpp_version == "2.0.1" else ActionNamer()

        def show(frame: Frame) -> None:
            if trace:
                out(format_frame(frame, namer=namer, local="CP", remote="CSMS"))

        async with CentralSystem("127.0.0.1", 0, id_tags=settings.csms.id_tags) as csms:
            cp = replace(settings.charge_point, csms_url=csms.url, ocpp_version=ocpp_version)
            # The demo page, read-only (no password): the demo presses the buttons itself.
            settings = with_web(replace(settings, charge_point=cp), demo_listen())
            service = Service(settings, frame_listeners=[show], backoff=Backoff(0.2, 2.0, 2.0))
            out(
                f"{_stamp()}  ▶ built-in CSMS on {csms.url}; charge point {cp.id} connecting "
                f"with OCPP {ocpp_version}"
            )
            runner = asyncio.create_task(service.run())
            try:
                session = await csms.wait_for_charge_point(cp.id, timeout=STEP_TIMEOUT)
                if service.web is not None:
                    out(f"{_stamp()}  ▶ demo page (live, read-only): {service.web.url}")
                if isinstance(session, ChargePointSession201):
                    await Demo201(settings, session, out).play()  # type: ignore[arg-type]
                else:
                    await Demo(settings, session, out).play()
            finally:
                service.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runner, STEP_TIMEOUT)
            if isinstance(session, ChargePointSession201):
                return _summary201(csms, session, out)
            return _summary(csms, session, out)


def _summary201(
    csms: CentralSystem, session: ChargePointSession201, out: Callable[[str], None]
) -> int:
    problems = list(session.violations)
    out("")
    out("Transactions held by the CSMS (OCPP 2.0.1):")
    for tx_id, record in csms.ledger201.items():
        out(
            f"  {tx_id} EVSE {record.evse_id} idToken "
            f"{(record.id_token or {}).get('idToken')}: {record.energy_wh} Wh, "
            f"{len(record.events)} TransactionEvents (seqNo {record.seq_nos[0]}.."
            f"{record.seq_nos[-1]}), stopped: {record.stopped_reason}"
        )
        problems += [f"transaction {tx_id}: {problem}" for problem in record.problems]
        if not record.ended:
            problems.append(f"transaction {tx_id} never ended")
    if len(csms.ledger201) != 2:
        problems.append(f"expected 2 transactions, the CSMS holds {len(csms.ledger201)}")
    return _verdict(problems, out)


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
    return _verdict(problems, out)


def _verdict(problems: list[str], out: Callable[[str], None]) -> int:
    for problem in problems:
        out(f"PROBLEM: {problem}")
    out("demo finished: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 0 if not problems else 1
