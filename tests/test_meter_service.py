"""A real SDM630 on the bench: pymodbus's RTU server on one end of a pseudo-terminal pair at
9600 8N1, the whole charge point service on the other, the built-in CSMS checking every frame
against the official OCPP 1.6 schemas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hilsim.config import Settings, parse_settings
from hilsim.csms import CentralSystem
from hilsim.evse import events
from hilsim.meter.registers import SDM630
from hilsim.meter.simulator import MeterSimulator, VirtualCable

from conftest import CP_ID, TAG, Bench, METER_START_Wh, start_service, stop_service

START_Wh = METER_START_Wh
PHASES = ("L1", "L2", "L3")


def meter_settings(
    directory: Path, csms_url: str, port: str, *, fault_after_s: float = 1.0
) -> Settings:
    text = f"""
[charge_point]
id = "{CP_ID}"
csms_url = "{csms_url}"

[[connector]]
id = 1
voltage_V = 230.0
max_power_W = 11000
[connector.meter]
kind = "sdm630"
port = "{port}"
baudrate = 9600
parity = "N"
stopbits = 1
unit_id = 1
poll_interval_s = 0.05
timeout_s = 0.5
fault_after_s = {fault_after_s}
retry_max_s = 0.25

[[connector]]
id = 2
voltage_V = 230.0
max_power_W = 7400

[storage]
database = "{directory / "hilsim.db"}"
[control]
socket = "{directory / "ctl.sock"}"
[gpio]
backend = "mock"
"""
    path = directory / "hilsim.toml"
    path.write_text(text)
    return parse_settings(text, str(path))


Start = Callable[..., Awaitable[Bench]]


@pytest.fixture
async def start(
    csms: CentralSystem, short_dir: Path, cable: VirtualCable, sim: MeterSimulator
) -> AsyncIterator[Start]:
    running: list[Bench] = []

    async def starter(**kw: Any) -> Bench:
        settings = meter_settings(short_dir, csms.url, cable.charger_port, **kw)
        service, task = await start_service(settings)
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        bench = Bench(settings, service, csms, session, task)
        running.append(bench)
        for connector in (0, 1, 2):
            await bench.status(connector, "Available")
        await session.change_configuration("MeterValueSampleInterval", "1")
        return bench

    yield starter
    for bench in running:
        if not bench.task.done():
            await stop_service(bench.service, bench.task)
        assert bench.session.violations == []  # every frame passed the official schemas


def values_of(payload: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    """(measurand, phase) -> sampled value, for one MeterValues.req."""
    (meter_value,) = payload["meterValue"]
    found = {}
    for v in meter_value["sampledValue"]:
        key = (v["measurand"], v.get("phase"))
        assert key not in found, f"{key} sent twice"
        found[key] = v
    return found


async def settled(sim: MeterSimulator, polls: int = 2) -> None:
    """Until the charge point has polled the meter's current values (2 requests per poll)."""
    await sim.served(sim.requests + 2 * polls + 1)


async def test_real_measurands_reach_the_csms(start: Start, sim: MeterSimulator) -> None:
    bench = await start()
    sim.load(11_040.0)  # 16 A on each of three phases at 230 V
    tx = await bench.start_local(1)
    payload = await bench.session.wait_for(
        "MeterValues",
        lambda p: (
            p["connectorId"] == 1
            and float(values_of(p)[("Energy.Active.Import.Register", None)]["value"]) > START_Wh
        ),
    )
    assert payload["transactionId"] == tx
    v = values_of(payload)
    total = lambda m: float(v[(m, None)]["value"])  # noqa: E731
    assert total("Power.Active.Import") == pytest.approx(11_040.0)
    assert total("Current.Import") == pytest.approx(16.0, abs=0.01)  # average line current
    assert total("Voltage") == pytest.approx(230.0)
    assert total("Frequency") == pytest.approx(50.0)
    assert "unit" not in v[("Frequency", None)]  # OCPP 1.6 has no unit for it: Hertz implied
    for phase in PHASES:
        assert float(v[("Power.Active.Import", phase)]["value"]) == pytest.approx(3_680.0)
        assert float(v[("Current.Import", phase)]["value"]) == pytest.approx(16.0, abs=0.01)
        assert float(v[("Voltage", f"{phase}-N")]["value"]) == pytest.approx(230.0)
        energy = float(v[("Energy.Active.Import.Register", phase)]["value"])
        assert energy >= START_Wh / 3 - 0.1
    units = {(m, p): x.get("unit") for (m, p), x in v.items()}
    assert {u for (m, _), u in units.items() if m == "Energy.Active.Import.Register"} == {"Wh"}
    assert {u for (m, _), u in units.items() if m == "Power.Active.Import"} == {"W"}
    assert {u for (m, _), u in units.items() if m == "Current.Import"} == {"A"}
    assert {u for (m, _), u in units.items() if m == "Voltage"} == {"V"}
    assert v[("SoC", None)]["unit"] == "Percent" and v[("SoC", None)]["location"] == "EV"
    assert all(x["location"] == "Outlet" for (m, _), x in v.items() if m != "SoC")


async def test_meter_start_and_stop_come_from_the_register(
    start: Start, sim: MeterSimulator
) -> None:
    bench = await start()
    await settled(sim)
    await bench.start_local(1)
    assert bench.starts[1]["meterStart"] == round(START_Wh)
    sim.load(400_000.0)  # a lot, so the register moves visibly in a fraction of a second
    await sim.served(sim.requests + 8)
    sim.load(0.0)
    await settled(sim)
    register = sim.values["energy_Wh"]
    assert register > START_Wh + 5
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["meterStop"] == pytest.approx(register, abs=1.0)
    assert stop["reason"] == "Local"


async def test_ctl_status_shows_the_meter(start: Start, sim: MeterSimulator) -> None:
    bench = await start()
    sim.load(7_360.0)
    await settled(sim)
    answer = await bench.ctl("status")
    assert answer["ok"]
    c1, c2 = answer["result"]["connectors"]
    assert c1["energy_Wh"] == pytest.approx(START_Wh, abs=5.0)
    assert (c1["power_W"], c1["current_A"], c1["voltage_V"]) == (7360.0, 10.67, 230.0)
    meter = c1["meter"]
    assert meter["source"] == f"sdm630 at {sim.port.replace('meter', 'cp')} (9600 8N1, unit 1)"
    assert (meter["health"], meter["problem"]) == ("ok", None)
    assert meter["frequency_Hz"] == 50.0 and meter["reading_age_s"] < 1.0
    assert [p["phase"] for p in meter["phases"]] == list(PHASES)
    assert meter["phases"][0]["power_W"] == pytest.approx(2453.3, abs=0.1)
    assert c2["meter"]["source"] == "synthetic" and c2["meter"]["health"] == "ok"
    json.dumps(answer)  # what `hilsim ctl status` prints


async def faulted(bench: Bench) -> dict[str, Any]:
    return await bench.session.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == 1 and p["status"] == "Faulted",
    )


async def recovered(bench: Bench) -> dict[str, Any]:
    return await bench.session.wait_for(
        "StatusNotification",
        lambda p: (
            p["connectorId"] == 1 and p["status"] != "Faulted" and p["errorCode"] == "NoError"
        ),
    )


async def meter_status(bench: Bench) -> dict[str, Any]:
    answer = await bench.ctl("status")
    return dict(answer["result"]["connectors"][0]["meter"])


@pytest.mark.parametrize("failure", ["silent", "garbage", "slow", "unplugged"])
async def test_a_failing_meter_faults_the_connector_and_recovers(
    start: Start,
    sim: MeterSimulator,
    cable: VirtualCable,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bench = await start()
    sim.load(11_040.0)
    await bench.start_local(1)
    good = await bench.session.wait_for("MeterValues", lambda p: p["connectorId"] == 1)
    last_good = float(values_of(good)[("Energy.Active.Import.Register", None)]["value"])
    with caplog.at_level(logging.INFO, "hilsim"):
        before = len(caplog.records)  # only this window's lines are counted
        if failure == "silent":
            sim.answering.clear()
        elif failure == "garbage":
            sim.garble = True
        elif failure == "slow":
            sim.delay_s = 0.7  # answers after the 0.5 s timeout
        else:
            await sim.stop()
            await cable.unplug()
        fault = await faulted(bench)
        assert fault["errorCode"] == "PowerMeterFailure"
        # The transaction ends with the last good register: nothing billed twice, nothing lost.
        stop = await bench.session.wait_for("StopTransaction")
        assert stop["reason"] == "Other"
        assert stop["meterStop"] >= last_good - 0.5 >= bench.starts[1]["meterStart"]
        problem = {
            "silent": "no answer",
            "garbage": "garbled answer",
            "slow": ("no answer", "garbled answer"),
            "unplugged": "serial port missing",
        }[failure]
        status = await meter_status(bench)
        assert status["health"] == "failed"
        assert status["problem"] in problem
        assert (await bench.ctl("status"))["result"]["connectors"][0]["error_code"] == (
            "PowerMeterFailure"
        )
        if failure == "silent":
            sim.answering.set()
        elif failure == "garbage":
            sim.garble = False
        elif failure == "slow":
            sim.delay_s = 0.0
        else:
            await cable.plug()
            await sim.start()
        back = await recovered(bench)
    assert back["status"] in ("Finishing", "Preparing")
    assert (await meter_status(bench))["health"] == "ok"
    # Logged per change of state, not per poll: one warning, one error, one recovery (and, for
    # a meter failing in two ways by turns, one line for the second way).
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records[before:]
        if r.name == "hilsim.meter.modbus"
    ]
    assert [level for level, _ in lines if level != "INFO"] == ["WARNING", "ERROR"], caplog.text
    assert sum("answers again" in text for _, text in lines) == 1
    assert len(lines) <= 4
    # The connector works again: a new transaction starts from the register.
    assert (await bench.ctl("unplug", 1))["ok"]
    await bench.status(1, "Available")
    await bench.start_local(1)
    assert bench.starts[1]["meterStart"] >= stop["meterStop"]


async def test_a_person_clearing_the_fault_does_not_hide_a_dead_meter(
    start: Start, sim: MeterSimulator
) -> None:
    bench = await start()
    sim.answering.clear()
    await faulted(bench)
    assert (await bench.ctl("clear", 1))["ok"]
    again = await faulted(bench)  # the meter is still silent
    assert again["errorCode"] == "PowerMeterFailure"
    sim.answering.set()
    assert (await recovered(bench))["status"] == "Available"


async def test_no_transaction_starts_on_a_meter_that_never_answered(
    start: Start, sim: MeterSimulator
) -> None:
    sim.answering.clear()  # connected, powered off
    bench = await start(fault_after_s=30.0)
    failed = bench.next_event(events.StartFailed, 1)
    assert (await bench.ctl("plug", 1))["ok"]
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    outcome = await asyncio.wait_for(failed, 5)
    assert outcome.accepted
    assert not [m for m in bench.session.received if m.action == "StartTransaction"]
    status = await meter_status(bench)
    assert (status["health"], status["problem"]) == ("retrying", "no answer")
    sim.answering.set()
    await settled(sim)
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]  # the driver tries again: it starts
    start_tx = await bench.session.wait_for("StartTransaction")
    assert start_tx["meterStart"] == round(START_Wh)


async def test_a_counter_reset_never_sends_a_decreasing_register(
    start: Start, sim: MeterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    bench = await start()
    sim.load(11_040.0)
    await bench.start_local(1)
    first = await bench.session.wait_for("MeterValues", lambda p: p["connectorId"] == 1)
    with caplog.at_level(logging.WARNING, "hilsim.meter.continuity"):
        sim.set_energy(0.0)  # someone reset the meter's counter mid-session
        later = [
            await bench.session.wait_for("MeterValues", lambda p: p["connectorId"] == 1)
            for _ in range(2)
        ]
    energies = [
        float(values_of(p)[("Energy.Active.Import.Register", None)]["value"])
        for p in (first, *later)
    ]
    assert energies == sorted(energies)
    assert "went back" in caplog.text
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["meterStop"] >= energies[-1] - 0.5 >= bench.starts[1]["meterStart"]
    record = bench.csms.ledger[stop["transactionId"]]
    assert record.energy_wh is not None and record.energy_wh >= 0


async def test_a_meter_swapped_while_stopped_continues_the_register(
    start: Start, sim: MeterSimulator
) -> None:
    bench = await start()
    sim.load(400_000.0)
    await bench.start_local(1)
    await sim.served(sim.requests + 8)
    sim.load(0.0)
    await settled(sim)
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    await stop_service(bench.service, bench.task)
    sim.set_energy(100.0)  # a new meter went in while the charge point was off
    again = await start()
    await again.start_local(1)
    assert again.starts[1]["meterStart"] >= stop["meterStop"]


async def test_probe_reads_the_meter(cable: VirtualCable, sim: MeterSimulator) -> None:
    sim.load(11_040.0)
    done = await hilsim(
        "meter",
        "probe",
        "--port",
        cable.charger_port,
        "--kind",
        "sdm630",
        "--baudrate",
        "9600",
        "--parity",
        "N",
        "--stopbits",
        "1",
        "--unit-id",
        "1",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"sdm630 at {cable.charger_port} (9600 8N1, unit 1): answered 2")
    table = {" ".join(line.split()[:-2]): line.split()[-2:] for line in lines[1:]}
    assert table["power"] == ["11040.0", "W"]
    assert table["power L2"] == ["3680.0", "W"]
    assert table["current L3"] == ["16.00", "A"]
    assert table["voltage L1"] == ["230.0", "V"]
    assert table["frequency"] == ["50.00", "Hz"]
    assert float(table["energy"][0]) >= START_Wh and table["energy"][1] == "Wh"
    assert len(table) == len(SDM630.measurands)


async def test_probe_says_what_is_wrong_and_fails(cable: VirtualCable, short_dir: Path) -> None:
    silent = await hilsim("meter", "probe", "--port", cable.charger_port, "--timeout", "0.3")
    assert silent.returncode == 1 and silent.stdout == ""
    assert silent.stderr.strip() == (
        f"hilsim: no meter read: sdm630 at {cable.charger_port} (9600 8N1, unit 1): no answer: "
        "unit 1 did not answer within 0.3 s (wiring A/B, unit id, baud rate, power?)"
    )
    missing = await hilsim("meter", "probe", "--port", str(short_dir / "ttyUSB9"))
    assert missing.returncode == 1
    assert "ttyUSB9 does not exist (USB-RS485 adapter unplugged?)" in missing.stderr


async def test_probe_takes_the_configured_meter(
    csms: CentralSystem, short_dir: Path, cable: VirtualCable, sim: MeterSimulator
) -> None:
    settings = meter_settings(short_dir, csms.url, cable.charger_port)
    done = await hilsim("meter", "probe", "--config", settings.source, "--connector", "1")
    assert done.returncode == 0, done.stderr
    assert "(9600 8N1, unit 1): answered" in done.stdout
    wrong = await hilsim("meter", "probe", "--config", settings.source, "--connector", "2")
    assert wrong.returncode == 2
    assert (
        "connector: expected connector 2 to have a Modbus [connector.meter] table" in wrong.stderr
    )


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def hilsim(*args: str) -> Done:
    """The CLI in a subprocess, awaited so the simulated meter in this loop keeps answering."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hilsim",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())
